//! Filesystem semantics of a mounted archive, independent of FUSE: stable inode numbers,
//! attributes, lookup, readdir, readlink, xattrs and reads over snapshot trees, plus the
//! synthetic top level (one directory per snapshot, `latest`, `latest-LABEL`, `by-id/`,
//! `by-tag/`). The `fuse` module only forwards kernel requests here; tests call it
//! directly.
//!
//! This file holds the `Vfs` type, its construction, the archive it serves (and
//! `check_index`), statfs and the tree cache; the public methods live with their subject:
//! `inodes.rs` (inode table, attributes, parents, links, xattrs), `namespace.rs` (the top
//! level, lookup, directory listings), `guard.rs` (who may reach a source's top),
//! `handles.rs` (the one table of open handles), `read.rs` (open, reads, seeks, prefetch
//! windows) and `prefetch.rs` (the threads that load ahead).
//!
//! Invariants:
//! - Content never changes: a snapshot's inode numbers are derived from its id and the
//!   path (or, for hard links, the stored device and inode), so every mount shows the
//!   same numbers and hard links share one.
//! - Memory is bounded: the inode table holds only what the kernel holds (dropped on
//!   `forget`), each entry a pointer into the shared decoded tree plus its path (never a
//!   copy of the node); decoded trees and chunks live in bounded caches, and a tree that
//!   inodes still share is never decoded a second time.
//! - With other users let in (`set_shared`), the top of a source is served only to a
//!   caller who could have searched the directories above it on its host (recorded in
//!   the snapshot record; unrecorded: the mount owner and root only).
//! - `check_index` follows a replaced index.sqlite (after `strata repair`).
//! - Corruption is `Corrupt` (EIO), never "not found".
//! - The vfs never looks at a file's extents: `content::Content` answers reads, seeks
//!   and which blobs come next.

mod error;
mod guard;
mod handles;
mod inodes;
mod namespace;
mod prefetch;
mod read;

pub use crate::content::ReadBuf;
pub use error::{ToErrno, VfsError};
pub use guard::Caller;
pub use namespace::{SnapInfo, snapshot_dir_name};

use crate::archive::Archive;
use crate::content::ChunkCache;
use crate::format::BlobId;
use crate::format::tree::{Node, NodeKind};
use crate::tree::TreeCache;
use handles::Handles;
use inodes::{Inode, NodeRef, Target};
use namespace::{Catalog, Listing};
use prefetch::Prefetcher;
use read::OpenFile;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub const ROOT_INO: u64 = 1;
/// How long the top level's view of the snapshot list is trusted.
pub const CATALOG_TTL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDev,
    BlockDev,
    Socket,
}

impl From<NodeKind> for Kind {
    fn from(k: NodeKind) -> Kind {
        match k {
            NodeKind::File => Kind::File,
            NodeKind::Dir => Kind::Dir,
            NodeKind::Symlink => Kind::Symlink,
            NodeKind::Fifo => Kind::Fifo,
            NodeKind::CharDev => Kind::CharDev,
            NodeKind::BlockDev => Kind::BlockDev,
            NodeKind::Socket => Kind::Socket,
        }
    }
}

/// Attributes as `stat` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// The top of a source whose parents on its host may keep some callers out: every
    /// path walk through it must ask the vfs again (no kernel caching of the entry).
    pub guarded: bool,
    /// 512-byte blocks actually stored (holes are not counted).
    pub blocks: u64,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    pub nlink: u32,
    pub rdev: u32,
    /// True for content that never changes (long kernel cache lifetimes).
    pub immutable: bool,
}

/// A directory entry with its attributes (readdirplus).
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub attr: Attr,
}

pub struct Options {
    /// Bytes of decompressed chunks to keep.
    pub cache_size: usize,
    /// Serve this one snapshot at the root instead of the archive layout.
    pub snapshot: Option<BlobId>,
    /// Owner shown for the synthetic top-level directories.
    pub uid: u32,
    pub gid: u32,
}

pub struct Vfs {
    /// Replaced when `strata repair` swaps in a new index (see [`Vfs::check_index`]).
    archive: Arc<RwLock<Arc<Archive>>>,
    /// Device and inode of index.sqlite when it was opened.
    index_id: Mutex<(u64, u64)>,
    /// See [`Vfs::set_shared`].
    shared: std::sync::atomic::AtomicBool,
    /// Trees that inodes or listings still share (see [`Vfs::tree`]).
    live_trees: Mutex<HashMap<BlobId, std::sync::Weak<Vec<Node>>>>,
    /// Guards of each snapshot's sources, read from its record once.
    guards: Mutex<HashMap<BlobId, Arc<guard::Guards>>>,
    single: Option<Arc<SnapInfo>>,
    inodes: RwLock<HashMap<u64, Arc<Inode>>>,
    trees: Arc<TreeCache>,
    cache: Arc<ChunkCache>,
    catalog: Mutex<Catalog>,
    /// Open files.
    files: Handles<OpenFile>,
    /// Open directories: their entries, listed once at opendir, so a long listing costs
    /// O(entries) in all, not O(entries) per reply batch.
    dirs: Handles<Listing>,
    prefetch: Prefetcher,
    /// Most chunks prefetched ahead of one reader: at most a quarter of the cache, so
    /// prefetched chunks are not evicted before they are read.
    max_window: usize,
    uid: u32,
    gid: u32,
    started: (i64, u32),
}

