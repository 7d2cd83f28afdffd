//! Rebuilding one snapshot in DST: the walker (this thread) walks SRC's trees and
//! rebuilds them bottom-up with DST's ids, reader threads turn SRC chunks into DST
//! chunks (read, id, claim, encode), and the writer thread appends to the session's packs.
//! Bounded channels join them as in ingest; the readers' answers come back on an
//! unbounded one, so the walker never waits on a reader that waits on it.

use super::*;
use crate::archive::{Claims, StoredBlob, WriteSession};
use crate::format::pack::BlobKind;
use crate::format::tree::{Extent, Node, Payload, encode_tree};
use crate::tree::Visitor;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

impl<'a> Run<'a> {
    /// Rebuilds the snapshot's trees in DST (into `session`; a dry run without one).
    pub(super) fn rebuild<'s>(
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
}

/// A snapshot's trees rebuilt in DST.
pub(super) struct Built<'s> {
    pub(super) session: Option<WriteSession<'s>>,
    pub(super) root: BlobId,
    blobs_sent: u64,
    bytes_sent: u64,
    chunks_read: u64,
    bytes_read: u64,
}

impl Built<'_> {
    pub(super) fn count(&self, out: &mut SnapshotCopy) {
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
