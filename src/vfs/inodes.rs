//! The inode table and what an inode stands for: stable numbers, lookup counts
//! (`remember`/`forget`), attributes, parents, link targets and xattrs.
//!
//! Invariants: an inode number is derived from what is stored (BLAKE3 of the snapshot id
//! and path, or of the snapshot id, device and inode for hard links), never 0, and 1 only
//! for the root; an entry lives while the kernel holds a lookup on it (the root always);
//! an entry points into the shared decoded tree, never at a copy of its node.

use super::namespace::SnapInfo;
use super::{Attr, Kind, ROOT_INO, Vfs, VfsError};
use crate::format::tree::{Node, NodeKind, Payload};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A node, shared with the decoded tree it is an entry of: an inode or a listing entry
/// costs a pointer and an index, not a copy of the node (its name, extents, xattrs).
#[derive(Clone, Debug)]
pub(super) enum NodeRef {
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

/// What an inode stands for.
#[derive(Clone, Debug)]
pub(super) enum Target {
    /// The mount root in archive layout.
    Top,
    ById,
    ByTag,
    TagDir(String),
    /// A symlink made up by the top level (`latest`, `by-id/ID`, ...): where it points,
    /// and the inode of the directory it is listed in.
    Link {
        to: Vec<u8>,
        parent: u64,
    },
    /// A node of a snapshot (its root is a synthetic directory node).
    Snap {
        snap: Arc<SnapInfo>,
        node: NodeRef,
        path: Vec<u8>,
    },
}

pub(super) struct Inode {
    pub(super) target: Target,
    pub(super) lookups: AtomicU64,
}

/// 64-bit inode number from a hash; never 0 or 1 (root).
pub(super) fn ino_of(parts: &[&[u8]]) -> u64 {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let b = h.finalize();
    let v = u64::from_le_bytes(b.as_bytes()[..8].try_into().expect("8 bytes"));
    v.max(2)
}

/// The inode number of the directory at `path` in a snapshot ("" is its root).
fn dir_ino(snap: &SnapInfo, path: &[u8]) -> u64 {
    if path.is_empty() {
        ino_of(&[b"snap", &snap.row.id.0])
    } else {
        ino_of(&[b"node", &snap.row.id.0, path])
    }
}

pub(super) fn by_tag_ino() -> u64 {
    ino_of(&[b"by-tag"])
}

fn blocks_of(bytes: u64) -> u64 {
    bytes.div_ceil(512)
}

impl Vfs {
    pub(super) fn inode(&self, ino: u64) -> Result<Arc<Inode>, VfsError> {
        self.inodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ino)
            .cloned()
            .ok_or(VfsError::Stale)
    }

