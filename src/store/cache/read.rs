//! The read path: a whole cached object, else the range cache's blocks, fetching the
//! missing ones with one inner read per run of adjacent blocks and storing them.

use super::background::Job;
use super::disk::{BLOCK, Key, block_len, cacheable};
use super::{Shared, bump};
use crate::store::StoreError;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Longest wait for another thread's fetch of a block before fetching it too.
const WAIT: Duration = Duration::from_secs(30);

impl Shared {
    /// A read the cache does not take part in.
    fn pass(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        bump(&self.c.misses, 1);
        self.fetch(name, offset, buf)
    }

    pub(super) fn read_at(
        &self,
        name: &str,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), StoreError> {
        let len = buf.len() as u64;
        if len == 0 || !cacheable(name) {
            return self.pass(name, offset, buf);
        }
        if self.read_whole(name, offset, buf) {
            bump(&self.c.hits, 1);
            return Ok(());
        }
        if len > self.max_bytes / 4 {
            return self.pass(name, offset, buf);
        }
        let Ok(size) = self.size_of(name) else {
            return self.pass(name, offset, buf);
        };
        let end = match offset.checked_add(len) {
            Some(end) if end <= size => end,
            // Past the end: the inner store says how (Short, NotFound).
            _ => return self.pass(name, offset, buf),
        };
        self.read_blocks(name, size, offset, buf)?;
        self.read_ahead(name, size, offset, end);
        Ok(())
    }

    /// Opens a cached file, keeping the descriptor; None when the file is not there.
    fn open(&self, key: &Key) -> Option<Arc<File>> {
        match File::open(self.disk.path(key)) {
            Ok(f) => {
                let f = Arc::new(f);
                self.lock().lru.set_file(key, f.clone());
                Some(f)
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::NotFound {
                    // Evicted by another process.
                    self.lock().lru.remove(key);
                } else {
                    self.disk_error();
                }
                None
            }
        }
    }

    /// Forgets and deletes a cached file found damaged.
    fn drop_file(&self, key: &Key) {
        self.lock().lru.remove(key);
        if self.disk.remove(key).is_err() {
            self.disk_error();
        }
    }

