//! The pack objects of a bucket archive, `PREFIX/packs/<16 hex>.pack`: a [`Store`] of
//! ranged GETs, whole-object uploads (one PUT, or a multipart upload past one part) and
//! copies to `PREFIX/quarantine/`.

use super::Bucket;
use super::errors::is_range_not_satisfiable;
use crate::store::{NewObject, ObjectMeta, Store, StoreError, Stray};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::io;
use std::sync::Arc;

/// Size of one part of a multipart upload; smaller objects are one PUT.
pub const PART_SIZE: usize = 16 << 20;
/// Parts uploading at once while the next one is filled.
const PARTS_IN_FLIGHT: usize = 2;
const PACKS: &str = "packs";
const QUARANTINE: &str = "quarantine";

/// The pack objects of a bucket archive.
pub(super) struct BucketPacks {
    pub(super) bucket: Arc<Bucket>,
}

impl BucketPacks {
    fn name(name: &str) -> String {
        format!("{PACKS}/{name}")
    }

    fn path(&self, name: &str) -> Result<Path, StoreError> {
        self.bucket.path(&Self::name(name))
    }

    fn err(&self, name: &str, e: object_store::Error) -> StoreError {
        self.bucket.error(self.location(name), e)
    }
}

impl Store for BucketPacks {
    fn location(&self, name: &str) -> String {
        self.bucket.meta_location(&Self::name(name))
    }

    fn list(&self) -> Result<(Vec<ObjectMeta>, Vec<Stray>), StoreError> {
        let mut objects = Vec::new();
        let mut strays = Vec::new();
        for o in self.bucket.list_under(PACKS)? {
            let Some(name) = o.name.strip_prefix("packs/") else {
                continue;
            };
            if name.contains('/') {
                // What a directory is to a local store: not an object of this store.
                strays.push(Stray {
                    name: name.to_string(),
                    what: "an object below a sub-prefix of packs/".into(),
                });
            } else {
                objects.push(ObjectMeta {
                    name: name.to_string(),
                    size: o.size,
                });
            }
        }
        Ok((objects, strays))
    }

    fn size(&self, name: &str) -> Result<u64, StoreError> {
        let path = self.path(name)?;
        self.bucket
            .run(self.bucket.client.head(&path))
            .map(|m| m.size)
            .map_err(|e| self.err(name, e))
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let want = buf.len() as u64;
        if want == 0 {
            return self.size(name).map(|_| ());
        }
        let path = self.path(name)?;
        let short = |size: u64| StoreError::Short {
            location: self.location(name),
            offset,
            want,
            size,
        };
        let options = GetOptions {
            range: Some(GetRange::Bounded(offset..offset.saturating_add(want))),
            ..GetOptions::default()
        };
        let bucket = &self.bucket;
        let got = bucket.run(async {
            let r = bucket.client.get_opts(&path, options).await?;
            let size = r.meta.size;
            if r.range.end - r.range.start < want {
                return Ok(Err(size));
            }
            let mut stream = r.into_stream();
            let mut at = 0usize;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                let end = at + chunk.len();
                if end > buf.len() {
                    return Ok(Ok(None));
                }
                buf[at..end].copy_from_slice(&chunk);
                at = end;
            }
            Ok::<_, object_store::Error>(Ok(Some(at)))
        });
        match got {
            Ok(Ok(Some(n))) if n == buf.len() => Ok(()),
            Ok(Ok(_)) => Err(StoreError::Remote {
                location: self.location(name),
                detail: format!(
                    "the store sent a body of another length than the {want} bytes asked for at {offset}"
                ),
            }),
            Ok(Err(size)) => Err(short(size)),
            // A range that starts at or past the end: 416 InvalidRange.
            Err(e) if is_range_not_satisfiable(&e) => Err(short(self.size(name)?)),
            Err(e) => Err(self.err(name, e)),
        }
    }

    fn create(&self, name: &str) -> Result<Box<dyn NewObject>, StoreError> {
        let path = self.path(name)?;
        match self.bucket.run(self.bucket.client.head(&path)) {
            Ok(_) => {
                return Err(StoreError::Io {
                    location: self.location(name),
                    source: io::Error::new(io::ErrorKind::AlreadyExists, "object exists"),
                });
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.err(name, e)),
        }
        Ok(Box::new(BucketObject {
            bucket: Arc::clone(&self.bucket),
            location: self.location(name),
            path,
            head: Vec::new(),
            upload: None,
            len: 0,
            failed: false,
        }))
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.bucket.delete(&Self::name(name))
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn set_aside(&self, name: &str) -> Result<String, StoreError> {
        let from = self.path(name)?;
        let to_name = format!("{QUARANTINE}/{name}");
        let to = self.bucket.path(&to_name)?;
        let to_location = self.bucket.meta_location(&to_name);
        self.bucket
            .run(self.bucket.client.copy(&from, &to))
            .map_err(|e| self.err(name, e))?;
        self.delete(name)?;
        Ok(to_location)
    }

    fn cut_tail(&self, name: &str, _len: u64) -> Result<String, StoreError> {
        Err(StoreError::Unsupported {
            location: self.location(name),
            what: "cutting a torn tail off an object (uploads are never torn in a bucket)".into(),
        })
    }
}

