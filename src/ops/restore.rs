//! Restore: writes a snapshot tree, a directory or a file onto disk with exact metadata
//! (mode, owner when root, mtime in ns, xattrs, hard links, holes, FIFOs and devices),
//! verifying every chunk's BLAKE3 as it writes.
//!
//! Restore runs as root into directories other users may be able to write, so nothing is
//! ever done by a path a user could redirect:
//! - TARGET is opened once, and refused if its last component is a symlink;
//! - every directory is opened relative to its parent's descriptor with `O_NOFOLLOW` and
//!   kept open while its entries are written; files are created with `O_EXCL`;
//! - metadata is set on the entry restore created and holds open (`fchown`, `fchmod`,
//!   `fsetxattr`, `futimens`; an `O_PATH` descriptor for symlinks and special files),
//!   after checking it is the entry created (owner, type, link count);
//! - a hard link is made from the descriptor of the file restored first;
//! - an entry found replaced by something else at the end stops the restore.
//!
//! Metadata order: owner (chown clears set-id bits and capabilities), xattrs (the file
//! capability among them), mode (after xattrs, so a read-only mode does not stop an
//! unprivileged restore from setting user xattrs), times last.
//!
//! A directory whose listing (tree blob) is damaged is skipped and listed like a damaged
//! file; a file cut short by a write error (a full disk) is removed before the error is
//! reported, so no partial file is left under its real name.

use crate::archive::{Archive, ArchiveError};
use crate::content::{Piece, PieceError, for_each_piece};
use crate::format::tree::{Node, NodeKind, Payload};
use crate::sys::fsops::{self, Dir, Handle, Stat};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Default, Clone, Copy)]
pub struct RestoreOptions {
    pub overwrite: bool,
}

#[derive(Default, Debug)]
pub struct RestoreReport {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    pub bytes: u64,
    /// Files whose stored data is damaged: not restored (no wrong bytes are left behind).
    /// A directory whose listing is damaged is listed with a trailing `/`: nothing under
    /// it was restored.
    pub damaged: Vec<(String, String)>,
    /// Metadata that could not be applied (e.g. devices or ownership when not root).
    pub warnings: Vec<(String, String)>,
}

#[derive(Debug, Error)]
pub enum RestoreError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{path}: {source}")]
    Target {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: already exists")]
    Exists { path: PathBuf },
    #[error("{path}: is a symbolic link; restore does not follow it")]
    TargetSymlink { path: PathBuf },
    #[error("{path}: {source}; the partial file was {}", if *.removed { "removed" } else { "NOT removed" })]
    Partial {
        path: PathBuf,
        #[source]
        source: io::Error,
        removed: bool,
    },
    #[error("{path}: {what} was replaced by another process while being restored; stopped")]
    Replaced { path: PathBuf, what: &'static str },
}

struct Restorer<'a> {
    archive: &'a Archive,
    opts: RestoreOptions,
    target: PathBuf,
    /// geteuid(): owner of everything restore creates, and whether it may chown.
    euid: u32,
    /// The owner TARGET's filesystem gives new entries when that is not `euid` (vfat
    /// `uid=`, NFS root squash), learned from entries restore certainly created: an
    /// unnamed `O_TMPFILE` probe, then each file created with `O_EXCL`.
    fs_owner: Option<u32>,
    /// (dev, ino) of a hard-link group → its first file, still open, and how many of
    /// its names are still to come (the descriptor is closed after the last).
    links: HashMap<(u64, u64), (File, u64)>,
    /// How many link-group descriptors may stay open (a share of RLIMIT_NOFILE).
    max_links_open: usize,
    report: RestoreReport,
}

