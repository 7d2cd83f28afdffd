//! The read path shared by cat, restore and the mount: a file's bytes at any offset from
//! its extent list (binary search over cumulative offsets), verified chunks from the
//! archive, a bounded shared cache of decompressed chunks, and an in-order streaming
//! reader that decompresses ahead on a second thread.

use crate::archive::{Archive, ArchiveError};
use crate::format::BlobId;
use crate::format::tree::{Extent, Node};
use std::sync::Arc;
use std::sync::mpsc::sync_channel;

/// A bounded cache of decompressed chunks, shared between threads. Eviction is least
/// recently used; memory stays within `capacity` bytes.
pub struct ChunkCache {
    lru: crate::sys::Lru<BlobId, Arc<Vec<u8>>>,
}

impl ChunkCache {
    pub fn new(capacity: usize) -> ChunkCache {
        ChunkCache {
            lru: crate::sys::Lru::new(capacity),
        }
    }

    pub fn get(&self, id: &BlobId) -> Option<Arc<Vec<u8>>> {
        self.lru.get(id)
    }

    pub fn insert(&self, id: BlobId, data: Arc<Vec<u8>>) {
        let w = data.len();
        self.lru.insert(id, data, w);
    }

    pub fn bytes(&self) -> usize {
        self.lru.weight()
    }
}

/// A chunk's plain bytes, through the cache. `verify` also checks BLAKE3 (crc32 is
/// always checked).
pub fn chunk(
    archive: &Archive,
    cache: Option<&ChunkCache>,
    id: &BlobId,
    verify: bool,
) -> Result<Arc<Vec<u8>>, ArchiveError> {
    if let Some(c) = cache.and_then(|c| c.get(id)) {
        return Ok(c);
    }
    let data = Arc::new(archive.read_verified(id, verify)?);
    if let Some(c) = cache {
        c.insert(*id, data.clone());
    }
    Ok(data)
}

/// A file's extents with their start offsets, for random access.
pub struct FileContent {
    extents: Vec<Extent>,
    starts: Vec<u64>,
    size: u64,
}

