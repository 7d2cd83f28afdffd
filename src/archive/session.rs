//! One writer's session: the dedup (`Claims`, the only place it is decided), the pack
//! writers for chunks and for metadata, and the commit protocol — blobs, then trees, then
//! the snapshot record; packs sealed; then one index transaction makes them visible.

use super::*;

/// The session's dedup: which blob ids are committed or already claimed by this session.
/// Clones share one set, so ingest's walker claims ids on its thread while the session
/// writes on another.
#[derive(Clone)]
pub struct Claims<'a> {
    pub(super) archive: &'a Archive,
    pub(super) ids: Arc<std::sync::Mutex<HashSet<BlobId>>>,
}

impl Claims<'_> {
    fn ids(&self) -> std::sync::MutexGuard<'_, HashSet<BlobId>> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn known(&self, id: &BlobId) -> Result<bool, ArchiveError> {
        Ok(self.ids().contains(id) || self.archive.index.contains(id)?)
    }

    fn insert(&self, id: BlobId) {
        self.ids().insert(id);
    }

    /// True when `id` is new: the caller must then store that blob in this session.
    /// False when it is committed or claimed already.
    pub fn claim(&self, id: &BlobId) -> Result<bool, ArchiveError> {
        if self.known(id)? {
            return Ok(false);
        }
        Ok(self.ids().insert(*id))
    }
}

/// One writer's session: blobs go into new packs; nothing is visible to readers until
/// [`WriteSession::commit`]. Dropping a session without committing leaves only
/// unreferenced pack bytes, which repair or prune clean up.
pub struct WriteSession<'a> {
    pub(super) archive: &'a Archive,
    pub(super) _lock: ArchiveLock,
    /// File chunks.
    pub(super) writer: PackWriter,
    /// Trees, snapshot and forget records: kept in packs of their own, so everything a
    /// walk of a snapshot reads (ingest's parent, find on a mount, check) lies together
    /// in a few megabytes instead of scattered among gigabytes of data.
    pub(super) meta: PackWriter,
    pub(super) added: Vec<(BlobId, Location)>,
    /// Ids stored or about to be stored in this session: the one place dedup is decided.
    pub(super) seen: Claims<'a>,
    pub(super) bytes_added: u64,
    pub(super) committed: bool,
    /// The archive's append-only flag as read under this session's lock.
    pub(super) append_only: bool,
}

impl Drop for WriteSession<'_> {
    /// A session that ends without committing (an error, a failed command, an
    /// interrupt) removes the packs it wrote: no index row points into them. After a
    /// crash (no Drop), such packs stay as unreferenced files until repair or prune.
    fn drop(&mut self) {
        if !self.committed {
            self.writer.discard();
            self.meta.discard();
        }
    }
}

