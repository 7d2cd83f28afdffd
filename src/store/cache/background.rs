//! The cache's background work on a small pool of threads: read-ahead for sequential
//! readers, whole objects fetched in parts after `will_need`, and rescans of the
//! directory for what other processes added or evicted.

use super::disk::{BLOCK, Key, block_len, cacheable, whole_budget};
use super::{Shared, State, bump};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

/// Background threads: read-ahead blocks and the parts of whole objects.
pub(super) const WORKERS: usize = 4;
/// A whole object is fetched in parts of this size.
const PART: u64 = 8 << 20;
/// Most blocks read ahead of one sequential reader.
const MAX_WINDOW: u64 = 8;
/// Most read-ahead blocks in flight at once.
const MAX_PREFETCH: usize = 16;
const MAX_STREAMS: usize = 1024;

/// Where one object's reads have got to.
#[derive(Default)]
pub(super) struct Stream {
    /// Where the last read ended.
    next: Option<u64>,
    /// Sequential reads in a row (capped).
    streak: u32,
    /// The first block not yet considered for read-ahead.
    ahead: u64,
}

pub(super) enum Job {
    Block { key: Key, epoch: u64 },
    Part { whole: Arc<WholeFetch>, offset: u64 },
    Rescan,
}

/// A whole object being fetched into a temp file, part by part.
pub(super) struct WholeFetch {
    name: String,
    size: u64,
    epoch: u64,
    tmp: PathBuf,
    file: File,
    /// Parts not done yet: the one that brings it to zero installs the file.
    left: AtomicUsize,
    failed: AtomicBool,
}

impl Shared {
    /// Queues a background job (the caller holds the state lock); false when closing.
    pub(super) fn queue(&self, st: &mut State, job: Job) -> bool {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let sent = sender.as_ref().is_some_and(|s| s.send(job).is_ok());
        if sent {
            st.pending += 1;
        }
        sent
    }

    pub(super) fn work(&self, receiver: &Mutex<Receiver<Job>>) {
        loop {
            let job = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
            let Ok(job) = job else { return };
            match job {
                Job::Block { key, epoch } => self.read_ahead_block(key, epoch),
                Job::Part { whole, offset } => self.fetch_part(&whole, offset),
                Job::Rescan => self.rescan(),
            }
            self.lock().pending -= 1;
            self.changed.notify_all();
        }
    }

    /// After a read of `offset..end`: if it followed the last one, queues the next
    /// blocks for read-ahead.
    pub(super) fn read_ahead(&self, name: &str, size: u64, offset: u64, end: u64) {
        let last = (end - 1) / BLOCK;
        let mut st = self.lock();
        if !st.streams.contains_key(name) {
            if st.streams.len() >= MAX_STREAMS {
                st.streams.clear();
            }
            st.streams.insert(name.to_owned(), Stream::default());
        }
        let writable = self.writable();
        let Some(s) = st.streams.get_mut(name) else {
            return;
        };
        match s.next {
            // Goes on from where the last read ended (or a little after).
            Some(n) if end > n && offset <= n + BLOCK => {}
            // A little behind: a read again, or the reads of several threads out of
            // order. Neither a new start nor a step forward.
            Some(n) if end <= n && offset + 2 * BLOCK >= n => return,
            _ => {
                *s = Stream {
                    next: Some(end),
                    ..Stream::default()
                };
                return;
            }
        }
        s.next = Some(end);
        if !writable {
            return;
        }
        s.streak = (s.streak + 1).min(3);
        // A window that the bound would evict before it is read is no use.
        let window = (1u64 << s.streak)
            .min(MAX_WINDOW)
            .min((self.max_bytes / 4 / BLOCK).max(1));
        let from = (last + 1).max(s.ahead);
        let upto = (last + window).min((size - 1) / BLOCK);
        let epoch = st.epoch(name);
        let mut b = from;
        while b <= upto && st.prefetching < MAX_PREFETCH {
            if !st.lru.has_block(name, size, b * BLOCK) {
                let key = Key::Block {
                    name: name.to_owned(),
                    size,
                    offset: b * BLOCK,
                };
                if st.in_flight.insert(key.clone()) {
                    st.prefetching += 1;
                    if !self.queue(
                        &mut st,
                        Job::Block {
                            key: key.clone(),
                            epoch,
                        },
                    ) {
                        st.in_flight.remove(&key);
                        st.prefetching -= 1;
                        break;
                    }
                }
            }
            b += 1;
        }
        if let Some(s) = st.streams.get_mut(name) {
            s.ahead = s.ahead.max(b);
        }
    }

    fn read_ahead_block(&self, key: Key, epoch: u64) {
        if let Key::Block { name, size, offset } = &key
            && !self.closing.load(Ordering::Relaxed)
        {
            let mut data = vec![0u8; block_len(*size, *offset) as usize];
            // A failure is left for the reader to meet (and report).
            if self.fetch(name, *offset, &mut data).is_ok() {
                bump(&self.c.prefetched, 1);
                self.keep(key.clone(), &data, epoch);
            }
        }
        let mut st = self.lock();
        st.in_flight.remove(&key);
        st.prefetching -= 1;
    }

