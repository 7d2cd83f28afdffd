//! `strata restore`: a snapshot, directory or file back onto disk.

use super::escape::text;
use super::{CmdResult, EXIT_OK, EXIT_PARTIAL, Failure};
use std::path::PathBuf;
use strata::restore::{RestoreOptions, restore};
use strata::util::human_bytes;

/// Restore a snapshot, or a path in it, into a directory
///
/// Recreates files, directories, symlinks, hard links, sparse holes, FIFOs, modes, mtimes
/// (ns), xattrs, and owners when run as root, verifying every chunk's BLAKE3 as it writes.
/// Never writes outside TARGET. Needs no FUSE.
///
/// Examples:
///   strata restore A latest /srv/restore            -> /srv/restore/<each source>
///   strata restore A latest:structr/files /tmp/r    -> /tmp/r/files
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Archive directory
    archive: PathBuf,
    /// SNAP[:PATH]: snapshot id, id prefix or `latest`, and optionally a path inside it
    spec: String,
    /// Directory to restore into (created if missing)
    target: PathBuf,
    /// Replace files that already exist in TARGET
    #[arg(long)]
    overwrite: bool,
    /// With `latest`: the newest snapshot with this label
    #[arg(long)]
    label: Option<String>,
}

pub fn run(a: Args) -> CmdResult {
    let archive = super::open(&a.archive)?;
    let (row, node) = super::resolve_node(&archive, &a.spec, a.label.as_deref())?;
    let started = std::time::Instant::now();
    let report = restore(
        &archive,
        &node,
        &a.target,
        RestoreOptions {
            overwrite: a.overwrite,
        },
    )
    .map_err(|e| {
        let hint = e.hint();
        Failure::new(e).hint(hint)
    })?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "restored snapshot {} into {}: {} files, {} dirs, {} other, {} in {:.1} s",
        row.id.short(),
        a.target.display(),
        report.files,
        report.dirs,
        report.other,
        human_bytes(report.bytes),
        secs
    );
    for (p, w) in &report.warnings {
        eprintln!("  warning: {}: {}", text(p), text(w));
    }
    if !report.damaged.is_empty() {
        eprintln!(
            "  {} file(s) NOT restored because their stored data is damaged:",
            report.damaged.len()
        );
        for (p, e) in &report.damaged {
            eprintln!("    {}: {}", text(p), text(e));
        }
        return Ok(EXIT_PARTIAL);
    }
    Ok(EXIT_OK)
}
