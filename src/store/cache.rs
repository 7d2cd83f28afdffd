//! A [`Store`] that keeps what it reads from another (slow, remote: a bucket where each
//! `read_at` is a ranged GET) in a bounded local directory, so that reads run at network
//! speed the first time and at disk speed after, and a walk of a mount touches only
//! cached tree packs.
//!
//! **What is cached.**
//! - *Whole objects.* [`Store::will_need`] (called for packs that hold trees) fetches the
//!   object once, in 8 MiB parts on the worker threads (several GETs in flight), into a
//!   temp file renamed to `objects/NAME` when every part is in and its length equals the
//!   inner store's size. Reads of it are then `pread`s of that file. An object larger than
//!   half the whole-object budget (below) is left to the range cache.
//! - *Ranges.* Any other read is served from aligned 1 MiB blocks, one file each
//!   (`blocks/NAME/SIZE-OFFSET`). The blocks a read lacks are fetched with one inner read
//!   per run of adjacent missing blocks, stored, and copied out. A read that waits for a
//!   block another thread is already fetching (a read-ahead, another reader) does not
//!   fetch it again. A read larger than a quarter of the bound (of an object not cached
//!   whole) passes straight through, so that one `read_all` of a big pack cannot flush
//!   the cache.
//! - *Read-ahead.* When the reads of an object follow each other (each goes past where
//!   the last ended and starts at most a block after it; a read a little behind, such as
//!   a repeat or a neighbour arriving late from another thread, neither breaks nor
//!   extends the run), the next 2, 4, then 8 blocks (at most a quarter of the bound) are
//!   fetched in the background by a pool of 4 threads, at most 16 blocks in flight: what
//!   makes `cp` of a big file out of a mount run at network speed.
//!
//! **The bound.** The files this process knows of (its own, and what it found at startup
//! or at a rescan) total at most `max_bytes`, least recently used first out. Whole
//! objects are evicted last: range blocks go first, whole objects only when no block is
//! left, except that whole objects never hold more than three quarters of the bound, so
//! blocks always keep a quarter. Not counted: temp files being written (a block per
//! worker or reader, and the whole objects being fetched). Recency lives in memory; at
//! startup the directory is scanned and its files ranked by mtime.
//!
//! **Several processes on one directory** (two commands on one host) are safe: every file
//! is written once under a temp name (`tmp/PID.SEQ`) and renamed into place, so a reader
//! sees a whole file or none, and two writers of one block rename equal bytes. A file
//! another process evicts while this one reads it stays readable through the open
//! descriptor; one it evicted before this one opened it is fetched again. Each process
//! enforces the bound on its own view and rescans the directory (in the background)
//! after each quarter of the bound it writes, so the directory exceeds the bound at most
//! by what others wrote since the last rescan. Temp files are removed by a scan when
//! their process is gone or they are an hour old.
//!
//! **Staleness and damage.** Objects are immutable once sealed, so a copy never goes
//! stale while its object exists. A name can come back after prune deleted it: `evict`,
//! `delete`, `create`, `set_aside` and `cut_tail` drop every copy of the name (and
//! fetches of it in flight are discarded), and a block's file name carries the object's
//! size. Nothing is fsynced: after a power failure a file may be short (a scan deletes
//! blocks of the wrong length; a whole object is checked against the inner store's size
//! before its first use in a process) or hold wrong bytes of the right length. Every
//! blob read checks the record header against the index and the crc32 of the stored
//! bytes (docs/FORMAT.md §3.3), and a failed read calls `evict`, which drops the copies:
//! a damaged cache costs a refetch, never wrong data.
//!
//! **Errors of the cache directory** (full, unwritable, removed) never fail a read: the
//! bytes come from the inner store and the failure is counted
//! ([`CacheStats::disk_errors`]). For a second after a failed write nothing new is
//! stored: reads fetch only the bytes they ask for (not whole blocks), and read-ahead
//! and whole objects are skipped; what is cached is still served.
//! [`CachedStore::new`] does fail when the directory cannot be made or read, so that the
//! caller can say so and decide to run without a cache.
//!
//! **Everything else** passes through: writes (`create` keeps no copy), `list`, `sync`,
//! `total_size`, and reads of names that cannot be file names. `size` is memoized per
//! object: objects are whole once visible in a bucket. (Over a local directory with a
//! writer running, a pack being written would be memoized at a partial size; the cache
//! is meant for buckets.)
//!
//! **One directory per archive.** Copies are known by object name alone, and pack names
//! repeat from one archive to the next: the caller gives each archive (bucket and
//! prefix) a directory of its own.
//!
//! The directory's layout, its scan and the eviction order are in `disk.rs`; the read
//! path in `read.rs`; read-ahead, whole objects and rescans in `background.rs`.

