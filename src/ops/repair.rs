//! `repair`: rebuilds `index.sqlite` from the packs alone. The archive surveys the packs
//! and writes the new index ([`crate::archive::rebuild`]); this decides what goes in it:
//! every snapshot record found is registered when every blob it reaches exists, and
//! listed with the reason when not; a snapshot named by a forget record is not
//! registered; one the old index listed that is found nowhere is reported as lost.

use crate::archive::ArchiveError;
use crate::archive::rebuild::{Rebuild, Survey, survey_packs};
use crate::format::BlobId;
use crate::format::forget::ForgetRecord;
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Node;
use crate::tree::{Ref, Trees};
use std::collections::HashSet;
use std::path::Path;

#[derive(Default, Debug)]
pub struct RepairReport {
    /// What surveying the packs found and did (damage, gaps, torn tails, strays).
    pub survey: Survey,
    pub recovered: Vec<(BlobId, String)>,
    pub incomplete: Vec<(BlobId, String)>,
    /// Snapshot records found but named by a forget record (not registered).
    pub forgotten: u64,
}

impl RepairReport {
    /// True when something could not be recovered (the CLI exits 3).
    pub fn lost_something(&self) -> bool {
        let s = &self.survey;
        !(self.incomplete.is_empty()
            && s.damaged.is_empty()
            && s.gaps.is_empty()
            && s.unreadable.is_empty()
            && s.cut.is_empty())
    }
}

/// A bucket archive's repair: this host's cached index is learned again from the bucket
/// (its pack indexes, or packs read whole); every snapshot the bucket holds is listed as
/// recovered, a pack that cannot be read as unreadable.
fn repair_bucket(
    root: &Path,
    unlock: Option<&crate::archive::Password>,
) -> Result<RepairReport, ArchiveError> {
    let archive = crate::archive::Archive::open_with(root, unlock)?;
    let sync = archive.rebuild_from_bucket()?;
    let mut report = RepairReport::default();
    report.survey.packs = sync.new_packs;
    report.survey.blobs = archive.blobs()?.len() as u64;
    report.survey.unreadable = sync.skipped;
    for row in archive.snapshots()? {
        let what = format!(
            "{} {}",
            crate::sys::rfc3339(row.time.0, 0, false),
            row.label
        );
        report.recovered.push((row.id, what));
    }
    Ok(report)
}

/// Rebuilds the index of the archive at `root` from its packs; an encrypted archive
/// needs `unlock`.
pub fn repair(
    root: &Path,
    unlock: Option<&crate::archive::Password>,
) -> Result<RepairReport, ArchiveError> {
    if matches!(
        crate::store::url::ArchiveUrl::parse(root),
        Ok(crate::store::url::ArchiveUrl::Bucket(_))
    ) {
        return repair_bucket(root, unlock);
    }
    let (rebuild, survey) = survey_packs(root, unlock)?;
    let mut report = RepairReport {
        survey,
        ..RepairReport::default()
    };

    // Snapshots: register those whose every reachable blob exists, unless a forget
    // record names them.
    let mut forgotten: HashSet<BlobId> = HashSet::new();
    for id in rebuild.of_kind(BlobKind::Forget) {
        match rebuild
            .read(&id)
            .map_err(|e| e.to_string())
            .and_then(|b| ForgetRecord::decode(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => forgotten.extend(r.snapshots),
            Err(e) => report
                .incomplete
                .push((id, format!("forget record unreadable: {e}"))),
        }
    }
    let mut snapshots: Vec<(BlobId, Snapshot)> = Vec::new();
    let mut check = Completeness {
        rebuild: &rebuild,
        complete: HashSet::new(),
    };
    for id in rebuild.of_kind(BlobKind::Snapshot) {
        if forgotten.contains(&id) {
            report.forgotten += 1;
            continue;
        }
        let snap = match rebuild
            .read(&id)
            .map_err(|e| e.to_string())
            .and_then(|b| Snapshot::decode(&b).map_err(|e| e.to_string()))
        {
            Ok(s) => s,
            Err(e) => {
                report
                    .incomplete
                    .push((id, format!("snapshot record unreadable: {e}")));
                continue;
            }
        };
        match check.reachable_complete(snap.root) {
            Ok(()) => {
                let what = format!(
                    "{} {}",
                    crate::sys::rfc3339(snap.time.0, 0, false),
                    snap.label
                );
                report.recovered.push((id, what));
                snapshots.push((id, snap));
            }
            Err(why) => report.incomplete.push((id, why)),
        }
    }
    // Commit order: where each record lies in the packs (as the index lists them).
    let order = |id: &BlobId| rebuild.position(id);
    snapshots.sort_by_key(|(id, _)| order(id));
    report.recovered.sort_by_key(|(id, _)| order(id));
    for old in rebuild.old_snapshots() {
        let found = snapshots.iter().any(|(id, _)| *id == old.id)
            || report.incomplete.iter().any(|(id, _)| *id == old.id)
            || forgotten.contains(&old.id);
        if !found {
            report.incomplete.push((
                old.id,
                "the old index listed it, but its snapshot record is in no pack any more (lost with a damaged pack)".into(),
            ));
        }
    }
    rebuild.write_index(&snapshots)?;
    report.recovered.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(report)
}

impl Trees for Rebuild {
    fn tree_bytes(&self, id: &BlobId) -> Result<Vec<u8>, ArchiveError> {
        self.read(id)
    }
}

/// Whether every tree a snapshot reaches is present and decodes, and every chunk
/// exists. `complete` remembers trees whose whole subtree was verified (only those: a
/// tree is added after all its children passed, so a damaged subtree shared by several
/// snapshots fails each of them).
struct Completeness<'a> {
    rebuild: &'a Rebuild,
    complete: HashSet<BlobId>,
}

