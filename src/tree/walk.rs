//! The one tree walker: depth-first, parents before children, entries in name order,
//! with an explicit stack (no recursion, so no thread needs more than the default
//! stack however deep the trees nest). Check, diff, restore, retention, repair and `ls`
//! each pass a [`Visitor`] (or, for diff, a [`PairVisitor`]) saying what to do at a node.
//!
//! Invariants:
//! - Depth is bounded here and only here: a tree more than [`WALK_LIMIT`] levels below
//!   the start is refused (a hostile archive can chain trees without end), with one
//!   error text for every caller. Ingest stores at most [`MAX_DEPTH`] levels below a
//!   source, and a walk from the snapshot root sees the source itself as one more level.
//! - Memory holds the trees on the current path only: each level keeps its tree's nodes
//!   decoded (or, for a streaming visitor, its bytes and a cursor), however many paths
//!   there are below.
//! - A subtree the visitor declines (`None`) is not read at all: that is how callers
//!   visit a subtree shared by many snapshots once.

use super::MAX_DEPTH;

/// The deepest level a walk descends to: [`MAX_DEPTH`] below a source, plus the source.
pub const WALK_LIMIT: usize = MAX_DEPTH + 1;
use crate::archive::{Archive, ArchiveError};
use crate::format::BlobId;
use crate::format::tree::{Node, TreeCursor, decode_tree};
use std::cmp::Ordering;

/// Where the walker reads trees: the archive, or (for repair) the packs surveyed
/// before there is an index.
pub trait Trees {
    /// A tree's bytes, verified against its id.
    fn tree_bytes(&self, id: &BlobId) -> Result<Vec<u8>, ArchiveError>;
}

impl Trees for Archive {
    fn tree_bytes(&self, id: &BlobId) -> Result<Vec<u8>, ArchiveError> {
        self.read_verified(id, true)
    }
}

/// What to do at each node of a walk. A `Frame` is what a caller keeps per directory
/// while its entries are walked (restore keeps the directory's descriptor there).
pub trait Visitor {
    type Frame;
    type Error: From<ArchiveError>;

    /// Decode each tree node by node while its entries are visited (memory: the bytes
    /// of the trees on the path), rather than whole before the first is visited. A tree
    /// found malformed part-way has then had its earlier entries visited.
    const STREAM: bool = false;

    /// `node` at `path`, inside the directory whose frame is `parent`. `Some(frame)`
    /// descends into the node's subtree with that frame; `None` skips it (or the node
    /// has none).
    fn visit(
        &mut self,
        parent: &mut Self::Frame,
        path: &[u8],
        node: &Node,
    ) -> Result<Option<Self::Frame>, Self::Error>;

    /// After every entry below the directory `node` was visited.
    fn leave(
        &mut self,
        _parent: &mut Self::Frame,
        _frame: Self::Frame,
        _path: &[u8],
        _node: &Node,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The subtree of `node` cannot be read (or, streaming, stopped decoding part-way).
    /// By default the walk stops with the error; a caller that goes on returns `Ok`.
    fn unreadable(
        &mut self,
        _parent: &mut Self::Frame,
        _frame: Self::Frame,
        _path: &[u8],
        _node: &Node,
        error: ArchiveError,
    ) -> Result<(), Self::Error> {
        Err(error.into())
    }

    /// The subtree of `node` nests deeper than [`MAX_DEPTH`]: not read. By default the
    /// walk stops with `error`.
    fn too_deep(
        &mut self,
        _parent: &mut Self::Frame,
        _frame: Self::Frame,
        _path: &[u8],
        _node: &Node,
        error: ArchiveError,
    ) -> Result<(), Self::Error> {
        Err(error.into())
    }
}

/// The error for a subtree at `path` nested too deep.
fn too_deep_error(path: &[u8]) -> ArchiveError {
    ArchiveError::Invalid(format!(
        "tree deeper than {MAX_DEPTH} levels at {:?} (damaged or hostile archive)",
        String::from_utf8_lossy(path)
    ))
}

/// A tree's entries still to visit.
enum Entries {
    Whole(std::vec::IntoIter<Node>),
    Stream(BlobId, TreeCursor<Vec<u8>>),
}

impl Entries {
    fn open(trees: &impl Trees, id: BlobId, stream: bool) -> Result<Entries, ArchiveError> {
        let bytes = trees.tree_bytes(&id)?;
        let format = |source| ArchiveError::Format {
            what: "tree",
            id,
            source,
        };
        Ok(if stream {
            Entries::Stream(id, TreeCursor::new(bytes).map_err(format)?)
        } else {
            Entries::Whole(decode_tree(&bytes).map_err(format)?.into_iter())
        })
    }

