//! `strata snapshots`: the snapshot table.

use super::escape::name;
use super::{CmdResult, EXIT_OK};
use std::path::PathBuf;
use strata::sys::{Json, human_bytes, rfc3339, short_time};

/// List snapshots in the order they were committed (the last one is `latest`)
#[derive(clap::Args)]
pub struct Args {
    /// Archive directory; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
    /// Only snapshots with this label
    #[arg(long)]
    label: Option<String>,
    /// Print a JSON array on stdout
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> CmdResult {
    let archive = super::open(&a.archive)?;
    let rows: Vec<_> = archive
        .snapshots()?
        .into_iter()
        .filter(|r| a.label.as_ref().is_none_or(|l| &r.label == l))
        .collect();
    if a.json {
        let arr = rows
            .iter()
            .map(|r| {
                Json::obj([
                    ("id", Json::str(r.id.hex())),
                    ("short_id", Json::str(r.id.short())),
                    ("time", Json::str(rfc3339(r.time.0, r.time.1, false))),
                    ("host", Json::str(r.host.clone())),
                    ("label", Json::str(r.label.clone())),
                    (
                        "tags",
                        Json::Arr(r.tags.iter().map(|t| Json::str(t.clone())).collect()),
                    ),
                    (
                        "sources",
                        Json::Arr(r.sources.iter().map(|t| Json::str(t.clone())).collect()),
                    ),
                    ("files", Json::int(r.files)),
                    ("size", Json::int(r.size)),
                    ("bytes_added", Json::int(r.added)),
                    ("errors", Json::int(r.errors)),
                ])
            })
            .collect();
        super::out_line(&Json::Arr(arr).render())?;
        return Ok(EXIT_OK);
    }
    let mut table: Vec<[String; 8]> = vec![[
        "ID".into(),
        "TIME (UTC)".into(),
        "LABEL".into(),
        "TAGS".into(),
        "SOURCES".into(),
        "FILES".into(),
        "SIZE".into(),
        "ADDED".into(),
    ]];
    for r in &rows {
        table.push([
            r.id.short(),
            short_time(r.time.0),
            if r.label.is_empty() {
                "-".into()
            } else {
                name(r.label.as_bytes()).into_owned()
            },
            if r.tags.is_empty() {
                "-".into()
            } else {
                join(&r.tags)
            },
            join(&r.sources),
            r.files.to_string(),
            human_bytes(r.size),
            human_bytes(r.added),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i >= 5 {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        super::out_line(line.join("  ").trim_end())?;
    }
    eprintln!("{} snapshot(s)", rows.len());
    Ok(EXIT_OK)
}

/// Escaped names (as in `strata ls`), comma-separated.
fn join(names: &[String]) -> String {
    names
        .iter()
        .map(|n| name(n.as_bytes()))
        .collect::<Vec<_>>()
        .join(",")
}
