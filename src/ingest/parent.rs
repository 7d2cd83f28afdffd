//! The parent choice: which earlier snapshot an ingest compares against, so files
//! unchanged since then (same size, mtime, ctime, inode and device) are not read again.
//! Made here, not by the CLI, so every caller of `ingest` gets change detection.

use crate::archive::{Archive, ArchiveError};
use crate::format::BlobId;

/// Which snapshot is the parent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Parent {
    /// The latest snapshot with the ingest's label; none when there is no such snapshot.
    #[default]
    Latest,
    /// A snapshot given as the CLI's `--parent` takes it (an id, a prefix, `latest`, …);
    /// an error when it does not resolve.
    Spec(String),
    /// This snapshot.
    Id(BlobId),
    /// No parent: every file is read.
    None,
}

/// Resolves the parent of an ingest labelled `label` (before the lock is taken, as the
/// catalogue is read-only here).
pub fn choose(
    archive: &Archive,
    parent: &Parent,
    label: &str,
) -> Result<Option<BlobId>, ArchiveError> {
    match parent {
        Parent::Spec(spec) => Ok(Some(archive.resolve(spec, None)?.id)),
        Parent::Latest => match archive.resolve("latest", Some(label)) {
            Ok(r) => Ok(Some(r.id)),
            Err(ArchiveError::SnapshotNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        },
        Parent::Id(id) => Ok(Some(*id)),
        Parent::None => Ok(None),
    }
}