impl<'a> WriteSession<'a> {
    pub fn archive(&self) -> &'a Archive {
        self.archive
    }

    /// Refuses `what` (forget, prune) when the archive is append-only, as read under this
    /// session's lock. The destructive commits call it themselves; prune also calls it
    /// before its work.
    pub fn refuse_if_append_only(&self, what: &'static str) -> Result<(), ArchiveError> {
        if self.append_only {
            return Err(ArchiveError::AppendOnly(what));
        }
        Ok(())
    }

    /// The session's dedup, for a producer on another thread (ingest's walker).
    pub fn claims(&self) -> Claims<'a> {
        self.seen.clone()
    }

    /// True when the blob is already stored (committed, or written in this session).
    pub fn has(&self, id: &BlobId) -> Result<bool, ArchiveError> {
        self.seen.known(id)
    }

    /// Appends an already-compressed blob.
    pub fn put_stored(&mut self, blob: &StoredBlob) -> Result<(), ArchiveError> {
        let loc = self.writer_for(blob.kind).add(blob)?;
        self.seen.insert(blob.id);
        self.bytes_added += crate::format::pack::BLOB_HEADER_LEN as u64 + loc.stored_len;
        self.added.push((blob.id, loc));
        Ok(())
    }

    /// Encodes and appends `raw` unless an identical blob exists. Returns its id.
    pub fn put(&mut self, kind: BlobKind, raw: &[u8]) -> Result<BlobId, ArchiveError> {
        let codec = self.archive.codec();
        let id = codec.id_of(raw);
        if !self.has(&id)? {
            self.put_stored(&codec.encode(kind, id, raw))?;
        }
        Ok(id)
    }

    pub fn put_tree(&mut self, nodes: &[Node]) -> Result<BlobId, ArchiveError> {
        let bytes =
            encode_tree(nodes).map_err(|e| ArchiveError::Invalid(format!("encoding tree: {e}")))?;
        self.put(BlobKind::Tree, &bytes)
    }

    /// Bytes appended to packs so far (record headers included).
    pub fn bytes_added(&self) -> u64 {
        self.bytes_added
    }

    /// The commit protocol: the snapshot record goes into the pack after every blob it
    /// references; the pack and the packs directory are fsynced; then one SQLite
    /// transaction makes blobs and snapshot visible together.
    pub fn commit(mut self, snapshot: &mut Snapshot) -> Result<BlobId, ArchiveError> {
        snapshot.stats.bytes_added = self.bytes_added;
        let bytes = snapshot.encode();
        let codec = self.archive.codec();
        let id = codec.id_of(&bytes);
        self.put_stored(&codec.encode(BlobKind::Snapshot, id, &bytes))?;
        self.finish_packs(Some((id, snapshot)))?;
        Ok(id)
    }

    /// Appends a forget record and, in the same index transaction, removes the
    /// forgotten snapshots from the catalogue. Refused on an append-only archive.
    pub fn commit_forget(
        mut self,
        record: &crate::format::forget::ForgetRecord,
    ) -> Result<BlobId, ArchiveError> {
        self.refuse_if_append_only("forget")?;
        let bytes = record.encode();
        let codec = self.archive.codec();
        let id = codec.id_of(&bytes);
        self.put_stored(&codec.encode(BlobKind::Forget, id, &bytes))?;
        let packs = self.seal_all()?;
        self.committed = true;
        self.archive
            .index
            .commit_forget(&packs, &self.added, &record.snapshots)?;
        Ok(id)
    }

    /// Seals every pack of this session and fsyncs the directory; returns the index rows
    /// for them.
    fn seal_all(&mut self) -> Result<Vec<(PackId, u64, u64)>, ArchiveError> {
        let mut sealed = self.writer.finish()?;
        sealed.extend(self.meta.finish()?);
        Ok(sealed
            .into_iter()
            .map(|(p, size)| {
                let n = self.added.iter().filter(|(_, l)| l.pack == p).count() as u64;
                (p, size, n)
            })
            .collect())
    }

    /// Copies a committed blob's record, as stored, into this session's packs (prune):
    /// the record is verified first and never re-encoded. Returns its new location.
    pub fn copy_blob(&mut self, id: &BlobId, loc: &Location) -> Result<Location, ArchiveError> {
        let (h, stored) = self.archive.packs.read_stored(id, loc)?;
        Ok(self.writer_for(h.kind).add(&StoredBlob {
            kind: h.kind,
            id: *id,
            raw_len: h.raw_len,
            compression: h.compression,
            data: stored,
        })?)
    }

    /// The pack writer for a kind of blob.
    fn writer_for(&mut self, kind: BlobKind) -> &mut PackWriter {
        match kind {
            BlobKind::Chunk => &mut self.writer,
            BlobKind::Tree | BlobKind::Snapshot | BlobKind::Forget => &mut self.meta,
        }
    }

    /// Prune's commit: seal the new packs, switch the index in one transaction, and only
    /// then delete the old packs.
    pub fn commit_switch(
        mut self,
        moved: &[(BlobId, Location)],
        removed_blobs: &[BlobId],
        removed_packs: &[PackId],
    ) -> Result<(), ArchiveError> {
        let packs = self.seal_all()?;
        let mut packs_with_counts = packs;
        for (p, _, n) in packs_with_counts.iter_mut() {
            *n = moved.iter().filter(|(_, l)| l.pack == *p).count() as u64;
        }
        self.refuse_if_append_only("prune")?;
        self.committed = true;
        self.archive
            .index
            .switch(&packs_with_counts, moved, removed_blobs, removed_packs)?;
        // Readers that looked a blob up before the switch find its pack gone and look
        // it up again (see `read_verified`).
        for p in removed_packs {
            let _ = self.archive.store.delete(&p.file_name());
            if self.archive.place.is_bucket() {
                let _ = self
                    .archive
                    .place
                    .meta
                    .delete(&crate::format::packidx::packidx_name(*p));
            }
        }
        let _ = self.archive.store.sync();
        Ok(())
    }

    fn finish_packs(&mut self, snapshot: Option<(BlobId, &Snapshot)>) -> Result<(), ArchiveError> {
        let packs = self.seal_all()?;
        // From here on the packs may be referenced even if the commit reports an error
        // (an I/O error can leave it in doubt): never discard them after this point.
        self.committed = true;
        self.archive.index.commit(&packs, &self.added, snapshot)?;
        Ok(())
    }
}
