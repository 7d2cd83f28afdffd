//! `diff`: what changed between two snapshots. Walks both trees in step (entries are
//! sorted by name), skipping subtrees whose ids are equal, so unchanged directories cost
//! nothing however large they are. Changes are handed to a callback as they are found:
//! memory holds the trees on the current path only, however many changes there are
//! (a hostile archive can name 2^40 paths with a few kilobytes of shared subtrees).

use crate::archive::{Archive, ArchiveError};
use crate::format::BlobId;
use crate::format::tree::{Node, NodeKind, Payload};

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
    walk(archive, Some(old), Some(new), &mut Vec::new(), each, 0)
}

/// Where changes go.
type Sink<'s, E> = dyn FnMut(Entry) -> Result<(), E> + 's;

fn children(archive: &Archive, id: Option<BlobId>) -> Result<Vec<Node>, ArchiveError> {
    match id {
        Some(id) => archive.read_tree(&id),
        None => Ok(Vec::new()),
    }
}

fn walk<E: From<ArchiveError>>(
    archive: &Archive,
    old: Option<BlobId>,
    new: Option<BlobId>,
    path: &mut Vec<u8>,
    out: &mut Sink<'_, E>,
    depth: usize,
) -> Result<(), E> {
    if old == new {
        return Ok(());
    }
    if depth > crate::tree::MAX_DEPTH {
        return Err(ArchiveError::Invalid("trees nest too deep".into()).into());
    }
    let (a, b) = (children(archive, old)?, children(archive, new)?);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let ord = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        let len = path.len();
        let name = match ord {
            std::cmp::Ordering::Less => &a[i].name,
            _ => &b[j].name,
        };
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        match ord {
            std::cmp::Ordering::Less => {
                whole(archive, &a[i], Change::Removed, path, out, depth)?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                whole(archive, &b[j], Change::Added, path, out, depth)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (&a[i], &b[j]);
                if x.kind != y.kind {
                    push(out, Change::TypeChanged, path, y, Vec::new())?;
                    if x.kind == NodeKind::Dir {
                        walk(archive, x.subtree(), None, path, out, depth + 1)?;
                    }
                    if y.kind == NodeKind::Dir {
                        walk(archive, None, y.subtree(), path, out, depth + 1)?;
                    }
                } else {
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
                    if x.kind == NodeKind::Dir {
                        walk(archive, x.subtree(), y.subtree(), path, out, depth + 1)?;
                    }
                }
                i += 1;
                j += 1;
            }
        }
        path.truncate(len);
    }
    Ok(())
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

fn whole<E: From<ArchiveError>>(
    archive: &Archive,
    n: &Node,
    change: Change,
    path: &mut Vec<u8>,
    out: &mut Sink<'_, E>,
    depth: usize,
) -> Result<(), E> {
    push(out, change, path, n, Vec::new())?;
    if let Some(sub) = n.subtree() {
        let (old, new) = if change == Change::Removed {
            (Some(sub), None)
        } else {
            (None, Some(sub))
        };
        walk(archive, old, new, path, out, depth + 1)?;
    }
    Ok(())
}
