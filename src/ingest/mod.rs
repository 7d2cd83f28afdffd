//! Ingest: reads sources (directories, files, standard input, command output) into one
//! snapshot. Parent choice → walk → change detection against the parent snapshot →
//! FastCDC → BLAKE3 → dedup → zstd (worker threads) → pack writer (its own thread) →
//! trees → snapshot → commit. A failed command or broken stdin means no snapshot; an
//! unreadable path is recorded in the snapshot (or, with `strict`, fails the ingest).
//!
//! Modules, each using only those listed after it (no import circle):
//! `pipeline` (threads and channels) → `root` (each source at its snapshot path) →
//! `walk` (directory traversal, iterative) and `stream` (stdin, `--cmd`) → `file` (one
//! regular file) → `context` (the run's shared state, nodes from `stat`) → `read`
//! (reading and chunking) → `sink` (dedup through the session's `Claims`) → `error` →
//! `signal`. Beside them: `source` (what a source is, checked up front), `parent` (the
//! parent choice), `options`, `shell` (the one runner for `--cmd` and hooks),
//! `readahead`.

mod context;
mod error;
mod file;
mod options;
mod parent;
mod pipeline;
mod read;
mod readahead;
mod root;
pub mod shell;
mod signal;
mod sink;
mod source;
mod stream;
mod walk;

pub use context::now;
pub use error::IngestError;
pub use options::{IngestOptions, Progress};
pub use parent::Parent;
pub use signal::{INTERRUPTED, SIGNAL, interrupt};
pub use source::SourceSpec;

use crate::archive::Archive;
use crate::format::BlobId;
use crate::format::snapshot::{CommandRun, Snapshot};
use context::command_run;
use signal::interrupted;
use std::time::Instant;

pub struct IngestResult {
    pub id: BlobId,
    pub snapshot: Snapshot,
    /// Seconds from the start of `before` to the end of `after` (the service's downtime).
    pub downtime: Option<f64>,
    /// Exit status and stderr tail of a failed `after` (the snapshot is committed).
    pub after_failed: Option<(String, String)>,
    /// Things the user should know although the snapshot is fine (one line each), e.g.
    /// the archive found inside a source and left out.
    pub warnings: Vec<String>,
}

/// Runs one ingest and commits its snapshot. The parent (for change detection) is
/// chosen as `opts.parent` says: by default the latest snapshot with the same label.
pub fn ingest(
    archive: &Archive,
    opts: &IngestOptions,
    progress: &Progress,
) -> Result<IngestResult, IngestError> {
    let started = Instant::now();
    let time = now();
    let parent = parent::choose(archive, &opts.parent, &opts.label)?;
    source::check(archive, &opts.sources)?;
    let parent_root = match parent {
        Some(p) => Some(archive.load_snapshot(&p)?.root),
        None => None,
    };
    let session = archive.begin_write()?;
    let down_since = Instant::now();
    // A signal before anything was stopped: stop here, no hook has run.
    if interrupted() {
        return Err(IngestError::Interrupted(None));
    }
    let before = run_before(opts)?;
    let result = pipeline::run(archive, session, opts, parent_root, progress);
    // The sources are read (or the read failed): bring the service back now, before
    // the commit, so the downtime is only the time spent reading.
    let (after, after_failed) = run_after(opts);
    let downtime = opts
        .before
        .as_ref()
        .map(|_| down_since.elapsed().as_secs_f64());
    let out = settle(opts, result, &after_failed)?;
    let pipeline::Outcome {
        session,
        root,
        mut stats,
        errors,
        commands,
        warnings,
    } = out;
    if opts.strict && !errors.is_empty() {
        return Err(IngestError::Strict(errors));
    }
    // In the order they ran: before, the --cmd sources, after.
    let commands = before.into_iter().chain(commands).chain(after).collect();
    stats.duration_ms = started.elapsed().as_millis() as u64;
    let mut snapshot = Snapshot {
        time,
        host: crate::sys::hostname(),
        label: opts.label.clone(),
        tags: opts.tags.clone(),
        parent,
        root,
        sources: opts
            .sources
            .iter()
            .map(|s| crate::format::snapshot::Source {
                name: String::from_utf8_lossy(s.name()).into_owned(),
                origin: s.origin(),
                parents: s.parent_dirs(),
            })
            .collect(),
        argv: opts.argv.clone(),
        commands,
        errors,
        stats,
    };
    let id = session.commit(&mut snapshot).map_err(IngestError::Write)?;
    Ok(IngestResult {
        id,
        snapshot,
        downtime,
        after_failed,
        warnings,
    })
}

/// Runs `--before`; if it fails, runs `--after` and fails the ingest.
fn run_before(opts: &IngestOptions) -> Result<Option<CommandRun>, IngestError> {
    let Some(before) = &opts.before else {
        return Ok(None);
    };
    let exit = shell::run_hook(before);
    if exit.code != 0 {
        let after = opts
            .after
            .as_deref()
            .map(|a| hook_summary(a, &shell::run_hook(a)));
        return Err(IngestError::BeforeFailed {
            command: before.clone(),
            status: exit.status,
            stderr_tail: exit.stderr_tail,
            after,
        });
    }
    Ok(Some(command_run(&format!("before: {before}"), exit.code)))
}

/// Runs `--after`: its record, and its status and stderr tail when it failed.
fn run_after(opts: &IngestOptions) -> (Option<CommandRun>, Option<(String, String)>) {
    let Some(after) = &opts.after else {
        return (None, None);
    };
    let exit = shell::run_hook(after);
    let run = command_run(&format!("after: {after}"), exit.code);
    let failed = (exit.code != 0).then_some((exit.status, exit.stderr_tail));
    (Some(run), failed)
}

/// The pipeline's outcome, or the error to report (saying what `--after` did).
fn settle<'a>(
    opts: &IngestOptions,
    result: Result<pipeline::Outcome<'a>, IngestError>,
    after_failed: &Option<(String, String)>,
) -> Result<pipeline::Outcome<'a>, IngestError> {
    let after_note = || {
        opts.after.as_deref().map(|a| match after_failed {
            None => format!("`{a}` ran and succeeded"),
            Some((status, _)) => format!("`{a}` {status}"),
        })
    };
    // A signal at any moment before the commit (even after the sources were read, while
    // --after ran) means no snapshot: the run was asked to stop.
    if interrupted() {
        return Err(IngestError::Interrupted(after_note()));
    }
    match result {
        Ok(o) => Ok(o),
        Err(IngestError::Interrupted(_)) => Err(IngestError::Interrupted(after_note())),
        Err(e) if opts.after.is_some() => Err(IngestError::WithAfter {
            error: Box::new(e),
            after: after_note(),
        }),
        Err(e) => Err(e),
    }
}

fn hook_summary(command: &str, exit: &shell::Exit) -> String {
    if exit.code == 0 {
        format!("`{command}` ran and succeeded")
    } else {
        format!("`{command}` {}", exit.status)
    }
}
