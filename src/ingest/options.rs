//! What the caller asks of one ingest (`IngestOptions`) and the counters it can watch
//! while it runs (`Progress`). Plain data: no behaviour here.

use super::parent::Parent;
use super::source::SourceSpec;
use std::sync::atomic::AtomicU64;

pub struct IngestOptions {
    pub sources: Vec<SourceSpec>,
    pub label: String,
    pub tags: Vec<String>,
    /// Glob patterns: without '/', matched against each name; with '/', against the
    /// path inside the snapshot.
    pub excludes: Vec<Vec<u8>>,
    pub one_file_system: bool,
    /// The snapshot to compare against (files unchanged since it are not read again);
    /// by default the latest snapshot with the same label.
    pub parent: Parent,
    pub strict: bool,
    pub argv: Vec<String>,
    /// Shell command run after the lock is taken and before any source is read (e.g.
    /// stop a service). If it fails, nothing is ingested (and `after` still runs).
    pub before: Option<String>,
    /// Shell command run once the sources are read, whatever happened (e.g. start the
    /// service again): also when the ingest fails or is interrupted.
    pub after: Option<String>,
}

/// Counters the CLI reads to draw a progress bar.
#[derive(Default)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_seen: AtomicU64,
}
