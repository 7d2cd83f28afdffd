//! `strata diff`: what changed between two snapshots.

use super::{CmdResult, EXIT_OK, Failure, is_broken_pipe};
use std::io::Write;
use std::path::PathBuf;
use strata::diff::{Change, diff};
use strata::util::Json;

/// Show what changed between two snapshots
///
/// One line per path: `+` added, `-` removed, `M` content modified, `m` metadata only
/// (mode, owner, mtime, xattrs; listed in brackets), `T` type changed. Unchanged
/// directories are skipped without being read.
///
/// Examples:
///   strata diff A latest~1 latest --label jira     (last night against the night before)
///   strata diff A 1a2b3c4d latest
///   strata diff A 1a2b3c4d 5e6f7a8b --json
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Archive directory
    archive: PathBuf,
    /// The older snapshot (id, prefix or `latest`)
    old: String,
    /// The newer snapshot (id, prefix or `latest`)
    new: String,
    /// With `latest` or `latest~N`: count only snapshots with this label
    #[arg(long)]
    label: Option<String>,
    /// Print a JSON object on stdout
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> CmdResult {
    let archive = super::open(&a.archive)?;
    let old = archive.resolve(&a.old, a.label.as_deref())?;
    let new = archive.resolve(&a.new, a.label.as_deref())?;
    let entries = diff(&archive, old.root, new.root)?;
    let count = |c: Change| entries.iter().filter(|e| e.change == c).count();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let r = if a.json {
        let arr = entries
            .iter()
            .map(|e| {
                Json::obj([
                    ("change", Json::str(e.change.name())),
                    ("path", Json::str(String::from_utf8_lossy(&e.path))),
                    ("type", Json::str(e.kind.name())),
                    ("size", Json::int(e.size)),
                    (
                        "fields",
                        Json::Arr(e.fields.iter().map(|f| Json::str(*f)).collect()),
                    ),
                ])
            })
            .collect();
        writeln!(
            out,
            "{}",
            Json::obj([
                ("old", Json::str(old.id.hex())),
                ("new", Json::str(new.id.hex())),
                ("changes", Json::Arr(arr)),
            ])
            .render()
        )
    } else {
        entries.iter().try_for_each(|e| {
            write!(out, "{} ", e.change.code())?;
            out.write_all(&e.path)?;
            if e.kind == strata::format::tree::NodeKind::Dir {
                out.write_all(b"/")?;
            }
            if !e.fields.is_empty() {
                write!(out, "  [{}]", e.fields.join(","))?;
            }
            writeln!(out)
        })
    };
    match r.and_then(|_| out.flush()) {
        Ok(()) => {}
        Err(e) if is_broken_pipe(&e) => return Ok(EXIT_OK),
        Err(e) => return Err(Failure::new(format!("writing to stdout: {e}"))),
    }
    eprintln!(
        "{} -> {}: {} added, {} removed, {} modified, {} metadata only, {} type changed",
        old.id.short(),
        new.id.short(),
        count(Change::Added),
        count(Change::Removed),
        count(Change::Modified),
        count(Change::Metadata),
        count(Change::TypeChanged)
    );
    Ok(EXIT_OK)
}
