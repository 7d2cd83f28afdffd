//! `strata ingest`: one snapshot from one or more sources.

use super::hints::Hint;
use super::{CmdResult, EXIT_LOCKED, EXIT_OK, EXIT_PARTIAL, Failure};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use strata::archive::ArchiveError;
use strata::ingest::{
    IngestError, IngestOptions, IngestResult, Parent, Progress, SourceSpec, ingest,
};
use strata::sys::{Json, human_bytes};

/// Store sources as one new snapshot
///
/// All sources of one invocation go into one snapshot: a Structr tree and its database
/// dump belong together. A directory appears under its base name (`SRC:NAME` renames
/// it). Files unchanged since the parent snapshot (same size, mtime, ctime, inode and
/// device) are not read again. If a --cmd fails, no snapshot is committed.
///
/// Commands (--cmd, --before, --after) run under `bash -o pipefail -c`, so a failing stage
/// of a pipeline fails the command (`sh -c` only where bash is missing, with a warning).
/// A pipe into --stdin-as cannot report its producer's failure: `(dump; exit 1) | strata
/// ingest A --stdin-as x` stores the partial output as a complete file. Prefer --cmd 'dump'.
///
/// A --cmd and everything it starts is killed with strata, even by kill -9. Any
/// terminating signal (SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1, ...) stops the ingest:
/// --after runs, nothing is committed, and the exit code is 128 + the signal's number
/// (129 SIGHUP, 130 SIGINT, 131 SIGQUIT, 143 SIGTERM).
///
/// Examples:
///   strata ingest /backups/jira.strata /var/jira/export --label jira
///   pg_dump jira | strata ingest A --stdin-as db/jira.sql --label jira-db
///   strata ingest A /usr/lib/structr:structr --cmd 'neo4j-admin database dump --to-stdout neo4j' --as db/neo4j.dump
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Archive directory; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
    /// Directories or files to store; `SRC:NAME` stores SRC as NAME (may contain '/')
    sources: Vec<std::ffi::OsString>,
    /// Label of the snapshot (e.g. jira); the parent is the latest snapshot with it
    #[arg(long, default_value = "")]
    label: String,
    /// Tag to attach (repeatable)
    #[arg(long = "tag", value_name = "T")]
    tags: Vec<String>,
    /// Leave out matching paths (repeatable). Without '/': matches a name at any depth
    /// (`*.tmp`); with '/': matches the path inside the snapshot (`confluence/temp/**`)
    #[arg(long = "exclude", value_name = "GLOB")]
    excludes: Vec<String>,
    /// Do not descend into directories on other filesystems
    #[arg(long)]
    one_file_system: bool,
    /// Store standard input as this file in the snapshot. A pipe cannot tell whether its
    /// producer failed: prefer --cmd, which checks the exit status
    #[arg(long, value_name = "PATH")]
    stdin_as: Option<String>,
    /// Run this command with `bash -o pipefail -c` and store its standard output (pair each
    /// with --as); if any stage fails, nothing is committed
    #[arg(long = "cmd", value_name = "SHELL COMMAND")]
    cmds: Vec<String>,
    /// Path in the snapshot for the output of the matching --cmd
    #[arg(long = "as", value_name = "PATH")]
    cmd_as: Vec<String>,
    /// Compare against this snapshot instead of the latest with the same label
    #[arg(long, value_name = "SNAP")]
    parent: Option<String>,
    /// Fail (committing nothing) if any path cannot be read
    #[arg(long)]
    strict: bool,
    /// Run this shell command first (e.g. stop a service for a cold backup); if it fails
    /// nothing is ingested (and --after still runs)
    #[arg(long, value_name = "SHELL COMMAND")]
    before: Option<String>,
    /// Run this shell command once the sources are read, whatever happened (also on
    /// failure or a signal: SIGHUP, SIGINT, SIGTERM, ...), e.g. start the service again
    #[arg(long, value_name = "SHELL COMMAND")]
    after: Option<String>,
    /// Print the summary as one JSON object on stdout
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> CmdResult {
    check_args(&a)?;
    let sources = sources_of(&a)?;
    let archive = super::open(&a.archive)?;
    let opts = options(&a, sources);
    install_interrupt_handler();
    if !strata::ingest::shell::shell().pipefail && (!a.cmds.is_empty() || a.before.is_some()) {
        eprintln!(
            "strata: warning: bash not found: commands run with `sh -c`, so a failing stage of a pipeline is not noticed"
        );
    }
    let res = run_with_progress(&archive, &opts)?;
    print_summary(&archive, &res);
    if a.json {
        print_json(&res)?;
    }
    let s = &res.snapshot;
    Ok(if s.errors.is_empty() && res.after_failed.is_none() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}

/// Usage errors the parser cannot see.
fn check_args(a: &Args) -> Result<(), Failure> {
    if a.cmds.len() != a.cmd_as.len() {
        return Err(Failure {
            code: super::EXIT_USAGE,
            message: format!(
                "{} --cmd but {} --as: give each --cmd its --as PATH",
                a.cmds.len(),
                a.cmd_as.len()
            ),
            hint: None,
        });
    }
    if let Some(t) = a
        .tags
        .iter()
        .find(|t| t.is_empty() || t.contains(['\n', '/', '\0']))
    {
        return Err(Failure {
            code: super::EXIT_USAGE,
            message: format!("--tag {t:?}: a tag is a non-empty word without '/' or newlines"),
            hint: None,
        });
    }
    if a.label.contains(['\n', '/', '\0']) {
        return Err(Failure {
            code: super::EXIT_USAGE,
            message: format!(
                "--label {:?}: a label cannot contain '/' or newlines",
                a.label
            ),
            hint: None,
        });
    }
    Ok(())
}

/// The sources in the order given: paths, then stdin, then the commands.
fn sources_of(a: &Args) -> Result<Vec<SourceSpec>, Failure> {
    let mut sources: Vec<SourceSpec> = a.sources.iter().map(|s| SourceSpec::parse(s)).collect();
    if let Some(p) = &a.stdin_as {
        sources.push(SourceSpec::Stdin {
            name: p.as_bytes().to_vec(),
        });
    }
    for (c, p) in a.cmds.iter().zip(&a.cmd_as) {
        sources.push(SourceSpec::Command {
            command: c.clone(),
            name: p.as_bytes().to_vec(),
        });
    }
    if sources.is_empty() {
        return Err(Failure::new(
            "nothing to ingest: give a SOURCE, --stdin-as PATH or --cmd CMD --as PATH",
        ));
    }
    Ok(sources)
}

fn options(a: &Args, sources: Vec<SourceSpec>) -> IngestOptions {
    IngestOptions {
        sources,
        label: a.label.clone(),
        tags: a.tags.clone(),
        excludes: a.excludes.iter().map(|e| e.as_bytes().to_vec()).collect(),
        one_file_system: a.one_file_system,
        parent: match &a.parent {
            Some(p) => Parent::Spec(p.clone()),
            None => Parent::Latest,
        },
        strict: a.strict,
        before: a.before.clone(),
        after: a.after.clone(),
        argv: std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
    }
}

/// Runs the ingest, with a progress bar on a terminal; a failure as the CLI reports it.
fn run_with_progress(
    archive: &strata::archive::Archive,
    opts: &IngestOptions,
) -> Result<IngestResult, Failure> {
    let progress = Progress::default();
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        if std::io::stderr().is_terminal() {
            s.spawn(|| draw_progress(&progress, &done));
        }
        let r = ingest(archive, opts, &progress);
        done.store(true, Ordering::Relaxed);
        r
    });
    result.map_err(|e| {
        let signal = strata::ingest::SIGNAL.load(Ordering::SeqCst);
        let code = match &e {
            IngestError::Archive(ArchiveError::Locked { .. } | ArchiveError::LockedBy { .. }) => {
                EXIT_LOCKED
            }
            e if e.store_unusable() => super::EXIT_STORE,
            // As a shell reports a process killed by signal n, which cron wrappers expect.
            _ if (1..32).contains(&signal) => 128 + signal as u8,
            _ => super::EXIT_ERROR,
        };
        Failure {
            code,
            hint: e.hint(),
            message: e.to_string(),
        }
    })
}

