//! Tree records: one directory's entries (nodes), sorted by raw name bytes. A directory
//! node points at its subtree by id, so unchanged directories are shared between
//! snapshots. A file node carries its content as a versioned *content kind* (today:
//! a chunk list with holes for sparse ranges).
//!
//! ```text
//! tree      magic "TREE" [4], version u8 = 1, count u32, nodes...
//! node      name bytes16 (1..=255 bytes, no '/' or NUL, not "." or "..")
//!           kind u8, mode u32, uid u32, gid u32, user bytes16, group bytes16
//!           mtime sec i64, mtime nsec u32, ctime sec i64, ctime nsec u32
//!           size u64, dev u64, ino u64, nlink u64, rdev u64
//!           xattr count u16, each: name bytes16, value bytes32
//!           file:    content kind u8 = 1, extent count u32,
//!                    each: tag u8 (0 data, 1 hole), len u64, id [32] when data
//!           dir:     subtree id [32]
//!           symlink: target bytes16 (1..=4095 bytes)
//!           other kinds: nothing
//! ```

use super::{BlobId, Decoder, Encoder, FormatError, MAX_BLOB_LEN};
use std::ops::ControlFlow;

pub const TREE_MAGIC: [u8; 4] = *b"TREE";
pub const TREE_VERSION: u8 = 1;
pub const CONTENT_CHUNKS: u8 = 1;
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_LINK_LEN: usize = 4095;
/// Largest xattr value Linux allows.
pub const MAX_XATTR_LEN: u64 = 65536;
/// Smallest encoded node: name 2+1, kind 1, mode/uid/gid 12, user/group 4, times 24,
/// size/dev/ino/nlink/rdev 40, xattr count 2.
pub const MIN_NODE_LEN: usize = 86;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    File = 1,
    Dir = 2,
    Symlink = 3,
    Fifo = 4,
    CharDev = 5,
    BlockDev = 6,
    Socket = 7,
}

impl NodeKind {
    pub fn from_u8(v: u8) -> Result<NodeKind, FormatError> {
        Ok(match v {
            1 => NodeKind::File,
            2 => NodeKind::Dir,
            3 => NodeKind::Symlink,
            4 => NodeKind::Fifo,
            5 => NodeKind::CharDev,
            6 => NodeKind::BlockDev,
            7 => NodeKind::Socket,
            _ => {
                return Err(FormatError::Invalid {
                    what: "node kind",
                    value: v.to_string(),
                });
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
            NodeKind::Symlink => "symlink",
            NodeKind::Fifo => "fifo",
            NodeKind::CharDev => "chardev",
            NodeKind::BlockDev => "blockdev",
            NodeKind::Socket => "socket",
        }
    }

    /// The `S_IFMT` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            NodeKind::File => libc::S_IFREG,
            NodeKind::Dir => libc::S_IFDIR,
            NodeKind::Symlink => libc::S_IFLNK,
            NodeKind::Fifo => libc::S_IFIFO,
            NodeKind::CharDev => libc::S_IFCHR,
            NodeKind::BlockDev => libc::S_IFBLK,
            NodeKind::Socket => libc::S_IFSOCK,
        }
    }
}

/// One range of a file: stored bytes, or a hole that reads as zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extent {
    Data { id: BlobId, len: u64 },
    Hole { len: u64 },
}

