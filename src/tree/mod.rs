//! Snapshot trees: looking a path up from a root tree, the one iterative walker
//! ([`walk`]), which blobs a node references ([`refs`]), and the cache of decoded trees
//! ([`cache`]). The snapshot root is a tree whose entries are the sources; it has no
//! metadata of its own, so it is represented by a synthetic directory node.

pub mod cache;
pub mod refs;
pub mod walk;

pub use cache::TreeCache;
pub use refs::{Ref, refs};
pub use walk::{PairVisitor, Trees, Visitor, walk, walk_node, walk_pair};

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

/// Deepest directory nesting accepted: a 4096-byte path has at most 2048 components.
pub const MAX_DEPTH: usize = 2100;
