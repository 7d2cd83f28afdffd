//! One regular file of a directory into a node: taken from the parent snapshot when
//! unchanged, otherwise opened (O_NOFOLLOW, and it must still be a regular file once
//! open) and read, again while it keeps changing under us (at most three times).

use super::context::{Context, node_is_unchanged};
use super::error::IngestError;
use super::read::ReadError;
use crate::format::tree::{Extent, Node, NodeKind, Payload};
use crate::sys::fsops::{self, Dir, Stat, XTarget};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

/// The node of the regular file `n.name` of `dir` (metadata already in `n`); `None`
/// when it could not be read (recorded).
pub fn file_node(
    ctx: &mut Context,
    dir: &Dir,
    n: Node,
    st: &Stat,
    path: &[u8],
    parent: Option<&Node>,
) -> Result<Option<Node>, IngestError> {
    ctx.stats.files += 1;
    ctx.progress.files.fetch_add(1, Ordering::Relaxed);
    let size = st.st_size as u64;
    ctx.progress.bytes_seen.fetch_add(size, Ordering::Relaxed);
    if let Some(p) = parent.filter(|p| node_is_unchanged(p, st)) {
        let mut n = n;
        n.size = p.size;
        n.payload = p.payload.clone();
        n.xattrs = p.xattrs.clone();
        ctx.stats.files_unchanged += 1;
        ctx.stats.total_size += n.size;
        return Ok(Some(n));
    }
    let Some((file, n, st)) = open_regular(ctx, dir, n, st, path) else {
        ctx.stats.files -= 1;
        return Ok(None);
    };
    let Some((mut n, extents, total)) = read_stable(ctx, &file, n, st, path)? else {
        ctx.stats.files -= 1;
        return Ok(None);
    };
    n.xattrs = ctx.xattrs(XTarget::Fd(file.as_raw_fd()), path);
    n.size = total;
    n.payload = Payload::File(extents);
    match parent {
        Some(p) if p.kind == NodeKind::File => ctx.stats.files_changed += 1,
        _ => ctx.stats.files_new += 1,
    }
    ctx.stats.total_size += total;
    Ok(Some(n))
}

/// Opens the file and checks that what was opened is still a regular file (not a FIFO
/// or device swapped in since the stat): its bytes are about to be stored as that file.
/// A regular file renamed over the old one is fine: its own metadata is used. `None`
/// when it cannot be read (recorded).
fn open_regular(
    ctx: &mut Context,
    dir: &Dir,
    mut n: Node,
    st: &Stat,
    path: &[u8],
) -> Option<(File, Node, Stat)> {
    let file = match dir.open_file(&n.name) {
        Ok(f) => f,
        Err(e) => {
            ctx.io_error(path, &e);
            return None;
        }
    };
    match fsops::fstat(file.as_raw_fd()) {
        Ok(now) if now.st_mode & libc::S_IFMT == libc::S_IFREG => {
            if now.st_ino != st.st_ino {
                n = ctx.meta_node(&n.name, NodeKind::File, &now);
            }
            Some((file, n, now))
        }
        Ok(_) => {
            ctx.record(
                path,
                "replaced by a special file while the source was read; left out",
            );
            None
        }
        Err(e) => {
            ctx.io_error(path, &e);
            None
        }
    }
}

/// Reads the file until a read starts and ends with the same size, mtime and ctime (at
/// most three tries; then the mix is stored and recorded). `None` when a read failed
/// (recorded).
fn read_stable(
    ctx: &mut Context,
    file: &File,
    mut n: Node,
    mut st: Stat,
    path: &[u8],
) -> Result<Option<(Node, Vec<Extent>, u64)>, IngestError> {
    let mut attempt = 0;
    loop {
        let read = ctx
            .chunks
            .read_file(file, st.st_size as u64, &mut ctx.stats.bytes_read);
        let (extents, total) = match read {
            Ok(x) => x,
            Err(ReadError::Io(e)) => {
                ctx.io_error(path, &e);
                return Ok(None);
            }
            Err(ReadError::Ingest(e)) => return Err(e),
        };
        let after = match fsops::fstat(file.as_raw_fd()) {
            Ok(a) => a,
            Err(e) => {
                ctx.io_error(path, &e);
                return Ok(None);
            }
        };
        let same = after.st_size == st.st_size
            && (after.st_mtime, after.st_mtime_nsec) == (st.st_mtime, st.st_mtime_nsec)
            && (after.st_ctime, after.st_ctime_nsec) == (st.st_ctime, st.st_ctime_nsec)
            && total == st.st_size as u64;
        if same {
            return Ok(Some((n, extents, total)));
        }
        attempt += 1;
        if attempt >= 3 {
            ctx.record(
                path,
                "file kept changing while it was read; stored content may mix versions",
            );
            return Ok(Some((n, extents, total)));
        }
        st = after;
        n = ctx.meta_node(&n.name, NodeKind::File, &st);
    }
}
