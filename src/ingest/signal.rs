//! Stopping an ingest on a signal. The handler (installed by the CLI) only stores to two
//! atomics, so it is async-signal-safe; every loop of the ingest polls `INTERRUPTED` at
//! each chunk and directory entry, and the pipeline re-sends `SIGNAL` to the walker
//! thread to wake a read blocked on a pipe.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Set by a signal handler (SIGHUP, SIGINT, SIGTERM, …) to stop an ingest at the next
/// chunk or directory entry: `--after` runs, nothing is committed and the packs written
/// so far are removed.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The number of the first signal that set `INTERRUPTED` (0: none). The pipeline sends
/// it again to the walker thread to wake a read blocked on a pipe; the CLI exits 128+n.
pub static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Records signal `n` and asks the ingest to stop. Async-signal-safe (atomics only):
/// meant to be called from a signal handler.
pub fn interrupt(n: i32) {
    let _ = SIGNAL.compare_exchange(0, n, Ordering::SeqCst, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// ` (SIGTERM)` for the signal that stopped the ingest, empty when none did.
pub(crate) fn signal_text() -> String {
    let n = SIGNAL.load(Ordering::Relaxed);
    let name = match n {
        0 => return String::new(),
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return format!(" ({n})"),
    };
    format!(" ({name})")
}
