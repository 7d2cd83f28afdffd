//! The read path shared by cat, restore and the mount: a file's [`Content`] (a type with
//! a kind, see `file.rs`: its bytes at any offset, its data/hole map, which blobs come
//! next), verified chunks from the archive, a bounded shared cache of decompressed chunks,
//! and an in-order streaming reader that decompresses ahead on a second thread.

mod file;

pub use file::{Content, ContentKind, ReadBuf};

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
}
