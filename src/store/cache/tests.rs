//! The cache over a real [`LocalStore`] in a temp dir, through a wrapper that counts the
//! reads reaching it (and can make each one slow, as a bucket's are).

use super::read::runs;
use super::*;
use crate::store::local::LocalStore;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

const MIB: u64 = 1 << 20;

/// A store that counts the reads that reach the store it wraps.
struct Counting {
    inner: Arc<dyn Store>,
    reads: AtomicU64,
    delay: Duration,
}

impl Counting {
    fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

impl Store for Counting {
    fn location(&self, name: &str) -> String {
        self.inner.location(name)
    }
    fn list(&self) -> Result<(Vec<ObjectMeta>, Vec<Stray>), StoreError> {
        self.inner.list()
    }
    fn size(&self, name: &str) -> Result<u64, StoreError> {
        self.inner.size(name)
    }
    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.inner.read_at(name, offset, buf)
    }
    fn evict(&self, name: &str) {
        self.inner.evict(name)
    }
    fn create(&self, name: &str) -> Result<Box<dyn NewObject>, StoreError> {
        self.inner.create(name)
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

/// A remote (a local store under `TMP/packs`, reads counted) and a cache dir beside it.
struct Fixture {
    tmp: TempDir,
    remote: Arc<Counting>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::slow(Duration::ZERO)
    }

    /// Each remote read sleeps `delay` first.
    fn slow(delay: Duration) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let packs = tmp.path().join("packs");
        fs::create_dir(&packs).unwrap();
        let local = LocalStore::new(&packs, &tmp.path().join("quarantine"));
        Fixture {
            remote: Arc::new(Counting {
                inner: Arc::new(local),
                reads: AtomicU64::new(0),
                delay,
            }),
            tmp,
        }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    fn cache(&self, max: u64) -> CachedStore {
        CachedStore::new(self.remote.clone(), &self.dir(), max).unwrap()
    }

    /// Writes an object of `len` pseudo-random bytes straight to the remote.
    fn put(&self, name: &str, len: u64, seed: u64) -> Vec<u8> {
        let data = pattern(len, seed);
        let mut o = self.remote.inner.create(name).unwrap();
        o.write_all(&data).unwrap();
        o.seal().unwrap();
        data
    }

    fn reads(&self) -> u64 {
        self.remote.reads()
    }
}

fn pattern(len: u64, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn read(s: &dyn Store, name: &str, offset: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    s.read_at(name, offset, &mut buf).unwrap();
    buf
}

fn slice(data: &[u8], offset: u64, len: u64) -> &[u8] {
    &data[offset as usize..(offset + len) as usize]
}

/// Bytes of the cached files (whole objects and blocks) under a cache dir.
fn bytes_on_disk(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(entries) = fs::read_dir(p) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| {
                let m = e.metadata().unwrap();
                if m.is_dir() { walk(&e.path()) } else { m.len() }
            })
            .sum()
    }
    walk(&dir.join("objects")) + walk(&dir.join("blocks"))
}

fn block_files(dir: &Path, name: &str) -> usize {
    fs::read_dir(dir.join("blocks").join(name)).map_or(0, |d| d.count())
}

#[test]
fn bytes_read_through_the_cache_equal_the_inner_bytes_at_random_ranges() {
    let f = Fixture::new();
    let objects = [
        ("a.pack", f.put("a.pack", 5 * MIB + 12_345, 1)),
        ("b.pack", f.put("b.pack", 300_000, 2)),
        ("c.pack", f.put("c.pack", 2 * MIB, 3)),
    ];
    // A roomy cache, and one small enough to evict all the time.
    let roomy = f.cache(64 * MIB);
    let small_dir = f.tmp.path().join("small");
    let small = CachedStore::new(f.remote.clone(), &small_dir, 3 * MIB).unwrap();
    roomy.will_need("c.pack");
    let strategy = (0..objects.len(), 0.0..1.05f64, 1..(2 * MIB));
    let mut runner = TestRunner::new(Config::with_cases(300));
    runner
        .run(&strategy, |(i, at, len)| {
            let (name, data) = &objects[i];
            let offset = (at * data.len() as f64) as u64;
            for cache in [&roomy, &small] {
                let mut buf = vec![0u8; len as usize];
                let r = cache.read_at(name, offset, &mut buf);
                if offset + len <= data.len() as u64 {
                    prop_assert!(r.is_ok(), "{name} {offset}+{len}: {r:?}");
                    prop_assert!(buf == slice(data, offset, len), "{name} {offset}+{len}");
                } else {
                    prop_assert!(matches!(r, Err(StoreError::Short { .. })), "{r:?}");
                }
            }
            Ok(())
        })
        .unwrap();
    small.wait_for_background();
    assert!(bytes_on_disk(&small_dir) <= 3 * MIB);
}

