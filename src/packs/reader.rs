//! Pack reader: reads one blob record with one or two ranged reads from the store,
//! verifies its header against the index and its crc32, and hands the stored bytes to the
//! codec. Also the record-by-record scanner used by check and repair.

use super::{Codec, Location, PackError};
use crate::format::pack::{
    BLOB_HEADER_LEN, BlobHeader, BlobKind, PACK_HEADER_LEN, decode_pack_header,
};
use crate::format::{BlobId, MAX_BLOB_LEN, PackId};
use crate::store::{Store, StoreError};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub struct PackReader {
    store: Arc<dyn Store>,
    codec: Codec,
    /// Tree packs already hinted for read-ahead.
    warmed: Mutex<HashSet<PackId>>,
}

impl PackReader {
    pub fn new(store: Arc<dyn Store>, codec: Codec) -> PackReader {
        PackReader {
            store,
            codec,
            warmed: Mutex::new(HashSet::new()),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Forgets anything cached about a pack (its open descriptor): its number may have
    /// been deleted by prune and reused by a later writer.
    pub fn evict(&self, pack: PackId) {
        self.warmed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pack);
        self.store.evict(&pack.file_name());
    }

    /// Where a pack is, as shown to the user.
    pub fn location_of(&self, pack: PackId) -> String {
        self.store.location(&pack.file_name())
    }

    /// Reads `buf.len()` bytes of `loc`'s pack at `at`; a pack that ends early is a
    /// record running past the end.
    fn read_at(&self, loc: &Location, at: u64, buf: &mut [u8]) -> Result<(), PackError> {
        self.store
            .read_at(&loc.pack.file_name(), at, buf)
            .map_err(|e| match e {
                StoreError::Short { .. } => PackError::PastEnd {
                    pack: loc.pack,
                    offset: loc.offset,
                    len: BLOB_HEADER_LEN as u64 + loc.stored_len,
                },
                e => PackError::Store(e),
            })
    }

    /// A pack that holds trees (small, read all over by any walk) is read ahead in full
    /// on first use.
    fn warm(&self, pack: PackId) {
        if self
            .warmed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pack)
        {
            self.store.will_need(&pack.file_name());
        }
    }

    /// The record header and stored bytes at `loc`, after checking the header against
    /// `loc` and `id` and the crc32 of the stored bytes.
    fn read_record(&self, id: &BlobId, loc: &Location) -> Result<(BlobHeader, Vec<u8>), PackError> {
        if loc.stored_len > MAX_BLOB_LEN || loc.raw_len > MAX_BLOB_LEN {
            return Err(PackError::Mismatch {
                pack: loc.pack,
                offset: loc.offset,
                what: format!(
                    "index gives impossible lengths (stored {}, plain {})",
                    loc.stored_len, loc.raw_len
                ),
            });
        }
        if loc.kind == BlobKind::Tree {
            self.warm(loc.pack);
        }
        // Small records (trees, small files) in one read; large ones as header then
        // data, so the data lands in its final buffer without another copy.
        let small = loc.stored_len <= 64 << 10;
        let mut head = [0u8; BLOB_HEADER_LEN];
        let mut whole = Vec::new();
        if small {
            whole = vec![0u8; BLOB_HEADER_LEN + loc.stored_len as usize];
            self.read_at(loc, loc.offset, &mut whole)?;
            head.copy_from_slice(&whole[..BLOB_HEADER_LEN]);
        } else {
            self.read_at(loc, loc.offset, &mut head)?;
        }
        let header = BlobHeader::decode(&head).map_err(|source| PackError::Format {
            pack: loc.pack,
            offset: loc.offset,
            source,
        })?;
        // Only lengths that agree with the index are used to read and slice.
        if header.id != *id
            || header.raw_len != loc.raw_len
            || header.kind != loc.kind
            || header.stored_len != loc.stored_len
        {
            return Err(PackError::Mismatch {
                pack: loc.pack,
                offset: loc.offset,
                what: format!(
                    "expected {} {} of {} bytes, found {} {} of {} bytes",
                    loc.kind.name(),
                    id.short(),
                    loc.raw_len,
                    header.kind.name(),
                    header.id.short(),
                    header.raw_len
                ),
            });
        }
        let stored = if small {
            whole.split_off(BLOB_HEADER_LEN)
        } else {
            let mut data = vec![0u8; loc.stored_len as usize];
            self.read_at(loc, loc.offset + BLOB_HEADER_LEN as u64, &mut data)?;
            data
        };
        if crc32fast::hash(&stored) != header.data_crc {
            return Err(PackError::CrcMismatch {
                pack: loc.pack,
                offset: loc.offset,
                id: header.id,
            });
        }
        Ok((header, stored))
    }

