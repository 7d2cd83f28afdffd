//! Pack writer: appends blob records to the current pack object, rotates at the target
//! size, and seals each pack (durable in the store) before it is ever referenced by the
//! index.

use super::{Location, PackError, StoredBlob};
use crate::format::BlobId;
use crate::format::PackId;
use crate::format::pack::{BLOB_HEADER_LEN, BlobHeader, PACK_HEADER_LEN, encode_pack_header};
use crate::format::packidx::{encode_packidx, packidx_name};
use crate::store::{MetaStore, NewObject, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct PackWriter {
    store: Arc<dyn Store>,
    /// Shared by the writers of one session (data packs and tree packs).
    next_id: Arc<AtomicU64>,
    target_size: u64,
    current: Option<Open>,
    /// Sealed packs not yet handed out by `finish`, with their sizes.
    sealed: Vec<(PackId, u64)>,
    /// Every pack this writer sealed, for `discard`.
    created: Vec<PackId>,
    bytes_written: u64,
    /// Where to write each sealed pack's index record (a bucket archive), if anywhere.
    pack_index: Option<Arc<dyn MetaStore>>,
}

struct Open {
    id: PackId,
    object: Box<dyn NewObject>,
    len: u64,
    records: Vec<(BlobId, Location)>,
}

impl PackWriter {
    /// A writer that creates packs numbered from `next_id` in `store`. The caller holds
    /// the archive lock, so no other writer creates packs at the same time.
    pub fn new(store: Arc<dyn Store>, next_id: Arc<AtomicU64>, target_size: u64) -> PackWriter {
        PackWriter {
            store,
            next_id,
            target_size,
            current: None,
            sealed: Vec::new(),
            created: Vec::new(),
            bytes_written: 0,
            pack_index: None,
        }
    }

    /// Writes an index record of each pack sealed (`index/<pack>.idx`) into `meta`,
    /// right after the pack: a bucket archive's other hosts learn the pack from it.
    pub fn with_pack_index(mut self, meta: Arc<dyn MetaStore>) -> PackWriter {
        self.pack_index = Some(meta);
        self
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    fn open_next(&mut self) -> Result<&mut Open, PackError> {
        if self.current.is_none() {
            let id = PackId(self.next_id.fetch_add(1, Ordering::Relaxed));
            let mut object = self.store.create(&id.file_name())?;
            if let Err(e) = object.write_all(&encode_pack_header(id)) {
                object.abort();
                return Err(e.into());
            }
            self.bytes_written += PACK_HEADER_LEN as u64;
            self.current = Some(Open {
                id,
                object,
                len: PACK_HEADER_LEN as u64,
                records: Vec::new(),
            });
        }
        Ok(self.current.as_mut().expect("just opened"))
    }

    /// Appends one blob record; returns where it lives.
    pub fn add(&mut self, blob: &StoredBlob) -> Result<Location, PackError> {
        let header = BlobHeader {
            kind: blob.kind,
            compression: blob.compression,
            id: blob.id,
            raw_len: blob.raw_len,
            stored_len: blob.data.len() as u64,
            data_crc: crc32fast::hash(&blob.data),
        };
        let indexed = self.pack_index.is_some();
        let open = self.open_next()?;
        let offset = open.len;
        open.object.write_all(&header.encode())?;
        open.object.write_all(&blob.data)?;
        let added = (BLOB_HEADER_LEN + blob.data.len()) as u64;
        open.len += added;
        let loc = Location {
            pack: open.id,
            offset,
            kind: blob.kind,
            raw_len: blob.raw_len,
            stored_len: header.stored_len,
        };
        if indexed {
            open.records.push((blob.id, loc));
        }
        let full = open.len >= self.target_size;
        self.bytes_written += added;
        if full {
            self.seal()?;
        }
        Ok(loc)
    }

    /// Makes the current pack durable, if any. After this the pack never changes.
    pub fn seal(&mut self) -> Result<(), PackError> {
        if let Some(Open {
            id,
            object,
            records,
            ..
        }) = self.current.take()
        {
            let size = object.seal()?;
            self.created.push(id);
            self.sealed.push((id, size));
            if let Some(meta) = &self.pack_index {
                meta.put(&packidx_name(id), &encode_packidx(id, &records))?;
            }
        }
        Ok(())
    }

    /// Deletes every pack this writer created. Only for a session that will never
    /// commit: nothing in the index points into these packs. A bucket archive's sealed
    /// packs are kept: other hosts may already have deduplicated against them (they see
    /// a pack as soon as its upload completes); prune removes them once nothing needs
    /// them and they are an hour old. Only the upload under way is aborted.
    pub fn discard(&mut self) {
        if let Some(open) = self.current.take() {
            open.object.abort();
        }
        if self.pack_index.is_some() {
            self.created.clear();
            return;
        }
        for p in self.created.drain(..) {
            let _ = self.store.delete(&p.file_name());
            if let Some(meta) = &self.pack_index {
                let _ = meta.delete(&packidx_name(p));
            }
        }
    }

    /// Seals the current pack and makes every new pack's name durable. Returns the packs
    /// written, with their sizes.
    pub fn finish(&mut self) -> Result<Vec<(PackId, u64)>, PackError> {
        self.seal()?;
        if !self.sealed.is_empty() {
            self.store.sync()?;
        }
        Ok(std::mem::take(&mut self.sealed))
    }
}
