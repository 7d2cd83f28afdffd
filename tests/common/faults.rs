//! Fault injection for the integrity tests: a seeded PRNG, an independent parser of pack
//! records (from docs/FORMAT.md, not from the library), what each snapshot reaches (read
//! through the library on an undamaged archive), a size-limited tmpfs and a `--daemon`
//! FUSE mount that are always unmounted in `Drop`, and small file helpers.
//!
//! Included by `tests/integrity.rs` only (`#[path]`), so other test binaries never
//! compile it.
#![allow(dead_code)]

use crate::common::cmd::{Cmd, strata_bin};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata::format::BlobId;
use strata::format::tree::{Extent, NodeKind};

// ---------------------------------------------------------------------------------------
// A seeded PRNG (SplitMix64): the same seed gives the same faults on every machine.
// ---------------------------------------------------------------------------------------

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x05ee_d0f5_7a7a)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }

    /// Uniform in `[lo, hi)`.
    pub fn float(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }

    /// A byte that is not zero (so an XOR with it always changes the byte).
    pub fn nonzero_byte(&mut self) -> u8 {
        1 + self.below(255) as u8
    }
}

/// The seed of a test: `STRATA_SEED` when set (to replay a failure), else `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("STRATA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------
// Pack files, parsed independently of the library (docs/FORMAT.md §3.1).
// ---------------------------------------------------------------------------------------

pub const PACK_HEADER_LEN: u64 = 24;
pub const BLOB_HEADER_LEN: u64 = 64;

#[derive(Clone, Debug)]
pub struct PackRecord {
    /// Offset of the 64-byte record header in the pack.
    pub offset: u64,
    /// 1 chunk, 2 tree, 3 snapshot.
    pub kind: u8,
    pub id: BlobId,
    pub stored_len: u64,
}