/// The human summary on stderr.
fn print_summary(archive: &strata::archive::Archive, res: &IngestResult) {
    let s = &res.snapshot;
    let st = &s.stats;
    let secs = st.duration_ms as f64 / 1000.0;
    let mbps = if secs > 0.0 {
        st.bytes_read as f64 / 1e6 / secs
    } else {
        0.0
    };
    eprintln!(
        "snapshot {} saved{}",
        res.id.short(),
        if s.label.is_empty() {
            String::new()
        } else {
            format!(" (label {})", s.label)
        }
    );
    eprintln!(
        "  files: {} new, {} changed, {} unchanged; {} dirs; {} in all",
        st.files_new,
        st.files_changed,
        st.files_unchanged,
        st.dirs,
        human_bytes(st.total_size)
    );
    eprintln!(
        "  read {} in {:.1} s ({:.0} MB/s); added {} after dedup and compression",
        human_bytes(st.bytes_read),
        secs,
        mbps,
        human_bytes(st.bytes_added)
    );
    for w in &res.warnings {
        eprintln!("strata: warning: {w}");
    }
    if let Ok(Some(prev)) = archive.clock_went_back(&res.id, s.parent.as_ref()) {
        eprintln!(
            "strata: warning: clock went backwards: this snapshot's time {} is earlier than {} of snapshot {}, committed before it; `latest` and --keep-last follow commit order",
            strata::sys::rfc3339(s.time.0, s.time.1, false),
            strata::sys::rfc3339(prev.time.0, prev.time.1, false),
            prev.id.short()
        );
    }
    if let Some(d) = res.downtime {
        eprintln!("  downtime (from --before to --after): {d:.1} s");
    }
    if let Some((status, tail)) = &res.after_failed {
        let tail = tail.trim().replace('\n', " | ");
        eprintln!(
            "strata: warning: --after {status}: the snapshot is committed, but check the service{}",
            if tail.is_empty() {
                String::new()
            } else {
                format!(" ({tail})")
            }
        );
    }
    if !s.errors.is_empty() {
        eprintln!(
            "  {} path(s) could not be read (recorded in the snapshot):",
            s.errors.len()
        );
        for e in &s.errors {
            eprintln!(
                "    {}: {}",
                super::escape::name(&e.path),
                super::escape::text(&e.message)
            );
        }
    }
}

