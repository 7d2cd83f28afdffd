//! `copy`: snapshots from one archive (SRC) into another (DST), sending only the blobs DST
//! lacks. Works through the [`Archive`] API alone, so either side may be any kind of
//! archive the API opens.
//!
//! Blob ids are keyed per archive (an encrypted archive hashes with its own id key), so
//! a SRC id means nothing in DST: every chunk is read from SRC as plain bytes and `put`
//! into DST under DST's id (DST's write session dedups it), and every tree is rebuilt
//! bottom-up with DST's ids for its chunks and subtrees. Within one run, SRC tree id →
//! DST tree id and SRC chunk id → DST chunk id are remembered, so what snapshots share is
//! read once. When both archives compute ids the same way (both unencrypted), a blob DST
//! already has is not read at all: a committed tree in DST holds its whole subtree.
//!
//! Invariants:
//! - One write session, hence one commit, per snapshot: a crash or an error loses at
//!   most the snapshot in flight (its packs are unreferenced; `repair` or `prune` tidies
//!   them), and a rerun skips what is already there.
//! - "The same snapshot" ([`same_snapshot`]): equal records apart from the root tree,
//!   the parent and `bytes_added`, the three fields that are either ids in one archive's
//!   key space or what one commit added to one archive. A snapshot of SRC with a twin in
//!   DST is skipped; the check is made again under DST's writer lock.
//! - A copied snapshot's parent is the DST twin of SRC's parent when DST has one, else
//!   none (the parent only names what the ingest compared against).
//! - After each commit the copy is verified from DST ([`Verify`]); what the run verified
//!   already (trees, chunks) is not verified again.
//!
//! Modules: this one (the API, selection, "the same snapshot", one run's state and the
//! per-snapshot protocol) → `rebuild` (the threads that rebuild one snapshot in DST: the
//! walker, one reader per core, the writer) and `verify` (the check after a commit).

use crate::archive::{Archive, ArchiveError, SnapshotRow};
use crate::format::BlobId;
use crate::format::snapshot::{Snapshot, Stats};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CopyError {
    #[error("source archive {}: {source}", .path.display())]
    Source {
        path: PathBuf,
        #[source]
        source: Box<ArchiveError>,
    },
    #[error("destination archive {}: {source}", .path.display())]
    Destination {
        path: PathBuf,
        #[source]
        source: Box<ArchiveError>,
    },
    #[error(
        "snapshot {snapshot} was committed to {} as {copy} but does not verify: {source}",
        .path.display()
    )]
    Verify {
        path: PathBuf,
        snapshot: String,
        copy: String,
        #[source]
        source: Box<ArchiveError>,
    },
    #[error(
        "interrupted: the snapshots copied before it are kept; nothing of the one in flight was committed"
    )]
    Interrupted,
}

/// How each copied snapshot is checked in DST once committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Every tree re-read from DST (hash-verified and decoded) and, for every chunk a
    /// file references, its record header read from its pack and matched with the
    /// index (id, kind, length): everything is there, nothing's bytes are read.
    Records,
    /// As `Records`, and every chunk read back whole: authenticated (encrypted), crc32
    /// and BLAKE3 checked.
    ReadData,
}

pub struct CopyOptions {
    /// SRC snapshots to copy, in the order to copy them ([`select`]).
    pub snapshots: Vec<BlobId>,
    pub verify: Verify,
    /// Work out what would be copied and sent (reading SRC as a copy would), write
    /// nothing and take no lock.
    pub dry_run: bool,
}

