//! `strata show`: everything a snapshot record says.

use super::escape::{name, text};
use super::{CmdResult, EXIT_OK};
use std::path::PathBuf;
use strata::sys::{Json, human_bytes, rfc3339};

/// Show one snapshot's record: sources, command line, commands and hooks with their exit
/// codes, unreadable paths, and statistics
///
/// Names, paths and the command line are escaped as in `strata ls` (one line each).
#[derive(clap::Args)]
pub struct Args {
    /// Archive directory; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
    /// Snapshot id, prefix, `latest` or `latest~N`
    snapshot: String,
    /// With `latest`: the newest snapshot with this label
    #[arg(long)]
    label: Option<String>,
    /// Print a JSON object on stdout
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> CmdResult {
    let archive = super::open(&a.archive)?;
    let row = archive.resolve(&a.snapshot, a.label.as_deref())?;
    let s = archive.load_snapshot(&row.id)?;
    let st = &s.stats;
    if a.json {
        let j = Json::obj([
            ("id", Json::str(row.id.hex())),
            ("time", Json::str(rfc3339(s.time.0, s.time.1, true))),
            ("host", Json::str(s.host.clone())),
            ("label", Json::str(s.label.clone())),
            (
                "tags",
                Json::Arr(s.tags.iter().map(|t| Json::str(t.clone())).collect()),
            ),
            (
                "parent",
                s.parent.map(|p| Json::str(p.hex())).unwrap_or(Json::Null),
            ),
            ("root", Json::str(s.root.hex())),
            (
                "sources",
                Json::Arr(
                    s.sources
                        .iter()
                        .map(|x| {
                            Json::obj([
                                ("name", Json::str(x.name.clone())),
                                ("origin", Json::str(x.origin.clone())),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                "argv",
                Json::Arr(s.argv.iter().map(|x| Json::str(x.clone())).collect()),
            ),
            (
                "commands",
                Json::Arr(
                    s.commands
                        .iter()
                        .map(|c| {
                            Json::obj([
                                ("command", Json::str(c.command.clone())),
                                ("exit_code", Json::int(c.exit_code)),
                            ])
                        })
                        .collect(),
                ),
            ),
            ("errors", super::path_errors_json(&s.errors)),
            (
                "stats",
                Json::obj([
                    ("files", Json::int(st.files)),
                    ("dirs", Json::int(st.dirs)),
                    ("files_new", Json::int(st.files_new)),
                    ("files_changed", Json::int(st.files_changed)),
                    ("files_unchanged", Json::int(st.files_unchanged)),
                    ("bytes_read", Json::int(st.bytes_read)),
                    ("bytes_added", Json::int(st.bytes_added)),
                    ("total_size", Json::int(st.total_size)),
                    ("duration_ms", Json::int(st.duration_ms)),
                ]),
            ),
        ]);
        super::out_line(&j.render())?;
        return Ok(EXIT_OK);
    }
    let mut lines = vec![
        format!("snapshot  {}", row.id.hex()),
        format!("time      {}", rfc3339(s.time.0, s.time.1, true)),
        format!("host      {}", name(s.host.as_bytes())),
        format!(
            "label     {}",
            if s.label.is_empty() {
                "-".into()
            } else {
                name(s.label.as_bytes())
            }
        ),
        format!(
            "tags      {}",
            if s.tags.is_empty() {
                "-".to_string()
            } else {
                s.tags
                    .iter()
                    .map(|t| name(t.as_bytes()))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        format!(
            "parent    {}",
            s.parent.map(|p| p.short()).unwrap_or_else(|| "-".into())
        ),
        format!(
            "command   {}",
            s.argv
                .iter()
                .map(|x| name(x.as_bytes()))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        "sources".to_string(),
    ];
    for x in &s.sources {
        lines.push(format!(
            "  {}  <-  {}",
            name(x.name.as_bytes()),
            name(x.origin.as_bytes())
        ));
    }
    if !s.commands.is_empty() {
        lines.push("commands (exit code)".into());
        for c in &s.commands {
            lines.push(format!("  {:>3}  {}", c.exit_code, text(&c.command)));
        }
    }
    lines.push(format!(
        "files     {} ({} new, {} changed, {} unchanged), {} dirs, {}",
        st.files,
        st.files_new,
        st.files_changed,
        st.files_unchanged,
        st.dirs,
        human_bytes(st.total_size)
    ));
    lines.push(format!(
        "ingest    read {}, added {}, {:.1} s",
        human_bytes(st.bytes_read),
        human_bytes(st.bytes_added),
        st.duration_ms as f64 / 1000.0
    ));
    if !s.errors.is_empty() {
        lines.push(format!("unreadable paths ({})", s.errors.len()));
        for e in &s.errors {
            lines.push(format!("  {}: {}", name(&e.path), text(&e.message)));
        }
    }
    for l in lines {
        super::out_line(&l)?;
    }
    Ok(EXIT_OK)
}