fn print_json(res: &IngestResult) -> Result<(), Failure> {
    let s = &res.snapshot;
    let st = &s.stats;
    let secs = st.duration_ms as f64 / 1000.0;
    let mbps = if secs > 0.0 {
        st.bytes_read as f64 / 1e6 / secs
    } else {
        0.0
    };
    let j = Json::obj([
        ("snapshot", Json::str(res.id.hex())),
        ("short_id", Json::str(res.id.short())),
        ("files", Json::int(st.files)),
        ("dirs", Json::int(st.dirs)),
        ("files_new", Json::int(st.files_new)),
        ("files_changed", Json::int(st.files_changed)),
        ("files_unchanged", Json::int(st.files_unchanged)),
        ("bytes_read", Json::int(st.bytes_read)),
        ("bytes_added", Json::int(st.bytes_added)),
        ("total_size", Json::int(st.total_size)),
        ("duration_s", Json::Float(secs)),
        ("mb_per_s", Json::Float(mbps)),
        (
            "downtime_s",
            res.downtime.map(Json::Float).unwrap_or(Json::Null),
        ),
        ("errors", super::path_errors_json(&s.errors)),
    ]);
    super::out_line(&j.render())?;
    Ok(())
}

fn draw_progress(p: &Progress, done: &AtomicBool) {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    while !done.load(Ordering::Relaxed) {
        let read = p.bytes_read.load(Ordering::Relaxed);
        let secs = bar.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!(
            "{} files, {} seen, {} read ({:.0} MB/s)",
            p.files.load(Ordering::Relaxed),
            human_bytes(p.bytes_seen.load(Ordering::Relaxed)),
            human_bytes(read),
            read as f64 / 1e6 / secs
        ));
        bar.tick();
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

extern "C" fn on_signal(n: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // A SIGPIPE the kernel raised for our own write to a closed socket (an object store
    // that went away mid-upload) is not a request to stop: that write fails with EPIPE
    // and the error is reported as such. Only one sent by another process stops us.
    if n == libc::SIGPIPE && !info.is_null() {
        // SAFETY: the kernel passes a valid siginfo_t with SA_SIGINFO; getpid is
        // async-signal-safe.
        let own =
            unsafe { (*info).si_pid() == libc::getpid() || (*info).si_code == libc::SI_KERNEL };
        if own {
            return;
        }
    }
    strata::ingest::interrupt(n);
}

/// Signals that end a process by default and that someone sends on purpose (a closed
/// terminal, Ctrl-C, Ctrl-\, `kill`, `timeout`, a log reader that went away). Each stops
/// the ingest cleanly: --after runs, nothing is committed, the packs written so far are
/// removed, and strata exits 128+n. (Faults such as SIGSEGV keep their default.)
const STOP_SIGNALS: [libc::c_int; 14] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGIO,
    libc::SIGPWR,
];

/// Installs `on_signal` for every signal of `STOP_SIGNALS`. No SA_RESTART, so a blocking
/// read returns and sees the flag.
fn install_interrupt_handler() {
    for sig in STOP_SIGNALS {
        // SAFETY: the handler only stores to atomics, which is async-signal-safe;
        // sigaction is given a zeroed, fully initialised struct.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}
