//! Deep source trees: thousands of nested directories, paths far longer than PATH_MAX.
//! The walker is iterative and its thread has the default stack, so depth costs no
//! stack; these tests build the trees with descriptor-relative calls (a path this long
//! cannot be named from the root) and judge the restore the same way.

mod common;

use common::*;
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Name of every nested level: 3 bytes of path per level with its '/'.
const LEVEL: &str = "dd";

fn open_dir_at(dir: &OwnedFd, name: &str) -> OwnedFd {
    let c = CString::new(name).unwrap();
    // SAFETY: openat with a valid descriptor and a NUL-terminated name; the result is
    // checked before it is owned.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    assert!(
        fd >= 0,
        "openat {name}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn open_path(p: &Path) -> OwnedFd {
    File::open(p).unwrap().into()
}

/// `levels` nested directories under `root`, a file `bottom` with `content` in the
/// deepest one.
fn make_chain(root: &Path, levels: usize, content: &[u8]) {
    std::fs::create_dir_all(root).unwrap();
    let mut dir = open_path(root);
    let c = CString::new(LEVEL).unwrap();
    for i in 0..levels {
        // SAFETY: mkdirat with a valid descriptor and a NUL-terminated name.
        let r = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) };
        assert_eq!(r, 0, "mkdir level {i}: {}", std::io::Error::last_os_error());
        dir = open_dir_at(&dir, LEVEL);
    }
    let name = CString::new("bottom").unwrap();
    // SAFETY: openat creating a file relative to a valid descriptor.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o644,
        )
    };
    assert!(
        fd >= 0,
        "create bottom: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor owned by nobody else.
    let mut f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    std::io::Write::write_all(&mut f, content).unwrap();
}

/// How many `LEVEL` directories nest under `root` (following the only child of each),
/// and the content of `bottom` in the deepest one, if any.
fn read_chain(root: &Path) -> (usize, Option<Vec<u8>>) {
    let mut dir = open_path(root);
    let mut depth = 0;
    loop {
        let c = CString::new(LEVEL).unwrap();
        // SAFETY: openat with a valid descriptor and a NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            break;
        }
        // SAFETY: a fresh descriptor owned by nobody else.
        dir = unsafe { OwnedFd::from_raw_fd(fd) };
        depth += 1;
    }
    let name = CString::new("bottom").unwrap();
    // SAFETY: openat with a valid descriptor and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    let content = (fd >= 0).then(|| {
        // SAFETY: a fresh descriptor owned by nobody else.
        let mut f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    });
    (depth, content)
}

/// Removes a tree whose paths are longer than PATH_MAX (GNU rm works through
/// directory descriptors).
fn rm_rf(p: &Path) {
    sh(&format!("rm -rf '{}'", p.display())).ok();
}

#[test]
fn a_tree_two_thousand_directories_deep_ingests_and_restores_exactly() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let levels = 2000;
    assert!(levels * (LEVEL.len() + 1) > libc::PATH_MAX as usize);
    let src = wd.join("src");
    make_chain(&src, levels, b"at the bottom\n");

    let j = archive.ingest([&src]);
    assert_eq!(j.field("errors").as_array().len(), 0, "no path error");
    // src, the 2000 levels (and the snapshot root).
    assert!(j.field("dirs").as_u64() > levels as u64);
    assert_eq!(j.field("files").as_u64(), 1);

    let target = wd.join("restored");
    archive.restore("latest", &target);
    assert_eq!(
        read_chain(&target.join("src")),
        (levels, Some(b"at the bottom\n".to_vec()))
    );
    rm_rf(&target);

    // A second ingest walks the same depth against the parent and reads nothing again.
    let j = archive.ingest([&src]);
    assert_eq!(j.field("files_unchanged").as_u64(), 1);
    assert_eq!(j.field("bytes_read").as_u64(), 0);
    rm_rf(&src);
}

#[test]
fn a_tree_three_thousand_directories_deep_is_stored_to_the_depth_limit_without_a_crash() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = wd.join("src");
    make_chain(&src, 3000, b"too deep\n");

    // Stored down to the limit; the directory below it is recorded, not a crash.
    let out = archive.cmd("ingest").arg(&src).arg("--json").code(3);
    out.assert_no_panic();
    let j = out.json();
    let errors = j.field("errors").as_array();
    assert_eq!(errors.len(), 1, "{out}");
    assert!(
        errors[0].field("error").as_str().contains("too deep"),
        "{out}"
    );

    let target = wd.join("restored");
    archive.restore("latest", &target);
    let limit = strata::tree::MAX_DEPTH;
    assert_eq!(read_chain(&target.join("src")), (limit, None));
    rm_rf(&target);
    rm_rf(&src);
}
