//! Builders shared by the unit tests that write real archives through the library (the
//! fault tests, the encryption tests, the tree walker's tests): one node and one snapshot
//! record with fixed, unremarkable metadata.

use crate::format::BlobId;
use crate::format::snapshot::{Snapshot, Stats};
use crate::format::tree::{Extent, Node, NodeKind, Payload};

/// A node with fixed metadata (mode 0755 for directories, 0644 otherwise; root-owned;
/// 2023-11-14 times); a file's size is the sum of its extents.
pub fn node(name: &str, kind: NodeKind, payload: Payload) -> Node {
    let size = match &payload {
        Payload::File(x) => x.iter().map(Extent::len).sum(),
        _ => 0,
    };
    Node {
        name: name.as_bytes().to_vec(),
        kind,
        mode: if kind == NodeKind::Dir { 0o755 } else { 0o644 },
        uid: 0,
        gid: 0,
        user: Vec::new(),
        group: Vec::new(),
        mtime: (1_700_000_000, 0),
        ctime: (1_700_000_000, 0),
        size,
        dev: 1,
        ino: 2,
        nlink: 1,
        rdev: 0,
        xattrs: Vec::new(),
        payload,
    }
}

/// A file of one chunk.
pub fn file_node(name: &str, chunk: BlobId, len: u64) -> Node {
    node(
        name,
        NodeKind::File,
        Payload::File(vec![Extent::Data { id: chunk, len }]),
    )
}

/// A snapshot record of `root`, host "h", label "l", nothing else.
pub fn snapshot(root: BlobId) -> Snapshot {
    Snapshot {
        time: (1_700_000_000, 0),
        host: "h".into(),
        label: "l".into(),
        tags: Vec::new(),
        parent: None,
        root,
        sources: Vec::new(),
        argv: Vec::new(),
        commands: Vec::new(),
        errors: Vec::new(),
        stats: Stats::default(),
    }
}
