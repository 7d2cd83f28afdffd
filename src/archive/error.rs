//! The archive layer's error: one enum whose variants carry the path, pack, offset or
//! blob that identifies the problem; the CLI turns each into one line, a hint and an exit
//! code (`cli/hints.rs`).

use crate::format::{BlobId, FormatError};
use crate::index::IndexError;
use crate::packs::PackError;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("{path}: not a strata archive ({why})")]
    NotAnArchive { path: PathBuf, why: String },
    #[error("{path}: directory is not empty and is not a strata archive")]
    NotEmpty { path: PathBuf },
    #[error(
        "{path}: archive format {found} is newer than this strata supports ({supported}); upgrade strata"
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("archive is locked by {}", match .pid { Some(p) => format!("pid {p}"), None => "another process".to_string() })]
    Locked { pid: Option<u32> },
    #[error("archive is locked: {holder}")]
    LockedBy { holder: String, stale: bool },
    #[error("{path}: index is missing")]
    IndexMissing { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error("{what} {id}: {source}")]
    Format {
        what: &'static str,
        id: BlobId,
        #[source]
        source: FormatError,
    },
    #[error("blob {id} is referenced but not in the index")]
    BlobMissing { id: BlobId },
    #[error("no snapshot matches {spec:?}")]
    SnapshotNotFound { spec: String },
    #[error("snapshot prefix {spec:?} is ambiguous: {}", .candidates.join(", "))]
    Ambiguous {
        spec: String,
        candidates: Vec<String>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("archive is append-only: {0} is refused")]
    AppendOnly(&'static str),
    #[error("{path}: wrong password: no key slot of the archive opens with it")]
    WrongPassword { path: PathBuf },
    #[error("{path}: the archive is encrypted: a password is needed")]
    PasswordNeeded { path: PathBuf },
    #[error("key file {path} is damaged ({why})")]
    KeyDamaged { path: PathBuf, why: String },
    #[error(
        "{path}: refusing to remove the last key slot (the archive could never be opened again)"
    )]
    LastKey { path: PathBuf },
    #[error("no key slot {id}")]
    KeyNotFound { id: String },
    #[error("{path}: the archive is not encrypted: it has no keys")]
    NotEncrypted { path: PathBuf },
}

impl ArchiveError {
    /// The filesystem was full (ENOSPC from a pack write, or SQLite's "disk full").
    pub fn is_out_of_space(&self) -> bool {
        match self {
            ArchiveError::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
            ArchiveError::Pack(PackError::Store(e)) => e.raw_os_error() == Some(libc::ENOSPC),
            ArchiveError::Index(e) => e.is_out_of_space(),
            _ => false,
        }
    }

    pub fn is_corruption(&self) -> bool {
        match self {
            ArchiveError::Pack(e) => e.is_corruption(),
            ArchiveError::Format { .. } | ArchiveError::BlobMissing { .. } => true,
            _ => false,
        }
    }
}
