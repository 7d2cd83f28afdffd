//! The state one ingest run shares between its sources and the walk: the chunker and
//! sink, the user and group name cache, and what the run records (stats, per-path
//! errors, commands run, warnings). Also how a node is made from a `stat`.

use super::error::{IngestError, stop_if_interrupted};
use super::options::{IngestOptions, Progress};
use super::read::Chunks;
use crate::archive::{Archive, ArchiveError};
use crate::format::BlobId;
use crate::format::pack::BlobKind;
use crate::format::snapshot::{CommandRun, PathError, Stats};
use crate::format::tree::{Node, NodeKind, Payload, encode_tree};
use crate::sys::Names;
use crate::sys::fsops::{self, Dir, Stat, XTarget};
use std::io;

pub struct Context<'a> {
    pub archive: &'a Archive,
    pub opts: &'a IngestOptions,
    pub progress: &'a Progress,
    pub chunks: Chunks<'a>,
    names: Names,
    pub stats: Stats,
    pub errors: Vec<PathError>,
    pub commands: Vec<CommandRun>,
    /// One line each, printed by the CLI as `strata: warning: …`.
    pub warnings: Vec<String>,
}

pub use crate::sys::now;

pub fn command_run(command: &str, code: i32) -> CommandRun {
    CommandRun {
        command: command.to_string(),
        exit_code: code,
    }
}

/// Change detection: a file is not read again when its size, mtime, ctime, inode and
/// device are those recorded in the parent snapshot.
pub fn node_is_unchanged(parent: &Node, st: &Stat) -> bool {
    parent.kind == NodeKind::File
        && parent.size == st.st_size as u64
        && parent.mtime == (st.st_mtime, st.st_mtime_nsec as u32)
        && parent.ctime == (st.st_ctime, st.st_ctime_nsec as u32)
        && parent.ino == st.st_ino
        && parent.dev == st.st_dev
}

pub fn kind_of(mode: u32) -> Option<NodeKind> {
    Some(match mode & libc::S_IFMT {
        libc::S_IFREG => NodeKind::File,
        libc::S_IFDIR => NodeKind::Dir,
        libc::S_IFLNK => NodeKind::Symlink,
        libc::S_IFIFO => NodeKind::Fifo,
        libc::S_IFCHR => NodeKind::CharDev,
        libc::S_IFBLK => NodeKind::BlockDev,
        libc::S_IFSOCK => NodeKind::Socket,
        _ => return None,
    })
}

fn time_of(sec: i64, nsec: i64) -> (i64, u32) {
    (sec, nsec.clamp(0, 999_999_999) as u32)
}

impl<'a> Context<'a> {
    pub fn new(
        archive: &'a Archive,
        opts: &'a IngestOptions,
        progress: &'a Progress,
        chunks: Chunks<'a>,
    ) -> Context<'a> {
        Context {
            archive,
            opts,
            progress,
            chunks,
            names: Names::default(),
            stats: Stats::default(),
            errors: Vec::new(),
            commands: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn check_interrupt(&self) -> Result<(), IngestError> {
        stop_if_interrupted()
    }

    /// Records that `path` could not be (fully) read.
    pub fn record(&mut self, path: &[u8], e: impl std::fmt::Display) {
        self.errors.push(PathError {
            path: path.to_vec(),
            message: e.to_string(),
        });
    }

    pub fn io_error(&mut self, path: &[u8], e: &io::Error) {
        if fsops::errno_is(e, libc::ENOENT) {
            self.record(path, "vanished while the source was read");
        } else {
            self.record(path, e);
        }
    }

    pub fn store_tree(&mut self, nodes: &[Node]) -> Result<BlobId, IngestError> {
        let bytes =
            encode_tree(nodes).map_err(|e| ArchiveError::Invalid(format!("encoding tree: {e}")))?;
        self.stats.dirs += 1;
        self.chunks.store(BlobKind::Tree, bytes)
    }

    /// A node for data that has no file on disk (stdin, command output, made-up dirs).
    pub fn synthetic(&mut self, name: &[u8], kind: NodeKind, mode: u32) -> Node {
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let t = now();
        Node {
            name: name.to_vec(),
            kind,
            mode,
            uid,
            gid,
            user: self.names.user(uid),
            group: self.names.group(gid),
            mtime: t,
            ctime: t,
            size: 0,
            dev: 0,
            ino: 0,
            nlink: 1,
            rdev: 0,
            xattrs: Vec::new(),
            payload: Payload::Other,
        }
    }

    /// A node with the metadata of `st` and no payload yet.
    pub fn meta_node(&mut self, name: &[u8], kind: NodeKind, st: &Stat) -> Node {
        Node {
            name: name.to_vec(),
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            user: self.names.user(st.st_uid),
            group: self.names.group(st.st_gid),
            mtime: time_of(st.st_mtime, st.st_mtime_nsec),
            ctime: time_of(st.st_ctime, st.st_ctime_nsec),
            size: 0,
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
            rdev: st.st_rdev,
            xattrs: Vec::new(),
            payload: Payload::Other,
        }
    }

    pub fn xattrs(&mut self, t: XTarget<'_>, path: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        match fsops::list_xattrs(&t) {
            Ok(x) => x,
            Err(e) => {
                self.record(path, format!("reading extended attributes: {e}"));
                Vec::new()
            }
        }
    }

    /// The xattrs of a symlink or special file `name` of `dir`.
    pub fn special_xattrs(
        &mut self,
        dir: &Dir,
        name: &[u8],
        path: &[u8],
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let p = dir.proc_path(name);
        match fsops::list_xattrs(&XTarget::Path(&p)) {
            Ok(x) => x,
            // Symlinks and special files cannot carry user.* xattrs on most filesystems.
            Err(e) if fsops::errno_is(&e, libc::EPERM) || fsops::errno_is(&e, libc::EACCES) => {
                Vec::new()
            }
            Err(e) => {
                self.record(path, format!("reading extended attributes: {e}"));
                Vec::new()
            }
        }
    }

    /// The children of the parent snapshot's directory `parent`, sorted by name.
    pub fn parent_children(&mut self, parent: Option<&Node>) -> Option<Vec<Node>> {
        let sub = parent?.subtree()?;
        // A damaged parent only costs re-reading: change detection is an optimisation.
        self.archive.read_tree(&sub).ok()
    }
}
