//! Append-only pack files: the writer appends blob records and seals packs with fsync;
//! the reader preads one record at a time, checks its crc32 and decompresses it;
//! the scanner walks a pack record by record and finds where a torn tail begins.
//!
//! Invariant: a pack file is written once, by the single writer that holds the archive
//! lock, and never modified after it is sealed. Readers only map packs that a committed
//! index row points into, so the bytes they map never change under them.

mod reader;
mod writer;

pub use reader::{PackReader, ScanEntry, ScanResult, Survey, scan_pack, survey_pack};
pub use writer::PackWriter;

use crate::format::pack::{BlobKind, Compression};
use crate::format::{BlobId, FormatError, PackId};
use std::path::PathBuf;
use thiserror::Error;

/// Where a blob's record starts in a pack (the offset of its 64-byte header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub offset: u64,
    pub kind: BlobKind,
    pub raw_len: u64,
    pub stored_len: u64,
}

#[derive(Debug, Error)]
pub enum PackError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pack {pack} offset {offset}: {source}")]
    Format {
        pack: PackId,
        offset: u64,
        #[source]
        source: FormatError,
    },
    #[error("pack {pack} offset {offset}: crc32 mismatch (blob {id}): stored bytes are damaged")]
    CrcMismatch {
        pack: PackId,
        offset: u64,
        id: BlobId,
    },
    #[error("pack {pack} offset {offset}: BLAKE3 mismatch (blob {id}): content is damaged")]
    HashMismatch {
        pack: PackId,
        offset: u64,
        id: BlobId,
    },
    #[error("pack {pack} offset {offset}: record does not match the index ({what})")]
    Mismatch {
        pack: PackId,
        offset: u64,
        what: String,
    },
    #[error("pack {pack} offset {offset}: record runs past the end of the pack ({len} bytes)")]
    PastEnd { pack: PackId, offset: u64, len: u64 },
    #[error("pack {pack} offset {offset}: zstd: {message}")]
    Decompress {
        pack: PackId,
        offset: u64,
        message: String,
    },
}

impl PackError {
    /// True when the error means stored bytes are damaged (as opposed to an I/O failure).
    pub fn is_corruption(&self) -> bool {
        !matches!(self, PackError::Io { .. })
    }
}

thread_local! {
    /// A level-1 context for probing whether a chunk compresses at all.
    static PROBE: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// True when four 8 KiB samples spread over `raw` compress (at zstd level 1) by less
/// than 4%: zips, images and encrypted data. Such a chunk is stored raw without spending
/// a full compression on it, which halves ingest CPU for a Jira export directory.
fn looks_incompressible(raw: &[u8]) -> bool {
    const SAMPLE: usize = 8 << 10;
    if raw.len() < 32 * SAMPLE {
        return false;
    }
    let mut probe = Vec::with_capacity(4 * SAMPLE);
    for i in 0..4 {
        let at = (raw.len() - SAMPLE) / 3 * i;
        probe.extend_from_slice(&raw[at..at + SAMPLE]);
    }
    PROBE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::new(1).ok();
        }
        match slot.as_mut().map(|c| c.compress(&probe)) {
            Some(Ok(c)) => c.len() * 100 > probe.len() * 96,
            _ => false,
        }
    })
}

/// Compresses `raw` with zstd at the archive's level; keeps it raw when a quick probe
/// says it will not compress, or when compression saves less than 1/64 of the size
/// (incompressible data such as images and zips).
pub fn compress(compressor: &mut zstd::bulk::Compressor<'_>, raw: &[u8]) -> (Compression, Vec<u8>) {
    if raw.len() < 64 || looks_incompressible(raw) {
        return (Compression::None, raw.to_vec());
    }
    match compressor.compress(raw) {
        Ok(c) if c.len() + raw.len() / 64 < raw.len() => (Compression::Zstd, c),
        _ => (Compression::None, raw.to_vec()),
    }
}

/// A blob ready to be appended: its plain id and length, and the stored bytes.
pub struct StoredBlob {
    pub kind: BlobKind,
    pub id: BlobId,
    pub raw_len: u64,
    pub compression: Compression,
    pub data: Vec<u8>,
}

impl StoredBlob {
    pub fn new(
        compressor: &mut zstd::bulk::Compressor<'_>,
        kind: BlobKind,
        id: BlobId,
        raw: &[u8],
    ) -> StoredBlob {
        let (compression, data) = compress(compressor, raw);
        StoredBlob {
            kind,
            id,
            raw_len: raw.len() as u64,
            compression,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompressible_chunks_are_stored_raw_and_text_is_compressed() {
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let random: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(looks_incompressible(&random));
        assert_eq!(compress(&mut c, &random).0, Compression::None);
        let text: Vec<u8> = (0..1 << 20)
            .map(|i| b"<Issue key=\"PRJ-1\"/>\n"[i % 21])
            .collect();
        assert!(!looks_incompressible(&text));
        let (kind, stored) = compress(&mut c, &text);
        assert_eq!(kind, Compression::Zstd);
        assert!(stored.len() < text.len() / 10);
        // Small chunks are never probed, only tried.
        assert!(!looks_incompressible(&random[..100_000]));
    }
}
