//! Writing the tree with exact metadata: files and directories get an explicit mode (never the
//! umask's), files and symlinks an explicit mtime, and [`settle_dir_mtimes`] gives every
//! directory the newest mtime among its children, so two runs yield identical `stat` output.

use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::clock::{DAY, DAY0, Stamp};

/// The mtime of a directory with no entries.
pub const EMPTY_DIR_MTIME: Stamp = Stamp {
    secs: DAY0 - 400 * DAY,
    nanos: 0,
};

/// Adds the path to an I/O error so the CLI can print one useful line.
pub fn at(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Creates `dir` and any missing parents with mode 0755; existing directories are left alone.
pub fn mkdirs(dir: &Path) -> io::Result<()> {
    mkdir_mode(dir, 0o755)
}

/// Like [`mkdirs`], giving the last component `mode`.
pub fn mkdir_mode(dir: &Path, mode: u32) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => fs::set_permissions(dir, Permissions::from_mode(mode)).map_err(at(dir)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                mkdirs(parent)?;
            }
            mkdir_mode(dir, mode)
        }
        Err(e) => Err(at(dir)(e)),
    }
}

/// A file being written: buffered, with its mode already fixed.
pub struct Out {
    w: BufWriter<File>,
    written: u64,
}

impl Out {
    /// Creates or truncates `path` (its parent must exist).
    pub fn create(path: &Path, mode: u32) -> io::Result<Out> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .map_err(at(path))?;
        f.set_permissions(Permissions::from_mode(mode))
            .map_err(at(path))?;
        Ok(Out {
            w: BufWriter::with_capacity(256 * 1024, f),
            written: 0,
        })
    }

    /// Opens `path` for appending; the mode stays as it is.
    pub fn append(path: &Path) -> io::Result<Out> {
        let f = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(at(path))?;
        Ok(Out {
            w: BufWriter::with_capacity(256 * 1024, f),
            written: 0,
        })
    }

    /// Flushes, sets the mtime and returns the bytes written.
    pub fn finish(self, mtime: Stamp) -> io::Result<u64> {
        let f = self.w.into_inner().map_err(|e| e.into_error())?;
        f.set_times(FileTimes::new().set_modified(mtime.system_time()))?;
        Ok(self.written)
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.w.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.w.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// Writes a whole file with the given mode and mtime; returns its length.
pub fn write_file(path: &Path, data: &[u8], mode: u32, mtime: Stamp) -> io::Result<u64> {
    let mut out = Out::create(path, mode)?;
    out.write_all(data).map_err(at(path))?;
    out.finish(mtime).map_err(at(path))
}

/// Creates (or replaces) the symlink `link -> target` with the given mtime.
pub fn symlink(target: &str, link: &Path, mtime: Stamp) -> io::Result<()> {
    match fs::remove_file(link) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(at(link)(e)),
        _ => {}
    }
    std::os::unix::fs::symlink(target, link).map_err(at(link))?;
    set_symlink_mtime(link, mtime).map_err(at(link))
}

/// Sets a symlink's own mtime (and atime) without following it.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn set_symlink_mtime(path: &Path, t: Stamp) -> io::Result<()> {
    use std::ffi::{CString, c_char};
    use std::os::unix::ffi::OsStrExt;

    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn utimensat(dirfd: i32, path: *const c_char, times: *const Timespec, flags: i32) -> i32;
    }
    const AT_FDCWD: i32 = -100;
    const AT_SYMLINK_NOFOLLOW: i32 = 0x100;

    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let ts = [
        Timespec {
            tv_sec: t.secs,
            tv_nsec: t.nanos as i64,
        },
        Timespec {
            tv_sec: t.secs,
            tv_nsec: t.nanos as i64,
        },
    ];
    // SAFETY: `c_path` is NUL-terminated and outlives the call; `ts` holds the two timespecs
    // utimensat reads, laid out as on 64-bit Linux (two 64-bit fields), the only target
    // this is compiled for.
    let rc = unsafe { utimensat(AT_FDCWD, c_path.as_ptr(), ts.as_ptr(), AT_SYMLINK_NOFOLLOW) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere a symlink keeps the time it was made at.
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn set_symlink_mtime(_path: &Path, _t: Stamp) -> io::Result<()> {
    Ok(())
}

/// Removes a file if it exists.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(at(path)(e)),
        _ => Ok(()),
    }
}

/// Sets each directory's mtime under (and including) `dir` to the newest mtime among its
/// entries, or [`EMPTY_DIR_MTIME`] when it is empty; returns the mtime given to `dir`.
pub fn settle_dir_mtimes(dir: &Path) -> io::Result<Stamp> {
    let mut newest: Option<Stamp> = None;
    for entry in fs::read_dir(dir).map_err(at(dir))? {
        let entry = entry.map_err(at(dir))?;
        let ft = entry.file_type().map_err(at(dir))?;
        let stamp = if ft.is_dir() {
            settle_dir_mtimes(&entry.path())?
        } else {
            let md = entry.metadata().map_err(at(&entry.path()))?;
            Stamp::new(md.mtime(), md.mtime_nsec() as u32)
        };
        newest = newest.max(Some(stamp));
    }
    let stamp = newest.unwrap_or(EMPTY_DIR_MTIME);
    File::open(dir)
        .and_then(|f| f.set_times(FileTimes::new().set_modified(stamp.system_time())))
        .map_err(at(dir))?;
    Ok(stamp)
}
