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
//! Threads, per snapshot: the walker (this thread: SRC trees, DST trees), readers (read
//! a SRC chunk, id it for DST, claim it, encode it; one per core) and the DST writer (the
//! session's `put_stored`), joined by bounded channels as in ingest.

use crate::archive::{Archive, ArchiveError, Claims, SnapshotRow, StoredBlob, WriteSession};
use crate::format::BlobId;
use crate::format::pack::BlobKind;
use crate::format::snapshot::{Snapshot, Stats};
use crate::format::tree::{Extent, Node, Payload, encode_tree};
use crate::tree::Visitor;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
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

    /// Rebuilds the snapshot's trees in DST (into `session`; a dry run without one).
    fn rebuild<'s>(
        &mut self,
        record: &Snapshot,
        session: Option<WriteSession<'s>>,
    ) -> Result<Built<'s>, CopyError>
    where
        'a: 's,
    {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8);
        let claims = match &session {
            Some(s) => Claim::Session(s.claims()),
            None => Claim::Dry(self.dst, self.dry_claims.clone()),
        };
        let (job_tx, job_rx) = sync_channel::<BlobId>(workers * 4);
        let (done_tx, done_rx) = channel::<(BlobId, Result<BlobId, CopyError>)>();
        let (blob_tx, blob_rx) = sync_channel::<StoredBlob>(workers * 2);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let abort = AtomicBool::new(false);
        let sent = Sent::default();
        let (src, dst, same_ids, progress) = (self.src, self.dst, self.same_ids, self.progress);
        let dry = session.is_none();
        let src_path = src.root().to_path_buf();
        let dst_path = dst.root().to_path_buf();

        std::thread::scope(|s| {
            for _ in 0..workers {
                let reader = Reader {
                    src,
                    dst,
                    claims: &claims,
                    same_ids,
                    dry,
                    progress,
                    abort: &abort,
                    sent: &sent,
                    src_path: &src_path,
                    dst_path: &dst_path,
                };
                let (rx, done, blobs) = (job_rx.clone(), done_tx.clone(), blob_tx.clone());
                s.spawn(move || reader.run(&rx, &done, &blobs));
            }
            drop((job_rx, done_tx));
            let writer_abort = &abort;
            let writer_sent = &sent;
            let writer =
                s.spawn(move || write_loop(session, blob_rx, writer_abort, writer_sent, progress));
            let mut walker = Walker {
                run: self,
                claims: &claims,
                jobs: Some(job_tx),
                done: done_rx,
                blobs: Some(blob_tx),
                pending: HashSet::new(),
                dry,
                sent: &sent,
            };
            let walked = walker.root(record);
            // However the walk ended: no more jobs or blobs; readers and writer drain.
            if walked.is_err() {
                abort.store(true, Ordering::Relaxed);
            }
            walker.jobs = None;
            walker.blobs = None;
            drop(walker);
            let (session, write_err) = writer.join().map_err(|_| CopyError::Destination {
                path: dst_path.clone(),
                source: Box::new(ArchiveError::Invalid(
                    "internal error: the writer thread panicked".into(),
                )),
            })?;
            if let Some(e) = write_err {
                return Err(CopyError::Destination {
                    path: dst_path.clone(),
                    source: Box::new(e),
                });
            }
            let root = walked?;
            Ok(Built {
                session,
                root,
                blobs_sent: sent.blobs.load(Ordering::Relaxed),
                bytes_sent: sent.bytes.load(Ordering::Relaxed),
                chunks_read: sent.chunks_read.load(Ordering::Relaxed),
                bytes_read: sent.bytes_read.load(Ordering::Relaxed),
            })
        })
    }

    /// Checks the committed copy from DST ([`Verify`]).
    fn verify(&mut self, src_id: &BlobId, id: BlobId, written: &Snapshot) -> Result<(), CopyError> {
        let fail = |source| CopyError::Verify {
            path: self.dst.root().to_path_buf(),
            snapshot: src_id.short(),
            copy: id.short(),
            source: Box::new(source),
        };
        let record = self.dst.load_snapshot(&id).map_err(fail)?;
        if record != *written {
            return Err(fail(ArchiveError::Invalid(
                "the snapshot record read back differs from the one written".into(),
            )));
        }
        let mut v = Verifier {
            dst: self.dst,
            read_data: self.opts.verify == Verify::ReadData,
            trees: &mut self.verified_trees,
            chunks: &mut self.verified_chunks,
        };
        let root = crate::tree::root_node(record.root, record.time);
        if v.trees.insert(record.root) {
            crate::tree::walk(self.dst, &root, &mut (), &mut v).map_err(fail)?;
        }
        Ok(())
    }
}

