//! Which blobs a node references: a file's data chunks (holes reference nothing) and a
//! directory's subtree. Check, prune and repair ask this one function, so a new kind
//! of content is taught here once.

use crate::format::BlobId;
use crate::format::tree::{Extent, Node};

/// A blob a node references directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ref {
    /// A chunk of a file's data.
    Chunk(BlobId),
    /// The tree listing a directory's entries.
    Tree(BlobId),
}

/// The blobs `node` references: a directory's subtree, a file's data chunks in file
/// order (a chunk used twice is given twice); symlinks and special files reference
/// none.
pub fn refs(node: &Node) -> impl Iterator<Item = Ref> + '_ {
    node.subtree()
        .map(Ref::Tree)
        .into_iter()
        .chain(node.extents().iter().filter_map(|x| match x {
            Extent::Data { id, .. } => Some(Ref::Chunk(*id)),
            Extent::Hole { .. } => None,
        }))
}
