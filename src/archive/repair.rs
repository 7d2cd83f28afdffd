//! `repair`: rebuilds `index.sqlite` from the packs alone. Every pack is surveyed record
//! by record (continuing past damage); every snapshot record found is registered when
//! every blob it reaches exists, and listed with the reason when not; a torn tail left
//! by a crash is copied to `quarantine/` and cut from its (never sealed) pack; nothing
//! that cannot be accounted for is deleted without saying so. An entry of packs/ named
//! like a pack that is not a regular file is skipped with a warning.
//!
//! Snapshots are registered in commit order without writing any order down: the index
//! lists them by the location of their records (pack number, then offset), which is the
//! order they were committed in (see `docs/FORMAT.md`, "Commit order").

use super::{Archive, ArchiveError, INDEX_FILE, LOCK_FILE, QUARANTINE_DIR, io, local_store};
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Extent, decode_tree};
use crate::format::{BlobId, PackId};
use crate::index::Index;
use crate::packs::{Codec, Location, PackError, PackReader, survey_pack};
use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Default, Debug)]
pub struct RepairReport {
    pub packs: u64,
    pub blobs: u64,
    /// Records whose stored bytes fail their crc32 (indexed, so reads of them fail
    /// loudly and `check` names the files they damage).
    pub damaged: Vec<(PackId, u64, BlobId)>,
    /// Undecodable stretches inside packs: (pack, start, end).
    pub gaps: Vec<(PackId, u64, u64)>,
    /// Torn tails set aside: (pack, offset, bytes, where the bytes were put).
    pub torn: Vec<(PackId, u64, u64, String)>,
    /// Pack files that are not packs (bad header): moved to quarantine.
    pub unreadable: Vec<(String, String)>,
    pub recovered: Vec<(BlobId, String)>,
    pub incomplete: Vec<(BlobId, String)>,
    /// Snapshot records found but named by a forget record (not registered).
    pub forgotten: u64,
    /// Entries of packs/ named like packs that are not regular files: (name, why).
    pub skipped: Vec<(String, String)>,
    /// Packs the old index knew that are now shorter: (file name, what happened).
    pub cut: Vec<(String, String)>,
}

impl RepairReport {
    /// True when something could not be recovered (the CLI exits 3).
    pub fn lost_something(&self) -> bool {
        !(self.incomplete.is_empty()
            && self.damaged.is_empty()
            && self.gaps.is_empty()
            && self.unreadable.is_empty()
            && self.cut.is_empty())
    }
}