impl PackRecord {
    pub fn data_start(&self) -> u64 {
        self.offset + BLOB_HEADER_LEN
    }
    pub fn end(&self) -> u64 {
        self.data_start() + self.stored_len
    }
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

/// Every record of an undamaged pack, in order. Panics if the pack is not well formed.
pub fn pack_records(bytes: &[u8]) -> Vec<PackRecord> {
    assert!(
        bytes.len() as u64 >= PACK_HEADER_LEN && &bytes[..8] == b"STRATAPK",
        "not a pack"
    );
    let mut out = Vec::new();
    let mut pos = PACK_HEADER_LEN;
    while pos < bytes.len() as u64 {
        let h = &bytes[pos as usize..(pos + BLOB_HEADER_LEN) as usize];
        assert_eq!(&h[..4], b"BLOB", "record magic at offset {pos}");
        let rec = PackRecord {
            offset: pos,
            kind: h[4],
            id: BlobId(h[8..40].try_into().unwrap()),
            stored_len: le_u64(&h[48..56]),
        };
        pos = rec.end();
        out.push(rec);
    }
    assert_eq!(
        pos,
        bytes.len() as u64,
        "the last record ends at the end of the pack"
    );
    out
}

/// The pack files of an archive, sorted by name.
pub fn pack_paths(archive: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(archive.join("packs"))
        .unwrap_or_else(|e| panic!("reading {}/packs: {e}", archive.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    v.sort();
    v
}

/// XORs one byte of a file with a non-zero mask.
pub fn flip_byte(path: &Path, offset: u64, mask: u8) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= mask;
    f.write_all_at(&b, offset).unwrap();
}

pub fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// `cp -a SRC DST` (DST must not exist).
pub fn copy_tree(src: &Path, dst: &Path) {
    Cmd::new("cp").arg("-a").arg(src).arg(dst).ok();
}

// ---------------------------------------------------------------------------------------
// What every snapshot reaches, read through the library from an undamaged archive.
// ---------------------------------------------------------------------------------------

pub struct SnapContent {
    pub id: BlobId,
    pub short: String,
    /// Regular files: path inside the snapshot (`data/sub/f`) → its chunk ids.
    pub files: BTreeMap<String, Vec<BlobId>>,
    /// Every blob the snapshot needs: its record, every tree, every chunk.
    pub blobs: HashSet<BlobId>,
}

/// Walks every snapshot of an (undamaged) archive.
pub fn snapshot_contents(archive: &Path) -> Vec<SnapContent> {
    let a = strata::archive::Archive::open(archive).expect("opening the archive");
    let mut out = Vec::new();
    for row in a.snapshots().expect("listing snapshots") {
        let mut c = SnapContent {
            id: row.id,
            short: row.id.short(),
            files: BTreeMap::new(),
            blobs: HashSet::new(),
        };
        c.blobs.insert(row.id);
        let mut stack = vec![(row.root, String::new())];
        while let Some((tree, prefix)) = stack.pop() {
            c.blobs.insert(tree);
            for n in a.read_tree(&tree).expect("reading a tree") {
                let name = String::from_utf8_lossy(&n.name).into_owned();
                let path = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                match n.kind {
                    NodeKind::Dir => stack.push((n.subtree().unwrap(), path)),
                    NodeKind::File => {
                        let chunks: Vec<BlobId> = n
                            .extents()
                            .iter()
                            .filter_map(|x| match x {
                                Extent::Data { id, .. } => Some(*id),
                                Extent::Hole { .. } => None,
                            })
                            .collect();
                        c.blobs.extend(chunks.iter().copied());
                        c.files.insert(path, chunks);
                    }
                    _ => {}
                }
            }
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------

/// Regular files under `root`: relative path → bytes.
pub fn read_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            let p = e.path();
            if t.is_dir() {
                walk(base, &p, out);
            } else if t.is_file() {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs is plain data; zeroed is a valid value for it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs {}", path.display());
    st.f_bavail * st.f_frsize
}

/// Whether `path` is a mount point (per /proc/self/mountinfo, octal escapes decoded).
pub fn is_mount_point(path: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.to_string_lossy();
    info.lines().any(|l| {
        l.split(' ').nth(4).is_some_and(|mp| {
            let mut s = String::new();
            let b = mp.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'\\' && i + 3 < b.len() {
                    let v = u8::from_str_radix(&mp[i + 1..i + 4], 8).unwrap_or(b'?');
                    s.push(v as char);
                    i += 4;
                } else {
                    s.push(b[i] as char);
                    i += 1;
                }
            }
            s == want
        })
    })
}

// ---------------------------------------------------------------------------------------
// A size-limited tmpfs, unmounted in Drop (also when the test fails).
// ---------------------------------------------------------------------------------------

pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// `mount -t tmpfs -o size=SIZE,mode=0700 tmpfs DIR` (needs root).
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let out = Cmd::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0700"))
            .arg("tmpfs")
            .arg(dir)
            .run();
        assert!(
            out.status.success(),
            "the disk-full test mounts a tmpfs and needs root\n{out}"
        );
        Tmpfs {
            dir: dir.to_owned(),
        }
    }

    /// `mount -o remount,size=SIZE DIR`.
    pub fn resize(&self, size: &str) {
        Cmd::new("mount")
            .arg("-o")
            .arg(format!("remount,size={size}"))
            .arg(&self.dir)
            .ok();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

// ---------------------------------------------------------------------------------------
// `strata mount --daemon`, unmounted in Drop.
// ---------------------------------------------------------------------------------------

pub fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists()
            && (Path::new("/usr/bin/fusermount3").exists()
                || Path::new("/bin/fusermount3").exists()),
        "FUSE tests need /dev/fuse and fuse3 (`apt-get install -y fuse3`)"
    );
}

/// Whether a process runs (a zombie waiting to be reaped does not count).
pub fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

pub struct DaemonMount {
    pub dir: PathBuf,
    pub pid: Option<i32>,
    pub log: PathBuf,
}

impl DaemonMount {
    /// `strata mount ARCHIVE DIR EXTRA... --daemon`; returns once the mount is ready. The
    /// daemon keeps the stderr it inherits, so it goes to a file (a pipe would never
    /// reach end-of-file while the mount runs).
    pub fn start(archive: &Path, dir: &Path, extra: &[&str], log: &Path) -> DaemonMount {
        require_fuse();
        fs::create_dir_all(dir).unwrap();
        let dir = fs::canonicalize(dir).unwrap();
        let mut guard = DaemonMount {
            dir: dir.clone(),
            pid: None,
            log: log.to_owned(),
        };
        let logf = fs::File::create(log).unwrap();
        let mut child = Command::new(strata_bin())
            .arg("mount")
            .arg(archive)
            .arg(&dir)
            .args(extra)
            .arg("--daemon")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "strata mount --daemon did not return within 30 s\n{}",
                    guard.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let text = guard.log_text();
        guard.pid = text
            .split_whitespace()
            .skip_while(|w| *w != "process")
            .nth(1)
            .and_then(|p| p.parse().ok());
        assert!(
            status.success(),
            "strata mount --daemon failed: {status}\n{text}"
        );
        assert!(
            is_mount_point(&dir),
            "--daemon returned before the mount was ready\n{text}"
        );
        guard
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DaemonMount {
    fn drop(&mut self) {
        if is_mount_point(&self.dir) {
            let ok = Command::new(strata_bin())
                .arg("umount")
                .arg(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("fusermount3")
                    .args(["-u", "-z"])
                    .arg(&self.dir)
                    .status();
            }
        }
        if let Some(pid) = self.pid {
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if alive(pid) {
                // SAFETY: kill(2) on the daemon we started, still running; no memory is
                // involved.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Problems that do not stop a run: counted by kind, reported together at the end.
// ---------------------------------------------------------------------------------------

#[derive(Default)]
pub struct Problems(BTreeMap<String, (usize, String)>);

impl Problems {
    pub fn add(&mut self, kind: &str, example: String) {
        let e = self.0.entry(kind.to_owned()).or_insert((0, example));
        e.0 += 1;
    }

    /// Panics with one paragraph per kind: how often, and the first example.
    pub fn assert_none(&self) {
        if self.0.is_empty() {
            return;
        }
        let text: Vec<String> = self
            .0
            .iter()
            .map(|(kind, (n, example))| format!("{kind} ({n} times); first:\n  {example}"))
            .collect();
        panic!("{} kind(s) of problem:\n{}", self.0.len(), text.join("\n"));
    }
}
