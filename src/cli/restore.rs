//! `strata restore`: a snapshot, directory or file back onto disk.

use super::escape::text;
use super::hints::Hint;
use super::{CmdResult, EXIT_OK, EXIT_PARTIAL, Failure};
use std::path::PathBuf;
use strata::ops::restore::{RestoreOptions, restore};
use strata::sys::human_bytes;

/// Restore a snapshot, or a path in it, into a directory
///
/// Recreates files, directories, symlinks, hard links, sparse holes, FIFOs, modes, mtimes
/// (ns), xattrs (file capabilities included), and owners when run as root, verifying every
/// chunk's BLAKE3 as it writes. Needs no FUSE.
///
/// Never writes outside TARGET, even when other users can write into it while it runs:
/// every entry is created and its metadata set through descriptors, never followed
/// symlinks. A TARGET that is itself a symlink is refused (name the directory it points
/// to, e.g. "$(readlink -f TARGET)"). Damaged files and directories are skipped and listed
/// (exit 3); a file cut short by a write error (disk full) is removed, never left partial.
///
/// Examples:
///   strata restore A latest /srv/restore            -> /srv/restore/<each source>
///   strata restore A latest:structr/files /tmp/r    -> /tmp/r/files
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Archive directory; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
    /// SNAP[:PATH]: snapshot id, id prefix or `latest`, and optionally a path inside it
    spec: String,
    /// Directory to restore into (created if missing; refused if it is a symlink)
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
        let dirs = report
            .damaged
            .iter()
            .filter(|(p, _)| p.ends_with('/'))
            .count();
        let files = report.damaged.len() - dirs;
        let what = match (files, dirs) {
            (_, 0) => format!("{files} file(s)"),
            (0, _) => format!("{dirs} directory(ies)"),
            _ => format!("{files} file(s) and {dirs} directory(ies)"),
        };
        eprintln!("  {what} NOT restored because their stored data is damaged:");
        for (p, e) in &report.damaged {
            eprintln!("    {}: {}", text(p), text(e));
        }
        return Ok(EXIT_PARTIAL);
    }
    Ok(EXIT_OK)
}
