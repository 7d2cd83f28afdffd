//! `strata forget`, `strata prune` and `strata append-only`.

use super::{CmdResult, EXIT_OK, EXIT_USAGE, Failure};
use std::path::PathBuf;
use strata::ops::retention::{Policy, PruneOptions, Span, forget, plan, prune};
use strata::sys::{Json, human_bytes, short_time};

/// Forget snapshots by policy or by id (the data goes with `prune`)
///
/// Policies apply per label, with restic's semantics: --keep-daily 7 keeps the newest
/// snapshot of each of the last 7 days that have snapshots; policies combine as a union.
/// Times are bucketed in UTC. A forget appends a record to the packs (the archive stays
/// append-only) and removes the snapshots from `snapshots` and from mounts.
///
/// Examples:
///   strata forget A --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run
///   strata forget A --label jira --keep-within 30d --keep-tag release
///   strata forget A 1a2b3c4d 5e6f7a8b
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ForgetArgs {
    /// Archive directory; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
    /// Snapshots to forget by id or prefix (instead of a policy)
    snapshots: Vec<String>,
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
    /// Keep everything this close to the newest snapshot of the label (e.g. 30d, 1y6m, 36h)
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Keep snapshots with this tag (repeatable)
    #[arg(long = "keep-tag", value_name = "T")]
    keep_tags: Vec<String>,
    /// Only snapshots with this label
    #[arg(long)]
    label: Option<String>,
    /// Show what would be forgotten, change nothing
    #[arg(long)]
    dry_run: bool,
    /// Print the decisions as JSON on stdout
    #[arg(long)]
    json: bool,
}

/// Reclaim the space of data no remaining snapshot references
///
/// Deletes packs nothing uses and rewrites packs with more than --max-unused percent
/// unused bytes. Crash-safe at every step: new packs are written and synced first, the
/// index switches in one transaction, then old packs are deleted. A mount that is open
/// meanwhile keeps reading correct bytes (reads look the blob up again when its pack
/// moved). Takes the writer lock.
#[derive(clap::Args)]
pub struct PruneArgs {
    /// Archive directory; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
    /// Show what would be reclaimed, change nothing
    #[arg(long)]
    dry_run: bool,
    /// Rewrite packs with more than this percentage of unused bytes
    #[arg(long, default_value_t = 5.0, value_name = "PERCENT")]
    max_unused: f64,
}

/// Make an archive append-only, for good
///
/// Afterwards `forget` and `prune` are refused, so a compromised backup client cannot
/// destroy history. There is no way back.
#[derive(clap::Args)]
pub struct AppendOnlyArgs {
    /// Archive directory; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
}

const FORGET_ENOSPC: &str = "the archive's filesystem is full (see `df ARCHIVE`): free space and run the forget again; \
     nothing was forgotten (the forget record and the catalogue change commit together)";
const PRUNE_ENOSPC: &str = "the archive's filesystem is full (see `df ARCHIVE`): free space and run `strata prune` again; \
     nothing was lost: prune writes its new packs before the index switches to them, and deletes old packs only after";

/// A full filesystem gets the command's own hint (the generic one speaks of ingests).
fn out_of_space(e: strata::archive::ArchiveError, hint: &str) -> Failure {
    let full = e.is_out_of_space();
    let f = Failure::from(e);
    if full { f.hint(Some(hint.into())) } else { f }
}

