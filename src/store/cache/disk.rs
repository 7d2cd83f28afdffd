//! The cache directory: which file holds what, how a file is written (a temp file renamed
//! into place), the scan that rebuilds the accounting, and the least-recently-used order
//! that decides what goes when the directory is over its bound.
//!
//! ```text
//! DIR/CACHEDIR.TAG                  so that backup tools (strata included) skip it
//! DIR/objects/NAME                  a whole object, byte for byte
//! DIR/blocks/NAME/SIZE-OFFSET       bytes OFFSET.. of object NAME of SIZE bytes (hex),
//!                                   BLOCK bytes or up to the object's end
//! DIR/tmp/PID.SEQ                   a file being written; renamed into place when whole
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// The range cache's unit: objects are cut into aligned blocks of this size. 4 MiB: a
/// cold `cp` of a 100 MB file from a bucket mount (three-node Garage on loopback, empty
/// chunk cache, three runs each) went from 91, 119 and 128 MB/s with 1 MiB blocks to 165,
/// 166 and 182 MB/s, at or above plain 4 MiB ranged GETs 8 at a time (docs/BENCHMARKS.md).
/// The unit tests keep 1 MiB blocks: their sizes are written in those units, and the logic
/// does not depend on the size; the bucket tests run the 4 MiB blocks through the binary.
#[cfg(not(test))]
pub const BLOCK: u64 = 4 << 20;
#[cfg(test)]
pub const BLOCK: u64 = 1 << 20;
/// A temp file this old is left over from a crash even if its pid is alive (reused).
const STALE_TEMP: Duration = Duration::from_secs(3600);
/// Most cached files kept open at once; the set is dropped when full.
const MAX_OPEN: usize = 128;
const TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
                   # This file is a cache directory tag created by strata.\n\
                   # For information about cache directory tags see https://bford.info/cachedir/\n";

/// Temp file numbers, unique in the process (two caches may share a directory).
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// One cached file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Whole(String),
    Block {
        name: String,
        /// The object's size: a block read under another size is another block.
        size: u64,
        offset: u64,
    },
}

impl Key {
    pub fn name(&self) -> &str {
        match self {
            Key::Whole(name) | Key::Block { name, .. } => name,
        }
    }
}

/// The length of the block at `offset` of an object of `size` bytes.
pub fn block_len(size: u64, offset: u64) -> u64 {
    BLOCK.min(size - offset)
}

/// Names the cache can use as file names; any other name passes straight through.
pub fn cacheable(name: &str) -> bool {
    !name.is_empty() && name.len() <= 200 && !name.starts_with('.') && !name.contains(['/', '\0'])
}

/// A file found by a scan.
pub struct Found {
    pub key: Key,
    pub bytes: u64,
    pub mtime: SystemTime,
}

pub struct Disk {
    objects: PathBuf,
    blocks: PathBuf,
    tmp: PathBuf,
}

impl Disk {
    /// Creates `dir` (mode 0700, with its parents) and its three subdirectories.
    pub fn open(dir: &Path) -> io::Result<Disk> {
        let mk = |p: &Path| DirBuilder::new().recursive(true).mode(0o700).create(p);
        mk(dir)?;
        let disk = Disk {
            objects: dir.join("objects"),
            blocks: dir.join("blocks"),
            tmp: dir.join("tmp"),
        };
        mk(&disk.objects)?;
        mk(&disk.blocks)?;
        mk(&disk.tmp)?;
        let tag = dir.join("CACHEDIR.TAG");
        if !tag.exists() {
            // Only a courtesy to backup tools: a failure here fails nothing.
            let _ = fs::write(&tag, TAG);
        }
        Ok(disk)
    }

    pub fn path(&self, key: &Key) -> PathBuf {
        match key {
            Key::Whole(name) => self.objects.join(name),
            Key::Block { name, size, offset } => {
                self.blocks.join(name).join(format!("{size:x}-{offset:x}"))
            }
        }
    }

