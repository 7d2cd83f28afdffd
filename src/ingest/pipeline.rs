//! The ingest pipeline's threads: the walker (reading, chunking, hashing, dedup: the
//! sources, `root::build`) runs on one thread with the default stack (the walk is
//! iterative), zstd compression on one worker per core, and the pack writer on its own
//! thread. Bounded channels between them keep memory bounded and both cores busy.

use super::context::Context;
use super::error::IngestError;
use super::options::{IngestOptions, Progress};
use super::read::Chunks;
use super::signal::{INTERRUPTED, SIGNAL};
use super::sink::{Job, Sink};
use crate::archive::{Archive, ArchiveError, Codec, StoredBlob, WriteSession};
use crate::chunker::Chunker;
use crate::format::BlobId;
use crate::format::snapshot::{CommandRun, PathError, Stats};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

pub struct Outcome<'a> {
    pub session: WriteSession<'a>,
    pub root: BlobId,
    pub stats: Stats,
    pub errors: Vec<PathError>,
    pub commands: Vec<CommandRun>,
    pub warnings: Vec<String>,
}

/// What the walker thread hands back.
type Walked = (BlobId, Stats, Vec<PathError>, Vec<CommandRun>, Vec<String>);

pub fn run<'a>(
    archive: &'a Archive,
    session: WriteSession<'a>,
    opts: &IngestOptions,
    parent_root: Option<BlobId>,
    progress: &Progress,
) -> Result<Outcome<'a>, IngestError> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let codec = archive.codec();
    let claims = session.claims();
    let (job_tx, job_rx) = sync_channel::<Job>(workers * 2);
    let (blob_tx, blob_rx) = sync_channel::<StoredBlob>(workers * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let failed = Arc::new(AtomicBool::new(false));

    std::thread::scope(|s| {
        let mut compressors = Vec::new();
        for _ in 0..workers {
            let rx = job_rx.clone();
            let tx = blob_tx.clone();
            let failed = failed.clone();
            compressors.push(s.spawn(move || {
                compress_loop(codec, &rx, &tx);
                // However it ended, nothing more can be compressed by this worker.
                failed.store(true, Ordering::Relaxed);
            }));
        }
        drop(blob_tx);
        // Only the compressors hold the receiver now: if they all stop (the writer died,
        // zstd could not start), the walker's next send fails instead of blocking.
        drop(job_rx);
        let writer_failed = failed.clone();
        let writer = s.spawn(move || write_loop(session, blob_rx, &writer_failed));

        let sink = Sink::new(codec, claims, job_tx, failed.clone());
        let walked = walk_on_thread(archive, opts, sink, parent_root, progress);
        // The walker dropped its sender: compressors drain and exit, then the writer.
        for c in compressors {
            if c.join().is_err() {
                return Err(panicked("compressor"));
            }
        }
        let (session, write_err) = writer.join().map_err(|_| panicked("pack writer"))?;
        // The writer's own error (e.g. "No space left on device") is the cause; the
        // walker only saw that the writer stopped.
        if let Some(e) = write_err {
            return Err(IngestError::Write(e));
        }
        let (root, stats, errors, commands, warnings) = walked?;
        Ok(Outcome {
            session,
            root,
            stats,
            errors,
            commands,
            warnings,
        })
    })
}

/// Runs the sources on the walker thread (default stack) while this thread passes
/// interrupts on to it; returns what it walked.
fn walk_on_thread<'a>(
    archive: &'a Archive,
    opts: &'a IngestOptions,
    sink: Sink<'a>,
    parent_root: Option<BlobId>,
    progress: &'a Progress,
) -> Result<Walked, IngestError> {
    let walking = AtomicBool::new(true);
    let walker_thread = std::sync::atomic::AtomicU64::new(0);
    let (walking, walker_thread) = (&walking, &walker_thread);
    std::thread::scope(|inner| {
        let handle = std::thread::Builder::new()
            .name("strata-walk".into())
            .spawn_scoped(inner, move || {
                // SAFETY: pthread_self cannot fail.
                walker_thread.store(unsafe { libc::pthread_self() } as u64, Ordering::Relaxed);
                // Cleared however the walker ends (even by a panic), so the watcher stops.
                let _walking = ClearOnDrop(walking);
                let cfg = archive.config();
                let chunker = Chunker::new(
                    cfg.chunk_min as usize,
                    cfg.chunk_avg as usize,
                    cfg.chunk_max as usize,
                );
                let chunks = Chunks::new(chunker, sink, progress);
                let mut ctx = Context::new(archive, opts, progress, chunks);
                let root = super::root::build(&mut ctx, parent_root)?;
                Ok((root, ctx.stats, ctx.errors, ctx.commands, ctx.warnings))
            })
            .map_err(|e| {
                IngestError::Write(ArchiveError::Invalid(format!("spawning walker: {e}")))
            })?;
        wake_on_interrupt(walker_thread, walking);
        handle.join().unwrap_or_else(|_| Err(panicked("walker")))
    })
}

struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// While the walker runs, an interrupt (a signal whose handler called
/// `ingest::interrupt`) is passed on to the walker thread: the same signal again, whose
/// handler, installed without SA_RESTART, makes a read blocked on a pipe (stdin, a quiet
/// `--cmd`) return EINTR, so the walker sees the flag and stops.
fn wake_on_interrupt(thread: &std::sync::atomic::AtomicU64, walking: &AtomicBool) {
    while walking.load(Ordering::Relaxed) {
        let thread = thread.load(Ordering::Relaxed);
        let signal = SIGNAL.load(Ordering::Relaxed);
        if thread != 0 && signal != 0 && INTERRUPTED.load(Ordering::Relaxed) {
            // SAFETY: the walker thread is alive (it clears `walking` before it ends and
            // the handle is not yet joined); the signal has a handler (it was caught).
            unsafe { libc::pthread_kill(thread as libc::pthread_t, signal) };
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn panicked(what: &str) -> IngestError {
    IngestError::Write(ArchiveError::Invalid(format!(
        "internal error: the {what} thread panicked"
    )))
}

fn compress_loop(codec: &Codec, rx: &Mutex<Receiver<Job>>, tx: &SyncSender<StoredBlob>) {
    loop {
        let job = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let blob = codec.encode(job.kind, job.id, &job.data);
        if tx.send(blob).is_err() {
            return;
        }
    }
}

fn write_loop<'a>(
    mut session: WriteSession<'a>,
    rx: Receiver<StoredBlob>,
    failed: &AtomicBool,
) -> (WriteSession<'a>, Option<ArchiveError>) {
    let mut err = None;
    for blob in rx {
        if err.is_some() {
            continue; // keep draining so the producers never block
        }
        if let Err(e) = session.put_stored(&blob) {
            failed.store(true, Ordering::Relaxed);
            err = Some(e);
        }
    }
    (session, err)
}