mod background;
mod disk;
mod read;
#[cfg(test)]
mod tests;

use self::background::{Job, Stream, WORKERS};
use self::disk::{Disk, Key, Lru, cacheable};
use super::{NewObject, ObjectMeta, Store, StoreError, Stray};
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long nothing new is stored after a write to the directory failed.
const RETRY: Duration = Duration::from_secs(1);
const MAX_SIZES: usize = 1 << 16;

/// What the cache did so far (this process, this [`CachedStore`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads served from the cache directory, with no inner read of their own.
    pub hits: u64,
    /// Reads that needed the inner store (including those passed straight through).
    pub misses: u64,
    /// Reads of the inner store: for readers, read-ahead and whole objects.
    pub inner_reads: u64,
    /// Bytes those reads fetched.
    pub inner_bytes: u64,
    /// Blocks fetched by read-ahead.
    pub prefetched: u64,
    /// Whole objects fetched after `will_need`.
    pub wholes: u64,
    /// Operations on the cache directory that failed (the reads were served anyway).
    pub disk_errors: u64,
    /// Bytes removed to keep within the bound.
    pub evicted_bytes: u64,
    /// Bytes of the files this process counts in the directory now.
    pub bytes_cached: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    inner_reads: AtomicU64,
    inner_bytes: AtomicU64,
    prefetched: AtomicU64,
    wholes: AtomicU64,
    disk_errors: AtomicU64,
    evicted_bytes: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// A store that caches another's objects in a bounded local directory (see the module
