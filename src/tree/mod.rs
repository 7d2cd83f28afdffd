//! Snapshot trees: looking a path up from a root tree, and walking a tree depth-first.
//! The snapshot root is a tree whose entries are the sources; it has no metadata of its
//! own, so it is represented by a synthetic directory node.

use crate::archive::{Archive, ArchiveError};
use crate::format::BlobId;
use crate::format::tree::{Node, NodeKind, Payload};

/// A synthetic directory node standing for a snapshot's root tree.
pub fn root_node(root: BlobId, time: (i64, u32)) -> Node {
    Node {
        name: Vec::new(),
        kind: NodeKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        user: Vec::new(),
        group: Vec::new(),
        mtime: time,
        ctime: time,
        size: 0,
        dev: 0,
        ino: 0,
        nlink: 2,
        rdev: 0,
        xattrs: Vec::new(),
        payload: Payload::Dir(root),
    }
}

/// Splits a snapshot path (`export/a.zip`, `/export/a.zip`, `` for the root) into
/// components; `.` components are dropped, `..` is refused.
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>, ArchiveError> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(ArchiveError::Invalid(
                    "snapshot paths cannot contain '..'".into(),
                ));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The node at `path` below `root`, or `None` if some component does not exist.
pub fn lookup(archive: &Archive, root: &Node, path: &[u8]) -> Result<Option<Node>, ArchiveError> {
    let mut node = root.clone();
    for c in components(path)? {
        let Some(sub) = node.subtree() else {
            return Ok(None);
        };
        let nodes = archive.read_tree(&sub)?;
        match nodes.binary_search_by(|n| n.name.as_slice().cmp(c)) {
            Ok(i) => node = nodes[i].clone(),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(node))
}

/// Walks the tree below `dir` depth-first, parents before children, entries in name
/// order, calling `f(path, node)` with the path relative to `dir` as each node is
/// decoded (memory holds the tree bytes of the current path only, however many paths
/// there are). Depth is bounded so a hostile archive with a cycle of tree ids cannot
/// loop forever. A tree found malformed part-way has had its earlier nodes visited.
/// Visitor called by [`walk`] with each path and node.
pub type Visit<'v> = dyn FnMut(&[u8], &Node) -> Result<(), ArchiveError> + 'v;

pub fn walk(archive: &Archive, dir: &Node, f: &mut Visit<'_>) -> Result<(), ArchiveError> {
    fn rec(
        archive: &Archive,
        id: BlobId,
        prefix: &mut Vec<u8>,
        depth: usize,
        f: &mut Visit<'_>,
    ) -> Result<(), ArchiveError> {
        if depth > MAX_DEPTH {
            return Err(ArchiveError::Invalid(format!(
                "tree deeper than {MAX_DEPTH} levels at {:?} (damaged or hostile archive)",
                String::from_utf8_lossy(prefix)
            )));
        }
        // Node by node: a directory of any size is held as its bytes, never decoded whole.
        let mut failed = None;
        archive.each_tree_node(&id, &mut |n| {
            let len = prefix.len();
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(&n.name);
            let mut r = f(prefix, &n);
            if r.is_ok()
                && let Some(sub) = n.subtree()
            {
                r = rec(archive, sub, prefix, depth + 1, f);
            }
            prefix.truncate(len);
            match r {
                Ok(()) => std::ops::ControlFlow::Continue(()),
                Err(e) => {
                    failed = Some(e);
                    std::ops::ControlFlow::Break(())
                }
            }
        })?;
        failed.map_or(Ok(()), Err)
    }
    match dir.subtree() {
        Some(id) => rec(archive, id, &mut Vec::new(), 0, f),
        None => Ok(()),
    }
}

/// Deepest directory nesting accepted: a 4096-byte path has at most 2048 components.
pub const MAX_DEPTH: usize = 2100;
