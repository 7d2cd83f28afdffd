//! `diff`: what changed between two snapshots. Walks both trees in step (entries are
//! sorted by name), skipping subtrees whose ids are equal, so unchanged directories cost
//! nothing however large they are. Changes are handed to a callback as they are found:
//! memory holds the trees on the current path only, however many changes there are
//! (a hostile archive can name 2^40 paths with a few kilobytes of shared subtrees).

use crate::archive::{Archive, ArchiveError};
use crate::format::BlobId;
use crate::format::tree::{Node, NodeKind, Payload};
use crate::tree::PairVisitor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    /// Content (file bytes or symlink target) differs.
    Modified,
    /// Only metadata differs: mode, owner, mtime, xattrs.
    Metadata,
    /// The kind of node changed (e.g. a file became a directory).
    TypeChanged,
}

impl Change {
    pub fn code(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::Metadata => 'm',
            Change::TypeChanged => 'T',
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Modified => "modified",
            Change::Metadata => "metadata",
            Change::TypeChanged => "type",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub change: Change,
    pub path: Vec<u8>,
    pub kind: NodeKind,
    /// Size after (or before, for removals).
    pub size: u64,
    /// For metadata changes: which fields.
    pub fields: Vec<&'static str>,
}

/// Differences from `old` to `new` (both root tree ids), in path order. Added and
/// removed directories are listed with everything beneath them.
pub fn diff(archive: &Archive, old: BlobId, new: BlobId) -> Result<Vec<Entry>, ArchiveError> {
    let mut out = Vec::new();
    diff_each(archive, old, new, &mut |e| {
        out.push(e);
        Ok::<(), ArchiveError>(())
    })?;
    Ok(out)
}

/// Like [`diff`], but calls `each` with every change as soon as it is found. An error
/// from `each` (a closed pipe, say) stops the walk and is returned.
pub fn diff_each<E: From<ArchiveError>>(
    archive: &Archive,
    old: BlobId,
    new: BlobId,
    each: &mut dyn FnMut(Entry) -> Result<(), E>,
) -> Result<(), E> {
    crate::tree::walk_pair(archive, Some(old), Some(new), &mut Differ(each))
}

/// Where changes go.
type Sink<'s, E> = dyn FnMut(Entry) -> Result<(), E> + 's;

/// Compares the entries of one name in both trees; walks on into what differs. Added
/// and removed directories are walked against nothing, so everything beneath them is
/// listed.
struct Differ<'a, 's, E>(&'a mut Sink<'s, E>);

impl<E: From<ArchiveError>> PairVisitor for Differ<'_, '_, E> {
    type Error = E;

    fn visit(
        &mut self,
        path: &[u8],
        old: Option<&Node>,
        new: Option<&Node>,
    ) -> Result<(Option<BlobId>, Option<BlobId>), E> {
        let out = &mut *self.0;
        let (x, y) = match (old, new) {
            (Some(x), None) => {
                push(out, Change::Removed, path, x, Vec::new())?;
                return Ok((x.subtree(), None));
            }
            (None, Some(y)) => {
                push(out, Change::Added, path, y, Vec::new())?;
                return Ok((None, y.subtree()));
            }
            (Some(x), Some(y)) => (x, y),
            (None, None) => return Ok((None, None)),
        };
        if x.kind != y.kind {
            // At most one side is a directory: its entries are removed or added.
            push(out, Change::TypeChanged, path, y, Vec::new())?;
            return Ok((x.subtree(), y.subtree()));
        }
        let content = match (&x.payload, &y.payload) {
            (Payload::File(p), Payload::File(q)) => p != q,
            (Payload::Symlink(p), Payload::Symlink(q)) => p != q,
            _ => x.rdev != y.rdev,
        };
        let fields = meta_fields(x, y);
        if content {
            push(out, Change::Modified, path, y, fields)?;
        } else if !fields.is_empty() {
            push(out, Change::Metadata, path, y, fields)?;
        }
        Ok((x.subtree(), y.subtree()))
    }
}

fn meta_fields(x: &Node, y: &Node) -> Vec<&'static str> {
    let mut f = Vec::new();
    if x.mode != y.mode {
        f.push("mode");
    }
    if (x.uid, x.gid) != (y.uid, y.gid) {
        f.push("owner");
    }
    if x.mtime != y.mtime && x.kind != NodeKind::Dir {
        f.push("mtime");
    }
    if x.xattrs != y.xattrs {
        f.push("xattrs");
    }
    f
}

fn push<E>(
    out: &mut Sink<'_, E>,
    change: Change,
    path: &[u8],
    n: &Node,
    fields: Vec<&'static str>,
) -> Result<(), E> {
    out(Entry {
        change,
        path: path.to_vec(),
        kind: n.kind,
        size: n.size,
        fields,
    })
}
