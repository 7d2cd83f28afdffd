//! `strata copy`: snapshots from one archive into another (`ops::copy`).

use super::hints::Hint;
use super::password::{self, DstPasswordArgs, Password, Purpose};
use super::{CmdResult, EXIT_LOCKED, EXIT_OK, EXIT_PASSWORD, EXIT_USAGE, Failure};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;
use strata::archive::{Archive, ArchiveError};
use strata::ops::copy::{
    Action, CopyError, CopyOptions, CopyProgress, CopyReport, SnapshotCopy, Verify, copy, select,
};
use strata::sys::{Json, human_bytes, rfc3339, short_time};

/// Copy snapshots into another archive, sending only what it lacks
///
/// Copies snapshots of SRC into DST, one commit per snapshot, each with the same record
/// (time, host, label, tags, sources, command line, commands, unreadable paths, stats)
/// and trees rebuilt with DST's ids: DST may be encrypted with another key, so every chunk
/// is read from SRC, named by DST's id and sent only when DST does not have it. Without
/// SNAP every snapshot of SRC (of --label L, with it) is copied, in SRC's commit order.
///
/// A snapshot DST already has is skipped. The same snapshot is one whose record is equal
/// in every field but its root tree, its parent and its bytes_added (ids in each archive's
/// own key space, and what the commit added). So a second copy sends nothing, and a copy
/// cut short (a crash, kill -9, a full disk) resumes where it stopped when run again.
///
/// Verification, after each snapshot commits: every tree of the copy is read back from DST
/// (hash-checked and decoded) and every chunk's record is found in its pack with the
/// right id, kind and length; a run checks each tree and chunk once. With --verify every
/// chunk is also read back whole (authenticated when encrypted, crc32 and BLAKE3).
///
/// Passwords: SRC's comes from the usual sources (--password-file, --password-command,
/// STRATA_PASSWORD_FILE, STRATA_PASSWORD_COMMAND, STRATA_PASSWORD, the terminal). DST's
/// from --dst-password-file, --dst-password-command, STRATA_DST_PASSWORD_FILE,
/// STRATA_DST_PASSWORD_COMMAND or STRATA_DST_PASSWORD; without any of them DST is opened
/// with SRC's password (or, when SRC is not encrypted, the usual sources).
///
/// DST must exist (`strata init DST`, encrypted or not, any chunk size); copying into an
/// append-only archive is allowed. DST's writer lock is taken for each snapshot, as an
/// ingest takes it. SRC and DST are always given: STRATA_ARCHIVE is not used.
///
/// Examples:
///   strata copy /backups/jira.strata /mnt/offsite/jira.strata
///   strata copy /backups/jira.strata /mnt/offsite/jira.strata --label jira --dst-password-file /etc/strata/offsite.pw
///   strata copy /mnt/offsite/jira.strata /backups/jira.strata latest --label jira
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The archive to copy from
    src: PathBuf,
    /// The archive to copy into (it must exist)
    dst: PathBuf,
    /// Snapshots to copy (id, prefix, `latest`, `latest~N`); default: all (of --label)
    #[arg(value_name = "SNAP")]
    snapshots: Vec<String>,
    /// Only snapshots with this label; with SNAP, `latest` is the newest of this label
    #[arg(long)]
    label: Option<String>,
    /// Also read every copied chunk back from DST whole, checking its hash
    #[arg(long)]
    verify: bool,
    /// Say what would be copied and sent (reading SRC as a copy would); write nothing
    #[arg(long)]
    dry_run: bool,
    /// Print the summary as one JSON object on stdout
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    dst_password: DstPasswordArgs,
}

/// The one copy a process runs: a signal handler sets its stop flag.
static PROGRESS: CopyProgress = CopyProgress::new();
static SIGNAL: AtomicI32 = AtomicI32::new(0);

pub fn run(a: Args) -> CmdResult {
    if same_archive(&a.src, &a.dst) {
        return Err(Failure {
            code: EXIT_USAGE,
            message: format!(
                "{} and {} are the same archive: nothing to copy",
                a.src.display(),
                a.dst.display()
            ),
            hint: None,
        });
    }
    let (src, dst) = open_both(&a)?;
    let rows = select(&src, &a.snapshots, a.label.as_deref())?;
    if rows.is_empty()
        && let Some(l) = &a.label
    {
        return Err(
            Failure::new(format!("{}: no snapshot has label {l:?}", a.src.display())).hint(Some(
                format!("list them with `strata snapshots {}`", a.src.display()),
            )),
        );
    }
    let opts = CopyOptions {
        snapshots: rows.iter().map(|r| r.id).collect(),
        verify: if a.verify {
            Verify::ReadData
        } else {
            Verify::Records
        },
        dry_run: a.dry_run,
    };
    install_stop_handler();
    let done = AtomicBool::new(false);
    let bar = std::io::stderr()
        .is_terminal()
        .then(indicatif::ProgressBar::new_spinner);
    let result = std::thread::scope(|s| {
        if let Some(bar) = &bar {
            s.spawn(|| draw_progress(bar, &done));
        }
        let r = copy(&src, &dst, &opts, &PROGRESS, &mut |one| match &bar {
            Some(bar) => bar.suspend(|| print_one(one, &a.dst)),
            None => print_one(one, &a.dst),
        });
        done.store(true, Ordering::Relaxed);
        r
    });
    let report = result.map_err(|e| failure(e, &a))?;
    print_summary(&report, &a);
    if a.json {
        print_json(&report, &a)?;
    }
    Ok(EXIT_OK)
}

