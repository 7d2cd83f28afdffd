//! Prefetch: a few threads load the next chunks of a file (or of the next files of a
//! directory) into the shared chunk cache, and the trees of subdirectories into the
//! tree cache, while the kernel is still asking for earlier ones. Requests beyond
//! a small queue are dropped (prefetch is a hint, never a correctness matter).

use crate::archive::Archive;
use crate::content::ChunkCache;
use crate::format::BlobId;
use crate::tree::TreeCache;
use std::collections::HashSet;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, RwLock};

#[derive(Clone, Copy)]
enum Job {
    Chunk(BlobId),
    Tree(BlobId),
}

pub struct Prefetcher {
    tx: SyncSender<Job>,
    pending: Arc<Mutex<HashSet<BlobId>>>,
    cache: Arc<ChunkCache>,
    trees: Arc<TreeCache>,
}

impl Prefetcher {
    pub fn new(
        archive: Arc<RwLock<Arc<Archive>>>,
        cache: Arc<ChunkCache>,
        trees: Arc<TreeCache>,
        threads: usize,
    ) -> Prefetcher {
        let (tx, rx) = sync_channel::<Job>(256);
        let rx = Arc::new(Mutex::new(rx));
        let pending = Arc::new(Mutex::new(HashSet::new()));
        for _ in 0..threads {
            let (rx, archive, cache, pending, trees) = (
                rx.clone(),
                archive.clone(),
                cache.clone(),
                pending.clone(),
                trees.clone(),
            );
            std::thread::Builder::new()
                .name("strata-prefetch".into())
                .spawn(move || {
                    loop {
                        let id = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = id else { return };
                        // The archive now (a repair may have swapped the index in).
                        let archive = archive.read().unwrap_or_else(|e| e.into_inner()).clone();
                        // Errors surface when the reader itself asks for the blob.
                        let id = match job {
                            Job::Chunk(id) => {
                                if cache.get(&id).is_none() {
                                    let _ =
                                        crate::content::chunk(&archive, Some(&cache), &id, false);
                                }
                                id
                            }
                            Job::Tree(id) => {
                                if trees.get(&id).is_none()
                                    && let Ok(t) = archive.read_tree(&id)
                                {
                                    trees.insert(id, Arc::new(t));
                                }
                                id
                            }
                        };
                        pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&id);
                    }
                })
                .ok();
        }
        Prefetcher {
            tx,
            pending,
            cache,
            trees,
        }
    }

    /// Asks for these chunks to be loaded into the chunk cache soon.
    pub fn want(&self, ids: &[BlobId]) {
        let jobs: Vec<Job> = ids
            .iter()
            .filter(|id| self.cache.get(id).is_none())
            .map(|id| Job::Chunk(*id))
            .collect();
        self.send(&jobs);
    }

    /// Asks for these trees to be loaded into the tree cache soon.
    pub fn want_trees(&self, ids: &[BlobId]) {
        let jobs: Vec<Job> = ids
            .iter()
            .filter(|id| self.trees.get(id).is_none())
            .map(|id| Job::Tree(*id))
            .collect();
        self.send(&jobs);
    }

    fn send(&self, jobs: &[Job]) {
        for job in jobs {
            let (Job::Chunk(id) | Job::Tree(id)) = *job;
            if !self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id)
            {
                continue;
            }
            if self.tx.try_send(*job).is_err() {
                // Full: prefetch is a hint; drop the rest.
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                return;
            }
        }
    }
}
