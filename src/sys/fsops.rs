//! Directory-fd-relative filesystem calls (openat, fstatat, mkdirat, ...) over libc.
//! Walking and restoring through directory descriptors keeps paths of any length
//! working and makes it impossible to follow a symlink out of a tree by accident:
//! every component is opened with `O_NOFOLLOW`.
//!
//! Metadata is set through `Handle`, on the entry the caller created and holds open (an
//! ordinary descriptor, or an `O_PATH` one for symlinks and special files), never by name:
//! a name can be swapped for a symlink between two calls, a descriptor cannot.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub type Stat = libc::stat64;

fn cstr(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// An open directory.
pub struct Dir {
    fd: OwnedFd,
}

impl AsRawFd for Dir {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Dir {
    /// Opens a directory by path (following symlinks in the path itself, as a user
    /// naming a source or target expects).
    pub fn open(path: &std::path::Path) -> io::Result<Dir> {
        use std::os::unix::ffi::OsStrExt;
        let c = cstr(path.as_os_str().as_bytes())?;
        // SAFETY: c is a valid NUL-terminated string; the fd returned is owned below.
        let fd = check(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: fd was just returned by open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Dir { fd })
    }

    /// Opens a directory by path, refusing a symlink as the last component (ELOOP) and
    /// following the ones before it: how restore opens TARGET.
    pub fn open_nofollow(path: &std::path::Path) -> io::Result<Dir> {
        use std::os::unix::ffi::OsStrExt;
        let c = cstr(path.as_os_str().as_bytes())?;
        // SAFETY: c is a valid NUL-terminated string; the fd returned is owned below.
        let fd = check(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: fd was just returned by open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Dir { fd })
    }

    /// An independent open of the same directory (its own read position): what another
    /// thread must use to list it, since a `dup` shares the position of `getdents` and
    /// two threads listing through it would each see parts of the directory.
    pub fn reopen(&self) -> io::Result<Dir> {
        self.open_dir(b".")
    }

    /// A second descriptor for the same directory, sharing its read position: only for
    /// `*at` calls, never for listing from another thread (see `reopen`).
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
        })
    }

    /// Opens the subdirectory `name`, refusing symlinks.
    pub fn open_dir(&self, name: &[u8]) -> io::Result<Dir> {
        let c = cstr(name)?;
        // SAFETY: valid dirfd and C string; the fd returned is owned below.
        let fd = check(unsafe {
            libc::openat(
                self.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: fd was just returned by openat.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Dir { fd })
    }

    /// Opens a file for reading, refusing symlinks, without updating its atime.
    pub fn open_file(&self, name: &[u8]) -> io::Result<File> {
        let c = cstr(name)?;
        // O_NONBLOCK: a name swapped for a FIFO after it was stat'ed must not block the
        // ingest (it has no effect on regular files).
        let flags =
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
        // SAFETY: valid dirfd and C string.
        let mut fd = unsafe { libc::openat(self.as_raw_fd(), c.as_ptr(), flags | libc::O_NOATIME) };
        if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
            // O_NOATIME needs ownership (or CAP_FOWNER).
            // SAFETY: as above.
            fd = unsafe { libc::openat(self.as_raw_fd(), c.as_ptr(), flags) };
        }
        let fd = check(fd)?;
        // SAFETY: fd was just returned by openat.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Creates a new file (never an existing one, never through a symlink).
    pub fn create_file(&self, name: &[u8], mode: u32) -> io::Result<File> {
        let c = cstr(name)?;
        // SAFETY: valid dirfd and C string.
        let fd = check(unsafe {
            libc::openat(
                self.as_raw_fd(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        })?;
        // SAFETY: fd was just returned by openat.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// lstat of an entry.
    pub fn stat(&self, name: &[u8]) -> io::Result<Stat> {
        let c = cstr(name)?;
        // SAFETY: stat64 is plain data filled by fstatat.
        unsafe {
            let mut st: Stat = std::mem::zeroed();
            check(libc::fstatat64(
                self.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            ))?;
            Ok(st)
        }
    }

    /// fstat of the directory itself.
    pub fn stat_self(&self) -> io::Result<Stat> {
        fstat(self.as_raw_fd())
    }

    /// Entry names, without "." and "..", sorted by bytes.
    pub fn entries(&self) -> io::Result<Vec<Vec<u8>>> {
        // fdopendir takes ownership of the fd it is given, so give it a duplicate.
        // SAFETY: dup of an fd we own.
        let dup = check(unsafe { libc::fcntl(self.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
        // SAFETY: dup is a valid directory fd that fdopendir now owns.
        let dirp = unsafe { libc::fdopendir(dup) };
        if dirp.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so dup is still ours to close.
            unsafe { libc::close(dup) };
            return Err(e);
        }
        // SAFETY: dirp is valid; the dup shares the offset, so rewind first.
        unsafe { libc::rewinddir(dirp) };
        let mut names = Vec::new();
        let result = loop {
            // SAFETY: errno is thread-local; readdir64 returns a pointer valid until the
            // next call on the same stream, and we copy the name out at once.
            unsafe {
                *libc::__errno_location() = 0;
                let ent = libc::readdir64(dirp);
                if ent.is_null() {
                    let err = *libc::__errno_location();
                    break if err == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(err))
                    };
                }
                let name = CStr::from_ptr((*ent).d_name.as_ptr()).to_bytes();
                if name != b"." && name != b".." {
                    names.push(name.to_vec());
                }
            }
        };
        // SAFETY: dirp is valid and closed once.
        unsafe { libc::closedir(dirp) };
        result?;
        names.sort();
        Ok(names)
    }

    pub fn readlink(&self, name: &[u8]) -> io::Result<Vec<u8>> {
        let c = cstr(name)?;
        let mut buf = vec![0u8; 4097];
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe {
            libc::readlinkat(
                self.as_raw_fd(),
                c.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    pub fn mkdir(&self, name: &[u8], mode: u32) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid dirfd and C string.
        check(unsafe { libc::mkdirat(self.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })
            .map(drop)
    }

    pub fn symlink(&self, target: &[u8], name: &[u8]) -> io::Result<()> {
        let (t, c) = (cstr(target)?, cstr(name)?);
        // SAFETY: valid C strings and dirfd.
        check(unsafe { libc::symlinkat(t.as_ptr(), self.as_raw_fd(), c.as_ptr()) }).map(drop)
    }

    /// Hard link of the open file `fd` as `self/name`, through `/proc/self/fd` (which
    /// names the inode itself, whatever has become of the names it had): never a path
    /// that could cross a symlinked directory.
    pub fn link_fd(&self, fd: RawFd, name: &[u8]) -> io::Result<()> {
        let (f, c) = (cstr(proc_fd(fd).as_bytes())?, cstr(name)?);
        // SAFETY: valid C strings and dirfd.
        check(unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                f.as_ptr(),
                self.as_raw_fd(),
                c.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        })
        .map(drop)
    }

    /// The owner this directory's filesystem gives a new entry, when it is not the
    /// caller's (vfat `uid=`, NFS root squash), from an unnamed `O_TMPFILE` (no name
    /// another process could swap); None when it is the caller's or cannot be told.
    pub fn new_entry_owner(&self) -> Option<u32> {
        // SAFETY: valid dirfd and C string; the fd returned is owned below.
        let fd = unsafe {
            libc::openat(
                self.as_raw_fd(),
                c".".as_ptr(),
                libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd was just returned by openat.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        fstat(fd.as_raw_fd())
            .ok()
            .map(|st| st.st_uid)
            .filter(|&uid| uid != euid)
    }

    /// An `O_PATH` descriptor of the entry `name` itself (a symlink is not followed): for
    /// checking and setting the metadata of a symlink or special file just created.
    pub fn open_handle(&self, name: &[u8]) -> io::Result<OwnedFd> {
        let c = cstr(name)?;
        // SAFETY: valid dirfd and C string.
        let fd = check(unsafe {
            libc::openat(
                self.as_raw_fd(),
                c.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: fd was just returned by openat.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn mknod(&self, name: &[u8], mode: u32, rdev: u64) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid dirfd and C string.
        check(unsafe {
            libc::mknodat(
                self.as_raw_fd(),
                c.as_ptr(),
                mode as libc::mode_t,
                rdev as libc::dev_t,
            )
        })
        .map(drop)
    }

    pub fn unlink(&self, name: &[u8], dir: bool) -> io::Result<()> {
        let c = cstr(name)?;
        let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: valid dirfd and C string.
        check(unsafe { libc::unlinkat(self.as_raw_fd(), c.as_ptr(), flags) }).map(drop)
    }

    /// Path through /proc that names `name` inside this directory, for calls that have no
    /// `*at` form (xattrs of symlinks and special files).
    pub fn proc_path(&self, name: &[u8]) -> Vec<u8> {
        let mut p = format!("/proc/self/fd/{}/", self.as_raw_fd()).into_bytes();
        p.extend_from_slice(name);
        p
    }
}

fn proc_fd(fd: RawFd) -> String {
    format!("/proc/self/fd/{fd}")
}

/// The entry whose metadata is set: an ordinary open descriptor (a regular file or a
/// directory), or an `O_PATH` descriptor from `Dir::open_handle` (a symlink or a special
/// file), reached through `/proc/self/fd/N`, which resolves to the entry itself and never
/// to what a symlink points to.
#[derive(Clone, Copy)]
pub enum Handle {
    Fd(RawFd),
    Path(RawFd),
}

impl Handle {
    pub fn raw(self) -> RawFd {
        match self {
            Handle::Fd(fd) | Handle::Path(fd) => fd,
        }
    }

    pub fn stat(self) -> io::Result<Stat> {
        fstat(self.raw())
    }

    pub fn chown(self, uid: u32, gid: u32) -> io::Result<()> {
        // SAFETY: plain syscalls on a descriptor we hold; "" with AT_EMPTY_PATH names it.
        check(unsafe {
            match self {
                Handle::Fd(fd) => libc::fchown(fd, uid, gid),
                Handle::Path(fd) => libc::fchownat(
                    fd,
                    c"".as_ptr(),
                    uid,
                    gid,
                    libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
                ),
            }
        })
        .map(drop)
    }

    /// Not for symlinks (their mode cannot be set; callers skip them).
    pub fn chmod(self, mode: u32) -> io::Result<()> {
        // SAFETY: plain syscalls on a descriptor we hold, or its /proc name.
        check(unsafe {
            match self {
                Handle::Fd(fd) => libc::fchmod(fd, mode as libc::mode_t),
                Handle::Path(fd) => {
                    let p = cstr(proc_fd(fd).as_bytes())?;
                    libc::chmod(p.as_ptr(), mode as libc::mode_t)
                }
            }
        })
        .map(drop)
    }

    /// Sets atime and mtime (both to `mtime`).
    pub fn set_times(self, mtime: (i64, u32)) -> io::Result<()> {
        let ts = libc::timespec {
            tv_sec: mtime.0 as libc::time_t,
            tv_nsec: mtime.1 as libc::c_long,
        };
        let times = [ts, ts];
        // SAFETY: times points at two valid timespecs; the path is a C string.
        check(unsafe {
            match self {
                Handle::Fd(fd) => libc::futimens(fd, times.as_ptr()),
                Handle::Path(fd) => {
                    let p = cstr(proc_fd(fd).as_bytes())?;
                    libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), 0)
                }
            }
        })
        .map(drop)
    }

    pub fn set_xattr(self, name: &[u8], value: &[u8]) -> io::Result<()> {
        match self {
            Handle::Fd(fd) => set_xattr(&XTarget::Fd(fd), name, value),
            Handle::Path(fd) => {
                let (p, cname) = (cstr(proc_fd(fd).as_bytes())?, cstr(name)?);
                // SAFETY: valid C strings; value is valid for value.len() bytes.
                check(unsafe {
                    libc::setxattr(
                        p.as_ptr(),
                        cname.as_ptr(),
                        value.as_ptr().cast(),
                        value.len(),
                        0,
                    )
                })
                .map(drop)
            }
        }
    }
}

/// Whether two stats describe the same inode.
pub fn same_inode(a: &Stat, b: &Stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

pub fn fstat(fd: RawFd) -> io::Result<Stat> {
    // SAFETY: stat64 is plain data filled by fstat64.
    unsafe {
        let mut st: Stat = std::mem::zeroed();
        check(libc::fstat64(fd, &mut st))?;
        Ok(st)
    }
}

/// Where an xattr call acts: an open descriptor, or a path not followed if a symlink.
pub enum XTarget<'a> {
    Fd(RawFd),
    Path(&'a [u8]),
}

pub fn list_xattrs(t: &XTarget<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut size = 1024usize;
    let names = loop {
        let mut buf = vec![0u8; size];
        // SAFETY: buf is valid for `size` bytes.
        let n = unsafe {
            match t {
                XTarget::Fd(fd) => libc::flistxattr(*fd, buf.as_mut_ptr().cast(), size),
                XTarget::Path(p) => {
                    let c = cstr(p)?;
                    libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), size)
                }
            }
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) if size < 1 << 20 => {
                    size *= 4;
                    continue;
                }
                Some(libc::ENOTSUP) => return Ok(Vec::new()),
                _ => return Err(e),
            }
        }
        buf.truncate(n as usize);
        break buf;
    };
    let path_c = match t {
        XTarget::Path(p) => Some(cstr(p)?),
        XTarget::Fd(_) => None,
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = cstr(name)?;
        let mut size = 4096usize;
        loop {
            let mut buf = vec![0u8; size];
            // SAFETY: buf is valid for `size` bytes; cname and path_c are C strings.
            let n = unsafe {
                match (t, &path_c) {
                    (XTarget::Fd(fd), _) => {
                        libc::fgetxattr(*fd, cname.as_ptr(), buf.as_mut_ptr().cast(), size)
                    }
                    (_, Some(p)) => {
                        libc::lgetxattr(p.as_ptr(), cname.as_ptr(), buf.as_mut_ptr().cast(), size)
                    }
                    _ => unreachable!(),
                }
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::ERANGE) if size < 1 << 17 => {
                        size *= 4;
                        continue;
                    }
                    // Removed between list and get: skip it.
                    Some(libc::ENODATA) => break,
                    _ => return Err(e),
                }
            }
            buf.truncate(n as usize);
            out.push((name.to_vec(), buf));
            break;
        }
    }
    out.sort();
    Ok(out)
}

pub fn set_xattr(t: &XTarget<'_>, name: &[u8], value: &[u8]) -> io::Result<()> {
    let cname = cstr(name)?;
    // SAFETY: value is valid for value.len() bytes; strings are NUL-terminated.
    let rc = unsafe {
        match t {
            XTarget::Fd(fd) => {
                libc::fsetxattr(*fd, cname.as_ptr(), value.as_ptr().cast(), value.len(), 0)
            }
            XTarget::Path(p) => {
                let c = cstr(p)?;
                libc::lsetxattr(
                    c.as_ptr(),
                    cname.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            }
        }
    };
    check(rc).map(drop)
}

/// Data ranges of a file, from SEEK_DATA/SEEK_HOLE: `[(start, end)]`. A filesystem
/// without hole support reports one range covering the whole file.
pub fn data_ranges(f: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: i64 = 0;
    let size = size as i64;
    while pos < size {
        // SAFETY: lseek on a valid fd.
        let data = unsafe { libc::lseek64(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENXIO) => break, // only a hole remains
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => return Ok(vec![(0, size as u64)]),
                _ => return Err(e),
            }
        }
        if data >= size {
            break;
        }
        // SAFETY: lseek on a valid fd.
        let hole = unsafe { libc::lseek64(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { size } else { hole.min(size) };
        out.push((data as u64, end as u64));
        pos = end;
    }
    Ok(out)
}

pub fn errno_is(e: &io::Error, code: i32) -> bool {
    e.raw_os_error() == Some(code)
}