/// Restores `node` under `target`. The synthetic snapshot root restores its entries into
/// `target`; any other node is restored as `target/<its name>`.
pub fn restore(
    archive: &Archive,
    node: &Node,
    target: &Path,
    opts: RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    let terr = |source| RestoreError::Target {
        path: target.to_path_buf(),
        source,
    };
    let symlink = || RestoreError::TargetSymlink {
        path: target.to_path_buf(),
    };
    // TARGET is resolved once: a symlink as its last component (one a user could have
    // planted) is refused; the components before it are the caller's own path.
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.file_type().is_symlink() => return Err(symlink()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => match std::fs::create_dir(target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(terr(e)),
        },
        Err(e) => return Err(terr(e)),
    }
    let dir = Dir::open_nofollow(target).map_err(|e| {
        if fsops::errno_is(&e, libc::ELOOP) {
            symlink()
        } else {
            terr(e)
        }
    })?;
    let mut r = Restorer {
        archive,
        opts,
        target: target.to_path_buf(),
        // SAFETY: geteuid cannot fail.
        euid: unsafe { libc::geteuid() },
        fs_owner: dir.new_entry_owner(),
        links: HashMap::new(),
        max_links_open: raise_fd_limit() / 2,
        report: RestoreReport::default(),
    };
    let mut top = Open {
        dir,
        made: None,
        reuse: true,
    };
    if node.name.is_empty() {
        crate::tree::walk(archive, node, &mut top, &mut r)?;
    } else {
        crate::tree::walk_node(archive, &mut top, node, &mut r)?;
    }
    Ok(r.report)
}

/// A directory restore holds open while its entries are written.
struct Open {
    dir: Dir,
    /// The directory as restore opened it, to check at the end that it is still there.
    made: Option<Stat>,
    /// An existing directory merged into (never removed by restore).
    reuse: bool,
}

impl crate::tree::Visitor for Restorer<'_> {
    type Frame = Open;
    type Error = RestoreError;

    fn visit(
        &mut self,
        parent: &mut Open,
        rel: &[u8],
        n: &Node,
    ) -> Result<Option<Open>, RestoreError> {
        self.entry(&parent.dir, n, rel)
    }

    fn leave(
        &mut self,
        parent: &mut Open,
        open: Open,
        rel: &[u8],
        n: &Node,
    ) -> Result<(), RestoreError> {
        self.report.dirs += 1;
        self.finish_meta(Handle::Fd(open.dir.as_raw_fd()), n, rel)?;
        match open.made {
            Some(st) => self.verify(&parent.dir, &n.name, &st, rel, "directory"),
            None => Ok(()),
        }
    }

    /// A damaged listing: skip this directory, restore the rest.
    fn unreadable(
        &mut self,
        parent: &mut Open,
        open: Open,
        rel: &[u8],
        n: &Node,
        e: ArchiveError,
    ) -> Result<(), RestoreError> {
        let mut shown = show(rel);
        shown.push('/');
        let what = format!("directory listing damaged, nothing under it restored: {e}");
        self.report.damaged.push((shown, what));
        drop(open.dir);
        if let (false, Some(st)) = (open.reuse, open.made) {
            self.remove_own(&parent.dir, &n.name, &st, true);
        }
        Ok(())
    }
}

/// Raises the soft limit of open files to the hard one (restore keeps a descriptor per
/// directory level and per hard-link group in progress); returns the limit in force.
fn raise_fd_limit() -> usize {
    // SAFETY: rlimit is plain data filled by getrlimit.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
        rl.rlim_cur.min(1 << 20) as usize
    }
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

