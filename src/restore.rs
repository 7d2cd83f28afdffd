//! Restore: writes a snapshot tree, a directory or a file onto disk with exact metadata
//! (mode, owner when root, mtime in ns, xattrs, hard links, holes, FIFOs and devices),
//! verifying every chunk's BLAKE3 as it writes. Every file is created through directory
//! descriptors opened with `O_NOFOLLOW` and `O_EXCL`, and every name was validated by the
//! tree decoder, so nothing is ever written outside the target whatever the archive holds.

use crate::archive::{Archive, ArchiveError};
use crate::format::tree::{Node, NodeKind, Payload};
use crate::fsops::{self, Dir, XTarget};
use crate::read::{Piece, PieceError, for_each_piece};
use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
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
}

impl RestoreError {
    pub fn hint(&self) -> Option<String> {
        match self {
            RestoreError::Exists { .. } => {
                Some("restore into an empty directory, or pass --overwrite".into())
            }
            RestoreError::Archive(e) => e.hint(),
            _ => None,
        }
    }
}

struct Restorer<'a> {
    archive: &'a Archive,
    opts: RestoreOptions,
    target: PathBuf,
    root: Dir,
    is_root: bool,
    /// (dev, ino) of a hard-link group → path (relative to the target) of its first name.
    links: HashMap<(u64, u64), Vec<u8>>,
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
    match std::fs::create_dir(target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(terr(e)),
    }
    let root = Dir::open(target).map_err(terr)?;
    let mut r = Restorer {
        archive,
        opts,
        target: target.to_path_buf(),
        root,
        // SAFETY: geteuid cannot fail.
        is_root: unsafe { libc::geteuid() } == 0,
        links: HashMap::new(),
        report: RestoreReport::default(),
    };
    let dir = Dir::open(target).map_err(terr)?;
    if node.name.is_empty() {
        let Some(id) = node.subtree() else {
            return Ok(r.report);
        };
        let nodes = archive.read_tree(&id)?;
        for n in &nodes {
            r.entry(&dir, n, &n.name.clone(), 0)?;
        }
    } else {
        r.entry(&dir, node, &node.name.clone(), 0)?;
    }
    Ok(r.report)
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

    fn entry(&mut self, dir: &Dir, n: &Node, rel: &[u8], depth: usize) -> Result<(), RestoreError> {
        if depth > crate::tree::MAX_DEPTH {
            return Err(ArchiveError::Invalid(format!(
                "{}: tree too deep (damaged or hostile archive)",
                show(rel)
            ))
            .into());
        }
        let reuse = self.make_room(dir, n, rel)?;
        match (&n.payload, n.kind) {
            (Payload::Dir(id), _) => {
                if !reuse {
                    dir.mkdir(&n.name, 0o700).map_err(|e| self.err(rel, e))?;
                }
                let sub = dir.open_dir(&n.name).map_err(|e| self.err(rel, e))?;
                let children = self.archive.read_tree(id)?;
                for c in &children {
                    let mut crel = rel.to_vec();
                    crel.push(b'/');
                    crel.extend_from_slice(&c.name);
                    self.entry(&sub, c, &crel, depth + 1)?;
                }
                self.report.dirs += 1;
                for (k, v) in &n.xattrs {
                    if let Err(e) = fsops::set_xattr(&XTarget::Fd(sub.as_raw_fd()), k, v) {
                        self.warn(rel, format!("xattr {}: {e}", show(k)));
                    }
                }
                drop(sub);
                self.finish_meta(dir, n, rel)?;
            }
            (Payload::File(_), _) => self.file(dir, n, rel)?,
            (Payload::Symlink(target), _) => {
                dir.symlink(target, &n.name).map_err(|e| self.err(rel, e))?;
                self.report.other += 1;
                self.finish_meta(dir, n, rel)?;
            }
            (Payload::Other, kind) => {
                let dev = matches!(kind, NodeKind::CharDev | NodeKind::BlockDev);
                match dir.mknod(
                    &n.name,
                    kind.mode_bits() | n.mode,
                    if dev { n.rdev } else { 0 },
                ) {
                    Ok(()) => {
                        self.report.other += 1;
                        self.finish_meta(dir, n, rel)?;
                    }
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
        Ok(())
    }

    fn file(&mut self, dir: &Dir, n: &Node, rel: &[u8]) -> Result<(), RestoreError> {
        if n.nlink > 1 {
            let key = (n.dev, n.ino);
            if let Some(first) = self.links.get(&key).cloned() {
                match dir.link_from(&self.root, &first, &n.name) {
                    Ok(()) => {
                        self.report.files += 1;
                        return Ok(());
                    }
                    // Fall back to a copy (e.g. the first name was damaged and removed).
                    Err(e) => self.warn(
                        rel,
                        format!(
                            "hard link to {} failed ({e}); restored as a copy",
                            show(&first)
                        ),
                    ),
                }
            }
        }
        let f = dir
            .create_file(&n.name, 0o600)
            .map_err(|e| self.err(rel, e))?;
        let result = for_each_piece(self.archive, n, true, |off, p| match p {
            Piece::Data(d) => f.write_all_at(&d, off),
            Piece::Hole(_) => Ok(()),
        });
        match result {
            Ok(()) => {}
            Err(PieceError::Read(e)) => {
                drop(f);
                let _ = dir.unlink(&n.name, false);
                self.report.damaged.push((show(rel), e.to_string()));
                return Ok(());
            }
            Err(PieceError::Sink(e)) => return Err(self.err(rel, e)),
        }
        f.set_len(n.size).map_err(|e| self.err(rel, e))?;
        for (k, v) in &n.xattrs {
            if let Err(e) = fsops::set_xattr(&XTarget::Fd(f.as_raw_fd()), k, v) {
                self.warn(rel, format!("xattr {}: {e}", show(k)));
            }
        }
        drop(f);
        self.report.files += 1;
        self.report.bytes += n.size;
        self.finish_meta(dir, n, rel)?;
        if n.nlink > 1 {
            self.links
                .entry((n.dev, n.ino))
                .or_insert_with(|| rel.to_vec());
        }
        Ok(())
    }

    /// Owner (when root), mode, xattrs of non-files, then times: in that order, since
    /// chown clears set-id bits and every change but utimensat touches ctime only.
    fn finish_meta(&mut self, dir: &Dir, n: &Node, rel: &[u8]) -> Result<(), RestoreError> {
        if self.is_root
            && let Err(e) = dir.chown(&n.name, n.uid, n.gid)
        {
            self.warn(rel, format!("chown: {e}"));
        }
        if n.kind != NodeKind::Symlink {
            dir.chmod(&n.name, n.mode).map_err(|e| self.err(rel, e))?;
        }
        if !matches!(n.kind, NodeKind::File | NodeKind::Dir) {
            let p = dir.proc_path(&n.name);
            for (k, v) in &n.xattrs {
                if let Err(e) = fsops::set_xattr(&XTarget::Path(&p), k, v) {
                    self.warn(rel, format!("xattr {}: {e}", show(k)));
                }
            }
        }
        dir.set_times(&n.name, n.mtime)
            .map_err(|e| self.err(rel, e))?;
        Ok(())
    }
}