/// Counters a progress bar reads, and the flag that stops the copy (a signal).
#[derive(Default)]
pub struct CopyProgress {
    /// 1-based position of the snapshot in flight, and how many are selected.
    pub snapshot: AtomicU64,
    pub total: AtomicU64,
    /// Chunks read from SRC and their plain bytes.
    pub chunks_read: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Blobs (chunks and trees) sent to DST and their record bytes (plain bytes in a dry
    /// run).
    pub blobs_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Set to stop: the snapshot in flight is abandoned (its packs removed).
    pub stop: AtomicBool,
}

impl CopyProgress {
    /// All zero (a `static` for a signal handler to reach).
    pub const fn new() -> CopyProgress {
        CopyProgress {
            snapshot: AtomicU64::new(0),
            total: AtomicU64::new(0),
            chunks_read: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            blobs_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Copied,
    /// DST had the same snapshot already.
    Skipped,
    /// A dry run: would be copied.
    WouldCopy,
}

/// What happened to one selected snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotCopy {
    pub source: BlobId,
    /// The copy's id in DST (or its twin's, when skipped); `None` in a dry run.
    pub destination: Option<BlobId>,
    pub action: Action,
    /// SRC's record.
    pub record: Snapshot,
    /// Chunks and trees appended to DST and their record bytes (header and stored
    /// bytes, as `bytes_added` counts them; the snapshot record and pack headers are not
    /// counted). A dry run counts the plain bytes it would send.
    pub blobs_sent: u64,
    pub bytes_sent: u64,
    /// Chunks read from SRC, and their plain bytes.
    pub chunks_read: u64,
    pub bytes_read: u64,
    pub seconds: f64,
}

pub struct CopyReport {
    pub snapshots: Vec<SnapshotCopy>,
    /// Both archives compute the same ids (blobs DST has were not read).
    pub same_ids: bool,
    pub seconds: f64,
}

impl CopyReport {
    pub fn count(&self, action: Action) -> usize {
        self.snapshots.iter().filter(|s| s.action == action).count()
    }
    pub fn blobs_sent(&self) -> u64 {
        self.snapshots.iter().map(|s| s.blobs_sent).sum()
    }
    pub fn bytes_sent(&self) -> u64 {
        self.snapshots.iter().map(|s| s.bytes_sent).sum()
    }
    pub fn chunks_read(&self) -> u64 {
        self.snapshots.iter().map(|s| s.chunks_read).sum()
    }
    pub fn bytes_read(&self) -> u64 {
        self.snapshots.iter().map(|s| s.bytes_read).sum()
    }
}

/// True when `a` and `b` record the same snapshot: every field equal except the root
/// tree, the parent (ids in each archive's own key space) and `stats.bytes_added` (what
/// the commit added to that archive). Time (to the nanosecond), host, label, tags,
/// sources, command line, commands and their exit codes, unreadable paths and the other
/// stats must all match.
pub fn same_snapshot(a: &Snapshot, b: &Snapshot) -> bool {
    fn key(s: &Snapshot) -> Snapshot {
        Snapshot {
            root: BlobId([0; 32]),
            parent: None,
            stats: Stats {
                bytes_added: 0,
                ..s.stats
            },
            ..s.clone()
        }
    }
    a.time == b.time && a.label == b.label && key(a) == key(b)
}

/// The SRC snapshots a copy takes, in SRC's commit order, each once: those `specs` name
/// (`latest`, `latest~N`, an id or a unique prefix; `latest` within `label` when given),
/// or, without specs, every snapshot (of `label`, when given).
pub fn select(
    src: &Archive,
    specs: &[String],
    label: Option<&str>,
) -> Result<Vec<SnapshotRow>, ArchiveError> {
    let all = src.snapshots()?;
    if specs.is_empty() {
        return Ok(all
            .into_iter()
            .filter(|r| label.is_none_or(|l| r.label == l))
            .collect());
    }
    let mut wanted = HashSet::new();
    for spec in specs {
        wanted.insert(src.resolve(spec, label)?.id);
    }
    Ok(all.into_iter().filter(|r| wanted.contains(&r.id)).collect())
}

/// The id of DST's twin of `record` ([`same_snapshot`]), if DST has one.
pub fn find_twin(dst: &Archive, record: &Snapshot) -> Result<Option<BlobId>, ArchiveError> {
    twin_among(dst, &dst.snapshots()?, record)
}

/// The twin of `record` among DST's catalogue rows `rows`: only rows with its time, label
/// and host are read.
fn twin_among(
    dst: &Archive,
    rows: &[SnapshotRow],
    record: &Snapshot,
) -> Result<Option<BlobId>, ArchiveError> {
    for row in rows {
        if row.time != record.time || row.label != record.label || row.host != record.host {
            continue;
        }
        if same_snapshot(&dst.load_snapshot(&row.id)?, record) {
            return Ok(Some(row.id));
        }
    }
    Ok(None)
}

/// Copies the snapshots `opts` names from `src` into `dst`, one commit each, in order;
/// `each` hears about every snapshot as soon as it is done.
pub fn copy(
    src: &Archive,
    dst: &Archive,
    opts: &CopyOptions,
    progress: &CopyProgress,
    each: &mut dyn FnMut(&SnapshotCopy),
) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    let mut run = Run::new(src, dst, opts, progress);
    run.listed = dst.snapshots().map_err(run.dst_err())?;
    progress
        .total
        .store(opts.snapshots.len() as u64, Ordering::Relaxed);
    let mut done = Vec::new();
    for (i, id) in opts.snapshots.iter().enumerate() {
        if progress.stop.load(Ordering::Relaxed) {
            return Err(CopyError::Interrupted);
        }
        progress.snapshot.store(i as u64 + 1, Ordering::Relaxed);
        let one = run.one(id)?;
        each(&one);
        done.push(one);
    }
    Ok(CopyReport {
        snapshots: done,
        same_ids: run.same_ids,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One run's state: what it mapped and verified so far.
struct Run<'a> {
    src: &'a Archive,
    dst: &'a Archive,
    opts: &'a CopyOptions,
    progress: &'a CopyProgress,
    same_ids: bool,
    /// SRC id → DST id of trees and chunks stored (or found) in DST during this run.
    trees: HashMap<BlobId, BlobId>,
    chunks: HashMap<BlobId, BlobId>,
    /// SRC snapshot → its copy (or twin) in DST.
    snapshots: HashMap<BlobId, BlobId>,
    /// DST's catalogue when the run started: a snapshot with a twin there is skipped
    /// without taking the lock (a second copy costs one listing).
    listed: Vec<SnapshotRow>,
    /// DST trees and chunks verified after a commit.
    verified_trees: HashSet<BlobId>,
    verified_chunks: HashSet<BlobId>,
    /// A dry run's stand-in for a session's claims: what it would have stored.
    dry_claims: Arc<Mutex<HashSet<BlobId>>>,
}

impl<'a> Run<'a> {
    fn new(
        src: &'a Archive,
        dst: &'a Archive,
        opts: &'a CopyOptions,
        progress: &'a CopyProgress,
    ) -> Run<'a> {
        // Same ids for the same bytes: both unencrypted (or one archive's key twice).
        let probe = b"strata copy: do both archives name blobs alike?";
        let same_ids = src.codec().id_of(probe) == dst.codec().id_of(probe);
        Run {
            src,
            dst,
            opts,
            progress,
            same_ids,
            trees: HashMap::new(),
            chunks: HashMap::new(),
            snapshots: HashMap::new(),
            listed: Vec::new(),
            verified_trees: HashSet::new(),
            verified_chunks: HashSet::new(),
            dry_claims: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    fn src_err(&self) -> impl Fn(ArchiveError) -> CopyError + '_ {
        |source| CopyError::Source {
            path: self.src.root().to_path_buf(),
            source: Box::new(source),
        }
    }

    fn dst_err(&self) -> impl Fn(ArchiveError) -> CopyError + '_ {
        |source| CopyError::Destination {
            path: self.dst.root().to_path_buf(),
            source: Box::new(source),
        }
    }

    /// Copies (or skips) one SRC snapshot.
    fn one(&mut self, id: &BlobId) -> Result<SnapshotCopy, CopyError> {
        let started = Instant::now();
        let record = self.src.load_snapshot(id).map_err(self.src_err())?;
        let mut out = SnapshotCopy {
            source: *id,
            destination: None,
            action: Action::WouldCopy,
            record,
            blobs_sent: 0,
            bytes_sent: 0,
            chunks_read: 0,
            bytes_read: 0,
            seconds: 0.0,
        };
        let known = twin_among(self.dst, &self.listed, &out.record).map_err(self.dst_err())?;
        if let Some(twin) = known {
            self.snapshots.insert(*id, twin);
            out.action = Action::Skipped;
            out.destination = Some(twin);
            out.seconds = started.elapsed().as_secs_f64();
            return Ok(out);
        }
        if self.opts.dry_run {
            let built = self.rebuild(&out.record, None)?;
            built.count(&mut out);
            out.seconds = started.elapsed().as_secs_f64();
            return Ok(out);
        }
        // The writer lock first, then a fresh look for a twin: two copies into one DST
        // cannot both take the same snapshot.
        let session = self.dst.begin_write().map_err(self.dst_err())?;
        if let Some(twin) = find_twin(self.dst, &out.record).map_err(self.dst_err())? {
            drop(session);
            self.snapshots.insert(*id, twin);
            out.action = Action::Skipped;
            out.destination = Some(twin);
            out.seconds = started.elapsed().as_secs_f64();
            return Ok(out);
        }
        let built = self.rebuild(&out.record, Some(session))?;
        built.count(&mut out);
        let session = built.session.expect("a real run has a session");
        let mut copy = out.record.clone();
        copy.root = built.root;
        copy.parent = self.parent_in_dst(&out.record)?;
        let new_id = session.commit(&mut copy).map_err(self.dst_err())?;
        self.snapshots.insert(*id, new_id);
        out.action = Action::Copied;
        out.destination = Some(new_id);
        self.verify(id, new_id, &copy)?;
        out.seconds = started.elapsed().as_secs_f64();
        Ok(out)
    }

    /// The DST twin of the snapshot's parent, if SRC still has the parent and DST a twin.
    fn parent_in_dst(&self, record: &Snapshot) -> Result<Option<BlobId>, CopyError> {
        let Some(parent) = record.parent else {
            return Ok(None);
        };
        if let Some(d) = self.snapshots.get(&parent) {
            return Ok(Some(*d));
        }
        if !self.src.has_snapshot(&parent).map_err(self.src_err())? {
            return Ok(None);
        }
        let parent = self.src.load_snapshot(&parent).map_err(self.src_err())?;
        twin_among(self.dst, &self.listed, &parent).map_err(self.dst_err())
    }
}

mod rebuild;
mod verify;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::{CommandRun, PathError, Source};

