//! strata: an append-only, deduplicated, indexed backup archive with a read-only FUSE
//! mount. Layers, top down; each uses only the ones below it (docs/ARCHITECTURE.md):
//!
//! ```text
//! cli      clap front end: parsing, rendering, hints, exit codes; no domain decisions
//! fuse     the fuser adapter (forwarding only) and mounting
//! vfs      filesystem semantics without the kernel: inodes, namespace, handles, reads
//! ops      check, diff, restore, retention (forget, prune), repair, copy
//! ingest   sources → walk → chunks → the write session → trees → snapshot
//! content  a file's bytes at any offset, a bounded chunk cache, streaming reads
//! tree     snapshot trees: path lookup, the one iterative walker, refs, the tree cache
//! archive  init/open/lock/commit, the write session (the only dedup), index rebuild: the one API above
//! index    index.sqlite: blob locations and snapshot catalogue (rebuildable, never the truth)
//! packs    append-only packs over a store: writer, reader, scanner; codec (the one place bytes are transformed)
//! store    the storage seam: a Store trait, a local directory (a fault-injecting one in tests)
//! chunker  FastCDC with the archive's parameters
//! format   on-disk records over byte slices (pure, versioned, golden-byte tested)
//! sys      small system helpers: fd-relative file calls, time, JSON text, LRU, names
//! ```

pub mod archive;
pub mod chunker;
pub mod content;
pub mod format;
pub mod fuse;
pub mod index;
pub mod ingest;
pub mod ops;
pub mod packs;
pub mod store;
pub mod sys;
pub mod tree;
pub mod vfs;
