//! A test-only store that wraps another and injects faults: failed reads, short reads,
//! failed seals and objects that vanish. The engine's fault tests run through it, so
//! they exercise the same seam an object store will.

use super::{NewObject, ObjectMeta, Store, StoreError, Stray};
use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Faults {
    /// Reads of these objects fail with an I/O error.
    pub fail_reads: HashSet<String>,
    /// Reads of these objects return fewer bytes than asked (a truncated object).
    pub short_reads: HashSet<String>,
    /// These objects are gone (as if deleted by another process).
    pub vanished: HashSet<String>,
    /// The next this-many seals fail (the object is not created).
    pub failing_seals: u32,
    /// Objects sealed so far.
    pub sealed: Vec<String>,
}

pub struct FaultyStore {
    inner: Arc<dyn Store>,
    pub faults: Arc<Mutex<Faults>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> FaultyStore {
        FaultyStore {
            inner,
            faults: Arc::new(Mutex::new(Faults::default())),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Faults) -> T) -> T {
        f(&mut self.faults.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn check(&self, name: &str) -> Result<(), StoreError> {
        self.with(|f| {
            if f.vanished.contains(name) {
                Err(StoreError::NotFound {
                    location: self.location(name),
                })
            } else if f.fail_reads.contains(name) {
                Err(StoreError::Io {
                    location: self.location(name),
                    source: io::Error::other("injected read failure"),
                })
            } else {
                Ok(())
            }
        })
    }
}

impl Store for FaultyStore {
    fn location(&self, name: &str) -> String {
        self.inner.location(name)
    }

    fn list(&self) -> Result<(Vec<ObjectMeta>, Vec<Stray>), StoreError> {
        let (mut objects, strays) = self.inner.list()?;
        self.with(|f| objects.retain(|o| !f.vanished.contains(&o.name)));
        Ok((objects, strays))
    }

    fn size(&self, name: &str) -> Result<u64, StoreError> {
        self.check(name)?;
        self.inner.size(name)
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.check(name)?;
        if self.with(|f| f.short_reads.contains(name)) {
            let size = self.inner.size(name)?;
            return Err(StoreError::Short {
                location: self.location(name),
                offset,
                want: buf.len() as u64,
                size: size.min(offset),
            });
        }
        self.inner.read_at(name, offset, buf)
    }

    fn evict(&self, name: &str) {
        self.inner.evict(name)
    }

    fn create(&self, name: &str) -> Result<Box<dyn NewObject>, StoreError> {
        Ok(Box::new(FaultyObject {
            name: name.to_owned(),
            inner: self.inner.create(name)?,
            faults: self.faults.clone(),
            location: self.location(name),
        }))
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete(name)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync()
    }

    fn set_aside(&self, name: &str) -> Result<String, StoreError> {
        self.inner.set_aside(name)
    }

    fn cut_tail(&self, name: &str, len: u64) -> Result<String, StoreError> {
        self.inner.cut_tail(name, len)
    }
}

struct FaultyObject {
    name: String,
    inner: Box<dyn NewObject>,
    faults: Arc<Mutex<Faults>>,
    location: String,
}

impl NewObject for FaultyObject {
    fn write_all(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.inner.write_all(data)
    }

    fn seal(self: Box<Self>) -> Result<u64, StoreError> {
        let mut f = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        if f.failing_seals > 0 {
            f.failing_seals -= 1;
            drop(f);
            self.inner.abort();
            return Err(StoreError::Io {
                location: self.location,
                source: io::Error::other("injected seal failure"),
            });
        }
        f.sealed.push(self.name.clone());
        drop(f);
        self.inner.seal()
    }

    fn abort(self: Box<Self>) {
        self.inner.abort()
    }
}
