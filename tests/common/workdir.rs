//! The temporary working directory of a test and the generator of source trees with every
//! kind of node strata must keep: regular, empty, multi-chunk and sparse files, hard links,
//! symlinks (relative, absolute, dangling), FIFOs, sockets, devices, names that are not
//! UTF-8 or hold a newline, a path close to PATH_MAX, odd modes and owners, xattrs, and
//! mtimes with nanoseconds.

use super::cmd::{Archive, Cmd, require_tool};
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File, Permissions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{PermissionsExt, lchown, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A fresh directory, removed when the test ends (also when it fails).
pub struct Workdir {
    tmp: TempDir,
}

impl Default for Workdir {
    fn default() -> Self {
        Self::new()
    }
}

impl Workdir {
    pub fn new() -> Workdir {
        let tmp = tempfile::Builder::new()
            .prefix("strata-test-")
            .tempdir()
            .expect("creating a temporary directory");
        Workdir { tmp }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Creates the directory (and its parents) and returns its path.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.join(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    /// Writes a file (creating its parents) and returns its path.
    pub fn write(&self, rel: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(rel);
        write_file(&p, bytes.as_ref());
        p
    }

    /// `strata init WORKDIR/archive EXTRA...`
    pub fn archive(&self, extra: &[&str]) -> Archive {
        Archive::init(self.join("archive"), extra)
    }
}

pub fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The names in a directory, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `cp -a SRC DST` (DST must not exist): a copy of a tree as it is now.
pub fn copy_tree(src: &Path, dst: &Path) {
    Cmd::new("cp").arg("-a").arg(src).arg(dst).ok();
}

/// `len` incompressible bytes, the same for the same seed (BLAKE3 in XOF mode).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut h = blake3::Hasher::new();
    h.update(b"strata test data");
    h.update(&seed.to_le_bytes());
    let mut buf = vec![0u8; len];
    h.finalize_xof().fill(&mut buf);
    buf
}

/// Writes `len` pseudo-random bytes without holding them all in memory.
pub fn write_random_file(path: &Path, seed: u64, len: u64) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    let mut h = blake3::Hasher::new();
    h.update(b"strata test data");
    h.update(&seed.to_le_bytes());
    let mut xof = h.finalize_xof();
    let mut f = File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        xof.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
}

/// A path from raw bytes (names that are not UTF-8).
pub fn bytes_path(base: &Path, name: &[u8]) -> PathBuf {
    base.join(OsStr::from_bytes(name))
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

pub fn set_mode(p: &Path, mode: u32) {
    fs::set_permissions(p, Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

/// Sets the mtime (and atime) of `p` itself, not following symlinks.
pub fn set_mtime(p: &Path, secs: i64, nanos: i64) {
    let c = cpath(p);
    let ts = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        },
    ];
    // SAFETY: `c` is a valid NUL-terminated path and `ts` points to two timespecs, as
    // utimensat requires; both outlive the call.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        rc,
        0,
        "utimensat {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

pub fn mkfifo(p: &Path, mode: u32) {
    let c = cpath(p);
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    set_mode(p, mode);
}

/// `mknod` of a character (`'c'`) or block (`'b'`) device; needs root.
pub fn mknod(p: &Path, kind: char, major: u32, minor: u32, mode: u32) {
    let fmt = match kind {
        'c' => libc::S_IFCHR,
        'b' => libc::S_IFBLK,
        _ => panic!("device kind must be 'c' or 'b'"),
    };
    let c = cpath(p);
    let dev = libc::makedev(major, minor);
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mknod(c.as_ptr(), fmt | mode as libc::mode_t, dev) };
    assert_eq!(
        rc,
        0,
        "mknod {} (the tests run as root): {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    set_mode(p, mode);
}

/// A Unix socket node left behind by a listener that was closed.
pub fn make_socket(p: &Path) {
    let l = UnixListener::bind(p).unwrap_or_else(|e| panic!("binding {}: {e}", p.display()));
    drop(l);
    assert!(p.exists(), "socket node {} is gone", p.display());
}

/// `setfattr -n NAME -v VALUE PATH` (the `attr` package, which the tests require).
pub fn setfattr(p: &Path, name: &str, value: &str) {
    require_tool("setfattr", "attr");
    Cmd::new("setfattr")
        .args(["-h", "-n", name, "-v", value])
        .arg(p)
        .ok();
}

/// Sets deterministic, distinct mtimes with nanoseconds on every node under `root`
/// (children before their directory, so the directory times stay as set).
pub fn stamp_mtimes(root: &Path) {
    fn walk(p: &Path, counter: &mut i64) {
        let meta = fs::symlink_metadata(p).unwrap();
        if meta.is_dir() {
            let mut names: Vec<OsString> = fs::read_dir(p)
                .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                walk(&p.join(n), counter);
            }
        }
        *counter += 1;
        let i = *counter;
        set_mtime(
            p,
            1_600_000_000 + i * 3_613,
            (i * 123_456_789 + 987) % 1_000_000_000,
        );
    }
    let mut counter = 0;
    walk(root, &mut counter);
}

/// What the test needs to know about a generated tree (paths relative to its root).
pub struct TreeFacts {
    pub root: PathBuf,
    /// Three names of one inode.
    pub hard_links: [PathBuf; 3],
    pub sparse: PathBuf,
    pub sparse_len: u64,
    pub big: PathBuf,
    /// The deepest file; its path inside the snapshot is close to 4096 bytes.
    pub deep_file: PathBuf,
    /// Files that carry `user.*` xattrs.
    pub with_xattrs: Vec<PathBuf>,
}

/// Length of each of the nested directory names on the deep path.
pub const DEEP_NAME_LEN: usize = 200;
pub const DEEP_LEVELS: usize = 19;

/// Builds the full tree at `root` (which must not exist). Runs as root (chown, mknod).
pub fn generate_full_tree(root: &Path) -> TreeFacts {
    require_tool("setfattr", "attr");
    fs::create_dir_all(root).unwrap();
    let w = |rel: &str, bytes: &[u8], mode: u32| {
        let p = root.join(rel);
        write_file(&p, bytes);
        set_mode(&p, mode);
        p
    };

    // Regular files: empty, small, modes 0600/0755/0444, one spanning many 64K chunks.
    w("empty.txt", b"", 0o644);
    let hello = w("hello.txt", b"hello, strata\n", 0o644);
    w("private.key", &random_bytes(1, 1000), 0o600);
    w("run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    w("readonly.txt", b"read only\n", 0o444);
    let big_len = 3 * 1024 * 1024 + 12_345;
    write_random_file(&root.join("big.bin"), 2, big_len);
    w(
        "text/compressible.txt",
        "all work and no play\n".repeat(20_000).as_bytes(),
        0o644,
    );

    // Hard links: three names of one inode, across two directories.
    let one = w("links/one.txt", b"linked content\n", 0o640);
    fs::hard_link(&one, root.join("links/two.txt")).unwrap();
    fs::create_dir_all(root.join("nested/a/b/c")).unwrap();
    fs::hard_link(&one, root.join("nested/a/three.txt")).unwrap();

    // A sparse file: 10 MiB apparent, 4 KiB of data at 5 MiB.
    let sparse_len = 10 * 1024 * 1024;
    {
        let mut f = File::create(root.join("sparse.img")).unwrap();
        f.set_len(sparse_len).unwrap();
        f.seek(SeekFrom::Start(5 * 1024 * 1024)).unwrap();
        f.write_all(&random_bytes(3, 4096)).unwrap();
    }

    // Nested dirs, odd dir modes, an empty dir.
    w("nested/a/b/c/deep.txt", b"deep\n", 0o644);
    set_mode(&root.join("nested/a"), 0o700);
    set_mode(&root.join("nested/a/b"), 0o750);
    fs::create_dir_all(root.join("empty-dir")).unwrap();

    // Symlinks: relative, absolute, dangling, to a directory.
    symlink("hello.txt", root.join("rel-link")).unwrap();
    symlink("/etc/hostname", root.join("abs-link")).unwrap();
    symlink("does/not/exist", root.join("dangling-link")).unwrap();
    symlink("nested/a", root.join("dir-link")).unwrap();
    symlink("../hello.txt", root.join("nested/up-link")).unwrap();

    // A FIFO.
    mkfifo(&root.join("pipe"), 0o640);

    // Names: not UTF-8, with a newline, with spaces and a tab, a colon.
    write_file(&bytes_path(root, b"caf\xe9.txt"), b"latin-1 name\n");
    let odd_dir = bytes_path(root, b"\xff\xfe-dir");
    fs::create_dir_all(&odd_dir).unwrap();
    write_file(&bytes_path(&odd_dir, b"inner-\xff"), b"inner\n");
    write_file(&root.join("line\nbreak.txt"), b"newline in the name\n");
    write_file(&root.join("with space\tand tab"), b"spaces\n");
    write_file(&root.join("colon:name"), b"colon\n");

    // Owners (the tests run as root): a file, a dir and a symlink owned by others.
    let owned = w("owned.txt", b"owned by 4321:8765\n", 0o644);
    std::os::unix::fs::chown(&owned, Some(4321), Some(8765)).unwrap();
    let nobody_dir = root.join("nobody-dir");
    fs::create_dir_all(&nobody_dir).unwrap();
    write_file(&nobody_dir.join("f"), b"f\n");
    std::os::unix::fs::chown(&nobody_dir, Some(65534), Some(65534)).unwrap();
    lchown(root.join("rel-link"), Some(1111), Some(2222)).unwrap();

    // Xattrs: text and binary values, on a file and a directory.
    setfattr(&hello, "user.comment", "hello world");
    setfattr(&hello, "user.binary", "0x00ff10");
    setfattr(&root.join("nested"), "user.dirattr", "yes");
    setfattr(&root.join("big.bin"), "user.empty", "");

    // A path whose length inside the snapshot is close to 4096 bytes.
    let mut deep = root.join("deep");
    for level in 0..DEEP_LEVELS {
        let prefix = format!("level{level:02}-");
        let name = format!("{prefix}{}", "x".repeat(DEEP_NAME_LEN - prefix.len()));
        deep.push(name);
    }
    fs::create_dir_all(&deep).unwrap();
    let leaf = deep.join(format!("leaf-{}", "y".repeat(95)));
    write_file(&leaf, b"at the bottom\n");

    stamp_mtimes(root);

    let rel = |p: &Path| p.strip_prefix(root).unwrap().to_path_buf();
    TreeFacts {
        root: root.to_owned(),
        hard_links: [
            PathBuf::from("links/one.txt"),
            PathBuf::from("links/two.txt"),
            PathBuf::from("nested/a/three.txt"),
        ],
        sparse: PathBuf::from("sparse.img"),
        sparse_len,
        big: PathBuf::from("big.bin"),
        deep_file: rel(&leaf),
        with_xattrs: vec![
            PathBuf::from("hello.txt"),
            PathBuf::from("nested"),
            PathBuf::from("big.bin"),
        ],
    }
}

/// Sockets and devices (root only), plus a FIFO, at `root`.
pub fn generate_special_nodes(root: &Path) {
    fs::create_dir_all(root).unwrap();
    make_socket(&root.join("listener.sock"));
    mknod(&root.join("null"), 'c', 1, 3, 0o666);
    mknod(&root.join("loop-dev"), 'b', 7, 200, 0o660);
    mkfifo(&root.join("fifo"), 0o600);
    write_file(&root.join("plain.txt"), b"plain\n");
    stamp_mtimes(root);
}

/// A small tree of plain files and dirs: `(relative path, content)` for each file.
pub fn generate_plain_tree(root: &Path, seed: u64) -> Vec<(PathBuf, Vec<u8>)> {
    let files: Vec<(PathBuf, Vec<u8>)> = vec![
        ("a.txt".into(), format!("a {seed}\n").into_bytes()),
        ("b.bin".into(), random_bytes(seed, 10_000)),
        ("sub/c.txt".into(), format!("c {seed}\n").into_bytes()),
        ("sub/deeper/d.bin".into(), random_bytes(seed + 1000, 3_000)),
        ("sub/deeper/e.txt".into(), b"e\n".to_vec()),
    ];
    for (p, bytes) in &files {
        write_file(&root.join(p), bytes);
    }
    stamp_mtimes(root);
    files
}

/// Raw bytes of a path (for comparing non-UTF-8 names).
pub fn path_bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().to_owned().into_vec()
}