    /// A new, empty temp file.
    pub fn temp(&self) -> io::Result<(PathBuf, File)> {
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = self.tmp.join(format!("{}.{seq}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok((path, file))
    }

    /// Writes `data` as the file of `key`: to a temp file, then renamed into place, so a
    /// reader (of this process or another) sees the whole file or none.
    pub fn write(&self, key: &Key, data: &[u8]) -> io::Result<()> {
        let (tmp, mut file) = self.temp()?;
        let written = file.write_all(data).and_then(|()| self.install(&tmp, key));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Renames a written temp file into place as `key`'s file (replacing an equal copy
    /// another process may have put there).
    pub fn install(&self, tmp: &Path, key: &Key) -> io::Result<()> {
        let dest = self.path(key);
        let mut tries = 0;
        loop {
            match fs::rename(tmp, &dest) {
                // The object's block directory is new, or was just removed with its last
                // block (by this process or another): make it and try again.
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        && matches!(key, Key::Block { .. })
                        && tries < 3 =>
                {
                    tries += 1;
                    if let Some(parent) = dest.parent() {
                        match DirBuilder::new().mode(0o700).create(parent) {
                            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                            _ => {}
                        }
                    }
                }
                r => return r,
            }
        }
    }

    /// Removes one cached file (gone already is fine); a block's directory goes with its
    /// last block.
    pub fn remove(&self, key: &Key) -> io::Result<()> {
        let path = self.path(key);
        let r = not_found_is_ok(fs::remove_file(&path));
        if let (Key::Block { .. }, Some(parent)) = (key, path.parent()) {
            // Fails while other blocks are there, which is the common case.
            let _ = fs::remove_dir(parent);
        }
        r
    }

    /// Removes everything cached of one object.
    pub fn remove_object(&self, name: &str) -> io::Result<()> {
        let whole = not_found_is_ok(fs::remove_file(self.objects.join(name)));
        let blocks = not_found_is_ok(fs::remove_dir_all(self.blocks.join(name)));
        whole.and(blocks)
    }

    pub fn remove_temp(&self, tmp: &Path) {
        let _ = fs::remove_file(tmp);
    }

    /// Every cached file, after deleting what cannot be one: temp files left by a dead
    /// process (or older than an hour), misnamed files, blocks of the wrong length.
    pub fn scan(&self) -> io::Result<Vec<Found>> {
        let mut found = Vec::new();
        for e in fs::read_dir(&self.objects)? {
            let e = e?;
            let Ok(meta) = e.metadata() else { continue };
            match e.file_name().into_string() {
                Ok(name) if meta.is_file() && cacheable(&name) => found.push(Found {
                    key: Key::Whole(name),
                    bytes: meta.len(),
                    mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                }),
                _ => remove_any(&e.path(), &meta),
            }
        }
        for e in fs::read_dir(&self.blocks)? {
            let e = e?;
            let Ok(meta) = e.metadata() else { continue };
            let name = match e.file_name().into_string() {
                Ok(name) if meta.is_dir() && cacheable(&name) => name,
                _ => {
                    remove_any(&e.path(), &meta);
                    continue;
                }
            };
            let Ok(entries) = fs::read_dir(e.path()) else {
                continue;
            };
            for b in entries.flatten() {
                let Ok(meta) = b.metadata() else { continue };
                let parsed = b.file_name().to_str().and_then(parse_block);
                match parsed {
                    Some((size, offset))
                        if meta.is_file()
                            && offset % BLOCK == 0
                            && offset < size
                            && meta.len() == block_len(size, offset) =>
                    {
                        found.push(Found {
                            key: Key::Block {
                                name: name.clone(),
                                size,
                                offset,
                            },
                            bytes: meta.len(),
                            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        })
                    }
                    // A block cut short by a crash (nothing here is fsynced) or not ours.
                    _ => remove_any(&b.path(), &meta),
                }
            }
        }
        let now = SystemTime::now();
        for e in fs::read_dir(&self.tmp)?.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            let pid = e
                .file_name()
                .to_str()
                .and_then(|n| n.split_once('.'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| Path::new("/proc").join(p.to_string()).exists());
            let old = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > STALE_TEMP);
            if !alive || old {
                remove_any(&e.path(), &meta);
            }
        }
        Ok(found)
    }
}

fn parse_block(file: &str) -> Option<(u64, u64)> {
    let (size, offset) = file.split_once('-')?;
    Some((
        u64::from_str_radix(size, 16).ok()?,
        u64::from_str_radix(offset, 16).ok()?,
    ))
}

fn remove_any(path: &Path, meta: &fs::Metadata) {
    let _ = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
}

fn not_found_is_ok(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// One cached file in the accounting.
pub struct Slot {
    pub bytes: u64,
    tick: u64,
    /// Opened on first read, closed when the set of open files is full or the slot goes.
    pub file: Option<Arc<File>>,
}

#[derive(Default)]
struct Slots {
    whole: Option<Slot>,
    /// By (object size, offset).
    blocks: HashMap<(u64, u64), Slot>,
}

/// What this process knows is on disk, in least-recently-used order. Whole objects and
/// blocks are ordered apart: blocks go first, whole objects only when no block is left
/// or when they hold more than three quarters of the bound.
pub struct Lru {
    objects: HashMap<String, Slots>,
    blocks_order: BTreeMap<u64, Key>,
    wholes_order: BTreeMap<u64, Key>,
    block_bytes: u64,
    whole_bytes: u64,
    /// The next use gets this tick; files found by a scan get ticks below `low`.
    tick: u64,
    low: u64,
    open: usize,
}

impl Default for Lru {
    fn default() -> Lru {
        Lru::new()
    }
}

impl Lru {
    pub fn new() -> Lru {
        Lru {
            objects: HashMap::new(),
            blocks_order: BTreeMap::new(),
            wholes_order: BTreeMap::new(),
            block_bytes: 0,
            whole_bytes: 0,
            tick: 1 << 62,
            low: 1 << 62,
            open: 0,
        }
    }

    pub fn total(&self) -> u64 {
        self.block_bytes + self.whole_bytes
    }

    /// The tick the next use will get: everything used before now has a lower one.
    pub fn now(&self) -> u64 {
        self.tick
    }

    fn next(&mut self) -> u64 {
        self.tick += 1;
        self.tick - 1
    }

    fn order(&mut self, whole: bool) -> &mut BTreeMap<u64, Key> {
        if whole {
            &mut self.wholes_order
        } else {
            &mut self.blocks_order
        }
    }

    /// The whole object's slot, marked as just used.
    pub fn get_whole(&mut self, name: &str) -> Option<&mut Slot> {
        let tick = self.tick;
        let old = self.objects.get(name)?.whole.as_ref()?.tick;
        self.retick(true, old, tick);
        let slot = self.objects.get_mut(name)?.whole.as_mut()?;
        slot.tick = tick;
        Some(slot)
    }

    /// A block's slot, marked as just used.
    pub fn get_block(&mut self, name: &str, size: u64, offset: u64) -> Option<&mut Slot> {
        let tick = self.tick;
        let old = self.objects.get(name)?.blocks.get(&(size, offset))?.tick;
        self.retick(false, old, tick);
        let slot = self
            .objects
            .get_mut(name)?
            .blocks
            .get_mut(&(size, offset))?;
        slot.tick = tick;
        Some(slot)
    }

    fn retick(&mut self, whole: bool, old: u64, new: u64) {
        self.tick += 1;
        let order = self.order(whole);
        if let Some(key) = order.remove(&old) {
            order.insert(new, key);
        }
    }

    pub fn has_whole(&self, name: &str) -> bool {
        self.objects.get(name).is_some_and(|s| s.whole.is_some())
    }

    pub fn has_block(&self, name: &str, size: u64, offset: u64) -> bool {
        self.objects
            .get(name)
            .is_some_and(|s| s.blocks.contains_key(&(size, offset)))
    }

    /// Adds (or replaces) a file, as just used.
    pub fn insert(&mut self, key: Key, bytes: u64) {
        let tick = self.next();
        self.insert_at(key, bytes, tick);
    }

    fn insert_at(&mut self, key: Key, bytes: u64, tick: u64) {
        self.remove(&key);
        let slot = Slot {
            bytes,
            tick,
            file: None,
        };
        let slots = self.objects.entry(key.name().to_owned()).or_default();
        match &key {
            Key::Whole(_) => {
                slots.whole = Some(slot);
                self.whole_bytes += bytes;
                self.wholes_order.insert(tick, key);
            }
            Key::Block { size, offset, .. } => {
                slots.blocks.insert((*size, *offset), slot);
                self.block_bytes += bytes;
                self.blocks_order.insert(tick, key);
            }
        }
    }

    /// Forgets a file; returns its size.
    pub fn remove(&mut self, key: &Key) -> Option<u64> {
        let slots = self.objects.get_mut(key.name())?;
        let slot = match key {
            Key::Whole(_) => slots.whole.take()?,
            Key::Block { size, offset, .. } => slots.blocks.remove(&(*size, *offset))?,
        };
        if slots.whole.is_none() && slots.blocks.is_empty() {
            self.objects.remove(key.name());
        }
        if slot.file.is_some() {
            self.open -= 1;
        }
        let whole = matches!(key, Key::Whole(_));
        self.order(whole).remove(&slot.tick);
        if whole {
            self.whole_bytes -= slot.bytes;
        } else {
            self.block_bytes -= slot.bytes;
        }
        Some(slot.bytes)
    }

    /// Forgets every file of one object.
    pub fn remove_name(&mut self, name: &str) {
        for key in self.keys_of(name, true) {
            self.remove(&key);
        }
    }

    /// The keys of an object's files: its blocks, and its whole copy if `whole`.
    pub fn keys_of(&self, name: &str, whole: bool) -> Vec<Key> {
        let Some(slots) = self.objects.get(name) else {
            return Vec::new();
        };
        let mut keys: Vec<Key> = slots
            .blocks
            .keys()
            .map(|&(size, offset)| Key::Block {
                name: name.to_owned(),
                size,
                offset,
            })
            .collect();
        if whole && slots.whole.is_some() {
            keys.push(Key::Whole(name.to_owned()));
        }
        keys
    }

    /// Keeps an open descriptor in a slot that is still there.
    pub fn set_file(&mut self, key: &Key, file: Arc<File>) {
        if self.open >= MAX_OPEN {
            for slots in self.objects.values_mut() {
                slots.whole.iter_mut().for_each(|s| s.file = None);
                slots.blocks.values_mut().for_each(|s| s.file = None);
            }
            self.open = 0;
        }
        let Some(slots) = self.objects.get_mut(key.name()) else {
            return;
        };
        let slot = match key {
            Key::Whole(_) => slots.whole.as_mut(),
            Key::Block { size, offset, .. } => slots.blocks.get_mut(&(*size, *offset)),
        };
        if let Some(slot) = slot
            && slot.file.is_none()
        {
            slot.file = Some(file);
            self.open += 1;
        }
    }

    /// Takes in what a scan found: files not known yet are added as least recently used
    /// (oldest first by mtime), and known files used before tick `before` that the scan
    /// did not find are forgotten (another process evicted them).
    pub fn reconcile(&mut self, mut found: Vec<Found>, before: u64) {
        let present: HashSet<Key> = found.iter().map(|f| f.key.clone()).collect();
        let gone: Vec<Key> = self
            .blocks_order
            .range(..before)
            .chain(self.wholes_order.range(..before))
            .map(|(_, k)| k)
            .filter(|k| !present.contains(k))
            .cloned()
            .collect();
        for key in &gone {
            self.remove(key);
        }
        found.retain(|f| match &f.key {
            Key::Whole(name) => !self.has_whole(name),
            Key::Block { name, size, offset } => !self.has_block(name, *size, *offset),
        });
        found.sort_by_key(|f| f.mtime);
        let base = self.low - found.len() as u64;
        self.low = base;
        for (i, f) in found.into_iter().enumerate() {
            self.insert_at(f.key, f.bytes, base + i as u64);
        }
    }

    /// Forgets files until the total is at most `max`: whole objects beyond three
    /// quarters of `max` first, then blocks, then whole objects, least recently used
    /// first. Returns what to delete.
    pub fn victims(&mut self, max: u64) -> Vec<(Key, u64)> {
        let mut out = Vec::new();
        while self.whole_bytes > whole_budget(max)
            && let Some(v) = self.pop(true)
        {
            out.push(v);
        }
        while self.total() > max
            && let Some(v) = self.pop(false).or_else(|| self.pop(true))
        {
            out.push(v);
        }
        out
    }

    fn pop(&mut self, whole: bool) -> Option<(Key, u64)> {
        let (_, key) = self.order(whole).first_key_value()?;
        let key = key.clone();
        let bytes = self.remove(&key)?;
        Some((key, bytes))
    }
}

/// What whole objects may hold of a bound of `max` bytes: range blocks always keep at
/// least a quarter.
pub fn whole_budget(max: u64) -> u64 {
    max / 4 * 3
}