    /// Records that the kernel now holds one more reference to `ino`.
    pub(super) fn remember(&self, ino: u64, target: Target) {
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

    /// Undoes the lookup count of an entry that readdirplus could not send.
    pub fn unremember(&self, ino: u64) {
        self.forget(ino, 1);
    }

    /// Inodes currently known (for tests and memory accounting).
    pub fn inode_count(&self) -> usize {
        self.inodes.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub(super) fn node_ino(snap: &SnapInfo, node: &Node, path: &[u8]) -> u64 {
        if path.is_empty() {
            return dir_ino(snap, path);
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

    /// The inode of the directory that lists `ino` (the root's is the root itself): what
    /// readdir gives as "..".
    pub fn parent_of(&self, ino: u64) -> Result<u64, VfsError> {
        if ino == ROOT_INO {
            return Ok(ROOT_INO);
        }
        Ok(match &self.inode(ino)?.target {
            Target::Top | Target::ById | Target::ByTag => ROOT_INO,
            Target::TagDir(_) => by_tag_ino(),
            Target::Link { parent, .. } => *parent,
            Target::Snap { snap, path, .. } => match path.iter().rposition(|&b| b == b'/') {
                Some(slash) => dir_ino(snap, &path[..slash]),
                // A snapshot's root is listed at the top level.
                None if path.is_empty() => ROOT_INO,
                // An entry of a snapshot's root: with --snapshot, that root is the root.
                None if self.single.is_some() => ROOT_INO,
                None => dir_ino(snap, b""),
            },
        })
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

    pub(super) fn attr_of(&self, ino: u64, target: &Target) -> Attr {
        match target {
            Target::Top => self.synthetic_dir(ino, false),
            Target::ById | Target::ByTag | Target::TagDir(_) => self.synthetic_dir(ino, false),
            Target::Link { to, .. } => self.link_attr(ino, to),
            Target::Snap {
                snap, node, path, ..
            } => {
                let guarded = self.guard_for(snap, path).is_some();
                self.node_attr(ino, node, path.is_empty(), guarded)
            }
        }
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr, VfsError> {
        let i = self.inode(ino)?;
        Ok(self.attr_of(ino, &i.target))
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, VfsError> {
        match &self.inode(ino)?.target {
            Target::Link { to, .. } => Ok(to.clone()),
            Target::Snap { node, .. } => match &node.payload {
                Payload::Symlink(t) => Ok(t.clone()),
                _ => Err(VfsError::Invalid),
            },
            _ => Err(VfsError::Invalid),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{Archive, Config};
    use crate::format::BlobId;
    use crate::ingest::{IngestOptions, Parent, Progress, SourceSpec, ingest};

    /// An archive with one snapshot (label "l", tag "t") of a source "src" holding
    /// `sub/deeper/f`.
    fn archive() -> (tempfile::TempDir, Arc<Archive>, BlobId) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
        std::fs::write(src.join("sub/deeper/f"), b"x").unwrap();
        let root = dir.path().join("archive");
        Archive::init(&root, &Config::new(64 << 10, 3, false)).unwrap();
        let archive = Archive::open(&root).unwrap();
        let opts = IngestOptions {
            sources: vec![SourceSpec::Path {
                path: src,
                name: b"src".to_vec(),
            }],
            label: "l".into(),
            tags: vec!["t".into()],
            excludes: vec![],
            one_file_system: false,
            parent: Parent::None,
            strict: false,
            argv: vec![],
            before: None,
            after: None,
        };
        ingest(&archive, &opts, &Progress::default()).unwrap();
        let id = archive.snapshots().unwrap()[0].id;
        (dir, Arc::new(archive), id)
    }

    fn vfs(archive: Arc<Archive>, snapshot: Option<BlobId>) -> Vfs {
        let opts = super::super::Options {
            cache_size: 16 << 20,
            snapshot,
            uid: 0,
            gid: 0,
        };
        Vfs::new(archive, opts).unwrap()
    }

    /// Looks up each name in turn from the root; every step's parent must be the
    /// inode of the step before.
    fn check_parents(v: &Vfs, names: &[&[u8]]) {
        let mut dir = ROOT_INO;
        assert_eq!(v.parent_of(ROOT_INO).unwrap(), ROOT_INO);
        for name in names {
            let ino = v.lookup(dir, name).unwrap().ino;
            assert_eq!(
                v.parent_of(ino).unwrap(),
                dir,
                "parent of {}",
                String::from_utf8_lossy(name)
            );
            dir = ino;
        }
    }

    #[test]
    fn parent_of_is_the_directory_an_inode_was_looked_up_in() {
        let (_dir, archive, id) = archive();
        let v = vfs(archive.clone(), None);
        let snap_dir = v.readdir(ROOT_INO, 0, false).unwrap()[0].name.clone();
        check_parents(&v, &[&snap_dir, b"src", b"sub", b"deeper", b"f"]);
        check_parents(&v, &[b"latest"]);
        check_parents(&v, &[b"latest-l"]);
        check_parents(&v, &[b"by-id", id.hex().as_bytes()]);
        check_parents(&v, &[b"by-id", &id.hex().as_bytes()[..8]]);
        check_parents(&v, &[b"by-tag", b"t", &snap_dir]);
        assert!(matches!(v.parent_of(12345), Err(VfsError::Stale)));

        let single = vfs(archive, Some(id));
        check_parents(&single, &[b"src", b"sub", b"deeper", b"f"]);
    }
}