    /// Fetches a whole object into `objects/NAME` in the background.
    pub(super) fn will_need(&self, name: &str) {
        if !cacheable(name) || !self.writable() {
            self.inner.will_need(name);
            return;
        }
        {
            let mut st = self.lock();
            if st.lru.get_whole(name).is_some() || st.wholes_in_flight.contains(name) {
                return;
            }
        }
        let Ok(size) = self.size_of(name) else {
            return;
        };
        if size == 0 || size > whole_budget(self.max_bytes) / 2 {
            return;
        }
        let key = Key::Whole(name.to_owned());
        // Another process may have fetched it already.
        if std::fs::metadata(self.disk.path(&key)).is_ok_and(|m| m.is_file() && m.len() == size) {
            let victims = {
                let mut st = self.lock();
                st.validated.insert(name.to_owned());
                st.lru.insert(key, size);
                st.lru.victims(self.max_bytes)
            };
            self.unlink(victims);
            return;
        }
        let (tmp, file) = match self.disk.temp() {
            Ok(t) => t,
            Err(_) => {
                self.write_failed();
                return;
            }
        };
        let mut st = self.lock();
        if !st.wholes_in_flight.insert(name.to_owned()) {
            drop(st);
            self.disk.remove_temp(&tmp);
            return;
        }
        let parts = size.div_ceil(PART) as usize;
        let whole = Arc::new(WholeFetch {
            name: name.to_owned(),
            size,
            epoch: st.epoch(name),
            tmp,
            file,
            left: AtomicUsize::new(parts),
            failed: AtomicBool::new(false),
        });
        for i in 0..parts {
            let job = Job::Part {
                whole: whole.clone(),
                offset: i as u64 * PART,
            };
            if !self.queue(&mut st, job) {
                // Closing: the parts not queued count as failed ones.
                whole.failed.store(true, Ordering::Relaxed);
                let unqueued = parts - i;
                drop(st);
                if whole.left.fetch_sub(unqueued, Ordering::AcqRel) == unqueued {
                    self.finish_whole(&whole);
                }
                return;
            }
        }
    }

    fn fetch_part(&self, w: &WholeFetch, offset: u64) {
        if self.closing.load(Ordering::Relaxed) {
            w.failed.store(true, Ordering::Relaxed);
        }
        if !w.failed.load(Ordering::Relaxed) {
            let mut data = vec![0u8; PART.min(w.size - offset) as usize];
            match self.fetch(&w.name, offset, &mut data) {
                Err(_) => w.failed.store(true, Ordering::Relaxed),
                Ok(()) => {
                    if w.file.write_all_at(&data, offset).is_err() {
                        self.write_failed();
                        w.failed.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
        if w.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish_whole(w);
        }
    }

    /// After the last part: installs the object's file if every part came in, and drops
    /// the blocks of it that the range cache holds.
    fn finish_whole(&self, w: &WholeFetch) {
        let complete =
            !w.failed.load(Ordering::Relaxed) && w.file.metadata().is_ok_and(|m| m.len() == w.size);
        let key = Key::Whole(w.name.clone());
        let installed = complete
            && match self.disk.install(&w.tmp, &key) {
                Ok(()) => true,
                Err(_) => {
                    self.disk_error();
                    false
                }
            };
        if !installed {
            self.disk.remove_temp(&w.tmp);
        }
        let (blocks, victims) = {
            let mut st = self.lock();
            st.wholes_in_flight.remove(&w.name);
            if !installed {
                return;
            }
            if st.epoch(&w.name) != w.epoch {
                drop(st);
                let _ = self.disk.remove(&key);
                return;
            }
            st.validated.insert(w.name.clone());
            st.lru.insert(key, w.size);
            let blocks = st.lru.keys_of(&w.name, false);
            for k in &blocks {
                st.lru.remove(k);
            }
            (blocks, st.lru.victims(self.max_bytes))
        };
        bump(&self.c.wholes, 1);
        for k in blocks {
            let _ = self.disk.remove(&k);
        }
        self.unlink(victims);
    }

    /// Takes in what other processes added to or evicted from the directory.
    fn rescan(&self) {
        let found = if self.closing.load(Ordering::Relaxed) {
            None
        } else {
            let before = self.lock().lru.now();
            match self.disk.scan() {
                Ok(found) => Some((found, before)),
                Err(_) => {
                    self.disk_error();
                    None
                }
            }
        };
        let victims = {
            let mut st = self.lock();
            st.rescanning = false;
            let Some((found, before)) = found else { return };
            st.lru.reconcile(found, before);
            st.lru.victims(self.max_bytes)
        };
        self.unlink(victims);
    }
}
