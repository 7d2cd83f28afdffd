//! The `fuser::Filesystem` adapter: each callback asks the `vfs` and replies, or replies
//! with the errno the vfs error maps to, logging each failed read once with the snapshot
//! path and pack offset. Also the kernel connection settings that make the mount fast:
//! long TTLs for immutable content (and for negative lookups), keep-cache on open,
//! cached directories and symlinks, readdirplus, large readahead and many background
//! requests. Mounting itself (checks, options, session, daemon, unmount) is in
//! `mount.rs`. The only module that imports `fuser`.
//!
//! Exception to the long TTLs: the top of a source whose parent directories on its host
//! may keep some users out (`Attr::guarded`) is given to the kernel with a zero entry
//! TTL, so that every path walk through it comes back to `lookup`, which checks the
//! caller (a dentry cached for one user is otherwise used for all).

pub mod mount;

use crate::vfs::{Attr, Caller, Kind, ToErrno, Vfs, VfsError};
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyXattr,
    Request,
};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Snapshot content never changes: the kernel may cache it for as long as it likes.
const TTL_IMMUTABLE: Duration = Duration::from_secs(365 * 24 * 3600);
/// The top level changes when snapshots are added: `latest` follows within a second.
const TTL_TOP: Duration = Duration::from_secs(1);

pub struct StrataFs {
    vfs: Arc<Vfs>,
    /// Inodes whose read failures were already logged (log once, not per request).
    logged: Mutex<HashSet<u64>>,
}

impl StrataFs {
    pub fn new(vfs: Vfs) -> StrataFs {
        StrataFs {
            vfs: Arc::new(vfs),
            logged: Mutex::new(HashSet::new()),
        }
    }

    /// The vfs this adapter serves (the mount's watcher asks it to look for a new index).
    pub fn vfs(&self) -> Arc<Vfs> {
        self.vfs.clone()
    }

    fn fail(&self, op: &str, ino: u64, e: &VfsError) -> Errno {
        let errno = e.to_errno();
        if errno == libc::EIO
            && self
                .logged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(ino)
        {
            eprintln!("strata mount: {op} {}: {e} (EIO)", self.vfs.describe(ino));
        }
        Errno::from_i32(errno)
    }
}

fn time(t: (i64, u32)) -> SystemTime {
    if t.0 >= 0 {
        UNIX_EPOCH + Duration::new(t.0 as u64, t.1)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.0.unsigned_abs()) + Duration::from_nanos(t.1 as u64)
    }
}

fn file_type(k: &Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
        Kind::Socket => FileType::Socket,
    }
}

