//! Prefetch for sequential readers: a few threads load the next chunks of a file into the
//! shared chunk cache while the kernel is still asking for earlier ones. Requests beyond
//! a small queue are dropped (prefetch is a hint, never a correctness matter).

use crate::archive::Archive;
use crate::format::BlobId;
use crate::read::ChunkCache;
use std::collections::HashSet;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

pub struct Prefetcher {
    tx: SyncSender<BlobId>,
    pending: Arc<Mutex<HashSet<BlobId>>>,
    cache: Arc<ChunkCache>,
}

impl Prefetcher {
    pub fn new(archive: Arc<Archive>, cache: Arc<ChunkCache>, threads: usize) -> Prefetcher {
        let (tx, rx) = sync_channel::<BlobId>(64);
        let rx = Arc::new(Mutex::new(rx));
        let pending = Arc::new(Mutex::new(HashSet::new()));
        for _ in 0..threads {
            let (rx, archive, cache, pending) =
                (rx.clone(), archive.clone(), cache.clone(), pending.clone());
            std::thread::Builder::new()
                .name("strata-prefetch".into())
                .spawn(move || {
                    loop {
                        let id = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok(id) = id else { return };
                        if cache.get(&id).is_none() {
                            // Errors surface when the reader itself asks for the chunk.
                            let _ = crate::read::chunk(&archive, Some(&cache), &id, false);
                        }
                        pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&id);
                    }
                })
                .ok();
        }
        Prefetcher { tx, pending, cache }
    }

    /// Asks for these chunks to be loaded soon.
    pub fn want(&self, ids: &[BlobId]) {
        for id in ids {
            if self.cache.get(id).is_some() {
                continue;
            }
            if !self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(*id)
            {
                continue;
            }
            match self.tx.try_send(*id) {
                Ok(()) => {}
                Err(TrySendError::Full(id)) | Err(TrySendError::Disconnected(id)) => {
                    self.pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                    return;
                }
            }
        }
    }
}