#[test]
fn a_second_read_of_the_same_range_asks_the_inner_store_nothing() {
    let f = Fixture::new();
    let data = f.put("a.pack", 3 * MIB, 1);
    let c = f.cache(64 * MIB);
    assert_eq!(
        read(&c, "a.pack", 1_000_000, 70_000),
        slice(&data, 1_000_000, 70_000)
    );
    assert_eq!(f.reads(), 1);
    assert_eq!(
        read(&c, "a.pack", 1_000_000, 70_000),
        slice(&data, 1_000_000, 70_000)
    );
    // Anything else in the same block is there too.
    assert_eq!(read(&c, "a.pack", MIB, 100), slice(&data, MIB, 100));
    assert_eq!(f.reads(), 1);
    // The first read spanned blocks 0 and 1.
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.inner_bytes), (2, 1, 2 * MIB));
}

#[test]
fn will_need_caches_the_whole_object_and_later_reads_are_local() {
    let f = Fixture::new();
    let data = f.put("t.pack", 20 * MIB + 5, 1);
    let c = f.cache(256 * MIB);
    c.will_need("t.pack");
    c.will_need("t.pack");
    c.wait_for_background();
    assert_eq!(c.stats().wholes, 1);
    assert_eq!(f.reads(), 3, "three 8 MiB parts");
    assert_eq!(fs::read(f.dir().join("objects/t.pack")).unwrap(), data);
    for (offset, len) in [(0, 10), (7 * MIB, 3 * MIB), (20 * MIB - 100, 105)] {
        assert_eq!(read(&c, "t.pack", offset, len), slice(&data, offset, len));
    }
    assert_eq!(f.reads(), 3);
    assert_eq!(c.stats().bytes_cached, data.len() as u64);
}

#[test]
fn blocks_read_before_the_whole_object_came_are_dropped_when_it_does() {
    let f = Fixture::new();
    let data = f.put("t.pack", 4 * MIB, 1);
    let c = f.cache(64 * MIB);
    assert_eq!(read(&c, "t.pack", MIB, 10), slice(&data, MIB, 10));
    assert_eq!(block_files(&f.dir(), "t.pack"), 1);
    c.will_need("t.pack");
    c.wait_for_background();
    assert_eq!(block_files(&f.dir(), "t.pack"), 0);
    assert_eq!(c.stats().bytes_cached, 4 * MIB);
}

#[test]
fn a_read_spanning_several_missing_blocks_costs_one_inner_read() {
    let f = Fixture::new();
    let data = f.put("a.pack", 10 * MIB, 1);
    let c = f.cache(64 * MIB);
    // Blocks 3 to 6 (no read here follows the one before: nothing is read ahead).
    assert_eq!(
        read(&c, "a.pack", 3 * MIB + 5, 3 * MIB),
        slice(&data, 3 * MIB + 5, 3 * MIB)
    );
    assert_eq!(f.reads(), 1);
    assert_eq!(block_files(&f.dir(), "a.pack"), 4);
    // Blocks 0 to 3, 3 cached: blocks 0 to 2 in one read.
    assert_eq!(
        read(&c, "a.pack", MIB / 2, 3 * MIB),
        slice(&data, MIB / 2, 3 * MIB)
    );
    assert_eq!(f.reads(), 2);
    // Blocks 7 to 9 around a cached 8: two runs, two reads.
    assert_eq!(read(&c, "a.pack", 8 * MIB, 10), slice(&data, 8 * MIB, 10));
    assert_eq!(f.reads(), 3);
    assert_eq!(
        read(&c, "a.pack", 7 * MIB, 3 * MIB),
        slice(&data, 7 * MIB, 3 * MIB)
    );
    assert_eq!(f.reads(), 5);
    assert_eq!(block_files(&f.dir(), "a.pack"), 10);
    assert_eq!(c.stats().inner_bytes, 10 * MIB);
}