    /// Reads one blob's plain bytes, verifying the record header against `loc` and `id`
    /// and the crc32 of the stored bytes. With `verify_hash`, also checks the id.
    pub fn read(
        &self,
        id: &BlobId,
        loc: &Location,
        verify_hash: bool,
    ) -> Result<Vec<u8>, PackError> {
        let (header, stored) = self.read_record(id, loc)?;
        self.codec
            .decode(&header, stored, loc.pack, loc.offset, verify_hash)
    }

    /// Reads only the record header at `loc` and checks it against the index row, and
    /// that the record fits in the pack: `check` without `--read-data`.
    pub fn check_header(&self, id: &BlobId, loc: &Location) -> Result<(), PackError> {
        let mut head = [0u8; BLOB_HEADER_LEN];
        self.read_at(loc, loc.offset, &mut head)?;
        let header = BlobHeader::decode(&head).map_err(|source| PackError::Format {
            pack: loc.pack,
            offset: loc.offset,
            source,
        })?;
        if header.id != *id || header.raw_len != loc.raw_len || header.stored_len != loc.stored_len
        {
            return Err(PackError::Mismatch {
                pack: loc.pack,
                offset: loc.offset,
                what: "the record in the pack does not match the index".into(),
            });
        }
        let size = self.store.size(&loc.pack.file_name())?;
        if loc.offset + BLOB_HEADER_LEN as u64 + loc.stored_len > size {
            return Err(PackError::PastEnd {
                pack: loc.pack,
                offset: loc.offset,
                len: BLOB_HEADER_LEN as u64 + loc.stored_len,
            });
        }
        Ok(())
    }

    /// A blob's record as stored (header and stored bytes, not decoded), after checking
    /// the crc32, the header against the index, and the id of the plain bytes: prune
    /// copies records with this and never copies damage.
    pub fn read_stored(
        &self,
        id: &BlobId,
        loc: &Location,
    ) -> Result<(BlobHeader, Vec<u8>), PackError> {
        let (header, stored) = self.read_record(id, loc)?;
        self.codec
            .decode(&header, stored.clone(), loc.pack, loc.offset, true)?;
        Ok((header, stored))
    }
}

/// Decodes the header at `offset` and returns it with its stored bytes, after checking
/// that the record fits in the pack and its crc32 matches.
pub fn slice_record(
    map: &[u8],
    pack: PackId,
    offset: u64,
) -> Result<(BlobHeader, &[u8]), PackError> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let hdr_end = start
        .checked_add(BLOB_HEADER_LEN)
        .filter(|&e| e <= map.len());
    let Some(hdr_end) = hdr_end else {
        return Err(PackError::PastEnd {
            pack,
            offset,
            len: BLOB_HEADER_LEN as u64,
        });
    };
    let header = BlobHeader::decode(&map[start..hdr_end]).map_err(|source| PackError::Format {
        pack,
        offset,
        source,
    })?;
    let end = hdr_end
        .checked_add(header.stored_len as usize)
        .filter(|&e| e <= map.len());
    let Some(end) = end else {
        return Err(PackError::PastEnd {
            pack,
            offset,
            len: header.stored_len,
        });
    };
    let stored = &map[hdr_end..end];
    if crc32fast::hash(stored) != header.data_crc {
        return Err(PackError::CrcMismatch {
            pack,
            offset,
            id: header.id,
        });
    }
    Ok((header, stored))
}

#[derive(Debug)]
pub struct ScanEntry {
    pub offset: u64,
    pub header: BlobHeader,
}

/// The records of one pack, in order, up to the first one that is not whole and sound.
#[derive(Debug)]
pub struct ScanResult {
    pub pack: PackId,
    pub entries: Vec<ScanEntry>,
    /// End of the last sound record: everything from here on is a torn or damaged tail.
    pub valid_end: u64,
    pub file_len: u64,
    /// Why scanning stopped before the end of the file, if it did.
    pub stop: Option<PackError>,
}

