//! The snapshot's root: each source made into a node at its snapshot path (streams
//! first, so a failing command stops the ingest before any directory is walked; then
//! paths), with directories made up to hold sources named with '/', stored bottom-up
//! without recursion.

use super::context::Context;
use super::error::IngestError;
use super::source::SourceSpec;
use super::stream::{command_node, stdin_node};
use super::walk::Walker;
use crate::format::BlobId;
use crate::format::tree::{Node, NodeKind, Payload};
use std::collections::{BTreeMap, btree_map};

/// One level of the root being assembled: a source's node, or a directory made up to
/// hold sources named with '/'.
enum Entry {
    Node(Node),
    Dir(BTreeMap<Vec<u8>, Entry>),
}

/// Ingests every source; returns the root tree id.
pub fn build(ctx: &mut Context, parent_root: Option<BlobId>) -> Result<BlobId, IngestError> {
    let parent = parent_root.map(|r| crate::tree::root_node(r, (0, 0)));
    let mut walker = Walker::new(ctx);
    let mut root: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
    let opts = ctx.opts;
    let sources = opts.sources.iter();
    let (streams, paths): (Vec<&SourceSpec>, Vec<&SourceSpec>) =
        sources.partition(|s| !matches!(s, SourceSpec::Path { .. }));
    for src in streams.into_iter().chain(paths) {
        let comps = src.components();
        let snap_path = comps.join(&b'/');
        let name = comps.last().cloned().unwrap_or_default();
        let parent_node = match &parent {
            Some(p) => crate::tree::lookup(ctx.archive, p, &snap_path).unwrap_or(None),
            None => None,
        };
        let node = match src {
            SourceSpec::Stdin { .. } => Some(stdin_node(ctx, &name)?),
            SourceSpec::Command { command, .. } => Some(command_node(ctx, command, &name)?),
            SourceSpec::Path { path, .. } => {
                walker.path_node(ctx, path, &name, &snap_path, parent_node.as_ref())?
            }
        };
        let Some(node) = node else { continue };
        let mut level = &mut root;
        for c in &comps[..comps.len() - 1] {
            let e = level
                .entry(c.clone())
                .or_insert_with(|| Entry::Dir(BTreeMap::new()));
            let Entry::Dir(m) = e else {
                unreachable!("source::check rules out a source inside another")
            };
            level = m;
        }
        level.insert(name, Entry::Node(node));
    }
    assemble(ctx, root)
}

/// Stores the levels bottom-up (each made-up directory after its contents); returns
/// the root tree id.
fn assemble(ctx: &mut Context, root: BTreeMap<Vec<u8>, Entry>) -> Result<BlobId, IngestError> {
    type Level = (Vec<u8>, btree_map::IntoIter<Vec<u8>, Entry>, Vec<Node>);
    let mut stack: Vec<Level> = vec![(Vec::new(), root.into_iter(), Vec::new())];
    loop {
        let top = stack.last_mut().expect("the stack is never empty here");
        match top.1.next() {
            Some((_, Entry::Node(n))) => top.2.push(n),
            Some((name, Entry::Dir(m))) => stack.push((name, m.into_iter(), Vec::new())),
            None => {
                let (name, _, nodes) = stack.pop().expect("checked above");
                let id = ctx.store_tree(&nodes)?;
                let Some(up) = stack.last_mut() else {
                    return Ok(id);
                };
                let mut n = ctx.synthetic(&name, NodeKind::Dir, 0o755);
                n.nlink = 2;
                n.payload = Payload::Dir(id);
                up.2.push(n);
            }
        }
    }
}