impl Vfs {
    pub fn new(archive: Arc<Archive>, opts: Options) -> Result<Vfs, VfsError> {
        let cache = Arc::new(ChunkCache::new(opts.cache_size));
        let trees = Arc::new(TreeCache::new(TREE_CACHE));
        // Every directory a walk opens costs one index lookup: ask the kernel to read the
        // (small) index file in one sweep rather than page by page as lookups come.
        let index_id = file_id(archive.index_path());
        if let Ok(f) = std::fs::File::open(archive.index_path()) {
            use std::os::fd::AsRawFd;
            // SAFETY: advisory call on a descriptor we own.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED) };
        }
        let single = match opts.snapshot {
            Some(id) => {
                let row = archive
                    .snapshots()?
                    .into_iter()
                    .find(|r| r.id == id)
                    .ok_or(VfsError::NotFound)?;
                let dir_name = snapshot_dir_name(&row);
                Some(Arc::new(SnapInfo { row, dir_name }))
            }
            None => None,
        };
        let max_window =
            (opts.cache_size / 4 / (archive.config().chunk_max as usize).max(1)).clamp(2, 32);
        let archive = Arc::new(RwLock::new(archive));
        let vfs = Vfs {
            prefetch: Prefetcher::new(archive.clone(), cache.clone(), trees.clone(), 2),
            max_window,
            archive,
            index_id: Mutex::new(index_id),
            guards: Mutex::new(HashMap::new()),
            live_trees: Mutex::new(HashMap::new()),
            shared: std::sync::atomic::AtomicBool::new(false),
            single,
            inodes: RwLock::new(HashMap::new()),
            trees,
            cache,
            catalog: Mutex::new(Catalog {
                snaps: Vec::new(),
                loaded: None,
            }),
            files: Handles::new(),
            dirs: Handles::new(),
            uid: opts.uid,
            gid: opts.gid,
            started: crate::sys::now(),
        };
        let root_target = match &vfs.single {
            Some(s) => Target::Snap {
                snap: s.clone(),
                node: NodeRef::Own(Arc::new(crate::tree::root_node(s.row.root, s.row.time))),
                path: Vec::new(),
            },
            None => Target::Top,
        };
        vfs.inodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                ROOT_INO,
                Arc::new(Inode {
                    target: root_target,
                    lookups: AtomicU64::new(1),
                }),
            );
        Ok(vfs)
    }

    pub fn cache(&self) -> &ChunkCache {
        &self.cache
    }

    /// The archive as it is now (see [`Vfs::check_index`]).
    fn archive(&self) -> Arc<Archive> {
        self.archive
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `strata repair` writes a new index.sqlite and renames it over the old one, which
    /// this process still has open (and would keep reading forever, never seeing the
    /// snapshots the repair found): when the file at the index path is another one,
    /// open the archive again. Returns a line for the mount's log when it did.
    pub fn check_index(&self) -> Option<String> {
        let current = self.archive();
        let now = file_id(current.index_path());
        let mut known = self.index_id.lock().unwrap_or_else(|e| e.into_inner());
        if now == *known || now == (0, 0) {
            return None;
        }
        let msg = match current.reopen() {
            Ok(fresh) => {
                *self.archive.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
                self.guards
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                self.catalog
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .loaded = None;
                format!(
                    "strata mount: {} was replaced (by `strata repair`?): reopened it",
                    current.index_path().display()
                )
            }
            Err(e) => format!(
                "strata mount: {} was replaced but could not be opened again ({e}): \
                 still serving the old index; unmount and mount again",
                current.index_path().display()
            ),
        };
        *known = now;
        Some(msg)
    }

    /// True when the archive is in a bucket.
    pub fn is_bucket(&self) -> bool {
        self.archive().is_bucket()
    }

    /// A bucket archive: learns what other hosts wrote since (their snapshots, forgets and
    /// prunes), into the index the mount reads. Nothing for a directory archive, whose
    /// index every writer updates. Returns a line for the mount's log when a pack could
    /// not be read.
    pub fn sync_bucket(&self) -> Option<String> {
        let archive = self.archive();
        if !archive.is_bucket() {
            return None;
        }
        match archive.sync() {
            Ok(r) if r.skipped.is_empty() => None,
            Ok(r) => Some(format!(
                "strata mount: reading the bucket, left out {} pack(s) for now: {}",
                r.skipped.len(),
                r.skipped
                    .iter()
                    .map(|(n, why)| format!("{n}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            Err(e) => Some(format!(
                "strata mount: reading the bucket failed ({e}); retrying in 30 s"
            )),
        }
    }

    /// (total bytes stored in packs, number of snapshots)
    pub fn statfs(&self) -> Result<(u64, u64), VfsError> {
        let total = self.archive().stored_bytes().unwrap_or(0);
        Ok((total, self.snapshots()?.len() as u64))
    }

    /// A decoded tree: from the cache, else the copy inodes still share (so a tree the
    /// cache evicted is never decoded and held twice), else read from the archive.
    fn tree(&self, id: &BlobId) -> Result<Arc<Vec<Node>>, VfsError> {
        if let Some(t) = self.trees.get(id) {
            return Ok(t);
        }
        let mut live = self.live_trees.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = live.get(id).and_then(std::sync::Weak::upgrade) {
            self.trees.insert(*id, t.clone());
            return Ok(t);
        }
        let nodes = Arc::new(self.archive().read_tree(id)?);
        if live.len() >= 1024 {
            live.retain(|_, w| w.strong_count() > 0);
        }
        live.insert(*id, Arc::downgrade(&nodes));
        drop(live);
        self.trees.insert(*id, nodes.clone());
        Ok(nodes)
    }
}

/// Device and inode of a file ((0, 0) if it cannot be stat'ed).
fn file_id(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| (m.dev(), m.ino()))
        .unwrap_or((0, 0))
}

/// Memory for decoded trees (an estimate of their heap use, see `TreeCache::weight`).
const TREE_CACHE: usize = 16 << 20;
