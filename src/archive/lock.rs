//! The single-writer lock: an exclusive `flock` on `ARCHIVE/lock`, holding the pid of the
//! writer so a second writer can say who holds it. The kernel drops the lock when the
//! process dies, so a `kill -9` never leaves the archive locked.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub struct WriterLock {
    file: File,
}

pub enum LockError {
    Held { pid: Option<u32> },
    Io(std::io::Error),
}

impl WriterLock {
    pub fn acquire(path: &Path) -> Result<WriterLock, LockError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(LockError::Io)?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut s = String::new();
                let _ = file.read_to_string(&mut s);
                return Err(LockError::Held {
                    pid: s.trim().parse().ok(),
                });
            }
            return Err(LockError::Io(err));
        }
        file.set_len(0).map_err(LockError::Io)?;
        file.seek(SeekFrom::Start(0)).map_err(LockError::Io)?;
        writeln!(file, "{}", std::process::id()).map_err(LockError::Io)?;
        Ok(WriterLock { file })
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        // The lock goes with the descriptor.
    }
}
