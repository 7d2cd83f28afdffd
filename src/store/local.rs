//! A store in a local directory: `ARCHIVE/packs/NAME`, objects set aside go to
//! `ARCHIVE/quarantine/`.
//!
//! Writes go through `O_DIRECT` where the filesystem allows it, from a block-aligned
//! 4 MiB buffer: copying every pack byte into the page cache cost about a third of an
//! ingest's CPU on a 2-core machine, and nobody reads a pack while it is written. The
//! last block is padded and the file cut back to its length at seal time; filesystems
//! without `O_DIRECT` (tmpfs) get ordinary buffered writes. A sealed object is fsynced;
//! [`Store::sync`] fsyncs the directory.
//!
//! Reads use pread on a bounded set of open descriptors rather than a memory map: an I/O
//! error or a file shortened behind our back then surfaces as an error for that one read
//! instead of SIGBUS for the process, and the pages read are not charged to the reader's
//! RSS. The copy costs far less than decompression.

use super::{NewObject, ObjectMeta, Store, StoreError, Stray};
use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Most object files kept open at once.
const MAX_OPEN: usize = 256;
const BLOCK: usize = 4096;
const BUFFER: usize = 4 << 20;

pub struct LocalStore {
    dir: PathBuf,
    quarantine: PathBuf,
    files: Mutex<HashMap<String, Arc<File>>>,
}

impl LocalStore {
    /// A store over `dir` (which must exist), setting objects aside in `quarantine`
    /// (created when first needed).
    pub fn new(dir: &Path, quarantine: &Path) -> LocalStore {
        LocalStore {
            dir: dir.to_path_buf(),
            quarantine: quarantine.to_path_buf(),
            files: Mutex::new(HashMap::new()),
        }
    }

    /// Creates the store's directory (mode 0700) for a new archive.
    pub fn create_dir(dir: &Path) -> Result<(), StoreError> {
        DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(io(&dir.display().to_string()))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn open(&self, name: &str) -> Result<Arc<File>, StoreError> {
        if let Some(f) = self.lock_files().get(name) {
            return Ok(f.clone());
        }
        let path = self.path(name);
        let file = Arc::new(File::open(&path).map_err(|e| self.err(name, e))?);
        let mut files = self.lock_files();
        if files.len() >= MAX_OPEN {
            files.clear();
        }
        files.insert(name.to_owned(), file.clone());
        Ok(file)
    }

    fn lock_files(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<File>>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, name: &str, source: io::Error) -> StoreError {
        if source.kind() == io::ErrorKind::NotFound {
            StoreError::NotFound {
                location: self.location(name),
            }
        } else {
            StoreError::Io {
                location: self.location(name),
                source,
            }
        }
    }

    fn ensure_quarantine(&self) -> Result<(), StoreError> {
        match DirBuilder::new().mode(0o700).create(&self.quarantine) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io(&self.quarantine.display().to_string())(e)),
        }
    }

    fn sync_dir(dir: &Path) -> Result<(), StoreError> {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir.display().to_string()))
    }

    fn forget_fd(&self, name: &str) {
        self.lock_files().remove(name);
    }
}

fn io(location: &str) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        location: location.to_owned(),
        source,
    }
}

/// An archive directory's small files (`config`, `keys/…`, `locks/…`, `index/…`):
/// written whole through a synced temporary file renamed into place, subdirectories
/// created 0700 when first needed, files 0600.
pub struct LocalMeta {
    root: PathBuf,
}

/// The most a small file may hold: a larger one is damage, not a record.
const META_MAX: u64 = 64 << 20;

impl LocalMeta {
    pub fn new(root: &Path) -> LocalMeta {
        LocalMeta {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

impl super::MetaStore for LocalMeta {
    fn location(&self, name: &str) -> String {
        if name.is_empty() {
            return self.root.display().to_string();
        }
        self.path(name).display().to_string()
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(name);
        let loc = path.display().to_string();
        match File::open(&path) {
            Ok(f) => {
                let mut b = Vec::new();
                io::Read::read_to_end(&mut io::Read::take(f, META_MAX), &mut b)
                    .map_err(io(&loc))?;
                Ok(Some(b))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&loc)(e)),
        }
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(name);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if dir != self.root {
            match DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(&dir.display().to_string())(e)),
            }
        }
        let tmp = dir.join(format!("{file}.tmp"));
        let tloc = tmp.display().to_string();
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tloc))?;
        f.write_all(bytes).map_err(io(&tloc))?;
        f.sync_all().map_err(io(&tloc))?;
        fs::rename(&tmp, &path).map_err(io(&path.display().to_string()))?;
        LocalStore::sync_dir(&dir)
    }

    fn list(&self, prefix: &str) -> Result<Vec<super::ObjectMeta>, StoreError> {
        let (sub, start) = match prefix.rsplit_once('/') {
            Some((d, s)) => (self.root.join(d), s),
            None => (self.root.clone(), prefix),
        };
        let base = &prefix[..prefix.len() - start.len()];
        let entries = match fs::read_dir(&sub) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&sub.display().to_string())(e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(io(&sub.display().to_string()))?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !name.starts_with(start) || name.ends_with(".tmp") {
                continue;
            }
            let Ok(md) = e.metadata() else { continue };
            if !md.is_file() {
                continue;
            }
            out.push(super::ObjectMeta {
                name: format!("{base}{name}"),
                size: md.len(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&path.display().to_string())(e)),
        }
        LocalStore::sync_dir(path.parent().unwrap_or(&self.root))
    }
}