/// A snapshot's trees rebuilt in DST.
struct Built<'s> {
    session: Option<WriteSession<'s>>,
    root: BlobId,
    blobs_sent: u64,
    bytes_sent: u64,
    chunks_read: u64,
    bytes_read: u64,
}

impl Built<'_> {
    fn count(&self, out: &mut SnapshotCopy) {
        out.blobs_sent = self.blobs_sent;
        out.bytes_sent = self.bytes_sent;
        out.chunks_read = self.chunks_read;
        out.bytes_read = self.bytes_read;
    }
}

/// This snapshot's traffic so far.
#[derive(Default)]
struct Sent {
    blobs: AtomicU64,
    bytes: AtomicU64,
    chunks_read: AtomicU64,
    bytes_read: AtomicU64,
}

impl Sent {
    fn add(&self, progress: &CopyProgress, bytes: u64) {
        self.blobs.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        progress.blobs_sent.fetch_add(1, Ordering::Relaxed);
        progress.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// DST's dedup: the write session's claims, or a dry run's own set over what DST holds.
enum Claim<'s> {
    Session(Claims<'s>),
    Dry(&'s Archive, Arc<Mutex<HashSet<BlobId>>>),
}

impl Claim<'_> {
    /// True when `id` is new to DST: the caller stores it.
    fn claim(&self, id: &BlobId) -> Result<bool, ArchiveError> {
        match self {
            Claim::Session(c) => c.claim(id),
            Claim::Dry(dst, ids) => {
                if dst.contains(id)? {
                    return Ok(false);
                }
                Ok(ids.lock().unwrap_or_else(|e| e.into_inner()).insert(*id))
            }
        }
    }
}

/// A reader thread: SRC chunk → plain bytes → DST id → claimed? → encoded for DST.
struct Reader<'r, 's> {
    src: &'r Archive,
    dst: &'r Archive,
    claims: &'r Claim<'s>,
    same_ids: bool,
    dry: bool,
    progress: &'r CopyProgress,
    abort: &'r AtomicBool,
    sent: &'r Sent,
    src_path: &'r PathBuf,
    dst_path: &'r PathBuf,
}

impl Reader<'_, '_> {
    fn run(
        &self,
        jobs: &Mutex<Receiver<BlobId>>,
        done: &Sender<(BlobId, Result<BlobId, CopyError>)>,
        blobs: &SyncSender<StoredBlob>,
    ) {
        loop {
            let job = match jobs.lock() {
                Ok(r) => r.recv(),
                Err(_) => return,
            };
            let Ok(id) = job else { return };
            let r = if self.abort.load(Ordering::Relaxed)
                || self.progress.stop.load(Ordering::Relaxed)
            {
                Err(CopyError::Interrupted)
            } else {
                self.one(&id, blobs)
            };
            if done.send((id, r)).is_err() {
                return;
            }
        }
    }

    fn one(&self, id: &BlobId, blobs: &SyncSender<StoredBlob>) -> Result<BlobId, CopyError> {
        let src_err = |source| CopyError::Source {
            path: self.src_path.clone(),
            source: Box::new(source),
        };
        let dst_err = |source| CopyError::Destination {
            path: self.dst_path.clone(),
            source: Box::new(source),
        };
        // An encrypted SRC authenticates every blob against its id; a plain one is
        // hashed here (or, with the same ids, by the comparison below).
        let plain = self
            .src
            .read_verified(id, !self.src.encrypted() && !self.same_ids)
            .map_err(src_err)?;
        self.sent.chunks_read.fetch_add(1, Ordering::Relaxed);
        self.sent
            .bytes_read
            .fetch_add(plain.len() as u64, Ordering::Relaxed);
        self.progress.chunks_read.fetch_add(1, Ordering::Relaxed);
        self.progress
            .bytes_read
            .fetch_add(plain.len() as u64, Ordering::Relaxed);
        let codec = self.dst.codec();
        let new = codec.id_of(&plain);
        if self.same_ids && new != *id {
            return Err(src_err(ArchiveError::Invalid(format!(
                "chunk {} does not hash to its id: its stored bytes are damaged",
                id.short()
            ))));
        }
        if self.claims.claim(&new).map_err(dst_err)? {
            if self.dry {
                self.sent.add(self.progress, plain.len() as u64);
            } else {
                let blob = codec.encode(BlobKind::Chunk, new, &plain);
                blobs
                    .send(blob)
                    .map_err(|_| writer_stopped(self.dst_path))?;
            }
        }
        Ok(new)
    }
}

fn writer_stopped(dst: &std::path::Path) -> CopyError {
    CopyError::Destination {
        path: dst.to_path_buf(),
        source: Box::new(ArchiveError::Invalid("the pack writer stopped".into())),
    }
}

/// The DST writer thread: appends every blob to the session's packs.
fn write_loop<'s>(
    mut session: Option<WriteSession<'s>>,
    rx: Receiver<StoredBlob>,
    abort: &AtomicBool,
    sent: &Sent,
    progress: &CopyProgress,
) -> (Option<WriteSession<'s>>, Option<ArchiveError>) {
    let mut err = None;
    for blob in rx {
        let Some(s) = session.as_mut() else { continue };
        if err.is_some() {
            continue; // keep draining so the producers never block
        }
        let before = s.bytes_added();
        match s.put_stored(&blob) {
            Ok(()) => sent.add(progress, s.bytes_added() - before),
            Err(e) => {
                abort.store(true, Ordering::Relaxed);
                err = Some(e);
            }
        }
    }
    (session, err)
}

/// The walk of one SRC snapshot: nodes copied with DST ids, trees rebuilt bottom-up.
struct Walker<'w, 'a, 's> {
    run: &'w mut Run<'a>,
    claims: &'w Claim<'s>,
    jobs: Option<SyncSender<BlobId>>,
    done: Receiver<(BlobId, Result<BlobId, CopyError>)>,
    blobs: Option<SyncSender<StoredBlob>>,
    /// SRC chunks handed to the readers and not yet back.
    pending: HashSet<BlobId>,
    dry: bool,
    sent: &'w Sent,
}

