//! Directory traversal: turns a path source into a node, walking a directory with an
//! explicit stack of open directories (one `Frame` each: its descriptor, the entries
//! still to visit, the nodes made so far), so any depth runs on a default-size thread
//! stack. Entries are opened relative to their directory's descriptor with O_NOFOLLOW.
//!
//! Order (kept from the recursive walker it replaces, so errors, progress and blob
//! order are unchanged): in each directory, first every entry is stat'ed (excludes
//! applied, the archive itself left out) and the files to read are handed to the
//! read-ahead; then the files and other non-directories are visited, then the
//! subdirectories, each walked completely before the next (depth first). A directory's
//! tree is stored, sorted by name, when its last entry is done.

use super::context::{Context, kind_of, node_is_unchanged};
use super::error::IngestError;
use super::file::file_node;
use super::readahead::{Readahead, StatAhead};
use crate::format::BlobId;
use crate::format::tree::{MAX_LINK_LEN, Node, NodeKind, Payload};
use crate::sys::fsops::{Dir, Stat, XTarget};
use crate::sys::glob_match;
use std::io;
use std::iter::Peekable;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::vec::IntoIter;

/// State kept across all path sources of one run.
pub struct Walker {
    readahead: Readahead,
    /// Device of the source being walked (for --one-file-system).
    root_dev: u64,
    /// (device, inode) of the archive directory: left out when found inside a source.
    archive_dir: Option<(u64, u64)>,
}

/// One directory entry to visit: name, snapshot path, metadata.
type Entry = (Vec<u8>, Vec<u8>, Stat);

/// One open directory on the walk's stack.
struct Frame {
    dir: Dir,
    depth: usize,
    /// The same directory's children in the parent snapshot, sorted by name.
    parent: Option<Vec<Node>>,
    /// Entries still to visit: non-directories first, then directories.
    todo: IntoIter<Entry>,
    /// Files handed to the read-ahead and not yet read, in the order they are read.
    to_read: Peekable<IntoIter<(Vec<u8>, u64)>>,
    /// Nodes of the entries visited so far.
    nodes: Vec<Node>,
    /// This directory's own node (in the frame below), completed with its tree id when
    /// the frame is done; `None` for the directory the walk started at.
    node: Option<Node>,
}

/// What visiting one entry gave.
enum Step {
    /// Its node (`None`: left out, recorded).
    Node(Option<Node>),
    /// A subdirectory to walk: its descriptor, its node so far, its children in the
    /// parent snapshot.
    Descend(Dir, Node, Option<Vec<Node>>),
}

fn is_dir(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = prefix.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// The node named `name` in a sorted list of parent children.
fn parent_of<'p>(parent: &'p Option<Vec<Node>>, name: &[u8]) -> Option<&'p Node> {
    parent.as_ref().and_then(|p| {
        p.binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &p[i])
    })
}

impl Walker {
    pub fn new(ctx: &Context) -> Walker {
        Walker {
            readahead: Readahead::new(),
            root_dev: 0,
            archive_dir: {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(ctx.archive.root())
                    .ok()
                    .map(|m| (m.dev(), m.ino()))
            },
        }
    }