/// A pack being uploaded: buffered until it outgrows one part, then a multipart upload.
struct BucketObject {
    bucket: Arc<Bucket>,
    location: String,
    path: Path,
    /// The bytes before the multipart upload starts (fewer than one part).
    head: Vec<u8>,
    upload: Option<WriteMultipart>,
    len: u64,
    /// A part failed: the upload is gone and nothing more can be written.
    failed: bool,
}

impl BucketObject {
    fn err(&self, e: object_store::Error) -> StoreError {
        self.bucket.error(self.location.clone(), e)
    }

    /// Hands bytes to the multipart upload, waiting while two parts are in flight.
    fn feed(&mut self, data: &[u8]) -> Result<(), StoreError> {
        for piece in data.chunks(PART_SIZE) {
            let upload = self.upload.as_mut().expect("an upload is started");
            let waited = self.bucket.run(upload.wait_for_capacity(PARTS_IN_FLIGHT));
            if let Err(e) = waited {
                self.fail();
                return Err(self.err(e));
            }
            let _enter = self.bucket.rt().enter();
            upload.write(piece);
        }
        Ok(())
    }

    fn fail(&mut self) {
        self.failed = true;
        self.head = Vec::new();
        if let Some(upload) = self.upload.take() {
            let _ = self.bucket.run(upload.abort());
        }
    }

    fn failed_error(&self) -> StoreError {
        StoreError::Io {
            location: self.location.clone(),
            source: io::Error::other("an earlier part of this upload failed"),
        }
    }
}

impl NewObject for BucketObject {
    fn write_all(&mut self, data: &[u8]) -> Result<(), StoreError> {
        if self.failed {
            return Err(self.failed_error());
        }
        self.len += data.len() as u64;
        if self.upload.is_none() {
            if self.head.len() + data.len() <= PART_SIZE {
                self.head.extend_from_slice(data);
                return Ok(());
            }
            let started = self
                .bucket
                .run(self.bucket.client.put_multipart(&self.path));
            let upload = match started {
                Ok(u) => u,
                Err(e) => {
                    self.failed = true;
                    return Err(self.err(e));
                }
            };
            self.upload = Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE));
            let head = std::mem::take(&mut self.head);
            self.feed(&head)?;
        }
        self.feed(data)
    }

    fn seal(mut self: Box<Self>) -> Result<u64, StoreError> {
        if self.failed {
            return Err(self.failed_error());
        }
        let done = match self.upload.take() {
            Some(upload) => self.bucket.run(upload.finish()),
            None => {
                let payload = PutPayload::from(Bytes::from(std::mem::take(&mut self.head)));
                self.bucket.run(self.bucket.client.put(&self.path, payload))
            }
        };
        done.map(|_| self.len).map_err(|e| self.err(e))
    }

    fn abort(mut self: Box<Self>) {
        if let Some(upload) = self.upload.take() {
            let _ = self.bucket.run(upload.abort());
        }
    }
}

impl Drop for BucketObject {
    fn drop(&mut self) {
        // Neither sealed nor aborted (a panic, an early return): abort in the background.
        if let Some(upload) = self.upload.take() {
            self.bucket.rt().spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}
