//! VFS errors and their one errno each, decided in a single exhaustive match.

use crate::archive::ArchiveError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum VfsError {
    #[error("no such entry")]
    NotFound,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("invalid request for this kind of file")]
    Invalid,
    #[error("no such extended attribute")]
    NoXattr,
    #[error("unknown inode (stale)")]
    Stale,
    #[error("unknown file handle")]
    BadHandle,
    #[error("read-only file system")]
    ReadOnly,
    /// The caller could not have reached this source on its host (a parent directory it
    /// could not search), or the snapshot does not record whether it could.
    #[error("permission denied: the source's parent directories did not let this user reach it")]
    Denied,
    /// SEEK_DATA or SEEK_HOLE at or past the end of the file.
    #[error("offset past the end of the file")]
    NoMoreData,
    #[error("{what}: {source}")]
    Corrupt {
        what: String,
        #[source]
        source: Box<ArchiveError>,
    },
    #[error(transparent)]
    Archive(Box<ArchiveError>),
}

impl From<ArchiveError> for VfsError {
    fn from(e: ArchiveError) -> VfsError {
        VfsError::Archive(Box::new(e))
    }
}

pub trait ToErrno {
    fn to_errno(&self) -> i32;
}

impl ToErrno for VfsError {
    fn to_errno(&self) -> i32 {
        match self {
            VfsError::NotFound => libc::ENOENT,
            VfsError::NotDir => libc::ENOTDIR,
            VfsError::IsDir => libc::EISDIR,
            VfsError::Invalid => libc::EINVAL,
            VfsError::NoXattr => libc::ENODATA,
            VfsError::Stale => libc::ESTALE,
            VfsError::BadHandle => libc::EBADF,
            VfsError::ReadOnly => libc::EROFS,
            VfsError::Denied => libc::EACCES,
            VfsError::NoMoreData => libc::ENXIO,
            // Damaged data, a missing blob, an unreadable pack: never ENOENT or ENOSYS.
            VfsError::Corrupt { .. } | VfsError::Archive(_) => libc::EIO,
        }
    }
}