#[test]
fn the_bytes_on_disk_stay_within_the_bound_after_reading_more_than_it() {
    let f = Fixture::new();
    let data = f.put("a.pack", 24 * MIB + 777, 1);
    let c = f.cache(4 * MIB);
    let mut offset = 0;
    while offset < data.len() as u64 {
        let len = (300_000).min(data.len() as u64 - offset);
        assert_eq!(read(&c, "a.pack", offset, len), slice(&data, offset, len));
        offset += len;
        assert!(c.stats().bytes_cached <= 4 * MIB);
    }
    c.wait_for_background();
    assert!(
        bytes_on_disk(&f.dir()) <= 4 * MIB,
        "{}",
        bytes_on_disk(&f.dir())
    );
    let s = c.stats();
    assert!(s.bytes_cached <= 4 * MIB);
    assert!(s.evicted_bytes >= 20 * MIB, "{s:?}");
    assert_eq!(fs::read_dir(f.dir().join("tmp")).unwrap().count(), 0);
}

#[test]
fn whole_objects_are_evicted_after_range_blocks_and_least_recently_used_first() {
    let f = Fixture::new();
    // 8 MiB: whole objects may hold 6 MiB, and one may be 3 MiB.
    let c = f.cache(8 * MIB);
    let trees: Vec<Vec<u8>> = (0..4)
        .map(|i| f.put(&format!("t{i}.pack"), 2 * MIB, i))
        .collect();
    let big = f.put("d.pack", 30 * MIB, 9);
    for i in 0..3 {
        c.will_need(&format!("t{i}.pack"));
        c.wait_for_background();
    }
    // Range reads of much more than the bound push out blocks, never the trees.
    for k in 0..60 {
        let offset = (k * 7919 * 4096) % (29 * MIB);
        assert_eq!(
            read(&c, "d.pack", offset, 100_000),
            slice(&big, offset, 100_000)
        );
    }
    c.wait_for_background();
    for i in 0..3 {
        assert!(f.dir().join(format!("objects/t{i}.pack")).exists());
    }
    // Tree 0 used last; a fourth goes over the trees' 6 MiB and evicts tree 1.
    let before = f.reads();
    assert_eq!(read(&c, "t0.pack", 5, 5), slice(&trees[0], 5, 5));
    assert_eq!(read(&c, "t2.pack", 5, 5), slice(&trees[2], 5, 5));
    assert_eq!(f.reads(), before);
    c.will_need("t3.pack");
    c.wait_for_background();
    let cached: Vec<bool> = (0..4)
        .map(|i| f.dir().join(format!("objects/t{i}.pack")).exists())
        .collect();
    assert_eq!(cached, [true, false, true, true]);
    assert!(bytes_on_disk(&f.dir()) <= 8 * MIB);
    // An object above half the trees' budget is left to the range cache.
    f.put("t9.pack", 4 * MIB, 10);
    c.will_need("t9.pack");
    c.wait_for_background();
    assert!(!f.dir().join("objects/t9.pack").exists());
}

