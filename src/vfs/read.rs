//! Open files and their reads: open (with prefetch of the next files of the directory),
//! reads at any offset, `SEEK_DATA`/`SEEK_HOLE`, and the prefetch window of a sequential
//! reader. The bytes, the data/hole map and which blobs come next are the file's
//! `content::Content`'s to answer; the threads that load ahead are in `prefetch.rs`.
//!
//! Invariants: a read of a damaged chunk is `Corrupt` naming the snapshot and path; the
//! prefetch window of a handle doubles while its reads stay sequential, up to
//! `max_window` chunks, and drops to nothing on a jump.

use super::inodes::{NodeRef, Target};
use super::namespace::SnapInfo;
use super::{ReadBuf, Vfs, VfsError};
use crate::archive::ArchiveError;
use crate::content::Content;
use crate::format::BlobId;
use crate::format::tree::NodeKind;
use std::sync::{Arc, Mutex};

pub(super) struct OpenFile {
    content: Content,
    snap: Arc<SnapInfo>,
    path: Vec<u8>,
    /// Where the last read ended, and the prefetch window it left.
    seq: Mutex<(u64, usize)>,
}

impl Vfs {
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
                .filter_map(Content::first_blob)
                .take(8)
                .collect();
            self.prefetch.want(&next);
        }
        Ok(self.files.insert(OpenFile {
            content: Content::of(node),
            snap: snap.clone(),
            path: path.clone(),
            seq: Mutex::new((0, 0)),
        }))
    }

    pub fn release(&self, fh: u64) {
        self.files.remove(fh);
    }

    /// Reads up to `size` bytes at `offset`. A sequential reader gets the chunks after
    /// this read prefetched in a window that doubles while reads stay sequential.
    pub fn read(&self, fh: u64, offset: u64, size: usize) -> Result<Vec<u8>, VfsError> {
        Ok(self.read_buf(fh, offset, size)?.as_slice().to_vec())
    }

    /// Like [`Vfs::read`], but a read that falls inside one chunk is answered with a
    /// slice of the cached chunk (no zeroing, no copy before the kernel's own).
    pub fn read_buf(&self, fh: u64, offset: u64, size: usize) -> Result<ReadBuf, VfsError> {
        let f = self.files.get(fh)?;
        let end = offset.saturating_add(size as u64).min(f.content.size());
        if offset >= end {
            return Ok(ReadBuf::Owned(Vec::new()));
        }
        let buf = f
            .content
            .read(&self.archive(), &self.cache, offset, size)
            .map_err(|e| corrupt(&f.snap, &f.path, e))?;
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
        if window > 0 {
            self.prefetch.want(&f.content.next_blobs(end, window));
        }
        Ok(buf)
    }

    /// `SEEK_DATA` (`data`) or `SEEK_HOLE`: the first offset at or after `offset` that is
    /// stored data, or a hole (the end of the file counts as one), from the file's extent
    /// map; nothing is read. Past the end (or no data after `offset`): `NoMoreData`.
    pub fn seek(&self, fh: u64, offset: u64, data: bool) -> Result<u64, VfsError> {
        self.files
            .get(fh)?
            .content
            .seek(offset, data)
            .ok_or(VfsError::NoMoreData)
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