/// documentation for what is kept, for how long, and what is safe).
pub struct CachedStore {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

struct Shared {
    inner: Arc<dyn Store>,
    disk: Disk,
    max_bytes: u64,
    state: Mutex<State>,
    /// Signalled when a fetch ends (its blocks are no longer in flight) and when a
    /// background job is done.
    changed: Condvar,
    sender: Mutex<Option<Sender<Job>>>,
    closing: AtomicBool,
    /// After a write to the directory failed, the time (ms after `born`) before which
    /// nothing new is stored: reads fetch just their bytes, and read-ahead and whole
    /// objects are skipped. Zero once a write succeeded.
    retry_at: AtomicU64,
    born: Instant,
    c: Counters,
}

#[derive(Default)]
struct State {
    lru: Lru,
    /// Object sizes from the inner store (objects are immutable).
    sizes: HashMap<String, u64>,
    /// Whole objects whose length was checked against the inner store's size.
    validated: HashSet<String>,
    /// Bumped by `forget`: a fetch that began under an older epoch is discarded.
    epochs: HashMap<String, u64>,
    last_epoch: u64,
    /// Blocks being fetched (by a reader or the read-ahead).
    in_flight: HashSet<Key>,
    wholes_in_flight: HashSet<String>,
    streams: HashMap<String, Stream>,
    prefetching: usize,
    /// Background jobs queued or running.
    pending: usize,
    /// Bytes written since the last scan of the directory.
    written: u64,
    rescanning: bool,
}

impl State {
    fn epoch(&self, name: &str) -> u64 {
        self.epochs.get(name).copied().unwrap_or(0)
    }
}

impl CachedStore {
    /// A cache of `inner` in `dir` (created with mode 0700 if missing) holding at most
    /// `max_bytes`. What is in `dir` already is reused; leftover temp files and damaged
    /// blocks are deleted.
    pub fn new(
        inner: Arc<dyn Store>,
        dir: &Path,
        max_bytes: u64,
    ) -> Result<CachedStore, StoreError> {
        let err = |source: io::Error| StoreError::Io {
            location: dir.display().to_string(),
            source,
        };
        let disk = Disk::open(dir).map_err(err)?;
        let found = disk.scan().map_err(err)?;
        let mut lru = Lru::new();
        lru.reconcile(found, 0);
        let victims = lru.victims(max_bytes);
        let (sender, receiver) = mpsc::channel();
        let shared = Arc::new(Shared {
            inner,
            disk,
            max_bytes,
            state: Mutex::new(State {
                lru,
                ..State::default()
            }),
            changed: Condvar::new(),
            sender: Mutex::new(Some(sender)),
            closing: AtomicBool::new(false),
            retry_at: AtomicU64::new(0),
            born: Instant::now(),
            c: Counters::default(),
        });
        shared.unlink(victims);
        let mut store = CachedStore {
            shared,
            workers: Vec::new(),
        };
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..WORKERS {
            let shared = store.shared.clone();
            let receiver = receiver.clone();
            let worker = std::thread::Builder::new()
                .name(format!("strata-cache-{i}"))
                .spawn(move || shared.work(&receiver))
                .map_err(err)?;
            store.workers.push(worker);
        }
        Ok(store)
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.shared.c;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&c.hits),
            misses: get(&c.misses),
            inner_reads: get(&c.inner_reads),
            inner_bytes: get(&c.inner_bytes),
            prefetched: get(&c.prefetched),
            wholes: get(&c.wholes),
            disk_errors: get(&c.disk_errors),
            evicted_bytes: get(&c.evicted_bytes),
            bytes_cached: self.shared.lock().lru.total(),
        }
    }

    /// Waits until no read-ahead, whole-object fetch or rescan is queued or running.
    pub fn wait_for_background(&self) {
        let mut st = self.shared.lock();
        while st.pending > 0 {
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for CachedStore {
    fn drop(&mut self) {
        // Queued jobs are then skipped; a fetch under way finishes its one inner read.
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn disk_error(&self) {
        bump(&self.c.disk_errors, 1);
    }

    fn ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// Whether to store what is fetched: not for a while after a write failed.
    fn writable(&self) -> bool {
        self.ms() >= self.retry_at.load(Ordering::Relaxed)
    }

    fn write_failed(&self) {
        self.disk_error();
        self.retry_at
            .store(self.ms() + RETRY.as_millis() as u64, Ordering::Relaxed);
    }

    fn size_of(&self, name: &str) -> Result<u64, StoreError> {
        let epoch = {
            let st = self.lock();
            if let Some(&size) = st.sizes.get(name) {
                return Ok(size);
            }
            st.epoch(name)
        };
        let size = self.inner.size(name)?;
        let mut st = self.lock();
        // Not if the object was forgotten meanwhile: the size may be the old one's.
        if st.epoch(name) == epoch {
            if st.sizes.len() >= MAX_SIZES {
                st.sizes.clear();
            }
            st.sizes.insert(name.to_owned(), size);
        }
        Ok(size)
    }

    /// One read of the inner store, counted.
    fn fetch(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        bump(&self.c.inner_reads, 1);
        self.inner.read_at(name, offset, buf)?;
        bump(&self.c.inner_bytes, buf.len() as u64);
        Ok(())
    }

    fn unlink(&self, victims: Vec<(Key, u64)>) {
        for (key, bytes) in victims {
            bump(&self.c.evicted_bytes, bytes);
            if self.disk.remove(&key).is_err() {
                self.disk_error();
            }
        }
    }

    /// Drops every cached copy of an object, and discards fetches of it under way.
    fn forget(&self, name: &str) {
        {
            let mut st = self.lock();
            st.last_epoch += 1;
            let epoch = st.last_epoch;
            st.epochs.insert(name.to_owned(), epoch);
            st.lru.remove_name(name);
            st.sizes.remove(name);
            st.validated.remove(name);
            st.streams.remove(name);
        }
        if cacheable(name) && self.disk.remove_object(name).is_err() {
            self.disk_error();
        }
    }
}

impl Store for CachedStore {
    fn location(&self, name: &str) -> String {
        self.shared.inner.location(name)
    }

    fn list(&self) -> Result<(Vec<ObjectMeta>, Vec<Stray>), StoreError> {
        self.shared.inner.list()
    }

    fn size(&self, name: &str) -> Result<u64, StoreError> {
        self.shared.size_of(name)
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.shared.read_at(name, offset, buf)
    }

    fn will_need(&self, name: &str) {
        self.shared.will_need(name)
    }

    fn evict(&self, name: &str) {
        self.shared.forget(name);
        self.shared.inner.evict(name);
    }

    fn create(&self, name: &str) -> Result<Box<dyn NewObject>, StoreError> {
        // A new object under a name whose old one another process deleted.
        self.shared.forget(name);
        self.shared.inner.create(name)
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.shared.forget(name);
        self.shared.inner.delete(name)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.shared.inner.sync()
    }

    fn set_aside(&self, name: &str) -> Result<String, StoreError> {
        self.shared.forget(name);
        self.shared.inner.set_aside(name)
    }

    fn cut_tail(&self, name: &str, len: u64) -> Result<String, StoreError> {
        self.shared.forget(name);
        self.shared.inner.cut_tail(name, len)
    }

    fn total_size(&self) -> Result<u64, StoreError> {
        self.shared.inner.total_size()
    }
}