#[test]
fn a_cache_dir_that_becomes_unusable_still_serves_reads() {
    let f = Fixture::new();
    let data = f.put("a.pack", 6 * MIB, 1);
    let tree = f.put("t.pack", MIB, 2);
    let c = f.cache(64 * MIB);
    assert_eq!(read(&c, "a.pack", 0, 1000), slice(&data, 0, 1000));
    // Root ignores permissions: a file where the temp dir was refuses every write.
    fs::remove_dir_all(f.dir().join("tmp")).unwrap();
    fs::write(f.dir().join("tmp"), b"").unwrap();
    for offset in [2 * MIB, 4 * MIB + 3, 5 * MIB] {
        assert_eq!(
            read(&c, "a.pack", offset, 70_000),
            slice(&data, offset, 70_000)
        );
    }
    c.will_need("t.pack");
    c.wait_for_background();
    assert_eq!(read(&c, "t.pack", 10, 1000), slice(&tree, 10, 1000));
    let s = c.stats();
    assert!(s.disk_errors >= 1, "{s:?}");
    // The first write to fail cost a whole block; after it, reads fetch their bytes
    // (1 MiB + 1 MiB + 2 × 70 000 + 1000, unless a second passed and a block was tried
    // again; five blocks if every read fetched one).
    assert!(s.inner_bytes < 4 * MIB, "{s:?}");
    // What was cached before is still served from the cache.
    let before = f.reads();
    assert_eq!(read(&c, "a.pack", 10, 1000), slice(&data, 10, 1000));
    assert_eq!(f.reads(), before);
    // The whole directory gone, a file in its place.
    fs::remove_dir_all(f.dir()).unwrap();
    fs::write(f.dir(), b"").unwrap();
    for offset in [0, 3 * MIB, 5 * MIB + 1] {
        assert_eq!(
            read(&c, "a.pack", offset, 70_000),
            slice(&data, offset, 70_000)
        );
    }
    c.evict("a.pack");
    assert_eq!(read(&c, "a.pack", 10, 1000), slice(&data, 10, 1000));
    // A directory that cannot be made is an error at the start, for the caller to report.
    assert!(CachedStore::new(f.remote.clone(), &f.dir().join("sub"), MIB).is_err());
}

/// A size-limited tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "the full-disk cache test mounts a tmpfs and needs root");
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn a_full_cache_disk_still_serves_reads() {
    let f = Fixture::new();
    let data = f.put("a.pack", 12 * MIB, 1);
    let tree = f.put("t.pack", 9 * MIB, 2);
    let mnt = f.tmp.path().join("small-disk");
    let _fs = Tmpfs::mount(&mnt, "2m");
    let c = CachedStore::new(f.remote.clone(), &mnt.join("cache"), 256 * MIB).unwrap();
    c.will_need("t.pack");
    let mut offset = 0;
    while offset < data.len() as u64 {
        let len = (200_000).min(data.len() as u64 - offset);
        assert_eq!(read(&c, "a.pack", offset, len), slice(&data, offset, len));
        offset += len;
    }
    c.wait_for_background();
    assert_eq!(
        read(&c, "t.pack", 8 * MIB, 1000),
        slice(&tree, 8 * MIB, 1000)
    );
    let s = c.stats();
    assert!(s.disk_errors > 0, "{s:?}");
    assert_eq!(s.wholes, 0);
    // Once the disk is found full, reads fetch their own bytes, not whole blocks.
    assert!(s.inner_bytes < 2 * (21 * MIB), "{s:?}");
    assert!(bytes_on_disk(&mnt.join("cache")) <= 2 * MIB);
    drop(c);
}

#[test]
fn evict_and_delete_drop_cached_copies() {
    let f = Fixture::new();
    let old = f.put("a.pack", 3 * MIB, 1);
    let c = f.cache(64 * MIB);
    c.will_need("a.pack");
    c.wait_for_background();
    assert_eq!(read(&c, "a.pack", 0, 10), slice(&old, 0, 10));
    assert!(f.dir().join("objects/a.pack").exists());
    // Another process prunes the object and a later writer reuses its name, same size:
    // the copy is stale until the reader, its record checks failing, evicts it.
    f.remote.delete("a.pack").unwrap();
    let new = f.put("a.pack", 3 * MIB, 2);
    assert_eq!(read(&c, "a.pack", 0, 10), slice(&old, 0, 10));
    c.evict("a.pack");
    assert!(!f.dir().join("objects/a.pack").exists());
    assert_eq!(read(&c, "a.pack", 0, 10), slice(&new, 0, 10));
    assert_eq!(block_files(&f.dir(), "a.pack"), 1);
    // Delete through the cache drops the blocks too.
    c.delete("a.pack").unwrap();
    assert_eq!(block_files(&f.dir(), "a.pack"), 0);
    assert!(c.size("a.pack").unwrap_err().is_not_found());
    let newer = f.put("a.pack", 3 * MIB, 3);
    assert_eq!(read(&c, "a.pack", 0, 10), slice(&newer, 0, 10));
    assert_eq!(c.stats().bytes_cached, MIB);
}