    /// Serves the read from the object's whole copy if there is one.
    fn read_whole(&self, name: &str, offset: u64, buf: &mut [u8]) -> bool {
        let (file, bytes, validated) = {
            let mut st = self.lock();
            let Some(slot) = st.lru.get_whole(name) else {
                return false;
            };
            let (file, bytes) = (slot.file.clone(), slot.bytes);
            (file, bytes, st.validated.contains(name))
        };
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > bytes)
        {
            return false;
        }
        let key = || Key::Whole(name.to_owned());
        let Some(file) = file.or_else(|| self.open(&key())) else {
            return false;
        };
        if !validated {
            // A copy found on disk: the object the inner store has now is the same size.
            match (file.metadata(), self.size_of(name)) {
                (Ok(m), Ok(size)) if m.len() == size => {
                    self.lock().validated.insert(name.to_owned());
                }
                (Ok(_), Ok(_)) => {
                    self.drop_file(&key());
                    return false;
                }
                _ => return false,
            }
        }
        match file.read_exact_at(buf, offset) {
            Ok(()) => true,
            Err(e) => {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    self.drop_file(&key());
                } else {
                    self.disk_error();
                }
                false
            }
        }
    }

    /// Copies the part of `buf` (the bytes at `offset`) that block `b` holds from its
    /// cached file; false when the block is not cached (or could not be read).
    fn read_cached_block(
        &self,
        name: &str,
        size: u64,
        b: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> bool {
        let at = b * BLOCK;
        let file = {
            let mut st = self.lock();
            match st.lru.get_block(name, size, at) {
                Some(slot) => slot.file.clone(),
                None => return false,
            }
        };
        let key = || Key::Block {
            name: name.to_owned(),
            size,
            offset: at,
        };
        let Some(file) = file.or_else(|| self.open(&key())) else {
            return false;
        };
        let end = offset + buf.len() as u64;
        let (from, to) = (offset.max(at), end.min(at + block_len(size, at)));
        let dst = &mut buf[(from - offset) as usize..(to - offset) as usize];
        match file.read_exact_at(dst, from - at) {
            Ok(()) => true,
            Err(e) => {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    self.drop_file(&key());
                } else {
                    self.disk_error();
                }
                false
            }
        }
    }

    /// Serves a read (within the object) from the range cache, fetching the blocks it
    /// lacks with one inner read per run of adjacent missing blocks.
    fn read_blocks(
        &self,
        name: &str,
        size: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), StoreError> {
        let end = offset + buf.len() as u64;
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        let mut missing: Vec<u64> = (first..=last)
            .filter(|&b| !self.read_cached_block(name, size, b, offset, buf))
            .collect();
        if missing.is_empty() {
            bump(&self.c.hits, 1);
            return Ok(());
        }
        let key = |b: u64| Key::Block {
            name: name.to_owned(),
            size,
            offset: b * BLOCK,
        };
        // Wait for fetches of these blocks already under way, then claim the rest so
        // that nobody fetches them again meanwhile.
        let keys: Vec<Key> = missing.iter().map(|&b| key(b)).collect();
        let (epoch, waited) = {
            let mut st = self.lock();
            let deadline = Instant::now() + WAIT;
            let mut waited = false;
            while keys.iter().any(|k| st.in_flight.contains(k)) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                waited = true;
                st = self
                    .changed
                    .wait_timeout(st, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            st.in_flight.extend(keys.iter().cloned());
            (st.epoch(name), waited)
        };
        let _claims = Claims { shared: self, keys };
        if waited {
            missing.retain(|&b| !self.read_cached_block(name, size, b, offset, buf));
            if missing.is_empty() {
                bump(&self.c.hits, 1);
                return Ok(());
            }
        }
        bump(&self.c.misses, 1);
        let store = self.writable();
        for (b0, b1) in runs(&missing) {
            let start = b0 * BLOCK;
            let stop = size.min((b1 + 1) * BLOCK);
            let (from, to) = (offset.max(start), end.min(stop));
            let wanted = &mut buf[(from - offset) as usize..(to - offset) as usize];
            if !store {
                // The directory refuses writes: fetch just the bytes asked for.
                self.fetch(name, from, wanted)?;
                continue;
            }
            let mut data = vec![0u8; (stop - start) as usize];
            self.fetch(name, start, &mut data)?;
            wanted.copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
            for b in b0..=b1 {
                let at = ((b - b0) * BLOCK) as usize;
                let len = block_len(size, b * BLOCK) as usize;
                self.keep(key(b), &data[at..at + len], epoch);
            }
        }
        Ok(())
    }

    /// Stores a fetched block; a failure only costs the cached copy.
    pub(super) fn keep(&self, key: Key, data: &[u8], epoch: u64) {
        match self.disk.write(&key, data) {
            Ok(()) => {
                self.retry_at.store(0, Ordering::Relaxed);
                self.register(key, data.len() as u64, epoch);
            }
            Err(_) => self.write_failed(),
        }
    }

    /// Counts a file just written, unless its object was forgotten since the fetch
    /// began; evicts what goes over the bound.
    fn register(&self, key: Key, bytes: u64, epoch: u64) {
        let victims = {
            let mut st = self.lock();
            if st.epoch(key.name()) != epoch {
                drop(st);
                let _ = self.disk.remove(&key);
                return;
            }
            st.lru.insert(key, bytes);
            st.written += bytes;
            if st.written >= self.max_bytes / 4 && !st.rescanning {
                st.written = 0;
                st.rescanning = self.queue(&mut st, Job::Rescan);
            }
            st.lru.victims(self.max_bytes)
        };
        self.unlink(victims);
    }
}

/// Blocks claimed by a reader, released (and waiters woken) however the read ends.
struct Claims<'a> {
    shared: &'a Shared,
    keys: Vec<Key>,
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        for k in &self.keys {
            st.in_flight.remove(k);
        }
        drop(st);
        self.shared.changed.notify_all();
    }
}

/// Runs of consecutive numbers in a sorted list, as (first, last).
pub(super) fn runs(sorted: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &b in sorted {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == b => *last = b,
            _ => out.push((b, b)),
        }
    }
    out
}
