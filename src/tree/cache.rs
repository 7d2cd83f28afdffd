//! The cache of decoded trees (the mount's lookups and readdirs, and its prefetcher):
//! bounded by an estimate of the decoded nodes' heap use, not by a count of trees.

use crate::format::BlobId;
use crate::format::tree::Node;
use std::sync::Arc;

/// Decoded trees, bounded by an estimate of their memory.
pub struct TreeCache {
    lru: crate::sys::Lru<BlobId, Arc<Vec<Node>>>,
}

impl TreeCache {
    pub fn new(budget: usize) -> TreeCache {
        TreeCache {
            lru: crate::sys::Lru::new(budget),
        }
    }

    fn weight(t: &[Node]) -> usize {
        // The Node itself (~190 bytes) plus a heap block (and malloc's overhead) for
        // each of name, user, group and payload.
        t.iter()
            .map(|n| {
                320 + n.name.len()
                    + n.extents().len() * 48
                    + n.xattrs
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + 48)
                        .sum::<usize>()
            })
            .sum::<usize>()
            + 64
    }

    pub fn get(&self, id: &BlobId) -> Option<Arc<Vec<Node>>> {
        self.lru.get(id)
    }

    /// A directory bigger than the whole budget is still cached (alone), so lookups in
    /// a 100k-entry directory do not decode its tree again each time.
    pub fn insert(&self, id: BlobId, t: Arc<Vec<Node>>) {
        let w = Self::weight(&t);
        self.lru.insert_always(id, t, w);
    }
}
