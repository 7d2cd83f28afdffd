//! The storage seam: where pack objects live. A [`Store`] lists objects, reads a byte
//! range of one, creates a new object and seals it (durable once `seal` returns), deletes
//! one, and sets one aside (quarantine). It knows nothing of the pack format: names are
//! opaque (`<16 hex digits>.pack`), contents are bytes.
//!
//! Invariants every implementation keeps:
//! - an object is written once, by one [`NewObject`], and never modified after `seal`;
//! - an object is visible to `list` and `read_at` either whole (sealed) or, for a local
//!   directory after a crash, as a torn prefix that the pack scanner recognises (a bucket
//!   never shows a partial upload);
//! - a read never returns fewer bytes than asked: it fails with [`StoreError::Short`].
//!
//! Implementations: [`local::LocalStore`] (a directory, O_DIRECT writes, a descriptor
//! cache, read-ahead hints), [`s3::Bucket`] (an S3-compatible bucket: ranged GETs,
//! multipart uploads, timeouts and retries), [`cache::CachedStore`], which wraps another
//! (remote) store with a bounded on-disk cache of whole objects and byte ranges, and, in
//! tests, [`faulty::FaultyStore`], which wraps another store and injects failed or short
//! reads, failed seals and vanished objects.

pub mod cache;
#[cfg(test)]
pub mod faulty;
pub mod local;
pub mod s3;
pub mod url;

use std::io;
use thiserror::Error;

/// What a store knows of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub name: String,
    pub size: u64,
}

/// An entry in the store's namespace that is not an object it can hold (a directory, a
/// socket, …): reported by `check`, skipped by everything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stray {
    pub name: String,
    pub what: String,
}

#[derive(Debug, Error)]
pub enum StoreError {
    /// The object does not exist (never written, or deleted by prune meanwhile).
    #[error("{location}: no such object")]
    NotFound { location: String },
    /// The object ends before the range asked for.
    #[error("{location}: object is {size} bytes, read asked for {want} at {offset}")]
    Short {
        location: String,
        offset: u64,
        want: u64,
        size: u64,
    },
    #[error("{location}: {source}")]
    Io {
        location: String,
        #[source]
        source: io::Error,
    },
    /// The object store's endpoint did not take the connection (wrong host or port, the
    /// store is down, DNS or TLS failure).
    #[error(
        "{location}: cannot reach the object store ({detail}): check the host and port in the URL and that the store is running"
    )]
    Unreachable { location: String, detail: String },
    /// The object store took the connection but did not answer in time, retries included.
    #[error(
        "{location}: the object store did not answer within {secs} s, retries included: check that it is healthy, or allow more time with STRATA_S3_TIMEOUT=SECONDS"
    )]
    TimedOut { location: String, secs: f64 },
    /// The bucket named in the URL does not exist.
    #[error(
        "{location}: no such bucket: check the bucket name in the URL, or create it (Garage: `garage bucket create NAME`)"
    )]
    NoSuchBucket { location: String },
    /// The store refused the key: unknown key id, wrong secret, or no permission on the
    /// bucket.
    #[error(
        "{location}: access denied ({detail}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and that the key may read and write the bucket"
    )]
    AccessDenied { location: String, detail: String },
    /// The requests were signed for another region than the store's.
    #[error(
        "{location}: the object store expects region {expected:?}, not {region:?}: set AWS_DEFAULT_REGION={expected}"
    )]
    WrongRegion {
        location: String,
        region: String,
        expected: String,
    },
    /// Missing or malformed settings (credentials, timeouts).
    #[error("{location}: {what}")]
    Config { location: String, what: String },
    /// Any other failure the object store reported (after retries).
    #[error("{location}: object store error: {detail}")]
    Remote { location: String, detail: String },
    /// An operation this kind of store cannot do.
    #[error("{location}: not supported by this store: {what}")]
    Unsupported { location: String, what: String },
}

