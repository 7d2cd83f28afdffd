//! Hints: the "what to do" line printed under an error (`hint: …`). They are the CLI's
//! words about the library's typed errors, so they live here, not in the layers that
//! raise the errors. Call sites use `e.hint()` with this trait in scope.

use strata::archive::ArchiveError;
use strata::ingest::IngestError;
use strata::ops::restore::RestoreError;
use strata::sys::fsops;

pub trait Hint {
    /// A short "what to do" line, when there is one.
    fn hint(&self) -> Option<String>;
}

impl Hint for ArchiveError {
    fn hint(&self) -> Option<String> {
        match self {
            ArchiveError::NotAnArchive { why, .. } if why.starts_with("config:") => Some(
                "the archive's config file is damaged; restore it from a copy (docs/FORMAT.md lists its keys)".into(),
            ),
            ArchiveError::NotAnArchive { .. } => {
                Some("create one with `strata init ARCHIVE`".into())
            }
            ArchiveError::Locked { .. } => Some(
                "wait for the other ingest to finish; the lock is released when it exits".into(),
            ),
            ArchiveError::LockedBy { stale: true, .. } => Some(
                "the holder has not refreshed its lock for over 10 minutes: if that host or process is gone, `strata unlock ARCHIVE` removes the stale lock".into(),
            ),
            ArchiveError::LockedBy { .. } => Some(
                "wait for it to finish and retry; a lock is released when its holder exits".into(),
            ),
            ArchiveError::Index(e) if e.is_out_of_space() => Some(
                "the archive's filesystem is full or failing (see `df ARCHIVE`); free space and retry: the index is not necessarily damaged".into(),
            ),
            ArchiveError::IndexMissing { .. } | ArchiveError::Index(_) => {
                Some("rebuild the index from the packs with `strata repair ARCHIVE`".into())
            }
            e if e.is_out_of_space() => Some(
                "the archive's filesystem is full: free space and run the ingest again; nothing was committed".into(),
            ),
            ArchiveError::Pack(e) if e.is_corruption() => {
                Some("run `strata check --read-data ARCHIVE` to see what is damaged".into())
            }
            ArchiveError::Ambiguous { .. } => Some("give more digits of the id".into()),
            ArchiveError::AppendOnly(_) => Some(
                "this archive was made append-only so history cannot be destroyed; keep it, or copy what you need to a new archive".into(),
            ),
            ArchiveError::SnapshotNotFound { .. } => {
                Some("list snapshots with `strata snapshots ARCHIVE`".into())
            }
            _ => None,
        }
    }
}

impl Hint for RestoreError {
    fn hint(&self) -> Option<String> {
        match self {
            RestoreError::Exists { .. } => {
                Some("restore into an empty directory, or pass --overwrite".into())
            }
            RestoreError::TargetSymlink { path } => Some(format!(
                "if you mean the directory it points to, name it: \"$(readlink -f {})\"",
                path.display()
            )),
            RestoreError::Partial { source, .. } if fsops::errno_is(source, libc::ENOSPC) => {
                Some("free space on the target's filesystem, then restore again".into())
            }
            RestoreError::Replaced { .. } => Some(
                "restore into a directory that only root can write (not one other users can)"
                    .into(),
            ),
            RestoreError::Archive(e) => e.hint(),
            _ => None,
        }
    }
}

impl Hint for IngestError {
    fn hint(&self) -> Option<String> {
        match self {
            IngestError::Archive(e) | IngestError::Write(e) => e.hint(),
            IngestError::WithAfter { error, .. } => error.hint(),
            IngestError::SourceMissing { .. } => Some("check the path; nothing was written".into()),
            IngestError::ControlChar(_) => Some(
                "name it with SRC:NAME, --as NAME or --stdin-as NAME using printable characters"
                    .into(),
            ),
            IngestError::Strict(_) => {
                Some("fix the permissions or drop --strict to record unreadable paths".into())
            }
            _ => None,
        }
    }
}
