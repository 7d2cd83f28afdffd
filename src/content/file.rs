//! A file's content as a type with a kind: built from a tree node, it answers the size,
//! reads at any offset, where data and holes start (`SEEK_DATA`/`SEEK_HOLE`) and which blobs come
//! next (for prefetch), so no reader above this layer looks at extents.
//!
//! Invariants: the extents' start offsets are cumulative and sorted (lookups are binary
//! searches); a read never returns bytes of a chunk whose length is not the one the
//! file records (that is an error, never short or wrong data); holes read as zeros.

use super::{ChunkCache, chunk};
use crate::archive::{Archive, ArchiveError};
use crate::format::BlobId;
use crate::format::tree::{Extent, Node};
use std::sync::Arc;

/// How a file's bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentKind {
    /// A list of extents: content-defined chunks and holes, in order.
    Chunks,
    // A zip-aware kind (members chunked on their own) plugs in here: `Content::of` picks
    // it from the node, and each method of `Content` below dispatches on `kind`.
}

/// A file's content, for random access: its kind and its extents with their start
/// offsets.
pub struct Content {
    kind: ContentKind,
    extents: Vec<Extent>,
    starts: Vec<u64>,
    size: u64,
}

/// The bytes of one read: owned, or a slice of a cached chunk (no copy).
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

impl Content {
    /// The content of a file node (a node without extents is empty).
    pub fn of(node: &Node) -> Content {
        let extents = node.extents().to_vec();
        let mut starts = Vec::with_capacity(extents.len());
        let mut pos = 0u64;
        for e in &extents {
            starts.push(pos);
            pos += e.len();
        }
        Content {
            kind: ContentKind::Chunks,
            extents,
            starts,
            size: pos,
        }
    }

    /// The first blob a file's content reads, without building its `Content` (a tree
    /// copy prefetches the start of the next files of a directory).
    pub fn first_blob(node: &Node) -> Option<BlobId> {
        match node.extents().first() {
            Some(Extent::Data { id, .. }) => Some(*id),
            _ => None,
        }
    }