    fn next(&mut self) -> Result<Option<Node>, ArchiveError> {
        match self {
            Entries::Whole(it) => Ok(it.next()),
            Entries::Stream(id, c) => c.next_node().map_err(|source| ArchiveError::Format {
                what: "tree",
                id: *id,
                source,
            }),
        }
    }
}

/// One directory being walked: its entries, and (above the start) its node and frame.
struct Level<F> {
    entries: Entries,
    /// Length of the directory's path in the walk's path buffer.
    path_end: usize,
    depth: usize,
    /// `None` for the start tree of [`walk`], whose frame is the caller's.
    own: Option<(Node, F)>,
}

/// Visits everything below `dir` (not `dir` itself) with paths relative to it; `frame`
/// is the frame of `dir`. A start tree that cannot be read is an error.
pub fn walk<V: Visitor>(
    trees: &impl Trees,
    dir: &Node,
    frame: &mut V::Frame,
    v: &mut V,
) -> Result<(), V::Error> {
    let Some(id) = dir.subtree() else {
        return Ok(());
    };
    let level = Level {
        entries: Entries::open(trees, id, V::STREAM)?,
        path_end: 0,
        depth: 0,
        own: None,
    };
    run(trees, frame, vec![level], Vec::new(), v)
}

/// Visits `node` itself (at the path of its name, inside the directory whose frame is
/// `parent`), then everything below it.
pub fn walk_node<V: Visitor>(
    trees: &impl Trees,
    parent: &mut V::Frame,
    node: &Node,
    v: &mut V,
) -> Result<(), V::Error> {
    let path = node.name.clone();
    let mut stack = Vec::new();
    if let Some(frame) = v.visit(parent, &path, node)?
        && let Some(level) = descend(trees, v, parent, &path, node.clone(), frame, 0)?
    {
        stack.push(level);
    }
    run(trees, parent, stack, path, v)
}

/// Opens the subtree of `node` (at `path`, `depth` levels below the start) as a new
/// level, or tells the visitor why it cannot be (then there is none to walk).
fn descend<V: Visitor>(
    trees: &impl Trees,
    v: &mut V,
    parent: &mut V::Frame,
    path: &[u8],
    node: Node,
    frame: V::Frame,
    depth: usize,
) -> Result<Option<Level<V::Frame>>, V::Error> {
    let Some(id) = node.subtree() else {
        v.leave(parent, frame, path, &node)?;
        return Ok(None);
    };
    if depth > WALK_LIMIT {
        v.too_deep(parent, frame, path, &node, too_deep_error(path))?;
        return Ok(None);
    }
    match Entries::open(trees, id, V::STREAM) {
        Ok(entries) => Ok(Some(Level {
            entries,
            path_end: path.len(),
            depth,
            own: Some((node, frame)),
        })),
        Err(e) => {
            v.unreadable(parent, frame, path, &node, e)?;
            Ok(None)
        }
    }
}

/// The frame of the innermost level, or `base` when that is the start of [`walk`].
fn frame_of<'a, F>(stack: &'a mut [Level<F>], base: &'a mut F) -> &'a mut F {
    match stack.last_mut().and_then(|l| l.own.as_mut()) {
        Some((_, f)) => f,
        None => base,
    }
}

fn run<V: Visitor>(
    trees: &impl Trees,
    base: &mut V::Frame,
    mut stack: Vec<Level<V::Frame>>,
    mut path: Vec<u8>,
    v: &mut V,
) -> Result<(), V::Error> {
    while let Some(mut top) = stack.pop() {
        path.truncate(top.path_end);
        match top.entries.next() {
            Ok(Some(child)) => {
                let depth = top.depth + 1;
                stack.push(top);
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(&child.name);
                if let Some(frame) = v.visit(frame_of(&mut stack, base), &path, &child)? {
                    let parent = frame_of(&mut stack, base);
                    if let Some(level) = descend(trees, v, parent, &path, child, frame, depth)? {
                        stack.push(level);
                    }
                }
            }
            done => {
                let Some((node, frame)) = top.own else {
                    // The start tree of `walk`: nothing to leave.
                    done?;
                    continue;
                };
                let parent = frame_of(&mut stack, base);
                match done {
                    Ok(_) => v.leave(parent, frame, &path, &node)?,
                    Err(e) => v.unreadable(parent, frame, &path, &node, e)?,
                }
            }
        }
    }
    Ok(())
}

/// What to do at each name of a pairwise walk (diff).
pub trait PairVisitor {
    type Error: From<ArchiveError>;