/// Why a snapshot is incomplete, or an error reading the archive.
enum Stop {
    Incomplete(String),
    Archive(ArchiveError),
}

impl From<ArchiveError> for Stop {
    fn from(e: ArchiveError) -> Stop {
        Stop::Archive(e)
    }
}

impl Completeness<'_> {
    fn reachable_complete(&mut self, root: BlobId) -> Result<(), String> {
        let node = crate::tree::root_node(root, (0, 0));
        let (rebuild, mut top) = (self.rebuild, root);
        match crate::tree::walk_node(rebuild, &mut top, &node, self) {
            Ok(()) => Ok(()),
            Err(Stop::Incomplete(why)) => Err(why),
            Err(Stop::Archive(e)) => Err(e.to_string()),
        }
    }
}

impl crate::tree::Visitor for Completeness<'_> {
    type Frame = BlobId;
    type Error = Stop;

    fn visit(&mut self, _: &mut BlobId, _: &[u8], n: &Node) -> Result<Option<BlobId>, Stop> {
        let mut descend = None;
        for r in crate::tree::refs(n) {
            match r {
                Ref::Chunk(id) if !self.rebuild.contains(&id) => {
                    return Err(Stop::Incomplete(format!(
                        "chunk {} of {} is missing",
                        id.short(),
                        String::from_utf8_lossy(&n.name)
                    )));
                }
                Ref::Chunk(_) => {}
                Ref::Tree(tree) if self.complete.contains(&tree) => {}
                Ref::Tree(tree) if !self.rebuild.contains(&tree) => {
                    return Err(Stop::Incomplete(format!(
                        "tree {} is missing",
                        tree.short()
                    )));
                }
                Ref::Tree(tree) => descend = Some(tree),
            }
        }
        Ok(descend)
    }

    fn leave(&mut self, _: &mut BlobId, tree: BlobId, _: &[u8], _: &Node) -> Result<(), Stop> {
        self.complete.insert(tree);
        Ok(())
    }

    fn unreadable(
        &mut self,
        _: &mut BlobId,
        tree: BlobId,
        _: &[u8],
        _: &Node,
        e: ArchiveError,
    ) -> Result<(), Stop> {
        let e = match e {
            ArchiveError::Pack(e) => e.to_string(),
            ArchiveError::Format { source, .. } => source.to_string(),
            e => e.to_string(),
        };
        Err(Stop::Incomplete(format!("tree {}: {e}", tree.short())))
    }
}