pub fn run_forget(a: ForgetArgs) -> CmdResult {
    let archive = super::open(&a.archive)?;
    let policy = Policy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within: match &a.keep_within {
            Some(s) => Some(Span::parse(s).map_err(|e| Failure {
                code: EXIT_USAGE,
                message: format!("--keep-within {e}"),
                hint: None,
            })?),
            None => None,
        },
        tags: a.keep_tags.clone(),
    };
    if archive.config().append_only && !a.dry_run {
        return Err(strata::archive::ArchiveError::AppendOnly("forget").into());
    }
    let (ids, reason, decisions) = if !a.snapshots.is_empty() {
        if !policy.is_empty() {
            return Err(Failure {
                code: EXIT_USAGE,
                message: "give snapshot ids or a policy, not both".into(),
                hint: None,
            });
        }
        let mut ids = Vec::new();
        for s in &a.snapshots {
            ids.push(archive.resolve(s, None)?.id);
        }
        (ids, "by id".to_string(), Vec::new())
    } else {
        if policy.is_empty() {
            return Err(Failure {
                code: EXIT_USAGE,
                message: "no policy given: nothing would be kept".into(),
                hint: Some("give --keep-last/-hourly/-daily/-weekly/-monthly/-yearly/-within/-tag, or snapshot ids".into()),
            });
        }
        let d = plan(&archive, &policy, a.label.as_deref())?;
        let ids = d.iter().filter(|x| !x.keep).map(|x| x.row.id).collect();
        (
            ids,
            format!(
                "policy {}{}",
                policy.describe(),
                a.label
                    .as_ref()
                    .map(|l| format!(" (label {l})"))
                    .unwrap_or_default()
            ),
            d,
        )
    };
    let json_text = a.json.then(|| {
        let arr = decisions
            .iter()
            .map(|d| {
                Json::obj([
                    ("id", Json::str(d.row.id.hex())),
                    (
                        "time",
                        Json::str(strata::sys::rfc3339(d.row.time.0, d.row.time.1, false)),
                    ),
                    ("label", Json::str(d.row.label.clone())),
                    ("keep", Json::Bool(d.keep)),
                    (
                        "reasons",
                        Json::Arr(d.reasons.iter().map(|r| Json::str(r.clone())).collect()),
                    ),
                ])
            })
            .collect();
        let forgotten = ids
            .iter()
            .map(|i: &strata::format::BlobId| Json::str(i.hex()))
            .collect();
        Json::obj([
            ("dry_run", Json::Bool(a.dry_run)),
            ("decisions", Json::Arr(arr)),
            ("forget", Json::Arr(forgotten)),
        ])
        .render()
    });
    let mut last_label: Option<&str> = None;
    for d in &decisions {
        if last_label != Some(d.row.label.as_str()) {
            eprintln!(
                "label {}:",
                if d.row.label.is_empty() {
                    "(none)"
                } else {
                    &d.row.label
                }
            );
            last_label = Some(&d.row.label);
        }
        eprintln!(
            "  {} {}  {}  {}",
            if d.keep { "keep  " } else { "forget" },
            d.row.id.short(),
            short_time(d.row.time.0),
            d.reasons.join(", ")
        );
    }
    let verb = if a.dry_run { "would forget" } else { "forgot" };
    // The JSON is printed after the forget is committed: a reader that goes away
    // early cannot stop the forget half way.
    if a.dry_run || ids.is_empty() {
        if let Some(j) = &json_text {
            super::out_line(j)?;
        }
        eprintln!(
            "{verb} {} snapshot(s); run `strata prune` to reclaim their space",
            ids.len()
        );
        return Ok(EXIT_OK);
    }
    forget(&archive, &ids, &reason).map_err(|e| out_of_space(e, FORGET_ENOSPC))?;
    if let Some(j) = &json_text {
        super::out_line(j)?;
    }
    eprintln!(
        "{verb} {} snapshot(s); run `strata prune` to reclaim their space",
        ids.len()
    );
    Ok(EXIT_OK)
}

pub fn run_prune(a: PruneArgs) -> CmdResult {
    if !(0.0..=100.0).contains(&a.max_unused) {
        return Err(Failure {
            code: EXIT_USAGE,
            message: format!(
                "--max-unused {}: give a percentage between 0 and 100",
                a.max_unused
            ),
            hint: None,
        });
    }
    let archive = super::open(&a.archive)?;
    let started = std::time::Instant::now();
    let r = prune(
        &archive,
        PruneOptions {
            dry_run: a.dry_run,
            max_unused_percent: a.max_unused,
        },
    )
    .map_err(|e| out_of_space(e, PRUNE_ENOSPC))?;
    let verb = if a.dry_run { "would" } else { "did" };
    eprintln!(
        "prune {verb}: delete {} pack(s), rewrite {} ({} blobs moved), remove {} unused blobs",
        r.packs_deleted, r.packs_rewritten, r.blobs_moved, r.blobs_removed
    );
    eprintln!(
        "packs: {} before, {} after{}; {} unused left in packs not worth rewriting; {:.1} s",
        human_bytes(r.bytes_before),
        human_bytes(r.bytes_after),
        if a.dry_run { " (estimate)" } else { "" },
        human_bytes(r.unused_kept),
        started.elapsed().as_secs_f64()
    );
    if r.young_orphans > 0 {
        eprintln!(
            "{} unreferenced pack(s) younger than an hour left alone (a writer on another host may still commit them); a later prune removes them",
            r.young_orphans
        );
    }
    if !r.unknown_packs.is_empty() {
        eprintln!(
            "{} pack file(s) are not in the index (left by an interrupted ingest); `strata repair` indexes them: {}",
            r.unknown_packs.len(),
            r.unknown_packs.join(", ")
        );
    }
    Ok(EXIT_OK)
}

pub fn run_append_only(a: AppendOnlyArgs) -> CmdResult {
    let was = super::open(&a.archive)?.make_append_only()?;
    if was {
        eprintln!("{} was already append-only", a.archive.display());
    } else {
        eprintln!(
            "{} is now append-only: forget and prune are refused from now on",
            a.archive.display()
        );
    }
    Ok(EXIT_OK)
}
