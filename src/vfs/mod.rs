//! Filesystem semantics of a mounted archive, independent of FUSE: stable inode numbers,
//! attributes, lookup, readdir, readlink, xattrs and reads over snapshot trees, plus the
//! synthetic top level (one directory per snapshot, `latest`, `latest-LABEL`, `by-id/`,
//! `by-tag/`). The `fuse` module only forwards kernel requests here; tests call it
//! directly.
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

mod error;
mod prefetch;

pub use error::{ToErrno, VfsError};

use crate::archive::{Archive, ArchiveError};
use crate::content::{ChunkCache, FileContent};
use crate::format::BlobId;
use crate::format::snapshot::ParentDir;
use crate::format::tree::{Extent, Node, NodeKind, Payload};
use crate::index::SnapshotRow;
use crate::tree::TreeCache;
use prefetch::Prefetcher;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

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

/// A node, shared with the decoded tree it is an entry of: an inode or a listing entry
/// costs a pointer and an index, not a copy of the node (its name, extents, xattrs).
#[derive(Clone, Debug)]
enum NodeRef {
    Own(Arc<Node>),
    InTree(Arc<Vec<Node>>, u32),
}

impl std::ops::Deref for NodeRef {
    type Target = Node;
    fn deref(&self) -> &Node {
        match self {
            NodeRef::Own(n) => n,
            NodeRef::InTree(t, i) => &t[*i as usize],
        }
    }
}

/// Who asks: FUSE requests carry the caller's uid, gid and pid.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl Caller {
    /// Is the caller in group `gid` (its primary group, or a supplementary one as
    /// /proc/PID/status lists them; an unreadable status counts as "no")?
    fn in_group(&self, gid: u32) -> bool {
        if gid == self.gid {
            return true;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) else {
            return false;
        };
        status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
    }
}

/// What stands between a caller and a snapshot path that was a source's top.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Guard {
    /// Its parents on the source host: the caller must have been able to search them all.
    Parents(Vec<ParentDir>),
    /// Not recorded (a snapshot written before strata recorded them): the mount owner and
    /// root only.
    OwnerOnly,
}

/// Per snapshot: source name → guard (an empty map for a snapshot with nothing to guard),
/// or `None` when the record does not say (every top-level entry is then owner-only).
type Guards = Option<HashMap<Vec<u8>, Guard>>;

/// What an inode stands for.
#[derive(Clone, Debug)]
enum Target {
    /// The mount root in archive layout.
    Top,
    ById,
    ByTag,
    TagDir(String),
    /// A symlink made up by the top level (`latest`, `by-id/ID`, ...).
    Link(Vec<u8>),
    /// A node of a snapshot (its root is a synthetic directory node).
    Snap {
        snap: Arc<SnapInfo>,
        node: NodeRef,
        path: Vec<u8>,
    },
}

#[derive(Debug)]
pub struct SnapInfo {
    pub row: SnapshotRow,
    pub dir_name: String,
}

/// A directory's entries: name, inode number, target. An entry of a snapshot tree has an
/// empty name here (its name is its node's: see [`entry_name`]), so a listing holds no
/// copy of the names.
type Listing = Vec<(Vec<u8>, u64, Target)>;

fn entry_name<'a>(name: &'a [u8], target: &'a Target) -> &'a [u8] {
    match target {
        Target::Snap { node, .. } if name.is_empty() => &node.name,
        _ => name,
    }
}

struct Inode {
    target: Target,
    lookups: AtomicU64,
}

struct Catalog {
    snaps: Vec<Arc<SnapInfo>>,
    loaded: Option<Instant>,
}

pub struct OpenFile {
    content: FileContent,
    snap: Arc<SnapInfo>,
    path: Vec<u8>,
    seq: Mutex<(u64, usize)>,
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
    guards: Mutex<HashMap<BlobId, Arc<Guards>>>,
    single: Option<Arc<SnapInfo>>,
    inodes: RwLock<HashMap<u64, Arc<Inode>>>,
    trees: Arc<TreeCache>,
    cache: Arc<ChunkCache>,
    catalog: Mutex<Catalog>,
    handles: RwLock<HashMap<u64, Arc<OpenFile>>>,
    /// Open directories: their entries, listed once at opendir, so a long listing costs
    /// O(entries) in all, not O(entries) per reply batch.
    dirs: RwLock<HashMap<u64, Arc<Listing>>>,
    next_fh: AtomicU64,
    prefetch: Prefetcher,
    /// Most chunks prefetched ahead of one reader: at most a quarter of the cache, so
    /// prefetched chunks are not evicted before they are read.
    max_window: usize,
    uid: u32,
    gid: u32,
    started: (i64, u32),
}