impl Restorer<'_> {
    fn path_of(&self, rel: &[u8]) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        self.target.join(std::ffi::OsStr::from_bytes(rel))
    }

    fn err(&self, rel: &[u8], source: io::Error) -> RestoreError {
        RestoreError::Target {
            path: self.path_of(rel),
            source,
        }
    }

    fn warn(&mut self, rel: &[u8], what: impl Into<String>) {
        self.report.warnings.push((show(rel), what.into()));
    }

    /// Makes room for `n`: refuses an existing entry unless overwriting; returns true
    /// when an existing directory should be reused (merging into it).
    fn make_room(&mut self, dir: &Dir, n: &Node, rel: &[u8]) -> Result<bool, RestoreError> {
        let st = match dir.stat(&n.name) {
            Ok(st) => st,
            Err(e) if fsops::errno_is(&e, libc::ENOENT) => return Ok(false),
            Err(e) => return Err(self.err(rel, e)),
        };
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if !self.opts.overwrite {
            if is_dir && n.kind == NodeKind::Dir && rel == n.name.as_slice() {
                // The top-level directory may exist (e.g. restoring into a prepared dir),
                // its contents may not.
                return Ok(true);
            }
            return Err(RestoreError::Exists {
                path: self.path_of(rel),
            });
        }
        if is_dir {
            if n.kind == NodeKind::Dir {
                return Ok(true);
            }
            return Err(RestoreError::Exists {
                path: self.path_of(rel),
            });
        }
        dir.unlink(&n.name, false).map_err(|e| self.err(rel, e))?;
        Ok(false)
    }

    fn replaced(&self, rel: &[u8], what: &'static str) -> RestoreError {
        RestoreError::Replaced {
            path: self.path_of(rel),
            what,
        }
    }

    /// Checks that `name` in `dir` is still the entry restore created and holds (`st`):
    /// one swapped for something else (a symlink, another file) means another process
    /// is writing into the target.
    fn verify(
        &self,
        dir: &Dir,
        name: &[u8],
        st: &Stat,
        rel: &[u8],
        what: &'static str,
    ) -> Result<(), RestoreError> {
        match dir.stat(name) {
            Ok(now) if fsops::same_inode(&now, st) => Ok(()),
            Ok(_) => Err(self.replaced(rel, what)),
            Err(e) if fsops::errno_is(&e, libc::ENOENT) => Err(self.replaced(rel, what)),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Checks that a freshly created entry, opened after creation, is one restore made:
    /// of the expected type, owned by restore's user, with a single name.
    fn check_created(
        &self,
        st: &Stat,
        kind: libc::mode_t,
        rel: &[u8],
        what: &'static str,
    ) -> Result<(), RestoreError> {
        let nlink_ok = kind == libc::S_IFDIR || st.st_nlink == 1;
        let owner_ok = st.st_uid == self.euid || Some(st.st_uid) == self.fs_owner;
        if st.st_mode & libc::S_IFMT != kind || !owner_ok || !nlink_ok {
            return Err(self.replaced(rel, what));
        }
        Ok(())
    }

    /// Removes `name` if it is still the entry `st` (a partial or damaged file).
    fn remove_own(&self, dir: &Dir, name: &[u8], st: &Stat, is_dir: bool) -> bool {
        match dir.stat(name) {
            Ok(now) if fsops::same_inode(&now, st) => dir.unlink(name, is_dir).is_ok(),
            _ => false,
        }
    }

    /// Creates `n` in `dir`; for a directory, returns it opened for its entries.
    fn entry(&mut self, dir: &Dir, n: &Node, rel: &[u8]) -> Result<Option<Open>, RestoreError> {
        let reuse = self.make_room(dir, n, rel)?;
        match (&n.payload, n.kind) {
            (Payload::Dir(_), _) => {
                if !reuse {
                    dir.mkdir(&n.name, 0o700).map_err(|e| self.err(rel, e))?;
                }
                let sub = dir.open_dir(&n.name).map_err(|e| self.err(rel, e))?;
                let st = sub.stat_self().map_err(|e| self.err(rel, e))?;
                if !reuse {
                    self.check_created(&st, libc::S_IFDIR, rel, "directory")?;
                }
                return Ok(Some(Open {
                    dir: sub,
                    made: Some(st),
                    reuse,
                }));
            }
            (Payload::File(_), _) => self.file(dir, n, rel)?,
            (Payload::Symlink(target), _) => {
                dir.symlink(target, &n.name).map_err(|e| self.err(rel, e))?;
                self.special(dir, n, rel, libc::S_IFLNK, "symlink")?;
            }
            (Payload::Other, kind) => {
                let dev = matches!(kind, NodeKind::CharDev | NodeKind::BlockDev);
                let bits = kind.mode_bits();
                match dir.mknod(&n.name, bits | n.mode, if dev { n.rdev } else { 0 }) {
                    Ok(()) => self.special(dir, n, rel, bits as libc::mode_t, "special file")?,
                    Err(e) if dev && fsops::errno_is(&e, libc::EPERM) => {
                        self.warn(
                            rel,
                            format!("{} not created: {e} (needs root)", kind.name()),
                        );
                    }
                    Err(e) => return Err(self.err(rel, e)),
                }
            }
        }
        Ok(None)
    }

    /// Metadata of a symlink or special file just created, through an `O_PATH` handle.
    fn special(
        &mut self,
        dir: &Dir,
        n: &Node,
        rel: &[u8],
        kind: libc::mode_t,
        what: &'static str,
    ) -> Result<(), RestoreError> {
        let h: OwnedFd = dir.open_handle(&n.name).map_err(|e| self.err(rel, e))?;
        let st = fsops::fstat(h.as_raw_fd()).map_err(|e| self.err(rel, e))?;
        self.check_created(&st, kind, rel, what)?;
        self.report.other += 1;
        self.finish_meta(Handle::Path(h.as_raw_fd()), n, rel)?;
        self.verify(dir, &n.name, &st, rel, what)
    }

    fn file(&mut self, dir: &Dir, n: &Node, rel: &[u8]) -> Result<(), RestoreError> {
        let key = (n.dev, n.ino);
        if n.nlink > 1
            && let Some((first, _)) = self.links.get(&key)
        {
            let first_st = fsops::fstat(first.as_raw_fd()).map_err(|e| self.err(rel, e))?;
            match dir.link_fd(first.as_raw_fd(), &n.name) {
                Ok(()) => {
                    self.verify(dir, &n.name, &first_st, rel, "hard link")?;
                    self.report.files += 1;
                    self.link_name_done(key);
                    return Ok(());
                }
                // Fall back to a copy (e.g. the first file was removed meanwhile).
                Err(e) => self.warn(rel, format!("hard link failed ({e}); restored as a copy")),
            }
        }
        let f = dir
            .create_file(&n.name, 0o600)
            .map_err(|e| self.err(rel, e))?;
        let st = fsops::fstat(f.as_raw_fd()).map_err(|e| self.err(rel, e))?;
        if st.st_uid != self.euid {
            self.fs_owner = Some(st.st_uid);
        }
        let result = for_each_piece(self.archive, n, true, |off, p| match p {
            Piece::Data(d) => f.write_all_at(&d, off),
            Piece::Hole(_) => Ok(()),
        })
        .and_then(|()| f.set_len(n.size).map_err(PieceError::Sink));
        match result {
            Ok(()) => {}
            Err(PieceError::Read(e)) => {
                drop(f);
                self.remove_own(dir, &n.name, &st, false);
                self.report.damaged.push((show(rel), e.to_string()));
                return Ok(());
            }
            Err(PieceError::Sink(source)) => {
                drop(f);
                let removed = self.remove_own(dir, &n.name, &st, false);
                return Err(RestoreError::Partial {
                    path: self.path_of(rel),
                    source,
                    removed,
                });
            }
        }
        self.finish_meta(Handle::Fd(f.as_raw_fd()), n, rel)?;
        self.verify(dir, &n.name, &st, rel, "file")?;
        self.report.files += 1;
        self.report.bytes += n.size;
        if n.nlink > 1 {
            if self.links.len() < self.max_links_open {
                self.links.entry(key).or_insert((f, n.nlink - 1));
            } else {
                self.warn(
                    rel,
                    "too many hard-link groups in progress: its other names are restored as copies",
                );
            }
        }
        Ok(())
    }

    /// One more name of a hard-link group was restored: close its descriptor after the last.
    fn link_name_done(&mut self, key: (u64, u64)) {
        if let Some((_, left)) = self.links.get_mut(&key) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.links.remove(&key);
            }
        }
    }

    /// Owner (when root), xattrs, mode, then times, all on the entry restore holds open:
    /// chown clears set-id bits and the file capability, so both come after it; every
    /// change but the times touches the ctime only.
    fn finish_meta(&mut self, h: Handle, n: &Node, rel: &[u8]) -> Result<(), RestoreError> {
        if self.euid == 0
            && let Err(e) = h.chown(n.uid, n.gid)
        {
            self.warn(rel, format!("chown: {e}"));
        }
        for (k, v) in &n.xattrs {
            if let Err(e) = h.set_xattr(k, v) {
                self.warn(rel, format!("xattr {}: {e}", show(k)));
            }
        }
        if n.kind != NodeKind::Symlink {
            h.chmod(n.mode).map_err(|e| self.err(rel, e))?;
        }
        h.set_times(n.mtime).map_err(|e| self.err(rel, e))?;
        Ok(())
    }
}
