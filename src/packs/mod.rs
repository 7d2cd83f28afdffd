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

/// Compresses `raw` with zstd at `level`; keeps it raw when compression saves less than
/// 1/64 of the size (incompressible data such as images and zips).
pub fn compress(compressor: &mut zstd::bulk::Compressor<'_>, raw: &[u8]) -> (Compression, Vec<u8>) {
    if raw.len() < 64 {
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