/// The pack header at the start of `map` is sound and names `expected`.
fn check_pack_header(map: &[u8], expected: PackId) -> Result<PackId, PackError> {
    let head = map.get(..PACK_HEADER_LEN).ok_or(PackError::PastEnd {
        pack: expected,
        offset: 0,
        len: PACK_HEADER_LEN as u64,
    })?;
    let id = decode_pack_header(head).map_err(|source| PackError::Format {
        pack: expected,
        offset: 0,
        source,
    })?;
    if id != expected {
        return Err(PackError::Mismatch {
            pack: expected,
            offset: 0,
            what: format!("header names pack {id}"),
        });
    }
    Ok(id)
}

/// Walks a pack's records. Never panics: a bad header, a record past the end or a crc
/// mismatch ends the scan and is reported in `stop`.
pub fn scan_pack(map: &[u8], expected: PackId) -> Result<ScanResult, PackError> {
    let id = check_pack_header(map, expected)?;
    let mut entries = Vec::new();
    let mut pos = PACK_HEADER_LEN as u64;
    let mut stop = None;
    while (pos as usize) < map.len() {
        match slice_record(map, id, pos) {
            Ok((header, stored)) => {
                entries.push(ScanEntry {
                    offset: pos,
                    header,
                });
                pos += (BLOB_HEADER_LEN + stored.len()) as u64;
            }
            Err(e) => {
                stop = Some(e);
                break;
            }
        }
    }
    Ok(ScanResult {
        pack: id,
        entries,
        valid_end: pos,
        file_len: map.len() as u64,
        stop,
    })
}

/// What a tolerant scan of a whole pack found: sound records, records whose header is
/// sound but whose stored bytes fail their crc32, undecodable stretches in the middle
/// (skipped by searching for the next sound header), and a torn tail.
#[derive(Debug, Default)]
pub struct Survey {
    pub sound: Vec<ScanEntry>,
    pub damaged: Vec<ScanEntry>,
    /// `(start, end)` byte ranges that hold no decodable record.
    pub gaps: Vec<(u64, u64)>,
    /// Offset where an incomplete last record (or trailing garbage) starts, if any.
    pub torn_tail: Option<u64>,
}