/// 64-bit inode number from a hash; never 0 or 1 (root).
fn ino_of(parts: &[&[u8]]) -> u64 {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let b = h.finalize();
    let v = u64::from_le_bytes(b.as_bytes()[..8].try_into().expect("8 bytes"));
    v.max(2)
}

/// Directory name of a snapshot at the top level: sorts by time, reads as
/// `2026-11-21T020000Z-jira-1a2b3c4d` (no colons, so rsync and scp take it as local).
pub fn snapshot_dir_name(row: &SnapshotRow) -> String {
    let t = crate::sys::rfc3339(row.time.0, 0, false).replace(':', "");
    let label: String = row
        .label
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.+@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if label.is_empty() {
        format!("{t}-{}", row.id.short())
    } else {
        format!("{t}-{label}-{}", row.id.short())
    }
}

fn blocks_of(bytes: u64) -> u64 {
    bytes.div_ceil(512)
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
            handles: RwLock::new(HashMap::new()),
            dirs: RwLock::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            uid: opts.uid,
            gid: opts.gid,
            started: crate::ingest::now(),
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

    /// The snapshot list, reloaded from the index at most once per [`CATALOG_TTL`].
    fn snapshots(&self) -> Result<Vec<Arc<SnapInfo>>, VfsError> {
        let mut c = self.catalog.lock().unwrap_or_else(|e| e.into_inner());
        if c.loaded.is_none_or(|t| t.elapsed() >= CATALOG_TTL) {
            let rows = self.archive().snapshots()?;
            c.snaps = rows
                .into_iter()
                .map(|row| {
                    let dir_name = snapshot_dir_name(&row);
                    Arc::new(SnapInfo { row, dir_name })
                })
                .collect();
            c.loaded = Some(Instant::now());
        }
        Ok(c.snaps.clone())
    }

    fn inode(&self, ino: u64) -> Result<Arc<Inode>, VfsError> {
        self.inodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ino)
            .cloned()
            .ok_or(VfsError::Stale)
    }

    /// Records that the kernel now holds one more reference to `ino`.
    fn remember(&self, ino: u64, target: Target) {
        let mut map = self.inodes.write().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(ino).or_insert_with(|| {
            Arc::new(Inode {
                target,
                lookups: AtomicU64::new(0),
            })
        });
        e.lookups.fetch_add(1, Ordering::Relaxed);
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut map = self.inodes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = map.get(&ino) {
            let prev = i
                .lookups
                .fetch_sub(n.min(i.lookups.load(Ordering::Relaxed)), Ordering::Relaxed);
            if prev <= n {
                map.remove(&ino);
            }
        }
    }

    /// Inodes currently known (for tests and memory accounting).
    pub fn inode_count(&self) -> usize {
        self.inodes.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn synthetic_dir(&self, ino: u64, immutable: bool) -> Attr {
        let t = if immutable {
            self.started
        } else {
            self.catalog
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .snaps
                .last()
                .map(|s| s.row.time)
                .unwrap_or(self.started)
        };
        Attr {
            ino,
            kind: Kind::Dir,
            perm: 0o555,
            uid: self.uid,
            gid: self.gid,
            size: 0,
            blocks: 0,
            mtime: t,
            ctime: t,
            nlink: 2,
            rdev: 0,
            immutable,
            guarded: false,
        }
    }

    fn link_attr(&self, ino: u64, target: &[u8]) -> Attr {
        Attr {
            ino,
            kind: Kind::Symlink,
            perm: 0o777,
            uid: self.uid,
            gid: self.gid,
            size: target.len() as u64,
            blocks: 0,
            mtime: self.started,
            ctime: self.started,
            nlink: 1,
            rdev: 0,
            immutable: false,
            guarded: false,
        }
    }

    fn node_ino(snap: &SnapInfo, node: &Node, path: &[u8]) -> u64 {
        if path.is_empty() {
            return ino_of(&[b"snap", &snap.row.id.0]);
        }
        if node.kind != NodeKind::Dir && node.nlink > 1 {
            return ino_of(&[
                b"link",
                &snap.row.id.0,
                &node.dev.to_le_bytes(),
                &node.ino.to_le_bytes(),
            ]);
        }
        ino_of(&[b"node", &snap.row.id.0, path])
    }

    fn node_attr(&self, ino: u64, node: &Node, is_snapshot_root: bool, guarded: bool) -> Attr {
        let (perm, uid, gid) = if is_snapshot_root {
            (0o555, self.uid, self.gid)
        } else {
            (node.mode as u16, node.uid, node.gid)
        };
        Attr {
            ino,
            kind: node.kind.into(),
            perm,
            uid,
            gid,
            size: node.size,
            blocks: match node.kind {
                NodeKind::File => blocks_of(node.allocated()),
                _ => 0,
            },
            mtime: node.mtime,
            ctime: node.ctime,
            nlink: node.nlink.clamp(1, u32::MAX as u64) as u32,
            rdev: node.rdev as u32,
            immutable: true,
            guarded,
        }
    }

    fn attr_of(&self, ino: u64, target: &Target) -> Attr {
        match target {
            Target::Top => self.synthetic_dir(ino, false),
            Target::ById | Target::ByTag | Target::TagDir(_) => self.synthetic_dir(ino, false),
            Target::Link(t) => self.link_attr(ino, t),
            Target::Snap {
                snap, node, path, ..
            } => {
                let guarded = self.guard_for(snap, path).is_some();
                self.node_attr(ino, node, path.is_empty(), guarded)
            }
        }
    }

    /// The guards of a snapshot's sources, read from its record once. A record that
    /// cannot be read guards like one that does not say (owner only).
    fn guards_of(&self, snap: &SnapInfo) -> Arc<Guards> {
        if let Some(g) = self
            .guards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&snap.row.id)
        {
            return g.clone();
        }
        let g = Arc::new(self.archive().load_snapshot(&snap.row.id).ok().map(|rec| {
            rec.sources
                .iter()
                .filter_map(|s| {
                    let g = match &s.parents {
                        None => Guard::OwnerOnly,
                        // Nothing to guard when anyone could search every parent.
                        Some(p) if p.iter().all(|d| d.mode & 0o001 != 0) => return None,
                        Some(p) => Guard::Parents(p.clone()),
                    };
                    Some((s.name.as_bytes().to_vec(), g))
                })
                .collect::<HashMap<_, _>>()
        }));
        self.guards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(snap.row.id, g.clone());
        g
    }

    /// Other users may use the mount (`--allow-other`): only then do sources need
    /// guarding (otherwise the kernel lets only the mount owner in).
    pub fn set_shared(&self, shared: bool) {
        self.shared.store(shared, Ordering::Relaxed);
    }

    /// What guards snapshot path `path` (a source's top), if anything.
    fn guard_for(&self, snap: &SnapInfo, path: &[u8]) -> Option<Guard> {
        if path.is_empty() || !self.shared.load(Ordering::Relaxed) {
            return None;
        }
        match &*self.guards_of(snap) {
            None if !path.contains(&b'/') => Some(Guard::OwnerOnly),
            None => None,
            Some(m) => m.get(path).cloned(),
        }
    }

    /// Could `caller` have reached a source behind `guard` on its host? The mount owner
    /// (who can read the whole archive anyway) and root always can.
    fn allowed(&self, caller: &Caller, guard: &Guard) -> bool {
        if caller.uid == 0 || caller.uid == self.uid {
            return true;
        }
        match guard {
            Guard::OwnerOnly => false,
            Guard::Parents(dirs) => {
                let mut groups: HashMap<u32, bool> = HashMap::new();
                dirs.iter().all(|d| {
                    d.searchable_by(caller.uid, &mut |g| {
                        *groups.entry(g).or_insert_with(|| caller.in_group(g))
                    })
                })
            }
        }
    }

    /// How many snapshots do not record their sources' parents (with `--allow-other`,
    /// their sources are served to the mount owner and root only).
    pub fn unguarded_snapshots(&self) -> Result<usize, VfsError> {
        let snaps = match &self.single {
            Some(s) => vec![s.clone()],
            None => self.snapshots()?,
        };
        Ok(snaps
            .iter()
            .filter(|s| match &*self.guards_of(s) {
                None => true,
                Some(m) => m.values().any(|g| *g == Guard::OwnerOnly),
            })
            .count())
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr, VfsError> {
        let i = self.inode(ino)?;
        Ok(self.attr_of(ino, &i.target))
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

    /// Every entry of a directory inode (without "." and ".."), with its target.
    fn children(&self, target: &Target) -> Result<Vec<(Vec<u8>, u64, Target)>, VfsError> {
        let mut out = Vec::new();
        match target {
            Target::Top => {
                let snaps = self.snapshots()?;
                for s in &snaps {
                    out.push(self.snap_entry(s, s.dir_name.clone().into_bytes()));
                }
                if let Some(newest) = snaps.last() {
                    out.push(self.link_entry(
                        b"latest",
                        b"top",
                        newest.dir_name.as_bytes().to_vec(),
                    ));
                }
                let mut labels: Vec<&str> = snaps
                    .iter()
                    .map(|s| s.row.label.as_str())
                    .filter(|l| !l.is_empty())
                    .collect();
                labels.sort_unstable();
                labels.dedup();
                for l in labels {
                    if let Some(s) = snaps.iter().rev().find(|s| s.row.label == l) {
                        let name = format!("latest-{}", sanitize(l));
                        out.push(self.link_entry(
                            name.as_bytes(),
                            b"top",
                            s.dir_name.as_bytes().to_vec(),
                        ));
                    }
                }
                out.push((b"by-id".to_vec(), ino_of(&[b"by-id"]), Target::ById));
                out.push((b"by-tag".to_vec(), ino_of(&[b"by-tag"]), Target::ByTag));
            }
            Target::ById => {
                for s in self.snapshots()? {
                    let target = format!("../{}", s.dir_name).into_bytes();
                    out.push(self.link_entry(s.row.id.hex().as_bytes(), b"by-id", target));
                }
            }
            Target::ByTag => {
                let mut tags: Vec<String> = self
                    .snapshots()?
                    .iter()
                    .flat_map(|s| s.row.tags.clone())
                    .collect();
                tags.sort_unstable();
                tags.dedup();
                for t in tags {
                    let name = sanitize(&t);
                    out.push((
                        name.clone().into_bytes(),
                        ino_of(&[b"tag", t.as_bytes()]),
                        Target::TagDir(t),
                    ));
                }
            }
            Target::TagDir(tag) => {
                for s in self
                    .snapshots()?
                    .iter()
                    .filter(|s| s.row.tags.contains(tag))
                {
                    let target = format!("../../{}", s.dir_name).into_bytes();
                    let scope = [b"tag/".as_slice(), tag.as_bytes()].concat();
                    out.push(self.link_entry(s.dir_name.as_bytes(), &scope, target));
                }
            }
            Target::Link(_) => return Err(VfsError::NotDir),
            Target::Snap {
                snap, node, path, ..
            } => {
                let Some(sub) = node.subtree() else {
                    return Err(VfsError::NotDir);
                };
                let tree = self.tree(&sub)?;
                // Whoever lists a directory (find, rsync, ls -R) usually descends into
                // its subdirectories next: load their trees on the prefetch threads.
                let subdirs: Vec<BlobId> =
                    tree.iter().filter_map(|n| n.subtree()).take(256).collect();
                self.prefetch.want_trees(&subdirs);
                for i in 0..tree.len() {
                    let (ino, target) = Self::child_target(snap, path, &tree, i);
                    out.push((Vec::new(), ino, target));
                }
            }
        }
        Ok(out)
    }

    /// The inode number and target of entry `i` of `tree` (the directory at `path`).
    fn child_target(
        snap: &Arc<SnapInfo>,
        path: &[u8],
        tree: &Arc<Vec<Node>>,
        i: usize,
    ) -> (u64, Target) {
        let child = &tree[i];
        let cpath = child_path(path, &child.name);
        let ino = Self::node_ino(snap, child, &cpath);
        (
            ino,
            Target::Snap {
                snap: snap.clone(),
                node: NodeRef::InTree(tree.clone(), i as u32),
                path: cpath,
            },
        )
    }

    fn snap_entry(&self, s: &Arc<SnapInfo>, name: Vec<u8>) -> (Vec<u8>, u64, Target) {
        let node = NodeRef::Own(Arc::new(crate::tree::root_node(s.row.root, s.row.time)));
        let ino = Self::node_ino(s, &node, b"");
        (
            name,
            ino,
            Target::Snap {
                snap: s.clone(),
                node,
                path: Vec::new(),
            },
        )
    }

    fn link_entry(&self, name: &[u8], scope: &[u8], target: Vec<u8>) -> (Vec<u8>, u64, Target) {
        // A made-up link's number depends on where it points, so `latest` gets a new
        // inode (and the kernel a fresh target) when a newer snapshot arrives.
        let ino = ino_of(&[b"link", scope, name, &target]);
        (name.to_vec(), ino, Target::Link(target))
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr, VfsError> {
        self.lookup_as(parent, name, None)
    }

    /// Lookup on behalf of `caller`: the top of a source whose parents on its host kept
    /// the caller out is `Denied` (None: no check, as for the mount owner).
    pub fn lookup_as(
        &self,
        parent: u64,
        name: &[u8],
        caller: Option<&Caller>,
    ) -> Result<Attr, VfsError> {
        let p = self.inode(parent)?;
        let (ino, target) = match &p.target {
            Target::Snap {
                snap, node, path, ..
            } => {
                // A binary search in one tree, not a listing of the directory.
                let Some(sub) = node.subtree() else {
                    return Err(VfsError::NotDir);
                };
                let tree = self.tree(&sub)?;
                let i = tree
                    .binary_search_by(|n| n.name.as_slice().cmp(name))
                    .map_err(|_| VfsError::NotFound)?;
                Self::child_target(snap, path, &tree, i)
            }
            Target::ById => {
                // Also accept a unique id prefix (e.g. the short id from `strata snapshots`).
                let s = std::str::from_utf8(name).map_err(|_| VfsError::NotFound)?;
                let snaps = self.snapshots()?;
                let m: Vec<_> = snaps
                    .iter()
                    .filter(|x| s.len() >= 4 && x.row.id.hex().starts_with(s))
                    .collect();
                if m.len() != 1 {
                    return Err(VfsError::NotFound);
                }
                let target = format!("../{}", m[0].dir_name).into_bytes();
                let (_, ino, t) = self.link_entry(name, b"by-id", target);
                (ino, t)
            }
            other => {
                let kids = self.children(other)?;
                let (_, ino, t) = kids
                    .into_iter()
                    .find(|(n, _, t)| entry_name(n, t) == name)
                    .ok_or(VfsError::NotFound)?;
                (ino, t)
            }
        };
        if let (Some(c), Target::Snap { snap, path, .. }) = (caller, &target)
            && let Some(g) = self.guard_for(snap, path)
            && !self.allowed(c, &g)
        {
            return Err(VfsError::Denied);
        }
        let attr = self.attr_of(ino, &target);
        self.remember(ino, target);
        Ok(attr)
    }

    /// Entries from position `offset` on (0 is the first entry after "." and ".."),
    /// with attributes. With `plus`, each returned entry counts as a lookup.
    pub fn readdir(&self, ino: u64, offset: usize, plus: bool) -> Result<Vec<DirEntry>, VfsError> {
        let i = self.inode(ino)?;
        let kids = self.children(&i.target)?;
        let mut out = Vec::new();
        for (name, cino, target) in kids.into_iter().skip(offset) {
            let attr = self.attr_of(cino, &target);
            let name = entry_name(&name, &target).to_vec();
            if plus {
                self.remember(cino, target);
            }
            out.push(DirEntry { name, attr });
        }
        Ok(out)
    }

    /// Opens a directory for listing: its entries are computed once, here.
    pub fn opendir(&self, ino: u64) -> Result<u64, VfsError> {
        let i = self.inode(ino)?;
        let kids = Arc::new(self.children(&i.target)?);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.dirs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, kids);
        Ok(fh)
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh);
    }

    /// Up to `limit` entries of an open directory from position `offset`; with `plus`
    /// each returned entry counts as a lookup.
    pub fn readdir_handle(
        &self,
        fh: u64,
        offset: usize,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<DirEntry>, VfsError> {
        let kids = self
            .dirs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh)
            .cloned()
            .ok_or(VfsError::BadHandle)?;
        Ok(kids
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(name, cino, target)| {
                let attr = self.attr_of(*cino, target);
                if plus {
                    self.remember(*cino, target.clone());
                }
                DirEntry {
                    name: entry_name(name, target).to_vec(),
                    attr,
                }
            })
            .collect())
    }

    /// Undoes the lookup count of an entry that readdirplus could not send.
    pub fn unremember(&self, ino: u64) {
        self.forget(ino, 1);
    }

    pub fn parent_of(&self, _ino: u64) -> u64 {
        // The kernel tracks ".." itself for lookups; readdir's ".." entry only needs a
        // plausible number, and the root's parent is the root.
        ROOT_INO
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, VfsError> {
        match &self.inode(ino)?.target {
            Target::Link(t) => Ok(t.clone()),
            Target::Snap { node, .. } => match &node.payload {
                Payload::Symlink(t) => Ok(t.clone()),
                _ => Err(VfsError::Invalid),
            },
            _ => Err(VfsError::Invalid),
        }
    }

    pub fn open(&self, ino: u64) -> Result<u64, VfsError> {
        let i = self.inode(ino)?;
        let Target::Snap { snap, node, path } = &i.target else {
            return Err(VfsError::IsDir);
        };
        match node.kind {
            NodeKind::File => {}
            NodeKind::Dir => return Err(VfsError::IsDir),
            _ => return Err(VfsError::Invalid),
        }
        // A tree copy (rsync, cp -r) opens the files of a directory one after another:
        // start loading the first chunks of the next few siblings now.
        if let NodeRef::InTree(tree, i) = node {
            let next: Vec<BlobId> = tree[*i as usize + 1..]
                .iter()
                .filter_map(|n| match n.extents().first() {
                    Some(crate::format::tree::Extent::Data { id, .. }) => Some(*id),
                    _ => None,
                })
                .take(8)
                .collect();
            self.prefetch.want(&next);
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let f = Arc::new(OpenFile {
            content: FileContent::new(node),
            snap: snap.clone(),
            path: path.clone(),
            seq: Mutex::new((0, 0)),
        });
        self.handles
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, f);
        Ok(fh)
    }

    pub fn release(&self, fh: u64) {
        self.handles
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh);
    }

    /// Reads up to `size` bytes at `offset`. A sequential reader gets the chunks after
    /// this read prefetched in a window that doubles while reads stay sequential.
    pub fn read(&self, fh: u64, offset: u64, size: usize) -> Result<Vec<u8>, VfsError> {
        Ok(self.read_buf(fh, offset, size)?.as_slice().to_vec())
    }

    /// Like [`Vfs::read`], but a read that falls inside one chunk is answered with a
    /// slice of the cached chunk (no zeroing, no copy before the kernel's own).
    pub fn read_buf(&self, fh: u64, offset: u64, size: usize) -> Result<ReadBuf, VfsError> {
        let f = self
            .handles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh)
            .cloned()
            .ok_or(VfsError::BadHandle)?;
        let end = offset.saturating_add(size as u64).min(f.content.size());
        if offset >= end {
            return Ok(ReadBuf::Owned(Vec::new()));
        }
        let buf = match f.content.within_one_chunk(offset, end) {
            Some((id, within)) => {
                let data = crate::content::chunk(&self.archive(), Some(&self.cache), &id, false)
                    .map_err(|e| corrupt(&f.snap, &f.path, e))?;
                let stop = within + (end - offset) as usize;
                if stop > data.len() {
                    return Err(corrupt(
                        &f.snap,
                        &f.path,
                        ArchiveError::Invalid(format!(
                            "chunk {} is shorter than the file says",
                            id.short()
                        )),
                    ));
                }
                ReadBuf::Slice(data, within, stop)
            }
            None => {
                let mut buf = vec![0u8; (end - offset) as usize];
                let n = f
                    .content
                    .read_at(&self.archive(), &self.cache, offset, &mut buf)
                    .map_err(|e| corrupt(&f.snap, &f.path, e))?;
                buf.truncate(n);
                ReadBuf::Owned(buf)
            }
        };
        let window = {
            let mut s = f.seq.lock().unwrap_or_else(|e| e.into_inner());
            let w = if s.0 == offset && offset > 0 {
                (s.1 * 2).clamp(2, self.max_window)
            } else {
                0
            };
            *s = (end, w);
            w
        };
        if window > 0
            && let Some(i) = f.content.extent_at(end.saturating_sub(1))
        {
            let ids: Vec<BlobId> = f.content.extents()[i + 1..]
                .iter()
                .take(window)
                .filter_map(|e| match e {
                    crate::format::tree::Extent::Data { id, .. } => Some(*id),
                    _ => None,
                })
                .collect();
            self.prefetch.want(&ids);
        }
        Ok(buf)
    }

    /// `SEEK_DATA` (`data`) or `SEEK_HOLE`: the first offset at or after `offset` that is
    /// stored data, or a hole (the end of the file counts as one), from the file's extent
    /// map; nothing is read. Past the end (or no data after `offset`): `NoMoreData`.
    pub fn seek(&self, fh: u64, offset: u64, data: bool) -> Result<u64, VfsError> {
        let f = self
            .handles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh)
            .cloned()
            .ok_or(VfsError::BadHandle)?;
        let size = f.content.size();
        if offset >= size {
            return Err(VfsError::NoMoreData);
        }
        let mut start = 0u64;
        for e in f.content.extents() {
            let end = start + e.len();
            if end > offset && matches!(e, Extent::Data { .. }) == data {
                return Ok(start.max(offset));
            }
            start = end;
        }
        if data {
            Err(VfsError::NoMoreData)
        } else {
            Ok(size)
        }
    }

    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>, VfsError> {
        let mut out = Vec::new();
        if let Target::Snap { node, .. } = &self.inode(ino)?.target {
            for (k, _) in &node.xattrs {
                out.extend_from_slice(k);
                out.push(0);
            }
        }
        Ok(out)
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>, VfsError> {
        if let Target::Snap { node, .. } = &self.inode(ino)?.target
            && let Some((_, v)) = node.xattrs.iter().find(|(k, _)| k == name)
        {
            return Ok(v.clone());
        }
        Err(VfsError::NoXattr)
    }

    /// (total bytes stored in packs, number of snapshots)
    pub fn statfs(&self) -> Result<(u64, u64), VfsError> {
        let total = self.archive().stored_bytes().unwrap_or(0);
        Ok((total, self.snapshots()?.len() as u64))
    }

    /// For the adapter's one-line error log: which snapshot and path an inode is.
    pub fn describe(&self, ino: u64) -> String {
        match self.inode(ino).map(|i| i.target.clone()) {
            Ok(Target::Snap { snap, path, .. }) => {
                format!(
                    "snapshot {} path /{}",
                    snap.row.id.short(),
                    String::from_utf8_lossy(&path)
                )
            }
            Ok(_) => "top level".into(),
            Err(_) => format!("inode {ino}"),
        }
    }
}

/// The bytes of one read: owned, or a slice of a cached chunk.
pub enum ReadBuf {
    Owned(Vec<u8>),
    Slice(Arc<Vec<u8>>, usize, usize),
}

impl ReadBuf {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            ReadBuf::Owned(v) => v,
            ReadBuf::Slice(d, a, b) => &d[*a..*b],
        }
    }
}

fn corrupt(snap: &SnapInfo, path: &[u8], e: ArchiveError) -> VfsError {
    VfsError::Corrupt {
        what: format!(
            "snapshot {} path /{}",
            snap.row.id.short(),
            String::from_utf8_lossy(path)
        ),
        source: Box::new(e),
    }
}

/// Device and inode of a file ((0, 0) if it cannot be stat'ed).
fn file_id(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| (m.dev(), m.ino()))
        .unwrap_or((0, 0))
}

fn child_path(parent: &[u8], name: &[u8]) -> Vec<u8> {
    // Exactly sized: one is kept per inode the kernel holds.
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn sanitize(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    match t.as_str() {
        "" | "." | ".." => format!("_{t}"),
        _ => t,
    }
}

/// Memory for decoded trees (an estimate of their heap use, see `TreeCache::weight`).
const TREE_CACHE: usize = 16 << 20;