    /// The entry named at `path` in the old tree, the new one, or both. Returns the
    /// subtrees to walk next, pairwise (`None` on a side: nothing there); equal ids are
    /// skipped, so whatever both sides share costs nothing.
    fn visit(
        &mut self,
        path: &[u8],
        old: Option<&Node>,
        new: Option<&Node>,
    ) -> Result<(Option<BlobId>, Option<BlobId>), Self::Error>;
}

/// One pair of directories being merged.
struct Pair {
    old: std::iter::Peekable<std::vec::IntoIter<Node>>,
    new: std::iter::Peekable<std::vec::IntoIter<Node>>,
    path_end: usize,
    depth: usize,
}

impl Pair {
    fn open(
        trees: &impl Trees,
        old: Option<BlobId>,
        new: Option<BlobId>,
        path: &[u8],
        depth: usize,
    ) -> Result<Pair, ArchiveError> {
        if depth > WALK_LIMIT {
            return Err(too_deep_error(path));
        }
        let read = |id: Option<BlobId>| match id {
            Some(id) => {
                let bytes = trees.tree_bytes(&id)?;
                decode_tree(&bytes).map_err(|source| ArchiveError::Format {
                    what: "tree",
                    id,
                    source,
                })
            }
            None => Ok(Vec::new()),
        };
        Ok(Pair {
            old: read(old)?.into_iter().peekable(),
            new: read(new)?.into_iter().peekable(),
            path_end: path.len(),
            depth,
        })
    }
}

/// Walks two trees in step (`None`: an empty tree), entries merged by name, in path
/// order; subtrees with equal ids on both sides are skipped.
pub fn walk_pair<V: PairVisitor>(
    trees: &impl Trees,
    old: Option<BlobId>,
    new: Option<BlobId>,
    v: &mut V,
) -> Result<(), V::Error> {
    if old == new {
        return Ok(());
    }
    let mut path = Vec::new();
    let mut stack = vec![Pair::open(trees, old, new, &path, 0)?];
    while let Some(top) = stack.last_mut() {
        path.truncate(top.path_end);
        let ord = match (top.old.peek(), top.new.peek()) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => {
                stack.pop();
                continue;
            }
        };
        let (x, y) = match ord {
            Ordering::Less => (top.old.next(), None),
            Ordering::Greater => (None, top.new.next()),
            Ordering::Equal => (top.old.next(), top.new.next()),
        };
        let name = match (&x, &y) {
            (Some(n), _) | (None, Some(n)) => &n.name,
            (None, None) => continue,
        };
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        let depth = top.depth + 1;
        let (a, b) = v.visit(&path, x.as_ref(), y.as_ref())?;
        if a != b {
            stack.push(Pair::open(trees, a, b, &path, depth)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::testkit::node;
    use crate::archive::{Config, WriteSession};
    use crate::format::pack::BlobKind;
    use crate::format::tree::{Extent, NodeKind, Payload};
    use std::collections::HashSet;

    fn file(name: &str) -> Node {
        node(name, NodeKind::File, Payload::File(Vec::new()))
    }

    fn dir(name: &str, id: BlobId) -> Node {
        node(name, NodeKind::Dir, Payload::Dir(id))
    }

    /// A real archive in a temp dir; `build` stores trees and returns the root tree,
    /// committed as a snapshot so every blob is in the index.
    fn fixture(
        build: impl FnOnce(&mut WriteSession<'_>) -> BlobId,
    ) -> (tempfile::TempDir, Archive, Node) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a");
        Archive::init(&path, &Config::new(64 << 10, 3, false)).unwrap();
        let archive = Archive::open(&path).unwrap();
        let mut s = archive.begin_write().unwrap();
        let root = build(&mut s);
        let mut snap = crate::archive::testkit::snapshot(root);
        s.commit(&mut snap).unwrap();
        (tmp, archive, super::super::root_node(root, (0, 0)))
    }

    /// Records what the walker asks, in order; descends unless the subtree is in `skip`.
    #[derive(Default)]
    struct Recorder<const S: bool> {
        log: Vec<String>,
        skip: HashSet<BlobId>,
        go_on: bool,
    }

    impl<const S: bool> Visitor for Recorder<S> {
        /// The directory's own path, to show the frame handed back is the right one.
        type Frame = String;
        type Error = ArchiveError;
        const STREAM: bool = S;

        fn visit(
            &mut self,
            parent: &mut String,
            path: &[u8],
            n: &Node,
        ) -> Result<Option<String>, ArchiveError> {
            let path = String::from_utf8_lossy(path).into_owned();
            self.log.push(format!("visit {path} in {parent:?}"));
            Ok(n.subtree()
                .filter(|id| !self.skip.contains(id))
                .map(|_| path))
        }

        fn leave(
            &mut self,
            parent: &mut String,
            frame: String,
            path: &[u8],
            _: &Node,
        ) -> Result<(), ArchiveError> {
            assert_eq!(frame, String::from_utf8_lossy(path));
            self.log.push(format!("leave {frame} in {parent:?}"));
            Ok(())
        }

        fn unreadable(
            &mut self,
            _: &mut String,
            frame: String,
            _: &[u8],
            _: &Node,
            e: ArchiveError,
        ) -> Result<(), ArchiveError> {
            if !self.go_on {
                return Err(e);
            }
            self.log.push(format!("unreadable {frame}"));
            Ok(())
        }
    }

    /// root: a/ (x, y/ (z)), b
    fn nested(s: &mut WriteSession<'_>) -> BlobId {
        let y = s.put_tree(&[file("z")]).unwrap();
        let a = s.put_tree(&[file("x"), dir("y", y)]).unwrap();
        s.put_tree(&[dir("a", a), file("b")]).unwrap()
    }

    fn nested_log() -> Vec<&'static str> {
        vec![
            "visit a in \"top\"",
            "visit a/x in \"a\"",
            "visit a/y in \"a\"",
            "visit a/y/z in \"a/y\"",
            "leave a/y in \"a\"",
            "leave a in \"top\"",
            "visit b in \"top\"",
        ]
    }

    #[test]
    fn parents_come_before_children_names_in_order_and_leave_after_the_children() {
        let (_t, archive, root) = fixture(nested);
        let mut whole = Recorder::<false>::default();
        walk(&archive, &root, &mut "top".to_string(), &mut whole).unwrap();
        assert_eq!(whole.log, nested_log());
        let mut streamed = Recorder::<true>::default();
        walk(&archive, &root, &mut "top".to_string(), &mut streamed).unwrap();
        assert_eq!(
            streamed.log,
            nested_log(),
            "streaming visits in the same order"
        );
    }

    #[test]
    fn walk_node_visits_the_node_itself_first_and_leaves_it_last() {
        let (_t, archive, root) = fixture(nested);
        let mut r = Recorder::<false>::default();
        walk_node(&archive, &mut "top".to_string(), &root, &mut r).unwrap();
        assert_eq!(r.log.first().unwrap(), "visit  in \"top\"");
        assert_eq!(r.log.last().unwrap(), "leave  in \"top\"");
        assert_eq!(r.log.len(), nested_log().len() + 2);
    }

    #[test]
    fn a_subtree_the_visitor_declines_is_not_walked() {
        let (_t, archive, root) = fixture(|s| {
            let shared = s.put_tree(&[file("f")]).unwrap();
            let other = s.put_tree(&[file("g")]).unwrap();
            s.put_tree(&[dir("a", shared), dir("b", other), dir("c", shared)])
                .unwrap()
        });
        let shared = archive.read_tree(&root.subtree().unwrap()).unwrap()[0]
            .subtree()
            .unwrap();
        let mut r = Recorder::<false> {
            skip: HashSet::from([shared]),
            ..Recorder::default()
        };
        walk(&archive, &root, &mut String::new(), &mut r).unwrap();
        assert_eq!(
            r.log,
            [
                "visit a in \"\"",
                "visit b in \"\"",
                "visit b/g in \"b\"",
                "leave b in \"\"",
                "visit c in \"\""
            ]
        );
    }

    #[test]
    fn an_unreadable_subtree_is_reported_and_the_walk_goes_on() {
        let (_t, archive, root) = fixture(|s| {
            let garbage = s.put(BlobKind::Chunk, b"not a tree").unwrap();
            let ok = s.put_tree(&[file("f")]).unwrap();
            let missing = BlobId([7; 32]);
            s.put_tree(&[dir("a", garbage), dir("b", missing), dir("c", ok)])
                .unwrap()
        });
        for stream in [false, true] {
            let mut whole = Recorder::<false> {
                go_on: true,
                ..Recorder::default()
            };
            let mut streamed = Recorder::<true> {
                go_on: true,
                ..Recorder::default()
            };
            let log = if stream {
                walk(&archive, &root, &mut String::new(), &mut streamed).unwrap();
                streamed.log
            } else {
                walk(&archive, &root, &mut String::new(), &mut whole).unwrap();
                whole.log
            };
            assert_eq!(
                log,
                [
                    "visit a in \"\"",
                    "unreadable a",
                    "visit b in \"\"",
                    "unreadable b",
                    "visit c in \"\"",
                    "visit c/f in \"c\"",
                    "leave c in \"\""
                ]
            );
        }
        // By default the walk stops there.
        let e = walk(
            &archive,
            &root,
            &mut String::new(),
            &mut Recorder::<false>::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("tree"), "{e}");
    }

    fn chain(depth: usize) -> impl FnOnce(&mut WriteSession<'_>) -> BlobId {
        move |s| {
            let mut id = s.put_tree(&[file("bottom")]).unwrap();
            for _ in 0..depth {
                id = s.put_tree(&[dir("d", id)]).unwrap();
            }
            id
        }
    }

    #[test]
    fn trees_nest_to_the_limit_and_a_deeper_chain_is_refused_on_a_default_stack() {
        // The test thread has the default stack: no level may cost a stack frame.
        let (_t, archive, root) = fixture(chain(WALK_LIMIT));
        let mut r = Recorder::<true>::default();
        walk(&archive, &root, &mut String::new(), &mut r).unwrap();
        assert_eq!(
            r.log.iter().filter(|l| l.starts_with("visit")).count(),
            WALK_LIMIT + 1
        );

        let (_t, archive, root) = fixture(chain(MAX_DEPTH + 5));
        let e = walk(
            &archive,
            &root,
            &mut String::new(),
            &mut Recorder::<false>::default(),
        )
        .unwrap_err();
        let deep = vec!["d"; WALK_LIMIT + 1].join("/");
        assert_eq!(
            e.to_string(),
            format!("tree deeper than {MAX_DEPTH} levels at {deep:?} (damaged or hostile archive)")
        );
        let e = walk_pair(&archive, None, root.subtree(), &mut Pairs::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("tree deeper than {MAX_DEPTH} levels at {deep:?} (damaged or hostile archive)")
        );
    }

    /// Records the paths a pairwise walk visits; walks on into both sides.
    #[derive(Default)]
    struct Pairs(Vec<String>);

    impl PairVisitor for Pairs {
        type Error = ArchiveError;
        fn visit(
            &mut self,
            path: &[u8],
            old: Option<&Node>,
            new: Option<&Node>,
        ) -> Result<(Option<BlobId>, Option<BlobId>), ArchiveError> {
            let side = match (old, new) {
                (Some(_), Some(_)) => "both",
                (Some(_), None) => "old",
                _ => "new",
            };
            self.0
                .push(format!("{} {side}", String::from_utf8_lossy(path)));
            Ok((old.and_then(Node::subtree), new.and_then(Node::subtree)))
        }
    }

    #[test]
    fn the_pairwise_walk_merges_names_and_skips_identical_subtrees() {
        let mut ids = (BlobId([0; 32]), BlobId([0; 32]));
        let (_t, archive, _) = fixture(|s| {
            let same = s.put_tree(&[file("deep")]).unwrap();
            let gone = s.put_tree(&[file("g")]).unwrap();
            let chunk = s.put(BlobKind::Chunk, b"x").unwrap();
            let mut changed = file("m");
            changed.size = 1;
            changed.payload = Payload::File(vec![Extent::Data { id: chunk, len: 1 }]);
            let d_old = s.put_tree(&[file("m")]).unwrap();
            let d_new = s.put_tree(&[changed]).unwrap();
            let old = s
                .put_tree(&[dir("d", d_old), dir("gone", gone), dir("same", same)])
                .unwrap();
            let new = s
                .put_tree(&[dir("d", d_new), file("new"), dir("same", same)])
                .unwrap();
            ids = (old, new);
            new
        });
        let mut p = Pairs::default();
        walk_pair(&archive, Some(ids.0), Some(ids.1), &mut p).unwrap();
        assert_eq!(
            p.0,
            [
                "d both",
                "d/m both",
                "gone old",
                "gone/g old",
                "new new",
                "same both"
            ]
        );
        let mut p = Pairs::default();
        walk_pair(&archive, Some(ids.0), Some(ids.0), &mut p).unwrap();
        assert!(p.0.is_empty());
    }
}
