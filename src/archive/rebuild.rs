//! Rebuilding `index.sqlite` from the packs alone: the primitives `ops::repair` decides
//! with. [`survey_packs`] takes the writer lock and surveys every pack record by record
//! (continuing past damage): a torn tail left by a crash is copied to `quarantine/` and
//! cut from its (never sealed) pack, a file that is not a pack is moved there, an entry
//! of packs/ named like a pack that is not a regular file is skipped and reported;
//! nothing that cannot be accounted for is deleted without saying so. The blobs found
//! are then read through [`Rebuild`], and [`Rebuild::write_index`] writes a fresh index
//! beside the old one and renames it into place, still under the lock.
//!
//! Snapshots are registered in commit order without writing any order down: the index
//! lists them by the location of their records (pack number, then offset), which is the
//! order they were committed in (see `docs/FORMAT.md`, "Commit order").

use super::lock::WriterLock;
use super::{
    ArchiveError, INDEX_FILE, Password, Place, QUARANTINE_DIR, RowCodec, codec_for, io, open_index,
};
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::{BlobId, PackId};
use crate::index::{Index, SnapshotRow};
use crate::packs::{Location, PackError, PackReader, survey_pack};
use crate::store::Store;
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What surveying the packs found and did.
#[derive(Default, Debug)]
pub struct Survey {
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
    /// Entries of packs/ named like packs that are not regular files: (name, why).
    pub skipped: Vec<(String, String)>,
    /// Packs the old index knew that are now shorter: (file name, what happened).
    pub cut: Vec<(String, String)>,
}

/// The blobs the packs hold, under the writer lock, until the new index is written.
pub struct Rebuild {
    root: PathBuf,
    _lock: WriterLock,
    reader: PackReader,
    /// Every blob found: its first sound copy, else a damaged one.
    blobs: HashMap<BlobId, Location>,
    pack_rows: Vec<(PackId, u64, u64)>,
    /// What the old index listed, when it could still be read.
    old_snapshots: Vec<SnapshotRow>,
}

impl Rebuild {
    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    /// A blob's plain bytes, crc32 and BLAKE3 verified.
    pub fn read(&self, id: &BlobId) -> Result<Vec<u8>, ArchiveError> {
        let loc = self
            .blobs
            .get(id)
            .ok_or(ArchiveError::BlobMissing { id: *id })?;
        Ok(self.reader.read(id, loc, true)?)
    }

    /// The blobs of one kind (snapshot or forget records).
    pub fn of_kind(&self, kind: BlobKind) -> Vec<BlobId> {
        self.blobs
            .iter()
            .filter(|(_, l)| l.kind == kind)
            .map(|(i, _)| *i)
            .collect()
    }

    /// Where a blob lies (pack, offset): for records, the order they were committed in.
    pub fn position(&self, id: &BlobId) -> Option<(PackId, u64)> {
        self.blobs.get(id).map(|l| (l.pack, l.offset))
    }

    /// The snapshots the old index listed (empty when it could not be read).
    pub fn old_snapshots(&self) -> &[SnapshotRow] {
        &self.old_snapshots
    }

    /// Writes a new index of every blob found and `snapshots` (in commit order) beside
    /// the old one, then switches to it in one rename; the lock is released after.
    pub fn write_index(self, snapshots: &[(BlobId, Snapshot)]) -> Result<(), ArchiveError> {
        // Write the new index beside the old one, then switch in one rename.
        let tmp = self.root.join("index.sqlite.repair");
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = fs::remove_file(format!("{}{suffix}", tmp.display()));
        }
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        let mut index = Index::create(&tmp)?;
        if self.reader.codec().is_encrypted() {
            index.set_sealer(std::sync::Arc::new(RowCodec(self.reader.codec().clone())));
        }
        let blobs: Vec<(BlobId, Location)> = self.blobs.into_iter().collect();
        index.commit(&self.pack_rows, &blobs, None)?;
        for (id, s) in snapshots {
            index.commit(&[], &[], Some((*id, s)))?;
        }
        index.close_checkpointed()?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        let live = self.root.join(INDEX_FILE);
        for suffix in ["-wal", "-shm"] {
            let _ = fs::remove_file(format!("{}{suffix}", live.display()));
        }
        fs::rename(&tmp, &live).map_err(io(&live))?;
        fs::File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.root))?;
        Ok(())
    }
}

/// Takes the writer lock and surveys every pack: the first sound copy of each blob wins,
/// a damaged copy only when there is no sound one. An encrypted archive needs `unlock`
/// (checked first: a wrong password changes nothing).
pub fn survey_packs(
    root: &Path,
    unlock: Option<&Password>,
) -> Result<(Rebuild, Survey), ArchiveError> {
    let place = Place::of(root)?;
    let config = super::read_config_in(&place)?;
    let (codec, _) = codec_for(&place, &config, unlock)?;
    let root = place.root.as_path();
    let lock = super::lock_writer(root)?;
    let store = place.store.clone();
    let store_err = |e| ArchiveError::Pack(PackError::Store(e));
    let mut report = Survey::default();

    // What the old index knew, when it can still be read: a pack it knew that is now
    // shorter, or a snapshot it listed that cannot be found, is damage to report, not
    // crash debris.
    let (old_packs, old_snaps) = match open_index(&root.join(INDEX_FILE), &codec) {
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
    let mut found = Found::default();
    for (pack, name) in names {
        found.pack(&*store, &old_packs, &mut report, pack, name)?;
    }
    let Found {
        mut sound,
        damaged,
        pack_rows,
    } = found;
    for (id, loc) in damaged {
        sound.entry(id).or_insert(loc);
    }
    report.blobs = sound.len() as u64;

    let reader = PackReader::new(store, codec);
    let rebuild = Rebuild {
        root: root.to_path_buf(),
        _lock: lock,
        reader,
        blobs: sound,
        pack_rows,
        old_snapshots: old_snaps,
    };
    Ok((rebuild, report))
}

/// The blobs and pack rows found so far.
#[derive(Default)]
struct Found {
    sound: HashMap<BlobId, Location>,
    damaged: HashMap<BlobId, Location>,
    pack_rows: Vec<(PackId, u64, u64)>,
}

impl Found {
    /// Surveys one pack file: its records, a torn tail to set aside, or the whole file
    /// to set aside when it is not a pack.
    fn pack(
        &mut self,
        store: &dyn Store,
        old_packs: &HashMap<PackId, u64>,
        report: &mut Survey,
        pack: PackId,
        name: String,
    ) -> Result<(), ArchiveError> {
        let store_err = |e| ArchiveError::Pack(PackError::Store(e));
        let bytes = match store.read_all(&name) {
            Ok(b) => b,
            // Gone since the listing: nothing to index.
            Err(e) if e.is_not_found() => return Ok(()),
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
            return Ok(());
        }
        let survey = match survey_pack(&bytes, pack) {
            Ok(s) => s,
            Err(e) => {
                store.set_aside(&name).map_err(store_err)?;
                report
                    .unreadable
                    .push((name, format!("{e}; moved to {QUARANTINE_DIR}/")));
                return Ok(());
            }
        };
        report.packs += 1;
        let mut count = 0u64;
        for (list, target) in [
            (&survey.sound, &mut self.sound),
            (&survey.damaged, &mut self.damaged),
        ] {
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
        self.pack_rows.push((pack, size, count));
        Ok(())
    }
}