impl Store for LocalStore {
    fn location(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn list(&self) -> Result<(Vec<ObjectMeta>, Vec<Stray>), StoreError> {
        let here = self.dir.display().to_string();
        let mut objects = Vec::new();
        let mut strays = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(io(&here))? {
            let e = e.map_err(io(&here))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let ft = match e.file_type() {
                Ok(t) => t,
                Err(_) => continue,
            };
            if !ft.is_file() {
                let what = if ft.is_dir() {
                    "a directory"
                } else if ft.is_symlink() {
                    "a symbolic link"
                } else if ft.is_fifo() || ft.is_socket() {
                    "a pipe or socket"
                } else {
                    "not a regular file"
                };
                strays.push(Stray {
                    name,
                    what: what.into(),
                });
                continue;
            }
            match e.metadata() {
                Ok(m) => objects.push(ObjectMeta {
                    name,
                    size: m.len(),
                }),
                // Deleted between the listing and the stat (prune): not there.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err(&name, e)),
            }
        }
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        strays.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((objects, strays))
    }

    fn size(&self, name: &str) -> Result<u64, StoreError> {
        fs::metadata(self.path(name))
            .map(|m| m.len())
            .map_err(|e| self.err(name, e))
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let file = self.open(name)?;
        file.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                StoreError::Short {
                    location: self.location(name),
                    offset,
                    want: buf.len() as u64,
                    size: file.metadata().map(|m| m.len()).unwrap_or(0),
                }
            } else {
                self.err(name, e)
            }
        })
    }

    fn will_need(&self, name: &str) {
        if let Ok(file) = self.open(name)
            && file.metadata().is_ok_and(|m| m.len() <= 64 << 20)
        {
            // SAFETY: advisory call on a descriptor we own.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED) };
        }
    }

    fn evict(&self, name: &str) {
        self.forget_fd(name);
    }

    fn create(&self, name: &str) -> Result<Box<dyn NewObject>, StoreError> {
        let path = self.path(name);
        let file = DirectFile::create(&path).map_err(|e| self.err(name, e))?;
        Ok(Box::new(LocalObject {
            location: self.location(name),
            path,
            file,
        }))
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.forget_fd(name);
        match fs::remove_file(self.path(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(name, e)),
        }
    }

    fn sync(&self) -> Result<(), StoreError> {
        Self::sync_dir(&self.dir)
    }

    fn set_aside(&self, name: &str) -> Result<String, StoreError> {
        self.ensure_quarantine()?;
        self.forget_fd(name);
        let to = self.quarantine.join(name);
        fs::rename(self.path(name), &to).map_err(io(&to.display().to_string()))?;
        // Both directory entries changed: make the move durable.
        Self::sync_dir(&self.quarantine)?;
        Self::sync_dir(&self.dir)?;
        Ok(to.display().to_string())
    }

    fn cut_tail(&self, name: &str, len: u64) -> Result<String, StoreError> {
        self.ensure_quarantine()?;
        self.forget_fd(name);
        let path = self.path(name);
        let bytes = fs::read(&path).map_err(|e| self.err(name, e))?;
        let at = usize::try_from(len).unwrap_or(usize::MAX).min(bytes.len());
        let dest = self.quarantine.join(format!("{name}.tail-{len}"));
        let shown = dest.display().to_string();
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&dest)
            .map_err(io(&shown))?;
        f.write_all(&bytes[at..]).map_err(io(&shown))?;
        f.sync_all().map_err(io(&shown))?;
        Self::sync_dir(&self.quarantine)?;
        let p = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| self.err(name, e))?;
        p.set_len(len).map_err(|e| self.err(name, e))?;
        p.sync_all().map_err(|e| self.err(name, e))?;
        Ok(shown)
    }

    fn total_size(&self) -> Result<u64, StoreError> {
        // Quicker than a sorted listing, and a mount asks for it on every statfs.
        let here = self.dir.display().to_string();
        let mut total = 0;
        for e in fs::read_dir(&self.dir).map_err(io(&here))?.flatten() {
            total += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(total)
    }
}

/// An object being written: a new file, removed again on abort.
struct LocalObject {
    location: String,
    path: PathBuf,
    file: DirectFile,
}

impl NewObject for LocalObject {
    fn write_all(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.file.write_all(data).map_err(io(&self.location))
    }

    fn seal(self: Box<Self>) -> Result<u64, StoreError> {
        let LocalObject { location, file, .. } = *self;
        file.finish().map_err(io(&location))
    }

