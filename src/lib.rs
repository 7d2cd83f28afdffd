//! strata: an append-only, deduplicated, indexed backup archive with a read-only FUSE
//! mount. Layers, bottom up; each uses only the ones below it:
//!
//! ```text
//! format   on-disk records over byte slices (pure)
//! chunker  FastCDC with the archive's parameters
//! store    the storage seam: a Store trait, a local directory (fault-injecting one in tests)
//! packs    append-only packs over a store: writer, reader, scanner; codec (the one place bytes are transformed)
//! index    index.sqlite: blob locations and snapshot catalogue (rebuildable)
//! archive  init/open/lock/commit: the one API above this line
//! tree     snapshot trees: path lookup and walking
//! ingest   sources → chunks → packs → trees → snapshot
//! read     file bytes at any offset, with a bounded chunk cache
//! restore  trees and files back onto disk, exactly
//! cli      clap front end; no logic
//! ```

pub mod archive;
pub mod check;
pub mod chunker;
pub mod diff;
pub mod format;
pub mod fsops;
pub mod fuse;
pub mod index;
pub mod ingest;
pub mod packs;
pub mod read;
pub mod restore;
pub mod retention;
pub mod store;
pub mod tree;
pub mod util;
pub mod vfs;