impl StoreError {
    /// The object store could not be used at all: unreachable, too slow, no such bucket,
    /// refused credentials or region, missing settings (the CLI's exit code 7).
    pub fn is_store_unusable(&self) -> bool {
        matches!(
            self,
            StoreError::Unreachable { .. }
                | StoreError::TimedOut { .. }
                | StoreError::NoSuchBucket { .. }
                | StoreError::AccessDenied { .. }
                | StoreError::WrongRegion { .. }
                | StoreError::Config { .. }
        )
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// The underlying OS error, if there is one (for ENOSPC hints).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            StoreError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Where the error happened, as shown to the user.
    pub fn location(&self) -> &str {
        match self {
            StoreError::NotFound { location }
            | StoreError::Short { location, .. }
            | StoreError::Io { location, .. }
            | StoreError::Unreachable { location, .. }
            | StoreError::TimedOut { location, .. }
            | StoreError::NoSuchBucket { location }
            | StoreError::AccessDenied { location, .. }
            | StoreError::WrongRegion { location, .. }
            | StoreError::Config { location, .. }
            | StoreError::Remote { location, .. }
            | StoreError::Unsupported { location, .. } => location,
        }
    }
}

/// A storage backend for pack objects.
pub trait Store: Send + Sync {
    /// How an object is named to the user: a path for a directory, a URL for a bucket.
    fn location(&self, name: &str) -> String;

    /// Every object, sorted by name, and every entry that is not an object.
    fn list(&self) -> Result<(Vec<ObjectMeta>, Vec<Stray>), StoreError>;

    /// The size of one object.
    fn size(&self, name: &str) -> Result<u64, StoreError>;

    /// Fills `buf` with the bytes at `offset`; fails with `Short` if the object ends
    /// before `offset + buf.len()`.
    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), StoreError>;

    /// The whole object.
    fn read_all(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let size = self.size(name)?;
        let mut buf = vec![0u8; usize::try_from(size).unwrap_or(usize::MAX)];
        self.read_at(name, 0, &mut buf)?;
        Ok(buf)
    }

    /// A hint that the whole object will be read soon (tree packs on first use).
    fn will_need(&self, _name: &str) {}

    /// Forgets anything cached about an object (an open descriptor): it may have been
    /// deleted and a new object made under its name.
    fn evict(&self, _name: &str) {}

    /// Starts a new object. Fails if one of that name exists.
    fn create(&self, name: &str) -> Result<Box<dyn NewObject>, StoreError>;

    /// Removes an object; removing one that is already gone is not an error.
    fn delete(&self, name: &str) -> Result<(), StoreError>;

    /// Makes earlier `seal`s' and `delete`s' directory changes durable (a directory fsync
    /// for a local store; nothing for a bucket, where each request is durable).
    fn sync(&self) -> Result<(), StoreError>;

    /// Moves an object out of the namespace readers see, keeping its bytes for
    /// inspection; returns where it went.
    fn set_aside(&self, name: &str) -> Result<String, StoreError>;

    /// Keeps the first `len` bytes of an object that a crash left torn, and sets the rest
    /// aside (returns where it went). Only for tails nothing references.
    fn cut_tail(&self, name: &str, len: u64) -> Result<String, StoreError>;

    /// Total bytes held, for `statfs`.
    fn total_size(&self) -> Result<u64, StoreError> {
        Ok(self.list()?.0.iter().map(|o| o.size).sum())
    }
}

/// An object being written. Nothing of it may be taken for data before [`seal`].
///
/// [`seal`]: NewObject::seal
pub trait NewObject: Send {
    fn write_all(&mut self, data: &[u8]) -> Result<(), StoreError>;
    /// Makes the object durable and whole; returns its size.
    fn seal(self: Box<Self>) -> Result<u64, StoreError>;
    /// Gives up: removes what was written.
    fn abort(self: Box<Self>);
}

/// The archive's small named files beside the packs: `config`, `keys/<16 hex>.key`,
/// `locks/<name>`. Names are relative to the archive (`keys/00ab….key`), with `/` as the
/// only separator. A local archive keeps them as files in its directory; a bucket as
/// objects under its prefix.
pub trait MetaStore: Send + Sync {
    /// How a name is shown to the user: a path, or a URL.
    fn location(&self, name: &str) -> String;
    /// The whole file, or `None` when there is none of that name.
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes the whole file, replacing any of that name; a reader sees the old bytes or
    /// the new ones, never a mix, and the write is durable when this returns.
    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// The files whose names start with `prefix` (`"keys/"`), sorted by name.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;
    /// Removes a file; removing one that is already gone is not an error.
    fn delete(&self, name: &str) -> Result<(), StoreError>;
}