/// A walk's error: the walker's own reads of SRC's trees, or the copy's.
enum WalkError {
    Src(ArchiveError),
    Copy(CopyError),
}

impl From<ArchiveError> for WalkError {
    fn from(e: ArchiveError) -> WalkError {
        WalkError::Src(e)
    }
}

impl Walker<'_, '_, '_> {
    /// Rebuilds the whole snapshot; returns DST's root tree id.
    fn root(&mut self, record: &Snapshot) -> Result<BlobId, CopyError> {
        if let Some(done) = self.run.trees.get(&record.root) {
            return Ok(*done);
        }
        if self.run.same_ids
            && self
                .run
                .dst
                .contains(&record.root)
                .map_err(self.dst_err())?
        {
            return Ok(record.root);
        }
        let root = crate::tree::root_node(record.root, record.time);
        let mut nodes = Vec::new();
        crate::tree::walk(self.run.src, &root, &mut nodes, self).map_err(|e| match e {
            WalkError::Src(source) => self.run.src_err()(source),
            WalkError::Copy(e) => e,
        })?;
        self.store_tree(record.root, nodes)
    }

    fn dst_err(&self) -> impl Fn(ArchiveError) -> CopyError + '_ {
        self.run.dst_err()
    }

    fn stopped(&self) -> bool {
        self.run.progress.stop.load(Ordering::Relaxed)
    }

    /// Hands a SRC chunk to the readers unless it is mapped or on its way already.
    fn want_chunk(&mut self, id: &BlobId) -> Result<(), CopyError> {
        if self.run.chunks.contains_key(id) || self.pending.contains(id) {
            return Ok(());
        }
        if self.run.same_ids && self.run.dst.contains(id).map_err(self.dst_err())? {
            self.run.chunks.insert(*id, *id);
            return Ok(());
        }
        self.pending.insert(*id);
        let jobs = self.jobs.as_ref().expect("jobs open during the walk");
        jobs.send(*id)
            .map_err(|_| writer_stopped(self.run.dst.root()))
    }

    /// DST's id for a SRC chunk, waiting for the readers as long as it takes.
    fn chunk(&mut self, id: &BlobId) -> Result<BlobId, CopyError> {
        loop {
            if let Some(d) = self.run.chunks.get(id) {
                return Ok(*d);
            }
            match self.done.recv() {
                Ok((src, Ok(dst))) => {
                    self.pending.remove(&src);
                    self.run.chunks.insert(src, dst);
                }
                Ok((_, Err(e))) => return Err(e),
                Err(_) => return Err(writer_stopped(self.run.dst.root())),
            }
        }
    }

    /// A directory's DST nodes (files still naming SRC chunks) → its DST tree.
    fn store_tree(&mut self, src_tree: BlobId, mut nodes: Vec<Node>) -> Result<BlobId, CopyError> {
        for n in nodes.iter_mut() {
            if let Payload::File(extents) = &mut n.payload {
                for x in extents.iter_mut() {
                    if let Extent::Data { id, .. } = x {
                        *id = self.chunk(id)?;
                    }
                }
            }
        }
        let bytes = encode_tree(&nodes)
            .map_err(|e| self.dst_err()(ArchiveError::Invalid(format!("encoding tree: {e}"))))?;
        let codec = self.run.dst.codec();
        let id = codec.id_of(&bytes);
        if self.claims.claim(&id).map_err(self.dst_err())? {
            if self.dry {
                self.sent.add(self.run.progress, bytes.len() as u64);
            } else {
                let blob = codec.encode(BlobKind::Tree, id, &bytes);
                let blobs = self.blobs.as_ref().expect("blobs open during the walk");
                blobs
                    .send(blob)
                    .map_err(|_| writer_stopped(self.run.dst.root()))?;
            }
        }
        self.run.trees.insert(src_tree, id);
        Ok(id)
    }
}

