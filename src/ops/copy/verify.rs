//! Verifying a committed copy from DST: the record read back, every tree re-read
//! (hash-checked and decoded), every chunk's record header matched with the index (or,
//! with [`Verify::ReadData`], the chunk read whole); what the run verified before is not
//! read again.

use super::*;
use crate::format::tree::Node;
use crate::tree::Visitor;

impl Run<'_> {
    /// Checks the committed copy from DST ([`Verify`]).
    pub(super) fn verify(
        &mut self,
        src_id: &BlobId,
        id: BlobId,
        written: &Snapshot,
    ) -> Result<(), CopyError> {
        let fail = |source| CopyError::Verify {
            path: self.dst.root().to_path_buf(),
            snapshot: src_id.short(),
            copy: id.short(),
            source: Box::new(source),
        };
        let record = self.dst.load_snapshot(&id).map_err(fail)?;
        if record != *written {
            return Err(fail(ArchiveError::Invalid(
                "the snapshot record read back differs from the one written".into(),
            )));
        }
        let mut v = Verifier {
            dst: self.dst,
            read_data: self.opts.verify == Verify::ReadData,
            trees: &mut self.verified_trees,
            chunks: &mut self.verified_chunks,
        };
        let root = crate::tree::root_node(record.root, record.time);
        if v.trees.insert(record.root) {
            crate::tree::walk(self.dst, &root, &mut (), &mut v).map_err(fail)?;
        }
        Ok(())
    }
}

/// Walks a copied snapshot in DST, checking what [`Verify`] says, each tree and chunk
/// once per run.
struct Verifier<'v> {
    dst: &'v Archive,
    read_data: bool,
    trees: &'v mut HashSet<BlobId>,
    chunks: &'v mut HashSet<BlobId>,
}

impl Visitor for Verifier<'_> {
    type Frame = ();
    type Error = ArchiveError;

    fn visit(&mut self, _: &mut (), _: &[u8], node: &Node) -> Result<Option<()>, ArchiveError> {
        for r in crate::tree::refs(node) {
            match r {
                crate::tree::Ref::Tree(id) => {
                    // Reading it (hash-verified, decoded) is the walker's descent.
                    if self.trees.insert(id) {
                        return Ok(Some(()));
                    }
                }
                crate::tree::Ref::Chunk(id) => {
                    if !self.chunks.insert(id) {
                        continue;
                    }
                    if self.read_data {
                        self.dst.read_verified(&id, true)?;
                    } else {
                        let loc = self.dst.location(&id)?;
                        self.dst.check_header(&id, &loc)?;
                    }
                }
            }
        }
        Ok(None)
    }
}