/// Scans every record of a pack, continuing past damage. Never panics; the pack header
/// itself must be sound (else `Err`).
pub fn survey_pack(map: &[u8], expected: PackId) -> Result<Survey, PackError> {
    let id = check_pack_header(map, expected)?;
    let mut out = Survey::default();
    let mut pos = PACK_HEADER_LEN;
    while pos < map.len() {
        match slice_record(map, id, pos as u64) {
            Ok((header, stored)) => {
                out.sound.push(ScanEntry {
                    offset: pos as u64,
                    header,
                });
                pos += BLOB_HEADER_LEN + stored.len();
            }
            Err(PackError::CrcMismatch { .. }) => {
                // The header (its own crc passed) says how long the record is.
                let Ok(header) = BlobHeader::decode(&map[pos..pos + BLOB_HEADER_LEN]) else {
                    break;
                };
                out.damaged.push(ScanEntry {
                    offset: pos as u64,
                    header,
                });
                pos += BLOB_HEADER_LEN + header.stored_len as usize;
            }
            Err(_) => {
                // Find the next record whose header is sound and which fits in the file.
                let next = (pos + 1..map.len().saturating_sub(BLOB_HEADER_LEN - 1)).find(|&p| {
                    map[p..p + 4] == crate::format::pack::BLOB_MAGIC
                        && BlobHeader::decode(&map[p..p + BLOB_HEADER_LEN])
                            .is_ok_and(|h| p + BLOB_HEADER_LEN + h.stored_len as usize <= map.len())
                });
                match next {
                    Some(n) => {
                        out.gaps.push((pos as u64, n as u64));
                        pos = n;
                    }
                    None => {
                        out.torn_tail = Some(pos as u64);
                        break;
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_survey_continues_past_damage_and_finds_the_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = write_pack(dir.path());
        let mut bytes = std::fs::read(dir.path().join(PackId(1).file_name())).unwrap();
        // Damage blob 1's data and blob 3's header, and cut blob 4 in half.
        let at = |i: usize| blobs[i].1.offset as usize;
        bytes[at(1) + BLOB_HEADER_LEN + 5] ^= 1;
        bytes[at(3) + 10] ^= 1;
        let cut = at(4) + 30;
        bytes.truncate(cut);
        let s = survey_pack(&bytes, PackId(1)).unwrap();
        let offs = |v: &[ScanEntry]| v.iter().map(|e| e.offset as usize).collect::<Vec<_>>();
        assert_eq!(offs(&s.sound), vec![at(0), at(2)]);
        assert_eq!(offs(&s.damaged), vec![at(1)]);
        assert_eq!(
            s.torn_tail,
            Some(at(3) as u64),
            "blob 3's header is gone and nothing sound follows"
        );
        let s = survey_pack(&bytes[..at(4)], PackId(1)).unwrap();
        assert_eq!(s.torn_tail, Some(at(3) as u64));
        for n in 0..bytes.len() {
            let _ = survey_pack(&bytes[..n], PackId(1));
        }
    }
    use crate::packs::{Codec, PackWriter};
    use crate::store::local::LocalStore;
    use std::path::Path;

    fn store(dir: &Path) -> Arc<dyn Store> {
        Arc::new(LocalStore::new(dir, &dir.join("quarantine")))
    }

    fn write_pack(dir: &Path) -> Vec<(BlobId, Location, Vec<u8>)> {
        let mut w = PackWriter::new(store(dir), Arc::new(1.into()), 1 << 30);
        let c = Codec::new(3);
        let mut out = Vec::new();
        for i in 0..5u8 {
            let raw: Vec<u8> = if i % 2 == 0 {
                vec![i; 10_000]
            } else {
                (0..5000u32)
                    .map(|x| (x.wrapping_mul(2654435761) >> 13) as u8 ^ i)
                    .collect()
            };
            let id = c.id_of(&raw);
            let loc = w.add(&c.encode(BlobKind::Chunk, id, &raw)).unwrap();
            out.push((id, loc, raw));
        }
        w.finish().unwrap();
        out
    }

    #[test]
    fn written_blobs_read_back_and_scan() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = write_pack(dir.path());
        let r = PackReader::new(store(dir.path()), Codec::new(3));
        for (id, loc, raw) in &blobs {
            assert_eq!(&r.read(id, loc, true).unwrap(), raw);
        }
        let map = std::fs::read(dir.path().join(PackId(1).file_name())).unwrap();
        let scan = scan_pack(&map, PackId(1)).unwrap();
        assert_eq!(scan.entries.len(), 5);
        assert!(scan.stop.is_none());
        assert_eq!(scan.valid_end, map.len() as u64);
    }

    #[test]
    fn a_flipped_stored_byte_is_a_crc_error_never_wrong_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = write_pack(dir.path());
        let path = dir.path().join(PackId(1).file_name());
        let mut bytes = std::fs::read(&path).unwrap();
        let (id, loc, _) = &blobs[2];
        bytes[loc.offset as usize + BLOB_HEADER_LEN + 10] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let r = PackReader::new(store(dir.path()), Codec::new(3));
        assert!(matches!(
            r.read(id, loc, false),
            Err(PackError::CrcMismatch { .. })
        ));
        // Neighbours still read.
        assert!(r.read(&blobs[1].0, &blobs[1].1, true).is_ok());
        assert!(r.read(&blobs[3].0, &blobs[3].1, true).is_ok());
    }

    #[test]
    fn truncation_at_every_byte_never_panics_and_keeps_whole_records() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = write_pack(dir.path());
        let bytes = std::fs::read(dir.path().join(PackId(1).file_name())).unwrap();
        for cut in 0..bytes.len() {
            match scan_pack(&bytes[..cut], PackId(1)) {
                Err(_) => assert!(cut < PACK_HEADER_LEN),
                Ok(scan) => {
                    let whole = blobs
                        .iter()
                        .filter(|(_, l, _)| {
                            l.offset + BLOB_HEADER_LEN as u64 + l.stored_len <= cut as u64
                        })
                        .count();
                    assert_eq!(scan.entries.len(), whole, "cut at {cut}");
                    assert!(scan.valid_end <= cut as u64);
                }
            }
        }
    }
}