impl Extent {
    pub fn len(&self) -> u64 {
        match *self {
            Extent::Data { len, .. } | Extent::Hole { len } => len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A regular file's content as a chunk list (content kind 1).
    File(Vec<Extent>),
    Dir(BlobId),
    Symlink(Vec<u8>),
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits (07777); the type bits come from `kind`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: Vec<u8>,
    pub group: Vec<u8>,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub rdev: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub payload: Payload,
}

impl Node {
    pub fn subtree(&self) -> Option<BlobId> {
        match self.payload {
            Payload::Dir(id) => Some(id),
            _ => None,
        }
    }
    pub fn extents(&self) -> &[Extent] {
        match &self.payload {
            Payload::File(e) => e,
            _ => &[],
        }
    }
    /// Bytes actually stored (not holes): what `st_blocks` reflects.
    pub fn allocated(&self) -> u64 {
        self.extents()
            .iter()
            .map(|e| match e {
                Extent::Data { len, .. } => *len,
                Extent::Hole { .. } => 0,
            })
            .sum()
    }
}

/// A name that can be a single path component: not empty, not "." or "..", no '/' or NUL.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && !name.contains(&0)
}

fn invalid(what: &'static str, value: impl Into<String>) -> FormatError {
    FormatError::Invalid {
        what,
        value: value.into(),
    }
}

pub fn encode_tree(nodes: &[Node]) -> Result<Vec<u8>, FormatError> {
    let mut e = Encoder::new();
    e.bytes(&TREE_MAGIC);
    e.u8(TREE_VERSION);
    e.u32(nodes.len() as u32);
    let mut prev: Option<&[u8]> = None;
    for n in nodes {
        if !valid_name(&n.name) {
            return Err(invalid("node name", String::from_utf8_lossy(&n.name)));
        }
        if prev.is_some_and(|p| p >= n.name.as_slice()) {
            return Err(invalid("node order", String::from_utf8_lossy(&n.name)));
        }
        prev = Some(&n.name);
        // Refuse here whatever the decoder would refuse, so nothing unreadable is stored.
        if n.mode & !0o7777 != 0 || n.mtime.1 >= 1_000_000_000 || n.ctime.1 >= 1_000_000_000 {
            return Err(invalid(
                "node mode or time",
                format!("{:o} {:?} {:?}", n.mode, n.mtime, n.ctime),
            ));
        }
        if n.user.len() > u16::MAX as usize || n.group.len() > u16::MAX as usize {
            return Err(invalid(
                "owner name length",
                n.user.len().max(n.group.len()).to_string(),
            ));
        }
        if n.xattrs.len() > u16::MAX as usize
            || n.xattrs.iter().any(|(k, v)| {
                k.is_empty() || k.len() > u16::MAX as usize || v.len() as u64 > MAX_XATTR_LEN
            })
        {
            return Err(invalid(
                "xattr name or value length",
                String::from_utf8_lossy(&n.name),
            ));
        }
        if let Payload::Symlink(t) = &n.payload
            && t.contains(&0)
        {
            return Err(invalid("symlink target", "contains NUL"));
        }
        if let Payload::File(x) = &n.payload {
            let total = x.iter().try_fold(0u64, |a, e| a.checked_add(e.len()));
            if total != Some(n.size)
                || x.iter().any(
                    |e| matches!(e, Extent::Data { len, .. } if *len == 0 || *len > MAX_BLOB_LEN),
                )
            {
                return Err(invalid("file extents", String::from_utf8_lossy(&n.name)));
            }
        }
        e.bytes16(&n.name);
        e.u8(n.kind as u8);
        e.u32(n.mode);
        e.u32(n.uid);
        e.u32(n.gid);
        e.bytes16(&n.user);
        e.bytes16(&n.group);
        e.i64(n.mtime.0);
        e.u32(n.mtime.1);
        e.i64(n.ctime.0);
        e.u32(n.ctime.1);
        e.u64(n.size);
        e.u64(n.dev);
        e.u64(n.ino);
        e.u64(n.nlink);
        e.u64(n.rdev);
        e.u16(n.xattrs.len() as u16);
        for (k, v) in &n.xattrs {
            e.bytes16(k);
            e.bytes32(v);
        }
        match (&n.payload, n.kind) {
            (Payload::File(extents), NodeKind::File) => {
                e.u8(CONTENT_CHUNKS);
                e.u32(extents.len() as u32);
                for x in extents {
                    match x {
                        Extent::Data { id, len } => {
                            e.u8(0);
                            e.u64(*len);
                            e.bytes(&id.0);
                        }
                        Extent::Hole { len } => {
                            e.u8(1);
                            e.u64(*len);
                        }
                    }
                }
            }
            (Payload::Dir(id), NodeKind::Dir) => e.bytes(&id.0),
            (Payload::Symlink(t), NodeKind::Symlink) => {
                if t.is_empty() || t.len() > MAX_LINK_LEN {
                    return Err(invalid("symlink target length", t.len().to_string()));
                }
                e.bytes16(t)
            }
            (
                Payload::Other,
                NodeKind::Fifo | NodeKind::CharDev | NodeKind::BlockDev | NodeKind::Socket,
            ) => {}
            (_, k) => return Err(invalid("payload for node kind", k.name())),
        }
    }
    if e.buf.len() as u64 > MAX_BLOB_LEN {
        return Err(FormatError::TooLong {
            what: "tree",
            len: e.buf.len() as u64,
            limit: MAX_BLOB_LEN,
        });
    }
    Ok(e.buf)
}

pub fn decode_tree(b: &[u8]) -> Result<Vec<Node>, FormatError> {
    // The count field (after magic and version), bounded by what the bytes can hold.
    let count = b
        .get(5..9)
        .and_then(|c| c.try_into().ok())
        .map_or(0, |c| u32::from_le_bytes(c) as usize);
    let mut nodes = Vec::with_capacity(count.min(b.len() / MIN_NODE_LEN));
    decode_tree_each(b, &mut |n| {
        nodes.push(n);
        ControlFlow::Continue(())
    })?;
    Ok(nodes)
}

/// Decodes a tree node by node, handing each to `each` as soon as it is decoded, so a
/// directory of 200,000 entries can be listed without holding 200,000 nodes. `each`
/// may stop early (`Break`). Every check of [`decode_tree`] applies, but a tree found
/// malformed at its Nth node has handed over the N-1 before it.
pub fn decode_tree_each(
    b: &[u8],
    each: &mut dyn FnMut(Node) -> ControlFlow<()>,
) -> Result<(), FormatError> {
    let mut cursor = TreeCursor::new(b)?;
    while let Some(node) = cursor.next_node()? {
        if each(node).is_break() {
            return Ok(());
        }
    }
    Ok(())
}

/// A tree decoded one node per call, resumable between calls (the tree walker keeps
/// one per directory level of the path it is on). Every check of [`decode_tree`]
/// applies; after the last node the end of the bytes is checked too.
pub struct TreeCursor<B: AsRef<[u8]>> {
    bytes: B,
    /// Offset of the next node.
    pos: usize,
    /// Nodes not yet decoded.
    left: usize,
    prev: Option<Vec<u8>>,
}

impl<B: AsRef<[u8]>> TreeCursor<B> {
    /// Checks the header (magic, version, a count the bytes can hold).
    pub fn new(bytes: B) -> Result<Self, FormatError> {
        let mut d = Decoder::new(bytes.as_ref());
        let magic = d.bytes(4)?;
        if magic != TREE_MAGIC {
            return Err(FormatError::BadMagic {
                what: "tree",
                expected: TREE_MAGIC.to_vec(),
                found: magic.to_vec(),
            });
        }
        let version = d.u8()?;
        if version != TREE_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: "tree",
                found: version as u32,
                supported: TREE_VERSION as u32,
            });
        }
        let raw_count = d.u32()? as u64;
        // A node takes at least 86 bytes (a 1-byte name, no xattrs, no payload).
        let left = d.count("tree node count", raw_count, MIN_NODE_LEN)?;
        let pos = d.pos();
        Ok(TreeCursor {
            bytes,
            pos,
            left,
            prev: None,
        })
    }

    /// The next node, or `None` after the last one (once the bytes are found to end
    /// there).
    pub fn next_node(&mut self) -> Result<Option<Node>, FormatError> {
        let mut d = Decoder::new(self.bytes.as_ref());
        d.bytes(self.pos)?;
        if self.left == 0 {
            return d.finish().map(|()| None);
        }
        let prev = &self.prev;
        let name = d.bytes16()?.to_vec();
        if !valid_name(&name) {
            return Err(invalid(
                "node name",
                format!("{:?}", String::from_utf8_lossy(&name)),
            ));
        }
        if let Some(prev) = &prev
            && *prev >= name
        {
            return Err(invalid(
                "node order (duplicate or unsorted name)",
                format!("{:?}", String::from_utf8_lossy(&name)),
            ));
        }
        let kind = NodeKind::from_u8(d.u8()?)?;
        let mode = d.u32()?;
        if mode & !0o7777 != 0 {
            return Err(invalid("node mode", format!("{mode:o}")));
        }
        let uid = d.u32()?;
        let gid = d.u32()?;
        let user = d.bytes16()?.to_vec();
        let group = d.bytes16()?.to_vec();
        let mtime = (d.i64()?, d.u32()?);
        let ctime = (d.i64()?, d.u32()?);
        for t in [mtime.1, ctime.1] {
            if t >= 1_000_000_000 {
                return Err(invalid("nanoseconds", t.to_string()));
            }
        }
        let size = d.u64()?;
        let dev = d.u64()?;
        let ino = d.u64()?;
        let nlink = d.u64()?;
        let rdev = d.u64()?;
        let nx = d.u16()? as u64;
        let nx = d.count("xattr count", nx, 6)?;
        let mut xattrs = Vec::with_capacity(nx);
        for _ in 0..nx {
            let k = d.bytes16()?.to_vec();
            let v = d.bytes32("xattr value", MAX_XATTR_LEN)?.to_vec();
            xattrs.push((k, v));
        }
        let payload = match kind {
            NodeKind::File => {
                let ck = d.u8()?;
                if ck != CONTENT_CHUNKS {
                    return Err(FormatError::UnsupportedVersion {
                        what: "file content kind",
                        found: ck as u32,
                        supported: CONTENT_CHUNKS as u32,
                    });
                }
                let n = d.u32()? as u64;
                let n = d.count("extent count", n, 9)?;
                let mut extents = Vec::with_capacity(n);
                let mut total: u64 = 0;
                for _ in 0..n {
                    let tag = d.u8()?;
                    let len = d.u64()?;
                    let x = match tag {
                        0 => {
                            if len == 0 || len > MAX_BLOB_LEN {
                                return Err(invalid("data extent length", len.to_string()));
                            }
                            Extent::Data {
                                len,
                                id: BlobId(d.array()?),
                            }
                        }
                        1 => Extent::Hole { len },
                        t => return Err(invalid("extent tag", t.to_string())),
                    };
                    total = total
                        .checked_add(len)
                        .ok_or_else(|| invalid("file length", "overflow"))?;
                    extents.push(x);
                }
                if total != size {
                    return Err(invalid(
                        "file extents",
                        format!("extents add up to {total}, size is {size}"),
                    ));
                }
                Payload::File(extents)
            }
            NodeKind::Dir => Payload::Dir(BlobId(d.array()?)),
            NodeKind::Symlink => {
                let t = d.bytes16()?.to_vec();
                if t.is_empty() || t.len() > MAX_LINK_LEN || t.contains(&0) {
                    return Err(invalid("symlink target length", t.len().to_string()));
                }
                Payload::Symlink(t)
            }
            _ => Payload::Other,
        };
        self.prev = Some(name.clone());
        let node = Node {
            name,
            kind,
            mode,
            uid,
            gid,
            user,
            group,
            mtime,
            ctime,
            size,
            dev,
            ino,
            nlink,
            rdev,
            xattrs,
            payload,
        };
        self.pos = d.pos();
        self.left -= 1;
        Ok(Some(node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn file_node(name: &[u8], extents: Vec<Extent>) -> Node {
        Node {
            name: name.to_vec(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 1000,
            gid: 100,
            user: b"jira".to_vec(),
            group: b"users".to_vec(),
            mtime: (1_700_000_000, 123_456_789),
            ctime: (1_700_000_001, 5),
            size: extents.iter().map(|e| e.len()).sum(),
            dev: 2049,
            ino: 42,
            nlink: 1,
            rdev: 0,
            xattrs: vec![(b"user.k".to_vec(), b"v".to_vec())],
            payload: Payload::File(extents),
        }
    }

    #[test]
    fn tree_golden_bytes() {
        let n = file_node(
            b"a",
            vec![
                Extent::Data {
                    id: BlobId([7; 32]),
                    len: 3,
                },
                Extent::Hole { len: 4096 },
            ],
        );
        let bytes = encode_tree(std::slice::from_ref(&n)).unwrap();
        let hex = crate::format::to_hex(&bytes);
        assert_eq!(
            hex,
            concat!(
                "5452454501",
                "01000000", // magic, version, count
                "0100",
                "61", // name "a"
                "01",
                "a4010000",
                "e8030000",
                "64000000", // kind, mode, uid, gid
                "0400",
                "6a697261",
                "0500",
                "7573657273", // user, group
                "00f1536500000000",
                "15cd5b07", // mtime
                "01f1536500000000",
                "05000000",         // ctime
                "0310000000000000", // size 4099
                "0108000000000000",
                "2a00000000000000", // dev, ino
                "0100000000000000",
                "0000000000000000", // nlink, rdev
                "0100",
                "0600",
                "757365722e6b",
                "01000000",
                "76", // xattrs
                "01",
                "02000000", // content kind, extents
                "00",
                "0300000000000000",
                "0707070707070707070707070707070707070707070707070707070707070707",
                "01",
                "0010000000000000",
            ),
            "format changed, version bump required"
        );
        assert_eq!(decode_tree(&bytes).unwrap(), vec![n]);
    }

    #[test]
    fn hostile_names_are_rejected() {
        for bad in [&b".."[..], b".", b"a/b", b"", b"a\0b"] {
            let n = file_node(bad, vec![]);
            assert!(encode_tree(std::slice::from_ref(&n)).is_err());
            // Forge the bytes by hand: encode a good name of the same length, then patch it.
            let len = bad.len().max(1);
            let good = vec![b'x'; len];
            let mut bytes = encode_tree(&[file_node(&good, vec![])]).unwrap();
            bytes[9] = bad.len() as u8;
            if bad.is_empty() {
                bytes.remove(11);
            } else {
                bytes[11..11 + len].copy_from_slice(bad);
            }
            assert!(decode_tree(&bytes).is_err(), "accepted name {bad:?}");
        }
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let n = file_node(b"a", vec![]);
        assert!(encode_tree(&[n.clone(), n.clone()]).is_err());
        let one = encode_tree(std::slice::from_ref(&n)).unwrap();
        let mut two = one.clone();
        two[5] = 2;
        two.extend_from_slice(&one[9..]);
        assert!(matches!(
            decode_tree(&two),
            Err(FormatError::Invalid { .. })
        ));
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let n = file_node(
            b"file",
            vec![Extent::Data {
                id: BlobId([1; 32]),
                len: 10,
            }],
        );
        let bytes = encode_tree(&[n]).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode_tree(&bytes[..cut]).is_err(), "cut at {cut} accepted");
        }
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        let mut bytes = encode_tree(&[]).unwrap();
        bytes[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_tree(&bytes),
            Err(FormatError::TooLong { .. })
        ));
    }

    #[test]
    fn the_smallest_nodes_decode() {
        let mut fifo = file_node(b"p", vec![]);
        fifo.kind = NodeKind::Fifo;
        fifo.payload = Payload::Other;
        fifo.xattrs.clear();
        fifo.user.clear();
        fifo.group.clear();
        let bytes = encode_tree(std::slice::from_ref(&fifo)).unwrap();
        assert_eq!(bytes.len(), 9 + MIN_NODE_LEN);
        assert_eq!(decode_tree(&bytes).unwrap(), vec![fifo]);
        let mut empty = file_node(b"e", vec![]);
        empty.xattrs.clear();
        let many: Vec<Node> = (0..5u8)
            .map(|i| {
                let mut n = empty.clone();
                n.name = vec![b'a' + i];
                n
            })
            .collect();
        assert_eq!(decode_tree(&encode_tree(&many).unwrap()).unwrap(), many);
    }

    #[test]
    fn extents_must_add_up_to_size() {
        let mut n = file_node(b"f", vec![Extent::Hole { len: 10 }]);
        n.size = 11;
        assert!(
            encode_tree(std::slice::from_ref(&n)).is_err(),
            "encoder refuses it too"
        );
        n.size = 10;
        let mut bytes = encode_tree(&[n]).unwrap();
        // size is the first u64 after name (2+1), kind, mode/uid/gid, owners, times.
        let size_at = 9 + 3 + 1 + 12 + (2 + 4) + (2 + 5) + 24;
        assert_eq!(bytes[size_at], 10);
        bytes[size_at] = 11;
        assert!(decode_tree(&bytes).is_err());
    }

    fn arb_name() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 1..=255).prop_filter("valid name", |n| valid_name(n))
    }

    fn arb_node() -> impl Strategy<Value = Node> {
        (
            arb_name(),
            0u32..0o7777,
            any::<u32>(),
            any::<(i64, u32)>(),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 1..20),
                    proptest::collection::vec(any::<u8>(), 0..100),
                ),
                0..4,
            ),
            proptest::collection::vec((any::<bool>(), 1u64..1 << 20, any::<[u8; 32]>()), 0..6),
            0u8..3,
            proptest::collection::vec(1u8..=255, 1..200),
        )
            .prop_map(|(name, mode, uid, (s, ns), xattrs, ext, which, target)| {
                let extents: Vec<Extent> = ext
                    .into_iter()
                    .map(|(hole, len, id)| {
                        if hole {
                            Extent::Hole { len }
                        } else {
                            Extent::Data {
                                id: BlobId(id),
                                len,
                            }
                        }
                    })
                    .collect();
                let mut n = file_node(&name, extents);
                n.mode = mode;
                n.uid = uid;
                n.mtime = (s, ns % 1_000_000_000);
                n.xattrs = xattrs;
                match which {
                    1 => {
                        n.kind = NodeKind::Dir;
                        n.size = 0;
                        n.payload = Payload::Dir(BlobId([9; 32]));
                    }
                    2 => {
                        n.kind = NodeKind::Symlink;
                        n.size = target.len() as u64;
                        n.payload = Payload::Symlink(target);
                    }
                    _ => {}
                }
                n
            })
    }

    proptest! {
        #[test]
        fn trees_round_trip(mut nodes in proptest::collection::vec(arb_node(), 0..8)) {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            nodes.dedup_by(|a, b| a.name == b.name);
            let bytes = encode_tree(&nodes).unwrap();
            prop_assert_eq!(decode_tree(&bytes).unwrap(), nodes);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_tree(&bytes);
        }
    }
}
