//! Pack writer: appends blob records to the current pack, rotates at the target size,
//! and seals each pack (flush + fsync) before it is ever referenced by the index.

use super::{Location, PackError, StoredBlob};
use crate::format::PackId;
use crate::format::pack::{BlobHeader, PACK_HEADER_LEN, encode_pack_header};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct PackWriter {
    dir: PathBuf,
    next_id: u64,
    target_size: u64,
    current: Option<Open>,
    sealed: Vec<PackId>,
    created: Vec<PathBuf>,
    bytes_written: u64,
}

struct Open {
    id: PackId,
    path: PathBuf,
    file: BufWriter<File>,
    len: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackError + '_ {
    move |source| PackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl PackWriter {
    /// A writer that creates packs numbered from `next_id` in `dir`. The caller holds the
    /// archive lock, so no other writer creates packs at the same time.
    pub fn new(dir: &Path, next_id: u64, target_size: u64) -> PackWriter {
        PackWriter {
            dir: dir.to_path_buf(),
            next_id,
            target_size,
            current: None,
            sealed: Vec::new(),
            created: Vec::new(),
            bytes_written: 0,
        }
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    fn open_next(&mut self) -> Result<&mut Open, PackError> {
        if self.current.is_none() {
            let id = PackId(self.next_id);
            self.next_id += 1;
            let path = self.dir.join(id.file_name());
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io(&path))?;
            self.created.push(path.clone());
            let mut file = BufWriter::with_capacity(1 << 20, f);
            file.write_all(&encode_pack_header(id)).map_err(io(&path))?;
            self.bytes_written += PACK_HEADER_LEN as u64;
            self.current = Some(Open {
                id,
                path,
                file,
                len: PACK_HEADER_LEN as u64,
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
        let open = self.open_next()?;
        let offset = open.len;
        open.file
            .write_all(&header.encode())
            .map_err(io(&open.path))?;
        open.file.write_all(&blob.data).map_err(io(&open.path))?;
        let added = (crate::format::pack::BLOB_HEADER_LEN + blob.data.len()) as u64;
        open.len += added;
        let loc = Location {
            pack: open.id,
            offset,
            kind: blob.kind,
            raw_len: blob.raw_len,
            stored_len: header.stored_len,
        };
        let full = open.len >= self.target_size;
        self.bytes_written += added;
        if full {
            self.seal()?;
        }
        Ok(loc)
    }

    /// Flushes and fsyncs the current pack, if any. After this the pack never changes.
    pub fn seal(&mut self) -> Result<(), PackError> {
        if let Some(open) = self.current.take() {
            let Open { id, path, file, .. } = open;
            let f = file.into_inner().map_err(|e| PackError::Io {
                path: path.clone(),
                source: e.into_error(),
            })?;
            f.sync_all().map_err(io(&path))?;
            self.sealed.push(id);
        }
        Ok(())
    }

    /// Deletes every pack this writer created. Only for a session that will never
    /// commit: nothing in the index points into these packs.
    pub fn discard(&mut self) {
        self.current = None;
        for p in self.created.drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Seals the current pack and fsyncs the packs directory so every new pack's
    /// directory entry is durable. Returns the packs written.
    pub fn finish(&mut self) -> Result<Vec<PackId>, PackError> {
        self.seal()?;
        if !self.sealed.is_empty() {
            let d = File::open(&self.dir).map_err(io(&self.dir))?;
            d.sync_all().map_err(io(&self.dir))?;
        }
        Ok(std::mem::take(&mut self.sealed))
    }
}
