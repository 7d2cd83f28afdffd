//! `strata init`: creates an archive.

use super::{CmdResult, EXIT_OK, Failure};
use std::path::PathBuf;
use strata::archive::{Archive, Config};

/// Create a new, empty archive
///
/// The directory is created with mode 0700 (files 0600). An existing empty directory is
/// used; a non-empty one that is not an archive is refused.
#[derive(clap::Args)]
pub struct Args {
    /// Archive directory to create
    archive: PathBuf,
    /// zstd level for stored chunks: 1 (fastest) to 19 (smallest); zstd's ultra levels 20-22 are not supported
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    compression_level: i32,
    /// Average chunk size for content-defined chunking, fixed for the archive's life
    /// (e.g. 512K, 1M, 2M; between 256 and 4M)
    #[arg(long, default_value = "1M", value_name = "AVG")]
    chunk_size: String,
    /// Refuse `forget` and `prune` forever, so a compromised client cannot destroy history
    #[arg(long)]
    append_only: bool,
}

pub fn run(a: Args) -> CmdResult {
    let avg = strata::sys::parse_size(&a.chunk_size)
        .filter(|&n| (256..=4 << 20).contains(&n) && n % 8 == 0)
        .ok_or_else(|| {
            Failure::new(format!(
                "--chunk-size {:?}: give a multiple of 8 bytes between 256 and 4M, e.g. 512K or 1M",
                a.chunk_size
            ))
        })?;
    let config = Config::new(avg as u32, a.compression_level, a.append_only);
    // Encrypted when a password is given (for now: STRATA_PASSWORD; see super::password).
    let password = super::password();
    Archive::init_with(&a.archive, &config, password.as_ref())?;
    eprintln!(
        "created archive {} (chunks ~{}, zstd level {}{})",
        a.archive.display(),
        strata::sys::human_bytes(avg),
        a.compression_level,
        if a.append_only { ", append-only" } else { "" }
    );
    Ok(EXIT_OK)
}