    pub fn kind(&self) -> ContentKind {
        self.kind
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Index of the extent holding `offset` (binary search over start offsets).
    fn extent_at(&self, offset: u64) -> Option<usize> {
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

    /// Up to `size` bytes at `offset` (fewer at the end of the file, none past it). A
    /// read inside one chunk is a slice of the cached chunk: no zeroing, no copy.
    pub fn read(
        &self,
        archive: &Archive,
        cache: &ChunkCache,
        offset: u64,
        size: usize,
    ) -> Result<ReadBuf, ArchiveError> {
        let end = offset.saturating_add(size as u64).min(self.size);
        if offset >= end {
            return Ok(ReadBuf::Owned(Vec::new()));
        }
        Ok(match self.within_one_chunk(offset, end) {
            Some((id, within)) => {
                let data = chunk(archive, Some(cache), &id, false)?;
                let stop = within + (end - offset) as usize;
                if stop > data.len() {
                    return Err(ArchiveError::Invalid(format!(
                        "chunk {} is shorter than the file says",
                        id.short()
                    )));
                }
                ReadBuf::Slice(data, within, stop)
            }
            None => {
                let mut buf = vec![0u8; (end - offset) as usize];
                let n = self.read_at(archive, cache, offset, &mut buf)?;
                buf.truncate(n);
                ReadBuf::Owned(buf)
            }
        })
    }

    /// `SEEK_DATA` (`data`) or `SEEK_HOLE`: the first offset at or after `offset` that is
    /// stored data, or a hole (the end of the file counts as one), from the extent map;
    /// nothing is read. `None` past the end, or when no data follows `offset`.
    pub fn seek(&self, offset: u64, data: bool) -> Option<u64> {
        let first = self.extent_at(offset)?;
        for (e, &start) in self.extents[first..].iter().zip(&self.starts[first..]) {
            if start + e.len() > offset && matches!(e, Extent::Data { .. }) == data {
                return Some(start.max(offset));
            }
        }
        if data { None } else { Some(self.size) }
    }

    /// Which blobs come next after a read that ended at `after_offset` (exclusive): the
    /// chunks among the `n` extents after the one holding the last byte read (holes
    /// count towards `n`), for prefetch.
    pub fn next_blobs(&self, after_offset: u64, n: usize) -> Vec<BlobId> {
        let Some(i) = self.extent_at(after_offset.saturating_sub(1)) else {
            return Vec::new();
        };
        self.extents[i + 1..]
            .iter()
            .take(n)
            .filter_map(|e| match e {
                Extent::Data { id, .. } => Some(*id),
                Extent::Hole { .. } => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::{NodeKind, Payload};

    fn file(extents: Vec<Extent>) -> Node {
        let mut n = crate::tree::root_node(BlobId([0; 32]), (0, 0));
        n.kind = NodeKind::File;
        n.payload = Payload::File(extents);
        n
    }

    fn data(b: u8, len: u64) -> Extent {
        Extent::Data {
            id: BlobId([b; 32]),
            len,
        }
    }

    /// chunk 1 (10 bytes of 1), hole of 5, chunk 2 (1 byte of 2), chunk 3 (4 bytes of 3).
    fn sample() -> Content {
        Content::of(&file(vec![
            data(1, 10),
            Extent::Hole { len: 5 },
            data(2, 1),
            data(3, 4),
        ]))
    }

    /// An empty archive and a cache holding the sample's chunks (reads never reach the
    /// archive for a cached chunk).
    fn archive_and_cache() -> (tempfile::TempDir, Archive, ChunkCache) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a");
        Archive::init(&root, &crate::archive::Config::new(64 << 10, 3, false)).unwrap();
        let archive = Archive::open(&root).unwrap();
        let cache = ChunkCache::new(1 << 20);
        for (b, len) in [(1u8, 10usize), (2, 1), (3, 4)] {
            cache.insert(BlobId([b; 32]), Arc::new(vec![b; len]));
        }
        (dir, archive, cache)
    }

    fn expected() -> Vec<u8> {
        [vec![1u8; 10], vec![0; 5], vec![2], vec![3; 4]].concat()
    }

    #[test]
    fn extent_lookup_is_a_binary_search_over_offsets() {
        let c = sample();
        assert_eq!(c.kind(), ContentKind::Chunks);
        assert_eq!(c.size(), 20);
        assert_eq!(c.extent_at(0), Some(0));
        assert_eq!(c.extent_at(9), Some(0));
        assert_eq!(c.extent_at(10), Some(1));
        assert_eq!(c.extent_at(15), Some(2));
        assert_eq!(c.extent_at(16), Some(3));
        assert_eq!(c.extent_at(20), None);
    }

    #[test]
    fn reads_at_every_offset_and_length_cross_chunk_and_hole_boundaries() {
        let (_dir, archive, cache) = archive_and_cache();
        let c = sample();
        let want = expected();
        for offset in 0..=22u64 {
            for size in 0..=22usize {
                let got = c.read(&archive, &cache, offset, size).unwrap();
                let lo = (offset as usize).min(want.len());
                let hi = (offset as usize + size).min(want.len());
                assert_eq!(got.as_slice(), &want[lo..hi], "offset {offset} size {size}");
            }
        }
    }

    #[test]
    fn a_read_inside_one_chunk_is_a_slice_of_the_cached_chunk() {
        let (_dir, archive, cache) = archive_and_cache();
        let c = sample();
        assert_eq!(c.within_one_chunk(2, 10), Some((BlobId([1; 32]), 2)));
        assert_eq!(c.within_one_chunk(2, 11), None, "crosses into the hole");
        assert_eq!(c.within_one_chunk(11, 12), None, "a hole is no chunk");
        assert!(matches!(
            c.read(&archive, &cache, 16, 3).unwrap(),
            ReadBuf::Slice(_, 0, 3)
        ));
        assert!(matches!(
            c.read(&archive, &cache, 8, 4).unwrap(),
            ReadBuf::Owned(_)
        ));
    }

    #[test]
    fn a_chunk_of_the_wrong_length_is_an_error_not_short_data() {
        let (_dir, archive, cache) = archive_and_cache();
        cache.insert(BlobId([3; 32]), Arc::new(vec![3; 2]));
        let c = sample();
        assert!(c.read(&archive, &cache, 16, 4).is_err(), "inside the chunk");
        assert!(c.read(&archive, &cache, 14, 6).is_err(), "across chunks");
    }

    #[test]
    fn seek_data_and_seek_hole_follow_the_extent_map() {
        let c = sample();
        assert_eq!(c.seek(0, true), Some(0));
        assert_eq!(c.seek(3, true), Some(3));
        assert_eq!(c.seek(0, false), Some(10));
        assert_eq!(c.seek(10, true), Some(15));
        assert_eq!(c.seek(12, false), Some(12));
        assert_eq!(c.seek(15, false), Some(20), "the end counts as a hole");
        assert_eq!(c.seek(19, true), Some(19));
        assert_eq!(c.seek(20, true), None, "past the end");
        assert_eq!(c.seek(20, false), None, "past the end");
        let tail_hole = Content::of(&file(vec![data(1, 4), Extent::Hole { len: 6 }]));
        assert_eq!(tail_hole.seek(5, true), None, "no data after the offset");
        assert_eq!(tail_hole.seek(5, false), Some(5));
        assert_eq!(Content::of(&file(vec![])).seek(0, false), None);
    }

    #[test]
    fn next_blobs_are_the_chunks_after_the_last_byte_read() {
        let c = sample();
        let id = |b: u8| BlobId([b; 32]);
        // A read ending at 10 ended in chunk 1: next are the hole (no blob), 2 and 3.
        assert_eq!(c.next_blobs(10, 3), vec![id(2), id(3)]);
        assert_eq!(
            c.next_blobs(10, 2),
            vec![id(2)],
            "the hole counts towards n"
        );
        assert_eq!(c.next_blobs(11, 8), vec![id(2), id(3)]);
        assert_eq!(c.next_blobs(16, 8), vec![id(3)]);
        assert_eq!(
            c.next_blobs(20, 8),
            Vec::<BlobId>::new(),
            "nothing after the end"
        );
        assert_eq!(c.next_blobs(5, 0), Vec::<BlobId>::new());
        assert_eq!(Content::first_blob(&file(vec![data(7, 1)])), Some(id(7)));
        assert_eq!(
            Content::first_blob(&file(vec![Extent::Hole { len: 1 }, data(7, 1)])),
            None
        );
    }
}
