//! Read-ahead for cold caches: while the walker reads one file, a helper thread asks the
//! kernel (`posix_fadvise(WILLNEED)`) to start reading the next files of the directory,
//! so the disk works on several files at once instead of one after another. It stays at
//! most [`AHEAD`] bytes ahead of the walker and only touches files the walker will read
//! (changed or new), never unchanged ones.

use crate::sys::fsops::Dir;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes the read-ahead may run ahead of the walker.
const AHEAD: u64 = 96 << 20;

struct Batch {
    dir: Arc<Dir>,
    files: Vec<(Vec<u8>, u64)>,
}

pub struct Readahead {
    tx: Option<Sender<Batch>>,
    consumed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Readahead {
    pub fn new() -> Readahead {
        let (tx, rx) = channel();
        let consumed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (consumed, stop) = (consumed.clone(), stop.clone());
            std::thread::Builder::new()
                .name("strata-readahead".into())
                .spawn(move || run(rx, &consumed, &stop))
                .ok()
        };
        Readahead {
            tx: Some(tx),
            consumed,
            stop,
            thread,
        }
    }

    /// Files of `dir` the walker is about to read, in the order it will read them.
    pub fn submit(&self, dir: &Dir, files: Vec<(Vec<u8>, u64)>) {
        if files.is_empty() {
            return;
        }
        if let (Some(tx), Ok(dir)) = (&self.tx, dir.try_clone()) {
            let _ = tx.send(Batch {
                dir: Arc::new(dir),
                files,
            });
        }
    }

    /// The walker finished with a submitted file of `size` bytes.
    pub fn consumed(&self, size: u64) {
        self.consumed.fetch_add(size, Ordering::Relaxed);
    }
}

impl Default for Readahead {
    fn default() -> Self {
        Readahead::new()
    }
}

impl Drop for Readahead {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(rx: Receiver<Batch>, consumed: &AtomicU64, stop: &AtomicBool) {
    let mut requested = 0u64;
    for batch in rx {
        for (name, size) in batch.files {
            while requested > consumed.load(Ordering::Relaxed) + AHEAD {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
            requested += size;
            if let Ok(f) = batch.dir.open_file(&name) {
                // SAFETY: an advisory call on a descriptor we own.
                unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED) };
            }
        }
    }
}

/// Warms the kernel's dentry and inode caches for a source tree on a helper thread,
/// walking it in the same order as the walker (which then finds its `stat`s answered
/// from memory): on a cold cache the two threads keep two metadata reads in flight.
/// Iterative, like the walker: its thread has the default stack.
pub struct StatAhead {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatAhead {
    pub fn start(root: &Dir) -> StatAhead {
        let stop = Arc::new(AtomicBool::new(false));
        // reopen, not dup: this thread lists directories, and a dup would share the
        // walker's getdents position on the root.
        let thread = root.reopen().ok().and_then(|dir| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("strata-statahead".into())
                .spawn(move || stat_tree(dir, &stop))
                .ok()
        });
        StatAhead { stop, thread }
    }
}

impl Drop for StatAhead {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Stats every entry of the tree under `root`, depth first in the walker's order
/// (entries, then subdirectories), with an explicit stack of open directories.
fn stat_tree(root: Dir, stop: &AtomicBool) {
    // Each level: its directory and the subdirectories still to enter (reversed).
    let mut stack: Vec<(Dir, Vec<Vec<u8>>)> = Vec::new();
    let subdirs = stat_entries(&root, stop);
    stack.push((root, subdirs));
    loop {
        let depth = stack.len();
        let Some((dir, subdirs)) = stack.last_mut() else {
            return;
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(name) = subdirs.pop() else {
            stack.pop();
            continue;
        };
        // The root is level 0; as the recursive version did, stop below MAX_DEPTH.
        if depth > crate::tree::MAX_DEPTH {
            continue;
        }
        if let Ok(sub) = dir.open_dir(&name) {
            let subdirs = stat_entries(&sub, stop);
            stack.push((sub, subdirs));
        }
    }
}

/// Stats the entries of `dir`; returns its subdirectories, last first.
fn stat_entries(dir: &Dir, stop: &AtomicBool) -> Vec<Vec<u8>> {
    let Ok(names) = dir.entries() else {
        return Vec::new();
    };
    let mut subdirs = Vec::new();
    for name in names {
        if stop.load(Ordering::Relaxed) {
            return Vec::new();
        }
        if let Ok(st) = dir.stat(&name)
            && st.st_mode & libc::S_IFMT == libc::S_IFDIR
        {
            subdirs.push(name);
        }
    }
    subdirs.reverse();
    subdirs
}
