//! `strata check` and `strata repair`.

use super::escape::text;
use super::{CmdResult, EXIT_OK, EXIT_PARTIAL};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use strata::ops::check::{CheckOptions, CheckProgress, Severity, check};
use strata::sys::{Json, human_bytes};

/// Exit code of `check` when it finds errors (documented in the README).
pub const EXIT_DAMAGE: u8 = 5;

/// Verify the archive: structure, and with --read-data every stored byte
///
/// Without --read-data: the index and the packs agree, every blob a snapshot references
/// exists, every tree and snapshot record decodes. With --read-data: every stored byte
/// is read and its crc32 and BLAKE3 verified, on all cores. Each finding says what is
/// wrong, where, what to do, and which snapshot paths it damages.
/// Exit 0 when clean (warnings allowed), 5 when errors were found, 1 if check could not run.
#[derive(clap::Args)]
pub struct Args {
    /// Archive directory; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
    /// Read and verify every stored byte (crc32 and BLAKE3)
    #[arg(long)]
    read_data: bool,
    /// Only check these snapshots (repeatable; id, prefix or `latest`)
    #[arg(long = "snapshot", value_name = "SNAP")]
    snapshots: Vec<String>,
    /// Print the report as one JSON object on stdout (for monitoring)
    #[arg(long)]
    json: bool,
}

/// Rebuild index.sqlite from the packs alone
///
/// For when the index was deleted, truncated or corrupted, or after a crash. Every pack
/// is read record by record; every snapshot whose data is complete is recovered, the
/// others are listed with the reason; a torn pack tail left by a crash is moved to
/// ARCHIVE/quarantine/ (nothing is deleted). Takes the writer lock.
#[derive(clap::Args)]
pub struct RepairArgs {
    /// Archive directory; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
}

pub fn run(a: Args) -> CmdResult {
    let archive = super::open(&a.archive)?;
    let mut snapshots = Vec::new();
    for s in &a.snapshots {
        snapshots.push(archive.resolve(s, None)?.id);
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let opts = CheckOptions {
        read_data: a.read_data,
        snapshots,
        threads,
    };
    let progress = CheckProgress::default();
    let done = AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        if a.read_data && std::io::stderr().is_terminal() {
            s.spawn(|| draw(&progress, &done));
        }
        let r = check(&archive, &opts, &progress);
        done.store(true, Ordering::Relaxed);
        r
    })?;
    let errors = report.errors();
    let warnings = report.findings.len() - errors;
    let mbps = if report.seconds > 0.0 {
        report.bytes_verified as f64 / 1e6 / report.seconds
    } else {
        0.0
    };
    if a.json {
        let findings = report
            .findings
            .iter()
            .map(|f| {
                Json::obj([
                    (
                        "severity",
                        Json::str(if f.severity == Severity::Error {
                            "error"
                        } else {
                            "warning"
                        }),
                    ),
                    ("what", Json::str(f.what.clone())),
                    ("where", Json::str(f.location.clone())),
                    ("fix", Json::str(f.fix.clone())),
                    (
                        "damages",
                        Json::Arr(f.damages.iter().map(|d| Json::str(d.clone())).collect()),
                    ),
                ])
            })
            .collect();
        let j = Json::obj([
            ("ok", Json::Bool(errors == 0)),
            ("errors", Json::int(errors as u64)),
            ("warnings", Json::int(warnings as u64)),
            ("snapshots", Json::int(report.snapshots)),
            ("trees", Json::int(report.trees)),
            ("blobs", Json::int(report.blobs)),
            ("packs", Json::int(report.packs)),
            ("bytes_verified", Json::int(report.bytes_verified)),
            ("seconds", Json::Float(report.seconds)),
            ("findings", Json::Arr(findings)),
            (
                "notes",
                Json::Arr(report.notes.iter().map(|n| Json::str(n.clone())).collect()),
            ),
        ]);
        super::out_line(&j.render())?;
    }
    eprintln!(
        "checked {} snapshot(s), {} trees, {} blobs in {} packs{} in {:.1} s",
        report.snapshots,
        report.trees,
        report.blobs,
        report.packs,
        if a.read_data {
            format!(
                " ({} read and verified, {:.0} MB/s)",
                human_bytes(report.bytes_verified),
                mbps
            )
        } else {
            String::new()
        },
        report.seconds
    );
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    for f in &report.findings {
        let sev = if f.severity == Severity::Error {
            "error"
        } else {
            "warning"
        };
        eprintln!("{sev}: {}", text(&f.what));
        eprintln!("  where: {}", text(&f.location));
        if !f.damages.is_empty() {
            let shown: Vec<_> = f.damages.iter().take(20).map(|d| text(d)).collect();
            eprintln!("  damages: {}", shown.join(", "));
            if f.damages.len() > 20 {
                eprintln!("  ... and {} more", f.damages.len() - 20);
            }
        }
        eprintln!("  fix: {}", text(&f.fix));
    }
    if errors == 0 {
        eprintln!(
            "no errors{}",
            if warnings > 0 {
                format!(" ({warnings} warning(s))")
            } else {
                String::new()
            }
        );
        Ok(EXIT_OK)
    } else {
        eprintln!("{errors} error(s), {warnings} warning(s)");
        Ok(EXIT_DAMAGE)
    }
}

fn draw(p: &CheckProgress, done: &AtomicBool) {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    while !done.load(Ordering::Relaxed) {
        bar.set_length(p.bytes_total.load(Ordering::Relaxed));
        bar.set_position(p.bytes_done.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

pub fn run_repair(a: RepairArgs) -> CmdResult {
    let started = std::time::Instant::now();
    let pw = super::password_for(&a.archive)?;
    let r = strata::ops::repair::repair(&a.archive, pw.as_ref())?;
    let index = match strata::store::url::ArchiveUrl::parse(&a.archive) {
        Ok(strata::store::url::ArchiveUrl::Bucket(_)) => {
            format!("this host's cached index of {}", a.archive.display())
        }
        _ => a.archive.join("index.sqlite").display().to_string(),
    };
    eprintln!(
        "rebuilt {} from {} pack(s): {} blobs, {} snapshot(s) recovered in {:.1} s",
        index,
        r.survey.packs,
        r.survey.blobs,
        r.recovered.len(),
        started.elapsed().as_secs_f64()
    );
    for (id, what) in &r.recovered {
        eprintln!("  recovered {} {}", id.short(), text(what));
    }
    for (id, why) in &r.incomplete {
        eprintln!("  NOT recovered {}: {}", id.short(), text(why));
    }
    for (p, at, len, kept) in &r.survey.torn {
        eprintln!(
            "  torn tail of packs/{} at offset {at} ({len} bytes) set aside in {kept}",
            p.file_name()
        );
    }
    for (n, why) in &r.survey.unreadable {
        eprintln!("  packs/{n} is not a readable pack: {why}");
    }
    for (p, at, id) in &r.survey.damaged {
        eprintln!(
            "  damaged blob {} at packs/{} offset {at} (run `strata check --read-data` to see which files)",
            id.short(),
            p.file_name()
        );
    }
    for (p, a0, b) in &r.survey.gaps {
        eprintln!(
            "  undecodable bytes in packs/{} from {a0} to {b} were skipped",
            p.file_name()
        );
    }
    for (n, why) in &r.survey.skipped {
        eprintln!("strata: warning: packs/{n} {why} (move it out of packs/)");
    }
    for (n, why) in &r.survey.cut {
        eprintln!("  packs/{n} {why}");
    }
    if r.lost_something() {
        Ok(EXIT_PARTIAL)
    } else {
        Ok(EXIT_OK)
    }
}