    /// A path source: a directory (walked) or any other node.
    pub fn path_node(
        &mut self,
        ctx: &mut Context,
        path: &std::path::Path,
        name: &[u8],
        snap_path: &[u8],
        parent: Option<&Node>,
    ) -> Result<Option<Node>, IngestError> {
        let src_err = |source: io::Error| IngestError::Source {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(src_err)?;
        if meta.is_dir() {
            let dir = Dir::open(path).map_err(src_err)?;
            let st = dir.stat_self().map_err(src_err)?;
            self.root_dev = st.st_dev;
            let xattrs = ctx.xattrs(XTarget::Fd(dir.as_raw_fd()), snap_path);
            let parent_nodes = ctx.parent_children(parent);
            let _warm = StatAhead::start(&dir);
            let id = self.walk(ctx, dir, snap_path, parent_nodes, 0)?;
            let mut n = ctx.meta_node(name, NodeKind::Dir, &st);
            n.xattrs = xattrs;
            n.payload = Payload::Dir(id);
            return Ok(Some(n));
        }
        // Anything else: open its parent directory and treat it as an entry there.
        let abs = std::path::absolute(path).map_err(src_err)?;
        let dir_path = abs.parent().unwrap_or(std::path::Path::new("/"));
        let base = abs.file_name().map(|b| {
            use std::os::unix::ffi::OsStrExt;
            b.as_bytes().to_vec()
        });
        let Some(base) = base else {
            return Err(src_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file name",
            )));
        };
        let dir = Dir::open(dir_path).map_err(src_err)?;
        let st = dir.stat(&base).map_err(src_err)?;
        self.root_dev = st.st_dev;
        let node = match self.entry(ctx, &dir, &base, &st, snap_path, parent, 0)? {
            Step::Node(n) => n,
            // Replaced by a directory since the check above.
            Step::Descend(sub, mut n, parent_nodes) => {
                n.payload = Payload::Dir(self.walk(ctx, sub, snap_path, parent_nodes, 1)?);
                Some(n)
            }
        };
        Ok(node.map(|mut n| {
            n.name = name.to_vec();
            n
        }))
    }

    /// Walks the directory `dir` (at `snap_path` in the snapshot, `depth` levels below
    /// the source); returns its tree id.
    fn walk(
        &mut self,
        ctx: &mut Context,
        dir: Dir,
        snap_path: &[u8],
        parent: Option<Vec<Node>>,
        depth: usize,
    ) -> Result<BlobId, IngestError> {
        let mut stack = vec![self.open_frame(ctx, dir, snap_path, parent, depth, None)?];
        loop {
            let top = stack
                .last_mut()
                .expect("the walk's stack is never empty here");
            if let Some((name, path, st)) = top.todo.next() {
                ctx.check_interrupt()?;
                let step = self.entry(
                    ctx,
                    &top.dir,
                    &name,
                    &st,
                    &path,
                    parent_of(&top.parent, &name),
                    top.depth,
                )?;
                match step {
                    Step::Node(node) => {
                        if let Some((n, size)) = top.to_read.peek()
                            && *n == name
                        {
                            self.readahead.consumed(*size);
                            top.to_read.next();
                        }
                        top.nodes.extend(node);
                    }
                    Step::Descend(sub, node, parent) => {
                        let depth = top.depth + 1;
                        let frame = self.open_frame(ctx, sub, &path, parent, depth, Some(node))?;
                        stack.push(frame);
                    }
                }
                continue;
            }
            let mut done = stack.pop().expect("checked above");
            done.nodes.sort_by(|a, b| a.name.cmp(&b.name));
            let id = ctx.store_tree(&done.nodes)?;
            match (stack.last_mut(), done.node) {
                (Some(up), Some(mut n)) => {
                    n.payload = Payload::Dir(id);
                    up.nodes.push(n);
                }
                _ => return Ok(id),
            }
        }
    }

    /// Lists and stats a directory's entries (first the metadata of every entry, so the
    /// files that will be read, new or changed, are known up front and the read-ahead
    /// can start on them) and makes its frame.
    fn open_frame(
        &mut self,
        ctx: &mut Context,
        dir: Dir,
        path: &[u8],
        parent: Option<Vec<Node>>,
        depth: usize,
        node: Option<Node>,
    ) -> Result<Frame, IngestError> {
        let entries = self.stat_entries(ctx, &dir, path)?;
        let to_read: Vec<(Vec<u8>, u64)> = entries
            .iter()
            .filter(|(name, _, st)| {
                st.st_mode & libc::S_IFMT == libc::S_IFREG
                    && st.st_size > 0
                    && !parent_of(&parent, name).is_some_and(|p| node_is_unchanged(p, st))
            })
            .map(|(name, _, st)| (name.clone(), st.st_size as u64))
            .collect();
        self.readahead.submit(&dir, to_read.clone());
        // Files (and other non-directories) first, in the order the read-ahead was
        // given, then subdirectories; the tree is sorted by name again before it is
        // stored.
        let (dirs, mut todo): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|(_, _, st)| is_dir(st));
        todo.extend(dirs);
        Ok(Frame {
            nodes: Vec::with_capacity(todo.len()),
            dir,
            depth,
            parent,
            todo: todo.into_iter(),
            to_read: to_read.into_iter().peekable(),
            node,
        })
    }

    /// The entries of `dir` with their metadata, excludes and the archive itself left
    /// out, unreadable ones recorded.
    fn stat_entries(
        &mut self,
        ctx: &mut Context,
        dir: &Dir,
        snap_path: &[u8],
    ) -> Result<Vec<Entry>, IngestError> {
        let names = match dir.entries() {
            Ok(n) => n,
            Err(e) => {
                ctx.io_error(snap_path, &e);
                Vec::new()
            }
        };
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            ctx.check_interrupt()?;
            let path = join(snap_path, &name);
            if excluded(&ctx.opts.excludes, &name, &path) {
                continue;
            }
            match dir.stat(&name) {
                Ok(st) if is_dir(&st) && self.archive_dir == Some((st.st_dev, st.st_ino)) => {
                    // Storing the archive in itself would copy every pack again each run.
                    ctx.warnings.push(format!(
                        "{} is the archive itself: left out of the snapshot (found in a source as {})",
                        ctx.archive.root().display(),
                        String::from_utf8_lossy(&path)
                    ));
                }
                Ok(st) => entries.push((name, path, st)),
                Err(e) => ctx.io_error(&path, &e),
            }
        }
        Ok(entries)
    }

    /// Visits one entry of `dir` (a directory at `depth`): its node, or the subdirectory
    /// to walk next.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        ctx: &mut Context,
        dir: &Dir,
        name: &[u8],
        st: &Stat,
        path: &[u8],
        parent: Option<&Node>,
        depth: usize,
    ) -> Result<Step, IngestError> {
        let Some(kind) = kind_of(st.st_mode) else {
            ctx.record(
                path,
                format!("unknown file type {:o}", st.st_mode & libc::S_IFMT),
            );
            return Ok(Step::Node(None));
        };
        let mut n = ctx.meta_node(name, kind, st);
        match kind {
            NodeKind::File => return file_node(ctx, dir, n, st, path, parent).map(Step::Node),
            NodeKind::Dir => return self.dir_entry(ctx, dir, n, st, path, parent, depth),
            NodeKind::Symlink => {
                let target = match dir.readlink(name) {
                    Ok(t) => t,
                    Err(e) => {
                        ctx.io_error(path, &e);
                        return Ok(Step::Node(None));
                    }
                };
                if target.is_empty() || target.len() > MAX_LINK_LEN {
                    ctx.record(path, "symlink target is empty or too long");
                    return Ok(Step::Node(None));
                }
                n.size = target.len() as u64;
                n.payload = Payload::Symlink(target);
                n.xattrs = ctx.special_xattrs(dir, name, path);
            }
            _ => {
                n.xattrs = ctx.special_xattrs(dir, name, path);
            }
        }
        Ok(Step::Node(Some(n)))
    }

    /// A subdirectory entry: opened to be walked, or kept empty (a mount point with
    /// --one-file-system), or left out (too deep, unreadable: recorded).
    #[allow(clippy::too_many_arguments)]
    fn dir_entry(
        &mut self,
        ctx: &mut Context,
        dir: &Dir,
        mut n: Node,
        st: &Stat,
        path: &[u8],
        parent: Option<&Node>,
        depth: usize,
    ) -> Result<Step, IngestError> {
        ctx.progress.files.fetch_add(1, Ordering::Relaxed);
        if depth >= crate::tree::MAX_DEPTH {
            ctx.record(path, "directory nesting too deep; contents skipped");
            return Ok(Step::Node(None));
        }
        if ctx.opts.one_file_system && st.st_dev != self.root_dev {
            // A mount point: keep the directory, not what is mounted on it.
            n.payload = Payload::Dir(ctx.store_tree(&[])?);
            return Ok(Step::Node(Some(n)));
        }
        let sub = match dir.open_dir(&n.name) {
            Ok(d) => d,
            Err(e) => {
                ctx.io_error(path, &e);
                return Ok(Step::Node(None));
            }
        };
        n.xattrs = ctx.xattrs(XTarget::Fd(sub.as_raw_fd()), path);
        let parent_nodes = ctx.parent_children(parent.filter(|p| p.kind == NodeKind::Dir));
        Ok(Step::Descend(sub, n, parent_nodes))
    }
}

fn excluded(excludes: &[Vec<u8>], name: &[u8], path: &[u8]) -> bool {
    excludes.iter().any(|p| {
        if p.contains(&b'/') {
            glob_match(p, path)
        } else {
            glob_match(p, name)
        }
    })
}