/// True when both paths name one directory.
fn same_archive(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Opens SRC, then DST, each with its password; nothing is written.
fn open_both(a: &Args) -> Result<(Archive, Archive), Failure> {
    let src_pw = super::password_for(&a.src)?;
    let src = Archive::open_with(&a.src, src_pw.as_ref())?;
    if !Archive::is_encrypted(&a.dst)? {
        return Ok((src, Archive::open(&a.dst)?));
    }
    let (pw, borrowed) = match password::obtain_dst(&a.dst_password)? {
        Some(p) => (p, false),
        None => match &src_pw {
            Some(p) => (Password::new(p.as_bytes().to_vec()), true),
            None => (password::obtain(&a.dst, Purpose::Open)?, false),
        },
    };
    let dst = Archive::open_with(&a.dst, Some(&pw)).map_err(|e| {
        let own = match e {
            ArchiveError::WrongPassword { .. } if borrowed => true,
            ArchiveError::WrongPassword { .. } => false,
            e => return Failure::from(e),
        };
        let mut f = Failure::from(e);
        f.code = EXIT_PASSWORD;
        f.hint = Some(if own {
            "DST was opened with SRC's password; give DST its own with --dst-password-file FILE, --dst-password-command CMD, STRATA_DST_PASSWORD_FILE, STRATA_DST_PASSWORD_COMMAND or STRATA_DST_PASSWORD".into()
        } else {
            "check DST's password (--dst-password-file, --dst-password-command, STRATA_DST_PASSWORD_FILE, STRATA_DST_PASSWORD_COMMAND, STRATA_DST_PASSWORD)".into()
        });
        f
    })?;
    Ok((src, dst))
}

/// A copy's failure as the CLI reports it: exit 4 when DST is locked, 128+n after a
/// signal, 1 otherwise; a hint naming the archive at fault.
fn failure(e: CopyError, a: &Args) -> Failure {
    let signal = SIGNAL.load(Ordering::SeqCst);
    let (code, hint) = match &e {
        CopyError::Interrupted if (1..32).contains(&signal) => (128 + signal as u8, None),
        CopyError::Interrupted => (super::EXIT_ERROR, None),
        CopyError::Destination { source, .. }
            if matches!(**source, ArchiveError::Locked { .. }) =>
        {
            (
            EXIT_LOCKED,
            Some("another writer (an ingest, prune or copy) holds DST: run the copy again when it is done".into()),
        )
        }
        CopyError::Destination { source, .. } if source.is_out_of_space() => (
            super::EXIT_ERROR,
            Some(format!(
                "free space where {} lives and run the copy again: the snapshots copied so far are kept and skipped then",
                a.dst.display()
            )),
        ),
        CopyError::Destination { source, .. } => (super::EXIT_ERROR, source.hint()),
        CopyError::Source { source, .. } if source.is_corruption() => (
            super::EXIT_ERROR,
            Some(format!(
                "run `strata check --read-data {}` to see what is damaged",
                a.src.display()
            )),
        ),
        CopyError::Source { source, .. } => (super::EXIT_ERROR, source.hint()),
        CopyError::Verify { .. } => (
            super::EXIT_ERROR,
            Some(format!(
                "run `strata check --read-data {}`",
                a.dst.display()
            )),
        ),
    };
    Failure {
        code,
        message: e.to_string(),
        hint,
    }
}

fn label_of(s: &SnapshotCopy) -> String {
    if s.record.label.is_empty() {
        "-".into()
    } else {
        super::escape::name(s.record.label.as_bytes()).into_owned()
    }
}

/// One line on stderr per snapshot, as it is done.
fn print_one(s: &SnapshotCopy, dst: &Path) {
    let when = short_time(s.record.time.0);
    let label = label_of(s);
    let st = &s.record.stats;
    match s.action {
        Action::Copied => eprintln!(
            "copied   {} -> {}  {when}  {label}: {} file(s), {}; sent {} blobs, {}",
            s.source.short(),
            s.destination.map(|d| d.short()).unwrap_or_default(),
            st.files,
            human_bytes(st.total_size),
            s.blobs_sent,
            human_bytes(s.bytes_sent)
        ),
        Action::Skipped => eprintln!(
            "skipped  {}  {when}  {label}: already in {} as {}",
            s.source.short(),
            dst.display(),
            s.destination.map(|d| d.short()).unwrap_or_default()
        ),
        Action::WouldCopy => eprintln!(
            "would copy {}  {when}  {label}: {} file(s), {}; would send {} blobs, {} before compression",
            s.source.short(),
            st.files,
            human_bytes(st.total_size),
            s.blobs_sent,
            human_bytes(s.bytes_sent)
        ),
    }
}

fn print_summary(r: &CopyReport, a: &Args) {
    let copied = r.count(Action::Copied);
    let skipped = r.count(Action::Skipped);
    let would = r.count(Action::WouldCopy);
    let read = r.bytes_read();
    let mbps = if r.seconds > 0.0 {
        read as f64 / 1e6 / r.seconds
    } else {
        0.0
    };
    let dst = a.dst.display();
    if r.snapshots.is_empty() {
        eprintln!("nothing to copy: {} has no snapshots", a.src.display());
        return;
    }
    if a.dry_run {
        eprintln!(
            "dry run: would copy {would} snapshot(s), skip {skipped} already in {dst}; would send {} blobs, {} before compression; nothing was written",
            r.blobs_sent(),
            human_bytes(r.bytes_sent())
        );
        return;
    }
    if copied == 0 {
        eprintln!(
            "nothing to copy: all {skipped} snapshot(s) are already in {dst}; sent 0 blobs, 0 B"
        );
        return;
    }
    eprintln!(
        "copied {copied} snapshot(s) into {dst}, skipped {skipped} already there; sent {} blobs, {} in {:.1} s (read {} from {}, {mbps:.0} MB/s)",
        r.blobs_sent(),
        human_bytes(r.bytes_sent()),
        r.seconds,
        human_bytes(read),
        a.src.display()
    );
    eprintln!(
        "verified: every tree of each copy read back from {dst} and every chunk's record found in its pack{}",
        if a.verify {
            ", every chunk read back whole and its hash checked"
        } else {
            ""
        }
    );
}

fn print_json(r: &CopyReport, a: &Args) -> Result<(), Failure> {
    let action = |x: Action| match x {
        Action::Copied => "copied",
        Action::Skipped => "skipped",
        Action::WouldCopy => "would_copy",
    };
    let snaps = r
        .snapshots
        .iter()
        .map(|s| {
            Json::obj([
                ("source", Json::str(s.source.hex())),
                (
                    "destination",
                    s.destination
                        .map(|d| Json::str(d.hex()))
                        .unwrap_or(Json::Null),
                ),
                ("action", Json::str(action(s.action))),
                (
                    "time",
                    Json::str(rfc3339(s.record.time.0, s.record.time.1, false)),
                ),
                ("label", Json::str(s.record.label.clone())),
                ("blobs_sent", Json::int(s.blobs_sent)),
                ("bytes_sent", Json::int(s.bytes_sent)),
                ("chunks_read", Json::int(s.chunks_read)),
                ("bytes_read", Json::int(s.bytes_read)),
                ("duration_s", Json::Float(s.seconds)),
            ])
        })
        .collect();
    let j = Json::obj([
        ("dry_run", Json::Bool(a.dry_run)),
        ("copied", Json::int(r.count(Action::Copied) as u64)),
        ("skipped", Json::int(r.count(Action::Skipped) as u64)),
        ("would_copy", Json::int(r.count(Action::WouldCopy) as u64)),
        ("blobs_sent", Json::int(r.blobs_sent())),
        ("bytes_sent", Json::int(r.bytes_sent())),
        ("chunks_read", Json::int(r.chunks_read())),
        ("bytes_read", Json::int(r.bytes_read())),
        ("same_ids", Json::Bool(r.same_ids)),
        (
            "verify",
            Json::str(match (a.dry_run, a.verify) {
                (true, _) => "none",
                (false, false) => "records",
                (false, true) => "read-data",
            }),
        ),
        ("duration_s", Json::Float(r.seconds)),
        ("snapshots", Json::Arr(snaps)),
    ]);
    super::out_line(&j.render())
}

/// A spinner on a terminal: the snapshot in flight and the traffic so far.
fn draw_progress(bar: &indicatif::ProgressBar, done: &AtomicBool) {
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let p = &PROGRESS;
    while !done.load(Ordering::Relaxed) {
        let read = p.bytes_read.load(Ordering::Relaxed);
        let secs = bar.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!(
            "snapshot {}/{}: read {} ({:.0} MB/s), sent {} blobs, {}",
            p.snapshot.load(Ordering::Relaxed),
            p.total.load(Ordering::Relaxed),
            human_bytes(read),
            read as f64 / 1e6 / secs,
            p.blobs_sent.load(Ordering::Relaxed),
            human_bytes(p.bytes_sent.load(Ordering::Relaxed))
        ));
        bar.tick();
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

extern "C" fn on_signal(n: libc::c_int) {
    SIGNAL.store(n, Ordering::SeqCst);
    PROGRESS.stop.store(true, Ordering::SeqCst);
}

/// SIGHUP, SIGINT, SIGTERM (and the like) stop the copy cleanly: the snapshot in flight is
/// abandoned and its packs removed, those committed stay, and strata exits 128+n.
fn install_stop_handler() {
    for sig in [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: the handler only stores to atomics, which is async-signal-safe;
        // sigaction is given a zeroed, fully initialised struct.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}