    fn record() -> Snapshot {
        Snapshot {
            time: (1_790_000_000, 123_456_789),
            host: "jira-1".into(),
            label: "jira".into(),
            tags: vec!["nightly".into()],
            parent: Some(BlobId([7; 32])),
            root: BlobId([1; 32]),
            sources: vec![Source {
                name: "export".into(),
                origin: "/var/jira/export".into(),
                parents: Some(Vec::new()),
            }],
            argv: vec!["strata".into(), "ingest".into()],
            commands: vec![CommandRun {
                command: "before: true".into(),
                exit_code: 0,
            }],
            errors: vec![PathError {
                path: b"export/x".to_vec(),
                message: "Permission denied".into(),
            }],
            stats: Stats {
                files: 3,
                bytes_added: 1000,
                ..Stats::default()
            },
        }
    }

    #[test]
    fn the_same_snapshot_ignores_root_parent_and_bytes_added_only() {
        let a = record();
        let mut b = record();
        b.root = BlobId([2; 32]);
        b.parent = None;
        b.stats.bytes_added = 5;
        assert!(same_snapshot(&a, &b), "root, parent and bytes_added differ");
        type Change = fn(&mut Snapshot);
        let changes: [(&str, Change); 11] = [
            ("time ns", |s| s.time.1 += 1),
            ("host", |s| s.host.push('x')),
            ("label", |s| s.label.clear()),
            ("tags", |s| s.tags.clear()),
            ("source origin", |s| s.sources[0].origin.push('/')),
            ("source parents", |s| s.sources[0].parents = None),
            ("argv", |s| {
                s.argv.pop();
            }),
            ("command exit", |s| s.commands[0].exit_code = 1),
            ("errors", |s| s.errors.clear()),
            ("files", |s| s.stats.files += 1),
            ("duration", |s| s.stats.duration_ms += 1),
        ];
        for (what, change) in changes {
            let mut c = record();
            change(&mut c);
            assert!(
                !same_snapshot(&a, &c),
                "{what} differs: not the same snapshot"
            );
        }
    }
}
