//! Append-only packs over a [`Store`](crate::store::Store): the writer appends blob
//! records and seals packs; the reader fetches one record, checks its crc32 and hands it
//! to the [`Codec`]; the scanner walks a pack record by record and finds where a torn
//! tail begins.
//!
//! Invariant: a pack is written once, by the single writer that holds the archive lock,
//! and never modified after it is sealed. Readers only read packs that a committed index
//! row points into, so the bytes they read never change under them.

mod codec;
mod reader;
mod writer;

pub use codec::{
    AEAD_NAME, Codec, MasterKey, RandomError, SEAL_OVERHEAD, StoredBlob, derive_key, random_bytes,
    unwrap_master_key, wrap_master_key,
};
pub use reader::{PackReader, ScanEntry, ScanResult, Survey, scan_pack, survey_pack};
pub use writer::PackWriter;

pub use crate::format::pack::Location;
use crate::format::{BlobId, FormatError, PackId};
use crate::store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PackError {
    #[error(transparent)]
    Store(#[from] StoreError),
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
    #[error(
        "pack {pack} offset {offset}: authentication failed (blob {id}): stored bytes are damaged, or were moved or swapped"
    )]
    Auth {
        pack: PackId,
        offset: u64,
        id: BlobId,
    },
    #[error("pack {pack} offset {offset}: zstd: {message}")]
    Decompress {
        pack: PackId,
        offset: u64,
        message: String,
    },
}

impl PackError {
    /// True when the error means stored bytes are damaged (as opposed to an I/O failure
    /// or a pack that is not there).
    pub fn is_corruption(&self) -> bool {
        !matches!(self, PackError::Store(_))
    }
}