impl FileContent {
    pub fn new(node: &Node) -> FileContent {
        let extents = node.extents().to_vec();
        let mut starts = Vec::with_capacity(extents.len());
        let mut pos = 0u64;
        for e in &extents {
            starts.push(pos);
            pos += e.len();
        }
        FileContent {
            extents,
            starts,
            size: pos,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn extents(&self) -> &[Extent] {
        &self.extents
    }

    /// Index of the extent holding `offset` (binary search over start offsets).
    pub fn extent_at(&self, offset: u64) -> Option<usize> {
        if offset >= self.size {
            return None;
        }
        Some(self.starts.partition_point(|&s| s <= offset) - 1)
    }

    /// When `[offset, end)` lies inside one stored chunk: that chunk's id and the
    /// offset within it.
    pub fn within_one_chunk(&self, offset: u64, end: u64) -> Option<(BlobId, usize)> {
        let i = self.extent_at(offset)?;
        match self.extents[i] {
            Extent::Data { id, len } if end <= self.starts[i] + len => {
                Some((id, (offset - self.starts[i]) as usize))
            }
            _ => None,
        }
    }

    /// Fills `buf` from `offset`; returns the bytes read (short only at end of file).
    pub fn read_at(
        &self,
        archive: &Archive,
        cache: &ChunkCache,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, ArchiveError> {
        let mut done = 0usize;
        let Some(mut i) = self.extent_at(offset) else {
            return Ok(0);
        };
        while done < buf.len() && i < self.extents.len() {
            let pos = offset + done as u64;
            let within = (pos - self.starts[i]) as usize;
            let e = &self.extents[i];
            let n = ((e.len() as usize) - within).min(buf.len() - done);
            match e {
                Extent::Hole { .. } => buf[done..done + n].fill(0),
                Extent::Data { id, .. } => {
                    let data = chunk(archive, Some(cache), id, false)?;
                    if data.len() as u64 != e.len() {
                        return Err(ArchiveError::Invalid(format!(
                            "chunk {} holds {} bytes, the file expects {}",
                            id.short(),
                            data.len(),
                            e.len()
                        )));
                    }
                    buf[done..done + n].copy_from_slice(&data[within..within + n]);
                }
            }
            done += n;
            i += 1;
        }
        Ok(done)
    }
}

/// One piece of a file in order: bytes, or a hole of some length.
pub enum Piece {
    Data(Arc<Vec<u8>>),
    Hole(u64),
}

/// Calls `f(offset, piece)` for each extent in order, reading and decompressing (and,
/// with `verify`, hashing) on a second thread so that reading overlaps writing. Stops at
/// the first error from either side.
pub fn for_each_piece<E>(
    archive: &Archive,
    node: &Node,
    verify: bool,
    mut f: impl FnMut(u64, Piece) -> Result<(), E>,
) -> Result<(), PieceError<E>> {
    let extents = node.extents();
    let piece = |e: &Extent| -> Result<Piece, ArchiveError> {
        match e {
            Extent::Hole { len } => Ok(Piece::Hole(*len)),
            Extent::Data { id, len } => chunk(archive, None, id, verify).and_then(|d| {
                if d.len() as u64 == *len {
                    Ok(Piece::Data(d))
                } else {
                    Err(ArchiveError::Invalid(format!(
                        "chunk {} has the wrong length",
                        id.short()
                    )))
                }
            }),
        }
    };
    if extents.len() <= 1 {
        // Most files are one chunk: no second thread for them.
        let mut offset = 0u64;
        for e in extents {
            f(offset, piece(e).map_err(PieceError::Read)?).map_err(PieceError::Sink)?;
            offset += e.len();
        }
        return Ok(());
    }
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<Result<Piece, ArchiveError>>(4);
        let piece = &piece;
        s.spawn(move || {
            for e in extents {
                let p = piece(e);
                let stop = p.is_err();
                if tx.send(p).is_err() || stop {
                    return;
                }
            }
        });
        let mut offset = 0u64;
        for p in rx {
            let p = p.map_err(PieceError::Read)?;
            let len = match &p {
                Piece::Data(d) => d.len() as u64,
                Piece::Hole(l) => *l,
            };
            f(offset, p).map_err(PieceError::Sink)?;
            offset += len;
        }
        Ok(())
    })
}

pub enum PieceError<E> {
    Read(ArchiveError),
    Sink(E),
}

/// Streams a file's bytes (holes as zeros) to `out`.
pub fn copy_to(
    archive: &Archive,
    node: &Node,
    out: &mut dyn std::io::Write,
) -> Result<u64, PieceError<std::io::Error>> {
    let zeros = vec![0u8; 1 << 16];
    let mut total = 0u64;
    for_each_piece(archive, node, false, |_, p| {
        match p {
            Piece::Data(d) => {
                out.write_all(&d)?;
                total += d.len() as u64;
            }
            Piece::Hole(mut len) => {
                total += len;
                while len > 0 {
                    let n = len.min(zeros.len() as u64) as usize;
                    out.write_all(&zeros[..n])?;
                    len -= n as u64;
                }
            }
        }
        Ok(())
    })?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_stays_within_capacity_and_evicts_least_recent() {
        let c = ChunkCache::new(100);
        for i in 0..10u8 {
            c.insert(BlobId([i; 32]), Arc::new(vec![i; 30]));
            assert!(c.bytes() <= 100);
        }
        assert!(c.get(&BlobId([9; 32])).is_some());
        assert!(c.get(&BlobId([0; 32])).is_none());
    }

    #[test]
    fn extent_lookup_is_a_binary_search_over_offsets() {
        let mut n = crate::tree::root_node(BlobId([0; 32]), (0, 0));
        n.kind = crate::format::tree::NodeKind::File;
        n.payload = crate::format::tree::Payload::File(vec![
            Extent::Data {
                id: BlobId([1; 32]),
                len: 10,
            },
            Extent::Hole { len: 5 },
            Extent::Data {
                id: BlobId([2; 32]),
                len: 1,
            },
        ]);
        let fc = FileContent::new(&n);
        assert_eq!(fc.size(), 16);
        assert_eq!(fc.extent_at(0), Some(0));
        assert_eq!(fc.extent_at(9), Some(0));
        assert_eq!(fc.extent_at(10), Some(1));
        assert_eq!(fc.extent_at(15), Some(2));
        assert_eq!(fc.extent_at(16), None);
    }
}