pub fn repair(root: &Path) -> Result<RepairReport, ArchiveError> {
    let config = Archive::read_config(root)?;
    let lock_path = root.join(LOCK_FILE);
    let _lock = super::lock::WriterLock::acquire(&lock_path).map_err(|e| match e {
        super::lock::LockError::Held { pid } => ArchiveError::Locked { pid },
        super::lock::LockError::Io(source) => ArchiveError::Io {
            path: lock_path.clone(),
            source,
        },
    })?;
    let store = local_store(root);
    let store_err = |e| ArchiveError::Pack(PackError::Store(e));
    let mut report = RepairReport::default();

    // What the old index knew, when it can still be read: a pack it knew that is now
    // shorter, or a snapshot it listed that cannot be found, is damage to report, not
    // crash debris.
    let (old_packs, old_snaps) = match Index::open(&root.join(INDEX_FILE)) {
        Ok(old) => (
            old.packs()
                .map(|p| p.into_iter().map(|(id, size, _)| (id, size)).collect())
                .unwrap_or_default(),
            old.snapshots().unwrap_or_default(),
        ),
        Err(_) => (HashMap::new(), Vec::new()),
    };
    // A directory, symlink, fifo or device named like a pack is not one: left where it
    // is and reported (`check` names it too), never read or moved.
    let (objects, strays) = store.list().map_err(store_err)?;
    let mut names: Vec<(PackId, String)> = objects
        .into_iter()
        .filter_map(|o| Some((PackId::from_file_name(&o.name)?, o.name)))
        .collect();
    for st in strays {
        if PackId::from_file_name(&st.name).is_some() {
            report.skipped.push((
                st.name,
                format!("is not a regular file ({}): skipped", st.what),
            ));
        }
    }
    names.sort();
    report.skipped.sort();

    // Survey every pack; the first sound copy of each blob wins, a damaged copy only
    // when there is no sound one.
    let mut sound: HashMap<BlobId, Location> = HashMap::new();
    let mut damaged: HashMap<BlobId, Location> = HashMap::new();
    let mut pack_rows = Vec::new();
    for (pack, name) in names {
        let bytes = match store.read_all(&name) {
            Ok(b) => b,
            // Gone since the listing: nothing to index.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(store_err(e)),
        };
        if let Some(&known) = old_packs.get(&pack)
            && (bytes.len() as u64) < known
        {
            report.cut.push((
                name.clone(),
                format!(
                    "is {} bytes, the index knew it as {known}: committed data was lost",
                    bytes.len()
                ),
            ));
        }
        if bytes.len() < crate::format::pack::PACK_HEADER_LEN {
            // Created by a writer that was killed before its header was even written:
            // nothing in it, nothing references it.
            store.set_aside(&name).map_err(store_err)?;
            report.torn.push((
                pack,
                0,
                bytes.len() as u64,
                format!("{QUARANTINE_DIR}/{name}"),
            ));
            continue;
        }
        let survey = match survey_pack(&bytes, pack) {
            Ok(s) => s,
            Err(e) => {
                store.set_aside(&name).map_err(store_err)?;
                report
                    .unreadable
                    .push((name, format!("{e}; moved to {QUARANTINE_DIR}/")));
                continue;
            }
        };
        report.packs += 1;
        let mut count = 0u64;
        for (list, target) in [(&survey.sound, &mut sound), (&survey.damaged, &mut damaged)] {
            for e in list {
                count += 1;
                target.entry(e.header.id).or_insert(Location {
                    pack,
                    offset: e.offset,
                    kind: e.header.kind,
                    raw_len: e.header.raw_len,
                    stored_len: e.header.stored_len,
                });
            }
        }
        for e in &survey.damaged {
            report.damaged.push((pack, e.offset, e.header.id));
        }
        for (a, b) in &survey.gaps {
            report.gaps.push((pack, *a, *b));
        }
        let mut size = bytes.len() as u64;
        if let Some(at) = survey.torn_tail {
            // Only a pack that a crash left unsealed has a torn tail; nothing references
            // its tail. Its bytes are kept in the quarantine.
            store.cut_tail(&name, at).map_err(store_err)?;
            let kept = format!("{QUARANTINE_DIR}/{name}.tail-{at}");
            report.torn.push((pack, at, bytes.len() as u64 - at, kept));
            size = at;
        }
        pack_rows.push((pack, size, count));
    }
    for (id, loc) in damaged {
        sound.entry(id).or_insert(loc);
    }
    report.blobs = sound.len() as u64;

    // Snapshots: register those whose every reachable blob exists, unless a forget
    // record names them.
    let reader = PackReader::new(store.clone(), Codec::new(config.compression_level));
    let mut forgotten: HashSet<BlobId> = HashSet::new();
    for (id, loc) in sound.iter().filter(|(_, l)| l.kind == BlobKind::Forget) {
        match reader
            .read(id, loc, true)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                crate::format::forget::ForgetRecord::decode(&b).map_err(|e| e.to_string())
            }) {
            Ok(r) => forgotten.extend(r.snapshots),
            Err(e) => report
                .incomplete
                .push((*id, format!("forget record unreadable: {e}"))),
        }
    }
    let mut snapshots: Vec<(BlobId, Snapshot)> = Vec::new();
    let mut complete_trees: HashSet<BlobId> = HashSet::new();
    let snap_ids: Vec<(BlobId, Location)> = sound
        .iter()
        .filter(|(_, l)| l.kind == BlobKind::Snapshot)
        .map(|(i, l)| (*i, *l))
        .collect();
    for (id, loc) in snap_ids {
        if forgotten.contains(&id) {
            report.forgotten += 1;
            continue;
        }
        let snap = match reader
            .read(&id, &loc, true)
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
        match reachable_complete(&reader, &sound, snap.root, &mut complete_trees) {
            Ok(()) => {
                report.recovered.push((
                    id,
                    format!(
                        "{} {}",
                        crate::sys::rfc3339(snap.time.0, 0, false),
                        snap.label
                    ),
                ));
                snapshots.push((id, snap));
            }
            Err(why) => report.incomplete.push((id, why)),
        }
    }
    // Commit order: where each record lies in the packs (as the index lists them).
    let order = |id: &BlobId| sound.get(id).map(|l| (l.pack, l.offset));
    snapshots.sort_by_key(|(id, _)| order(id));
    report.recovered.sort_by_key(|(id, _)| order(id));
    for old in &old_snaps {
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

    // Write the new index beside the old one, then switch in one rename.
    let tmp = root.join("index.sqlite.repair");
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = fs::remove_file(format!("{}{suffix}", tmp.display()));
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    let index = Index::create(&tmp)?;
    let blobs: Vec<(BlobId, Location)> = sound.into_iter().collect();
    index.commit(&pack_rows, &blobs, None)?;
    for (id, s) in &snapshots {
        index.commit(&[], &[], Some((*id, s)))?;
    }
    index.close_checkpointed()?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    let live = root.join(INDEX_FILE);
    for suffix in ["-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", live.display()));
    }
    fs::rename(&tmp, &live).map_err(io(&live))?;
    fs::File::open(root)
        .and_then(|d| d.sync_all())
        .map_err(io(root))?;
    let _ = config;
    report.recovered.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(report)
}

/// Every tree reachable from `root` is present and decodes, and every chunk exists.
/// `complete` remembers trees whose whole subtree was verified (only those: a tree is
/// added after all its children passed, so a damaged subtree shared by several
/// snapshots fails each of them).
fn reachable_complete(
    reader: &PackReader,
    blobs: &HashMap<BlobId, Location>,
    root: BlobId,
    complete: &mut HashSet<BlobId>,
) -> Result<(), String> {
    fn visit(
        reader: &PackReader,
        blobs: &HashMap<BlobId, Location>,
        tree: BlobId,
        complete: &mut HashSet<BlobId>,
        depth: usize,
    ) -> Result<(), String> {
        if complete.contains(&tree) {
            return Ok(());
        }
        if depth > crate::tree::MAX_DEPTH {
            return Err("trees nest too deep".into());
        }
        let loc = blobs
            .get(&tree)
            .ok_or_else(|| format!("tree {} is missing", tree.short()))?;
        let bytes = reader
            .read(&tree, loc, true)
            .map_err(|e| format!("tree {}: {e}", tree.short()))?;
        let nodes = decode_tree(&bytes).map_err(|e| format!("tree {}: {e}", tree.short()))?;
        for n in &nodes {
            for x in n.extents() {
                if let Extent::Data { id, .. } = x
                    && !blobs.contains_key(id)
                {
                    return Err(format!(
                        "chunk {} of {} is missing",
                        id.short(),
                        String::from_utf8_lossy(&n.name)
                    ));
                }
            }
            if let Some(sub) = n.subtree() {
                visit(reader, blobs, sub, complete, depth + 1)?;
            }
        }
        complete.insert(tree);
        Ok(())
    }
    visit(reader, blobs, root, complete, 0)
}
