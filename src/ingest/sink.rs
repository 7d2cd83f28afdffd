//! The sink: where the walker hands every chunk and tree. It asks the write session's
//! `Claims` whether the blob is new (the session is the only dedup) and sends only new
//! blobs on to the compressor threads. Knows nothing of threads beyond its channel.

use super::error::IngestError;
use crate::archive::{Claims, Codec};
use crate::format::BlobId;
use crate::format::pack::BlobKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;

/// One new blob on its way to a compressor.
pub struct Job {
    pub kind: BlobKind,
    pub id: BlobId,
    pub data: Vec<u8>,
}

/// The walker's handle on the pipeline: dedups and hands new blobs to the compressors.
pub struct Sink<'a> {
    codec: &'a Codec,
    claims: Claims<'a>,
    tx: SyncSender<Job>,
    /// Set when a compressor or the pack writer stopped: nothing more can be stored.
    failed: Arc<AtomicBool>,
}

impl<'a> Sink<'a> {
    pub fn new(
        codec: &'a Codec,
        claims: Claims<'a>,
        tx: SyncSender<Job>,
        failed: Arc<AtomicBool>,
    ) -> Sink<'a> {
        Sink {
            codec,
            claims,
            tx,
            failed,
        }
    }

    /// Stores `data` unless an identical blob is already stored; returns its id.
    pub fn store(&mut self, kind: BlobKind, data: Vec<u8>) -> Result<BlobId, IngestError> {
        let id = self.codec.id_of(&data);
        if !self.claims.claim(&id).map_err(IngestError::Write)? {
            return Ok(id);
        }
        if self.failed.load(Ordering::Relaxed) {
            return Err(IngestError::writer_stopped());
        }
        self.tx
            .send(Job { kind, id, data })
            .map_err(|_| IngestError::writer_stopped())?;
        Ok(id)
    }
}