fn attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: time(a.mtime),
        mtime: time(a.mtime),
        ctime: time(a.ctime),
        crtime: time(a.mtime),
        kind: file_type(&a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

fn ttl(a: &Attr) -> Duration {
    if a.guarded {
        Duration::ZERO
    } else if a.immutable {
        TTL_IMMUTABLE
    } else {
        TTL_TOP
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

impl Filesystem for StrataFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_ASYNC_READ;
        for flag in wanted.iter() {
            // Each is an optimisation: an old kernel without it still works.
            let _ = config.add_capabilities(flag);
        }
        let _ = config
            .set_max_readahead(1 << 20)
            .or_else(|max| config.set_max_readahead(max));
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self
            .vfs
            .lookup_as(parent.0, name.as_bytes(), Some(&caller(req)))
        {
            Ok(a) => reply.entry(&ttl(&a), &attr(&a), Generation(0)),
            Err(VfsError::NotFound) => {
                // Inside a snapshot nothing ever appears: cache the miss (an entry with
                // inode 0 is a negative entry for the kernel).
                match self.vfs.getattr(parent.0) {
                    Ok(p) if p.immutable => {
                        let mut neg = attr(&p);
                        neg.ino = INodeNo(0);
                        reply.entry(&TTL_IMMUTABLE, &neg, Generation(0));
                    }
                    _ => reply.error(Errno::ENOENT),
                }
            }
            Err(e) => reply.error(self.fail("lookup", parent.0, &e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.vfs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.vfs.getattr(ino.0) {
            Ok(a) => reply.attr(&ttl(&a), &attr(&a)),
            Err(e) => reply.error(self.fail("getattr", ino.0, &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.vfs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(self.fail("readlink", ino.0, &e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.vfs.open(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(self.fail("open", ino.0, &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.vfs.read_buf(fh.0, offset, size as usize) {
            Ok(d) => reply.data(d.as_slice()),
            Err(e) => reply.error(self.fail("read", ino.0, &e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.vfs.release(fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let immutable = match self.vfs.getattr(ino.0) {
            Ok(a) => a.immutable,
            Err(e) => return reply.error(self.fail("opendir", ino.0, &e)),
        };
        match self.vfs.opendir(ino.0) {
            // Snapshot directories never change: let the kernel keep their listings.
            Ok(fh) if immutable => reply.opened(
                FileHandle(fh),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            ),
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(self.fail("opendir", ino.0, &e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.vfs.releasedir(fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut off = offset;
        if off == 0 {
            if reply.add(ino, 1, FileType::Directory, ".") {
                return reply.ok();
            }
            off = 1;
        }
        if off == 1 {
            let parent = match self.vfs.parent_of(ino.0) {
                Ok(p) => p,
                Err(e) => return reply.error(self.fail("readdir", ino.0, &e)),
            };
            if reply.add(INodeNo(parent), 2, FileType::Directory, "..") {
                return reply.ok();
            }
            off = 2;
        }
        let mut pos = (off - 2) as usize;
        loop {
            let batch = match self.vfs.readdir_handle(fh.0, pos, 256, false) {
                Ok(b) => b,
                Err(e) => return reply.error(self.fail("readdir", ino.0, &e)),
            };
            if batch.is_empty() {
                break;
            }
            for e in &batch {
                if reply.add(
                    INodeNo(e.attr.ino),
                    (pos + 3) as u64,
                    file_type(&e.attr.kind),
                    OsStr::from_bytes(&e.name),
                ) {
                    return reply.ok();
                }
                pos += 1;
            }
        }
        reply.ok()
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let mut off = offset;
        let me = match self.vfs.getattr(ino.0) {
            Ok(a) => a,
            Err(e) => return reply.error(self.fail("readdirplus", ino.0, &e)),
        };
        // "." and ".." carry no lookup reference in readdirplus.
        if off == 0 {
            if reply.add(ino, 1, ".", &Duration::ZERO, &attr(&me), Generation(0)) {
                return reply.ok();
            }
            off = 1;
        }
        if off == 1 {
            let mut dotdot = attr(&me);
            dotdot.ino = match self.vfs.parent_of(ino.0) {
                Ok(p) => INodeNo(p),
                Err(e) => return reply.error(self.fail("readdirplus", ino.0, &e)),
            };
            if reply.add(dotdot.ino, 2, "..", &Duration::ZERO, &dotdot, Generation(0)) {
                return reply.ok();
            }
            off = 2;
        }
        // Each entry sent counts as a lookup; take them in slices so an entry that does
        // not fit in the reply is never counted.
        let mut pos = (off - 2) as usize;
        loop {
            let batch = match self.vfs.readdir_handle(fh.0, pos, 64, true) {
                Ok(b) => b,
                Err(e) => return reply.error(self.fail("readdirplus", ino.0, &e)),
            };
            if batch.is_empty() {
                break;
            }
            for (i, e) in batch.iter().enumerate() {
                let a = attr(&e.attr);
                if reply.add(
                    a.ino,
                    (pos + 3) as u64,
                    OsStr::from_bytes(&e.name),
                    &ttl(&e.attr),
                    &a,
                    Generation(0),
                ) {
                    for rest in &batch[i..] {
                        self.vfs.unremember(rest.attr.ino);
                    }
                    return reply.ok();
                }
                pos += 1;
            }
        }
        reply.ok()
    }

    /// Only SEEK_DATA and SEEK_HOLE come here (the kernel does the others itself): answered
    /// from the extent map, so `cp` and `rsync` skip holes instead of reading zeros.
    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let data = match whence {
            libc::SEEK_DATA => true,
            libc::SEEK_HOLE => false,
            _ => return reply.error(Errno::EINVAL),
        };
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(Errno::ENXIO);
        };
        match self.vfs.seek(fh.0, offset, data) {
            Ok(o) => reply.offset(o as i64),
            Err(e) => reply.error(self.fail("lseek", ino.0, &e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.vfs.statfs() {
            Ok((bytes, snaps)) => {
                reply.statfs(bytes.div_ceil(4096), 0, 0, snaps, 0, 4096, 255, 4096)
            }
            Err(e) => reply.error(self.fail("statfs", 1, &e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.vfs.getxattr(ino.0, name.as_bytes()) {
            Ok(v) => xattr_reply(reply, &v, size),
            Err(e) => reply.error(Errno::from_i32(e.to_errno())),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.vfs.listxattr(ino.0) {
            Ok(v) => xattr_reply(reply, &v, size),
            Err(e) => reply.error(self.fail("listxattr", ino.0, &e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // Permission bits are checked by the kernel (default_permissions); only writes
        // are refused here.
        if mask.contains(AccessFlags::W_OK) {
            reply.error(Errno::EROFS)
        } else {
            reply.ok()
        }
    }

    // Every change is refused: the archive is append-only and mounted read-only.
    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS)
    }

    fn mknod(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _r: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS)
    }

    fn mkdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS)
    }

    fn unlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn rmdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn symlink(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _t: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS)
    }

    fn rename(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _np: INodeNo,
        _nn: &OsStr,
        _f: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }

    fn link(&self, _req: &Request, _i: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EROFS)
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _wf: fuser::WriteFlags,
        _flags: OpenFlags,
        _lo: Option<LockOwner>,
        reply: fuser::ReplyWrite,
    ) {
        reply.error(Errno::EROFS)
    }

    fn create(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _f: i32,
        reply: fuser::ReplyCreate,
    ) {
        reply.error(Errno::EROFS)
    }

    fn setxattr(
        &self,
        _req: &Request,
        _i: INodeNo,
        _n: &OsStr,
        _v: &[u8],
        _f: i32,
        _p: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }

    fn removexattr(&self, _req: &Request, _i: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn fallocate(
        &self,
        _req: &Request,
        _i: INodeNo,
        _fh: FileHandle,
        _o: u64,
        _l: u64,
        _m: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        reply.ok()
    }
}

fn xattr_reply(reply: ReplyXattr, v: &[u8], size: u32) {
    if size == 0 {
        reply.size(v.len() as u32)
    } else if (size as usize) < v.len() {
        reply.error(Errno::ERANGE)
    } else {
        reply.data(v)
    }
}