impl Visitor for Walker<'_, '_, '_> {
    /// The DST nodes of the directory being rebuilt.
    type Frame = Vec<Node>;
    type Error = WalkError;

    fn visit(
        &mut self,
        parent: &mut Vec<Node>,
        _path: &[u8],
        node: &Node,
    ) -> Result<Option<Vec<Node>>, WalkError> {
        if self.stopped() {
            return Err(WalkError::Copy(CopyError::Interrupted));
        }
        match &node.payload {
            Payload::Dir(sub) => {
                if let Some(d) = self.run.trees.get(sub) {
                    parent.push(with_subtree(node, *d));
                    return Ok(None);
                }
                // Same ids: a tree DST has committed holds its whole subtree.
                if self.run.same_ids
                    && self
                        .run
                        .dst
                        .contains(sub)
                        .map_err(|e| WalkError::Copy(self.dst_err()(e)))?
                {
                    self.run.trees.insert(*sub, *sub);
                    parent.push(node.clone());
                    return Ok(None);
                }
                Ok(Some(Vec::new()))
            }
            Payload::File(extents) => {
                for x in extents {
                    if let Extent::Data { id, .. } = x {
                        self.want_chunk(id).map_err(WalkError::Copy)?;
                    }
                }
                parent.push(node.clone());
                Ok(None)
            }
            Payload::Symlink(_) | Payload::Other => {
                parent.push(node.clone());
                Ok(None)
            }
        }
    }

    fn leave(
        &mut self,
        parent: &mut Vec<Node>,
        frame: Vec<Node>,
        _path: &[u8],
        node: &Node,
    ) -> Result<(), WalkError> {
        let sub = node.subtree().expect("only directories are descended into");
        let id = self.store_tree(sub, frame).map_err(WalkError::Copy)?;
        parent.push(with_subtree(node, id));
        Ok(())
    }
}

fn with_subtree(node: &Node, id: BlobId) -> Node {
    Node {
        payload: Payload::Dir(id),
        ..node.clone()
    }
}

/// Walks a copied snapshot in DST, checking what [`Verify`] says, each tree and chunk
/// once per run.
struct Verifier<'v> {
    dst: &'v Archive,
    read_data: bool,
    trees: &'v mut HashSet<BlobId>,
    chunks: &'v mut HashSet<BlobId>,
}

impl Visitor for Verifier<'_> {
    type Frame = ();
    type Error = ArchiveError;

    fn visit(&mut self, _: &mut (), _: &[u8], node: &Node) -> Result<Option<()>, ArchiveError> {
        for r in crate::tree::refs(node) {
            match r {
                crate::tree::Ref::Tree(id) => {
                    // Reading it (hash-verified, decoded) is the walker's descent.
                    if self.trees.insert(id) {
                        return Ok(Some(()));
                    }
                }
                crate::tree::Ref::Chunk(id) => {
                    if !self.chunks.insert(id) {
                        continue;
                    }
                    if self.read_data {
                        self.dst.read_verified(&id, true)?;
                    } else {
                        let loc = self.dst.location(&id)?;
                        self.dst.check_header(&id, &loc)?;
                    }
                }
            }
        }
        Ok(None)
    }
}

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