    fn abort(self: Box<Self>) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A file being written through a block-aligned buffer.
struct DirectFile {
    file: File,
    direct: bool,
    buf: Vec<u8>,
    /// Where the aligned part of `buf` starts.
    start: usize,
    fill: usize,
    flushed: u64,
}

impl DirectFile {
    fn create(path: &Path) -> io::Result<DirectFile> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        // O_DIRECT is switched on after the file exists, so a filesystem that refuses it
        // (older tmpfs, some FUSE and network filesystems) just keeps buffered writes.
        // SAFETY: reads and sets the status flags of a descriptor we own.
        let direct = unsafe {
            let fl = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            fl >= 0 && libc::fcntl(file.as_raw_fd(), libc::F_SETFL, fl | libc::O_DIRECT) == 0
        };
        let buf = vec![0u8; BUFFER + BLOCK];
        let start = buf.as_ptr().align_offset(BLOCK);
        Ok(DirectFile {
            file,
            direct,
            buf,
            start,
            fill: 0,
            flushed: 0,
        })
    }

    fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = (BUFFER - self.fill).min(data.len());
            let at = self.start + self.fill;
            self.buf[at..at + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill == BUFFER {
                self.write_block_run(BUFFER)?;
                self.flushed += BUFFER as u64;
                self.fill = 0;
            }
        }
        Ok(())
    }

    fn write_block_run(&mut self, len: usize) -> io::Result<()> {
        let run = &self.buf[self.start..self.start + len];
        match self.file.write_all_at(run, self.flushed) {
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                // The filesystem took O_DIRECT at open but not for this write: go on
                // with ordinary writes.
                // SAFETY: clears one status flag of a descriptor we own.
                unsafe {
                    let fl = libc::fcntl(self.file.as_raw_fd(), libc::F_GETFL);
                    libc::fcntl(self.file.as_raw_fd(), libc::F_SETFL, fl & !libc::O_DIRECT);
                }
                self.direct = false;
                self.file.write_all_at(run, self.flushed)
            }
            r => r,
        }
    }

    /// Writes what is buffered, cuts the file to its exact length and fsyncs it.
    fn finish(mut self) -> io::Result<u64> {
        let tail = self.fill;
        if tail > 0 {
            if self.direct {
                let padded = tail.div_ceil(BLOCK) * BLOCK;
                let from = self.start + tail;
                self.buf[from..self.start + padded].fill(0);
                self.write_block_run(padded)?;
            } else {
                self.write_block_run(tail)?;
            }
        }
        let len = self.flushed + tail as u64;
        self.file.set_len(len)?;
        self.file.sync_all()?;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, LocalStore) {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("packs")).unwrap();
        let s = LocalStore::new(&d.path().join("packs"), &d.path().join("quarantine"));
        (d, s)
    }

    #[test]
    fn an_object_reads_back_after_seal_and_short_reads_are_errors() {
        let (_d, s) = store();
        let mut o = s.create("a.pack").unwrap();
        let data: Vec<u8> = (0..(BUFFER + 12345)).map(|i| i as u8).collect();
        o.write_all(&data[..100]).unwrap();
        o.write_all(&data[100..]).unwrap();
        assert_eq!(o.seal().unwrap(), data.len() as u64);
        assert_eq!(s.read_all("a.pack").unwrap(), data);
        let mut buf = [0u8; 10];
        s.read_at("a.pack", 5000, &mut buf).unwrap();
        assert_eq!(&buf[..], &data[5000..5010]);
        assert!(matches!(
            s.read_at("a.pack", data.len() as u64 - 5, &mut buf),
            Err(StoreError::Short { .. })
        ));
        assert!(s.read_at("b.pack", 0, &mut buf).unwrap_err().is_not_found());
        assert!(s.create("a.pack").is_err(), "objects are never overwritten");
    }

    #[test]
    fn listing_names_strays_and_abort_leaves_nothing() {
        let (d, s) = store();
        s.create("x.pack").unwrap().abort();
        fs::create_dir(d.path().join("packs/dir.pack")).unwrap();
        let mut o = s.create("y.pack").unwrap();
        o.write_all(b"hello").unwrap();
        o.seal().unwrap();
        let (objects, strays) = s.list().unwrap();
        assert_eq!(
            objects,
            vec![ObjectMeta {
                name: "y.pack".into(),
                size: 5
            }]
        );
        assert_eq!(strays.len(), 1);
        assert_eq!(strays[0].name, "dir.pack");
    }

    #[test]
    fn set_aside_and_cut_tail_keep_the_bytes_in_quarantine() {
        let (d, s) = store();
        let mut o = s.create("t.pack").unwrap();
        o.write_all(b"0123456789").unwrap();
        o.seal().unwrap();
        let to = s.cut_tail("t.pack", 4).unwrap();
        assert_eq!(s.read_all("t.pack").unwrap(), b"0123");
        assert_eq!(fs::read(&to).unwrap(), b"456789");
        s.set_aside("t.pack").unwrap();
        assert!(s.size("t.pack").unwrap_err().is_not_found());
        assert_eq!(
            fs::read(d.path().join("quarantine/t.pack")).unwrap(),
            b"0123"
        );
        s.delete("t.pack").unwrap();
    }
}
