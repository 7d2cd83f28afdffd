//! The names a mount shows: the synthetic top level (one directory per snapshot,
//! `latest`, `latest-LABEL`, `by-id/`, `by-tag/TAG/`), the snapshot trees under it,
//! lookup and directory listings (by inode, or through an open directory handle).
//!
//! Invariants: the snapshot list is re-read from the index at most once per
//! [`CATALOG_TTL`](super::CATALOG_TTL); a lookup inside a snapshot is one binary search
//! in one tree (no listing); a listing holds no copy of the names of a snapshot tree;
//! a made-up link's inode number changes when its target does.

use super::inodes::{NodeRef, Target, by_tag_ino, ino_of};
use super::{Attr, CATALOG_TTL, Caller, DirEntry, Vfs, VfsError};
use crate::archive::SnapshotRow;
use crate::format::BlobId;
use crate::format::tree::Node;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug)]
pub struct SnapInfo {
    pub row: SnapshotRow,
    pub dir_name: String,
}

pub(super) struct Catalog {
    pub(super) snaps: Vec<Arc<SnapInfo>>,
    pub(super) loaded: Option<Instant>,
}

/// A directory's entries: name, inode number, target. An entry of a snapshot tree has an
/// empty name here (its name is its node's: see [`entry_name`]), so a listing holds no
/// copy of the names.
pub(super) type Listing = Vec<(Vec<u8>, u64, Target)>;

fn entry_name<'a>(name: &'a [u8], target: &'a Target) -> &'a [u8] {
    match target {
        Target::Snap { node, .. } if name.is_empty() => &node.name,
        _ => name,
    }
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

impl Vfs {
    /// The snapshot list, reloaded from the index at most once per [`CATALOG_TTL`].
    pub(super) fn snapshots(&self) -> Result<Vec<Arc<SnapInfo>>, VfsError> {
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

    /// Every entry of a directory inode (without "." and ".."), with its target.
    fn children(&self, ino: u64, target: &Target) -> Result<Listing, VfsError> {
        match target {
            Target::Top => self.top_entries(ino),
            Target::ById => Ok(self
                .snapshots()?
                .iter()
                .map(|s| {
                    let target = format!("../{}", s.dir_name).into_bytes();
                    self.link_entry(s.row.id.hex().as_bytes(), b"by-id", target, ino)
                })
                .collect()),
            Target::ByTag => {
                let mut tags: Vec<String> = self
                    .snapshots()?
                    .iter()
                    .flat_map(|s| s.row.tags.clone())
                    .collect();
                tags.sort_unstable();
                tags.dedup();
                Ok(tags
                    .into_iter()
                    .map(|t| {
                        let name = sanitize(&t).into_bytes();
                        (name, ino_of(&[b"tag", t.as_bytes()]), Target::TagDir(t))
                    })
                    .collect())
            }
            Target::TagDir(tag) => Ok(self
                .snapshots()?
                .iter()
                .filter(|s| s.row.tags.contains(tag))
                .map(|s| {
                    let target = format!("../../{}", s.dir_name).into_bytes();
                    let scope = [b"tag/".as_slice(), tag.as_bytes()].concat();
                    self.link_entry(s.dir_name.as_bytes(), &scope, target, ino)
                })
                .collect()),
            Target::Link { .. } => Err(VfsError::NotDir),
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
                Ok((0..tree.len())
                    .map(|i| {
                        let (ino, target) = Self::child_target(snap, path, &tree, i);
                        (Vec::new(), ino, target)
                    })
                    .collect())
            }
        }
    }

    /// The top level: a directory per snapshot, `latest`, `latest-LABEL`, `by-id`,
    /// `by-tag`.
    fn top_entries(&self, ino: u64) -> Result<Listing, VfsError> {
        let mut out = Vec::new();
        let snaps = self.snapshots()?;
        for s in &snaps {
            out.push(self.snap_entry(s, s.dir_name.clone().into_bytes()));
        }
        if let Some(newest) = snaps.last() {
            let target = newest.dir_name.as_bytes().to_vec();
            out.push(self.link_entry(b"latest", b"top", target, ino));
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
                let target = s.dir_name.as_bytes().to_vec();
                out.push(self.link_entry(name.as_bytes(), b"top", target, ino));
            }
        }
        out.push((b"by-id".to_vec(), ino_of(&[b"by-id"]), Target::ById));
        out.push((b"by-tag".to_vec(), by_tag_ino(), Target::ByTag));
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

    /// A made-up link `name` in directory `parent` pointing at `target`.
    fn link_entry(
        &self,
        name: &[u8],
        scope: &[u8],
        target: Vec<u8>,
        parent: u64,
    ) -> (Vec<u8>, u64, Target) {
        // A made-up link's number depends on where it points, so `latest` gets a new
        // inode (and the kernel a fresh target) when a newer snapshot arrives.
        let ino = ino_of(&[b"link", scope, name, &target]);
        (name.to_vec(), ino, Target::Link { to: target, parent })
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
            Target::ById => self.lookup_by_id(parent, name)?,
            other => {
                let kids = self.children(parent, other)?;
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

    /// `by-id/NAME`: a full id, or a unique id prefix (e.g. the short id from
    /// `strata snapshots`).
    fn lookup_by_id(&self, by_id: u64, name: &[u8]) -> Result<(u64, Target), VfsError> {
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
        let (_, ino, t) = self.link_entry(name, b"by-id", target, by_id);
        Ok((ino, t))
    }

    /// Entries from position `offset` on (0 is the first entry after "." and ".."),
    /// with attributes. With `plus`, each returned entry counts as a lookup.
    pub fn readdir(&self, ino: u64, offset: usize, plus: bool) -> Result<Vec<DirEntry>, VfsError> {
        let i = self.inode(ino)?;
        let kids = self.children(ino, &i.target)?;
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
        let kids = self.children(ino, &i.target)?;
        Ok(self.dirs.insert(kids))
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.remove(fh);
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
        let kids = self.dirs.get(fh)?;
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
}
