//! Pack files, parsed independently of the library (docs/FORMAT.md §3.1), so a test can
//! find the bytes of one record to damage.

use std::fs;
use std::path::{Path, PathBuf};
use strata::format::BlobId;

pub const PACK_HEADER_LEN: u64 = 24;
pub const BLOB_HEADER_LEN: u64 = 64;

#[derive(Clone, Debug)]
pub struct PackRecord {
    /// Offset of the 64-byte record header in the pack.
    pub offset: u64,
    /// 1 chunk, 2 tree, 3 snapshot.
    pub kind: u8,
    pub id: BlobId,
    pub stored_len: u64,
}

impl PackRecord {
    pub fn data_start(&self) -> u64 {
        self.offset + BLOB_HEADER_LEN
    }
    pub fn end(&self) -> u64 {
        self.data_start() + self.stored_len
    }
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

/// Every record of an undamaged pack, in order. Panics if the pack is not well formed.
pub fn pack_records(bytes: &[u8]) -> Vec<PackRecord> {
    assert!(
        bytes.len() as u64 >= PACK_HEADER_LEN && &bytes[..8] == b"STRATAPK",
        "not a pack"
    );
    let mut out = Vec::new();
    let mut pos = PACK_HEADER_LEN;
    while pos < bytes.len() as u64 {
        let h = &bytes[pos as usize..(pos + BLOB_HEADER_LEN) as usize];
        assert_eq!(&h[..4], b"BLOB", "record magic at offset {pos}");
        let rec = PackRecord {
            offset: pos,
            kind: h[4],
            id: BlobId(h[8..40].try_into().unwrap()),
            stored_len: le_u64(&h[48..56]),
        };
        pos = rec.end();
        out.push(rec);
    }
    assert_eq!(
        pos,
        bytes.len() as u64,
        "the last record ends at the end of the pack"
    );
    out
}

/// The pack files of an archive, sorted by name.
pub fn pack_paths(archive: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(archive.join("packs"))
        .unwrap_or_else(|e| panic!("reading {}/packs: {e}", archive.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    v.sort();
    v
}
