//! `strata init`: creates an archive.

use super::{CmdResult, EXIT_OK, Failure};
use std::path::PathBuf;
use strata::archive::{Archive, Config};

/// Create a new, empty archive
///
/// The directory is created with mode 0700 (files 0600). An existing empty directory is
/// used; a non-empty one that is not an archive is refused. The archive is encrypted
/// unless --no-encryption is given: its master key is random, kept in ARCHIVE/keys/
/// wrapped by the password (Argon2id); a lost password means a lost archive.
///
/// Exit codes: 0 created, 1 error, 2 usage, 6 no password could be had.
#[derive(clap::Args)]
pub struct Args {
    /// Archive directory to create; may be left out when STRATA_ARCHIVE names it
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
    /// Store everything in the clear: anyone who can read the archive directory reads
    /// every file, name, label and command line in it. Without this, the archive is
    /// encrypted (AES-256-GCM) under a password from --password-file, --password-command,
    /// STRATA_PASSWORD_FILE, STRATA_PASSWORD_COMMAND, STRATA_PASSWORD, or asked twice on
    /// the terminal
    #[arg(long)]
    no_encryption: bool,
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
    let password = if a.no_encryption {
        None
    } else {
        Some(super::password::obtain(
            &a.archive,
            super::password::Purpose::New,
        )?)
    };
    Archive::init_with(&a.archive, &config, password.as_ref())?;
    eprintln!(
        "created archive {} (chunks ~{}, zstd level {}{}{})",
        a.archive.display(),
        strata::sys::human_bytes(avg),
        a.compression_level,
        if a.append_only { ", append-only" } else { "" },
        if password.is_some() {
            ", encrypted"
        } else {
            ", NOT encrypted"
        }
    );
    if password.is_some() {
        eprintln!(
            "  the master key is in {}/keys/, wrapped by your password: keep the password \
             somewhere safe and apart from the archive (a lost password is a lost archive); \
             `strata key add` adds a second one",
            a.archive.display()
        );
    } else {
        eprintln!(
            "  anyone who can read {} reads every file, name, label and command line in it",
            a.archive.display()
        );
    }
    Ok(EXIT_OK)
}