#[test]
fn a_fetch_under_way_when_its_object_is_evicted_is_discarded() {
    let f = Fixture::slow(Duration::from_millis(100));
    f.put("t.pack", 2 * MIB, 1);
    let c = f.cache(64 * MIB);
    c.will_need("t.pack");
    c.evict("t.pack");
    c.wait_for_background();
    assert!(!f.dir().join("objects/t.pack").exists());
    assert_eq!(c.stats().bytes_cached, 0);
}

#[test]
fn a_fresh_cached_store_on_the_same_dir_reuses_what_is_on_disk() {
    let f = Fixture::new();
    let data = f.put("a.pack", 5 * MIB, 1);
    let tree = f.put("t.pack", MIB + 1, 2);
    let cached = {
        let c = f.cache(64 * MIB);
        c.will_need("t.pack");
        read(&c, "a.pack", MIB / 2, MIB);
        read(&c, "a.pack", 4 * MIB, 10);
        c.wait_for_background();
        c.stats().bytes_cached
    };
    let before = f.reads();
    let c = f.cache(64 * MIB);
    assert_eq!(c.stats().bytes_cached, cached);
    assert_eq!(read(&c, "a.pack", MIB / 2, MIB), slice(&data, MIB / 2, MIB));
    assert_eq!(read(&c, "a.pack", 4 * MIB, 10), slice(&data, 4 * MIB, 10));
    assert_eq!(read(&c, "t.pack", 0, MIB + 1), tree);
    c.will_need("t.pack");
    c.wait_for_background();
    assert_eq!(f.reads(), before);
    assert_eq!(c.stats().hits, 3);
    // A smaller bound evicts what is over it at once.
    drop(c);
    let c = f.cache(2 * MIB);
    assert!(c.stats().bytes_cached <= 2 * MIB);
    assert!(bytes_on_disk(&f.dir()) <= 2 * MIB);
}

#[test]
fn leftovers_and_damaged_files_are_removed_at_startup() {
    let f = Fixture::new();
    let data = f.put("a.pack", 3 * MIB, 1);
    drop(f.cache(64 * MIB));
    let dir = f.dir();
    // A temp file of a process that is gone, one of a live process, a block cut short,
    // a block of a misaligned offset, a file that is no block, a whole copy cut short.
    fs::write(dir.join("tmp/4000000000.1"), b"x").unwrap();
    let live = dir.join(format!("tmp/{}.999999", std::process::id()));
    fs::write(&live, b"x").unwrap();
    fs::create_dir(dir.join("blocks/a.pack")).unwrap();
    let short = dir.join(format!("blocks/a.pack/{:x}-0", 3 * MIB));
    fs::write(&short, &data[..1000]).unwrap();
    let misaligned = dir.join(format!("blocks/a.pack/{:x}-5", 3 * MIB));
    fs::write(&misaligned, &data[5..5 + MIB as usize]).unwrap();
    let good = dir.join(format!("blocks/a.pack/{:x}-{:x}", 3 * MIB, 2 * MIB));
    fs::write(&good, slice(&data, 2 * MIB, MIB)).unwrap();
    fs::write(dir.join("blocks/a.pack/junk"), b"x").unwrap();
    fs::write(dir.join("objects/a.pack"), &data[..100]).unwrap();
    let c = f.cache(64 * MIB);
    assert!(!dir.join("tmp/4000000000.1").exists());
    assert!(live.exists());
    assert!(!short.exists() && !misaligned.exists());
    assert!(good.exists());
    assert_eq!(block_files(&dir, "a.pack"), 1);
    // The short whole copy is found out at its first use and a block read instead.
    assert_eq!(read(&c, "a.pack", 10, 10), slice(&data, 10, 10));
    assert!(!dir.join("objects/a.pack").exists());
    let before = f.reads();
    assert_eq!(read(&c, "a.pack", 2 * MIB, 10), slice(&data, 2 * MIB, 10));
    assert_eq!(f.reads(), before, "the good block was kept");
}

