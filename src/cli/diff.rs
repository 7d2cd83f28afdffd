//! `strata diff`: what changed between two snapshots.

use super::{CmdResult, EXIT_OK, Failure, escape, is_broken_pipe};
use std::io::Write;
use std::path::PathBuf;
use strata::archive::ArchiveError;
use strata::format::tree::NodeKind;
use strata::ops::diff::{Change, Entry, diff_each};
use strata::sys::Json;

/// Show what changed between two snapshots
///
/// One line per path: `+` added, `-` removed, `M` content modified, `m` metadata only
/// (mode, owner, mtime, xattrs; listed in brackets), `T` type changed. Unchanged
/// directories are skipped without being read. Lines are written as changes are found.
/// Paths are escaped as in `strata ls` (`\n`, `\\`, `\033`, `\377`), so each change
/// is one line.
///
/// Examples:
///   strata diff A latest~1 latest --label jira     (last night against the night before)
///   strata diff A 1a2b3c4d latest
///   strata diff A 1a2b3c4d 5e6f7a8b --json
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Archive directory; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
    /// The older snapshot (id, prefix or `latest`)
    old: String,
    /// The newer snapshot (id, prefix or `latest`)
    new: String,
    /// With `latest` or `latest~N`: count only snapshots with this label
    #[arg(long)]
    label: Option<String>,
    /// Print a JSON object on stdout (`changes` one element per line; paths that are not
    /// UTF-8 also as base64 in `path_bytes`)
    #[arg(long)]
    json: bool,
}

/// Why a diff stopped: the archive could not be read, or stdout could not be written.
enum Stop {
    Read(ArchiveError),
    Write(std::io::Error),
}

impl From<ArchiveError> for Stop {
    fn from(e: ArchiveError) -> Stop {
        Stop::Read(e)
    }
}

fn write_entry(out: &mut impl Write, json: bool, first: bool, e: &Entry) -> std::io::Result<()> {
    if json {
        let mut f = vec![("change", Json::str(e.change.name()))];
        escape::json_bytes(&mut f, "path", "path_bytes", &e.path);
        f.push(("type", Json::str(e.kind.name())));
        f.push(("size", Json::int(e.size)));
        f.push((
            "fields",
            Json::Arr(e.fields.iter().map(|f| Json::str(*f)).collect()),
        ));
        if !first {
            out.write_all(b",\n")?;
        }
        return out.write_all(Json::obj(f).render().as_bytes());
    }
    write!(out, "{} {}", e.change.code(), escape::name(&e.path))?;
    if e.kind == NodeKind::Dir {
        out.write_all(b"/")?;
    }
    if !e.fields.is_empty() {
        write!(out, "  [{}]", e.fields.join(","))?;
    }
    writeln!(out)
}

pub fn run(a: Args) -> CmdResult {
    let archive = super::open(&a.archive)?;
    let old = archive.resolve(&a.old, a.label.as_deref())?;
    let new = archive.resolve(&a.new, a.label.as_deref())?;
    let mut counts = [0u64; 5];
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut r = Ok(());
    if a.json {
        r = write!(
            out,
            "{{\"old\":{},\"new\":{},\"changes\":[",
            Json::str(old.id.hex()).render(),
            Json::str(new.id.hex()).render()
        )
        .map_err(Stop::Write);
    }
    let r = r.and_then(|()| {
        diff_each(&archive, old.root, new.root, &mut |e: Entry| {
            let k = e.change as usize;
            counts[k] += 1;
            let first = counts.iter().sum::<u64>() == 1;
            write_entry(&mut out, a.json, first, &e).map_err(Stop::Write)
        })
    });
    let r = r.and_then(|()| {
        if a.json {
            out.write_all(b"]}\n").map_err(Stop::Write)?;
        }
        out.flush().map_err(Stop::Write)
    });
    match r {
        Ok(()) => {}
        Err(Stop::Write(e)) if is_broken_pipe(&e) => return Ok(EXIT_OK),
        Err(Stop::Write(e)) => return Err(Failure::new(format!("writing to stdout: {e}"))),
        Err(Stop::Read(e)) => {
            let _ = out.flush();
            return Err(e.into());
        }
    }
    let count = |c: Change| counts[c as usize];
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