#[test]
fn two_cached_stores_on_one_dir_in_two_threads_stay_correct() {
    let f = Fixture::new();
    let objects: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            let name = format!("o{i}.pack");
            let data = f.put(&name, (3 + i) * MIB + i * 1000, i);
            (name, data)
        })
        .collect();
    let f = &f;
    let objects = &objects;
    std::thread::scope(|s| {
        for t in 0..2u64 {
            s.spawn(move || {
                // Small enough that each evicts files the other is using; o0 and o1 are
                // cached whole.
                let c = f.cache(12 * MIB);
                let mut x = t + 1;
                for k in 0..400u64 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let (name, data) = &objects[(x >> 60) as usize % objects.len()];
                    let size = data.len() as u64;
                    let offset = (x >> 20) % size;
                    let len = ((x >> 8) % (MIB + MIB / 4)).clamp(1, size - offset);
                    if k % 50 == 0 {
                        c.will_need(name);
                    }
                    assert_eq!(read(&c, name, offset, len), slice(data, offset, len));
                }
                c.wait_for_background();
                assert_eq!(c.stats().disk_errors, 0, "{:?}", c.stats());
            });
        }
    });
    // Each keeps its own view within the bound; the directory holds at most both views.
    assert!(bytes_on_disk(&f.dir()) <= 24 * MIB);
}

#[test]
fn sequential_reads_are_fetched_ahead() {
    let f = Fixture::slow(Duration::from_millis(5));
    let data = f.put("a.pack", 32 * MIB, 1);
    let c = f.cache(256 * MIB);
    let mut offset = 0;
    while offset < data.len() as u64 {
        assert_eq!(
            read(&c, "a.pack", offset, 128 << 10),
            slice(&data, offset, 128 << 10)
        );
        offset += 128 << 10;
    }
    c.wait_for_background();
    let s = c.stats();
    assert!(s.prefetched >= 24, "{s:?}");
    assert!(s.hits > 200, "{s:?}");
    assert_eq!(s.inner_bytes, 32 * MIB, "every block fetched once: {s:?}");
}

#[test]
fn readers_of_one_missing_block_fetch_it_once() {
    let f = Fixture::slow(Duration::from_millis(50));
    let data = f.put("a.pack", 2 * MIB, 1);
    let c = f.cache(64 * MIB);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (c, data) = (&c, &data);
            s.spawn(move || {
                // All end at one place: none looks like the next step of another.
                let offset = 1000 * t;
                assert_eq!(
                    read(c, "a.pack", offset, 5000 - offset),
                    slice(data, offset, 5000 - offset)
                );
            });
        }
    });
    assert_eq!(f.reads(), 1);
}

#[test]
fn reads_past_the_end_and_of_missing_objects_fail_as_the_inner_store_fails() {
    let f = Fixture::new();
    f.put("a.pack", MIB + 10, 1);
    let c = f.cache(64 * MIB);
    let mut buf = vec![0u8; 20];
    assert!(matches!(
        c.read_at("a.pack", MIB, &mut buf),
        Err(StoreError::Short { .. })
    ));
    assert!(
        c.read_at("nope.pack", 0, &mut buf)
            .unwrap_err()
            .is_not_found()
    );
    c.will_need("nope.pack");
    c.wait_for_background();
    assert_eq!(c.read_at("a.pack", 0, &mut []).map(|_| ()).ok(), Some(()));
    // Names that cannot be file names pass straight through.
    assert!(c.read_at("../a.pack", 0, &mut buf).is_err());
    assert_eq!(c.stats().bytes_cached, 0);
}

#[test]
fn runs_group_consecutive_blocks() {
    assert_eq!(runs(&[]), vec![]);
    assert_eq!(runs(&[3]), vec![(3, 3)]);
    assert_eq!(runs(&[1, 2, 3, 5, 7, 8]), vec![(1, 3), (5, 5), (7, 8)]);
}
