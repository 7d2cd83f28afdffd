//! Bringing a bucket archive's local index up to date with the bucket. The bucket is the
//! truth; the index in the cache directory is what this host has learned of it. Each open
//! lists the bucket's packs once and:
//!
//! 1. forgets packs that are gone (another host's prune), with their blobs and the
//!    snapshots whose records went with them, then finds those blobs again in the packs
//!    that still hold a copy (prune's rewritten packs), from the local copies of the pack
//!    indexes;
//! 2. learns each new pack from its pack index (`index/<pack>.idx`, a few kilobytes), or,
//!    when it has none (its writer died between the two uploads), by reading the pack
//!    whole; keeps a copy of the pack index in the cache (`packidx/`);
//! 3. registers the snapshot records found in new packs and then applies the forget
//!    records found (a forget always wins, whatever the packs' order).
//!
//! A pack that cannot be read is left out and reported; the next open tries again.
//! Several processes may sync one cache at once: they take `sync.lock` in it for the
//! few moments a sync lasts.

use super::lock::WriterLock;
use super::{ArchiveError, Place};
use crate::format::forget::ForgetRecord;
use crate::format::pack::{BlobKind, Location};
use crate::format::packidx::{decode_packidx, encode_packidx, packidx_name};
use crate::format::snapshot::Snapshot;
use crate::format::{BlobId, PackId};
use crate::index::Index;
use crate::packs::{PackError, PackReader, survey_pack};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// What one sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub new_packs: u64,
    pub gone_packs: u64,
    /// New packs without a pack index, read whole.
    pub read_whole: u64,
    pub snapshots_added: u64,
    pub forgets_applied: u64,
    /// Packs that could not be read: (name, why).
    pub skipped: Vec<(String, String)>,
}

const LOCAL_PACKIDX: &str = "packidx";

fn local_packidx(root: &Path, pack: PackId) -> PathBuf {
    root.join(LOCAL_PACKIDX)
        .join(format!("{:016x}.idx", pack.0))
}

fn store_err(e: crate::store::StoreError) -> ArchiveError {
    ArchiveError::Pack(PackError::Store(e))
}

/// The records of `pack` (of `size` bytes): from the local copy of its pack index, the
/// bucket's, or the pack itself. The second value is true when the pack was read whole.
fn records_of(
    place: &Place,
    pack: PackId,
) -> Result<(Vec<(BlobId, Location)>, bool), ArchiveError> {
    let local = local_packidx(&place.root, pack);
    if let Ok(b) = std::fs::read(&local)
        && let Ok(r) = decode_packidx(pack, &b)
    {
        return Ok((r, false));
    }
    let from_bucket = place
        .meta
        .get(&packidx_name(pack))
        .map_err(store_err)?
        .and_then(|b| decode_packidx(pack, &b).ok().map(|r| (r, b)));
    let (records, whole) = match from_bucket {
        Some((r, _)) => (r, false),
        None => {
            let bytes = place.store.read_all(&pack.file_name()).map_err(store_err)?;
            let survey = survey_pack(&bytes, pack)?;
            let r = survey
                .sound
                .iter()
                .map(|e| {
                    (
                        e.header.id,
                        Location {
                            pack,
                            offset: e.offset,
                            kind: e.header.kind,
                            raw_len: e.header.raw_len,
                            stored_len: e.header.stored_len,
                        },
                    )
                })
                .collect();
            (r, true)
        }
    };
    save_local(&place.root, pack, &records);
    Ok((records, whole))
}

/// Keeps a copy of a pack's index in the cache (best effort: it is only a cache).
pub(crate) fn save_local(root: &Path, pack: PackId, records: &[(BlobId, Location)]) {
    let path = local_packidx(root, pack);
    let _ = std::fs::create_dir_all(root.join(LOCAL_PACKIDX));
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, encode_packidx(pack, records)).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

/// The cache directory's own short lock (`sync.lock`), held while its index is created or
/// brought up to date; waits for another process's.
pub(crate) fn cache_lock(root: &Path) -> Result<WriterLock, ArchiveError> {
    let lock_path = root.join("sync.lock");
    loop {
        match WriterLock::acquire(&lock_path) {
            Ok(l) => return Ok(l),
            Err(super::lock::LockError::Held { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(super::lock::LockError::Io(source)) => {
                return Err(ArchiveError::Io {
                    path: lock_path,
                    source,
                });
            }
        }
    }
}

/// Brings `index` up to date with the bucket at `place`.
pub(crate) fn sync(
    place: &Place,
    index: &Index,
    reader: &PackReader,
) -> Result<SyncReport, ArchiveError> {
    let _lock = cache_lock(&place.root)?;
    let mut report = SyncReport::default();
    let (objects, _) = place.store.list().map_err(store_err)?;
    let listed: HashMap<PackId, u64> = objects
        .iter()
        .filter_map(|o| Some((PackId::from_file_name(&o.name)?, o.size)))
        .collect();
    let known: HashMap<PackId, u64> = index
        .packs()?
        .into_iter()
        .map(|(p, size, _)| (p, size))
        .collect();

    // 1. Gone packs, and the blobs they held that other packs still hold.
    let mut gone: Vec<PackId> = known
        .keys()
        .filter(|p| !listed.contains_key(p))
        .copied()
        .collect();
    gone.sort();
    if !gone.is_empty() {
        let removed: HashSet<BlobId> = index.drop_packs(&gone)?.into_iter().collect();
        for p in &gone {
            let _ = std::fs::remove_file(local_packidx(&place.root, *p));
            reader.evict(*p);
        }
        report.gone_packs = gone.len() as u64;
        if !removed.is_empty() {
            let mut found = Vec::new();
            for p in known.keys().filter(|p| listed.contains_key(p)) {
                if let Ok((records, _)) = records_of(place, *p) {
                    found.extend(records.into_iter().filter(|(id, _)| removed.contains(id)));
                }
            }
            index.commit(&[], &found, None)?;
        }
    }

    // 2. New packs, in id order.
    let mut new: Vec<(PackId, u64)> = listed
        .iter()
        .filter(|(p, _)| !known.contains_key(p))
        .map(|(p, s)| (*p, *s))
        .collect();
    new.sort();
    let mut snapshots: Vec<(BlobId, Location)> = Vec::new();
    let mut forgets: Vec<(BlobId, Location)> = Vec::new();
    for (pack, size) in new {
        let (records, whole) = match records_of(place, pack) {
            Ok(r) => r,
            Err(e) if matches!(&e, ArchiveError::Pack(PackError::Store(s)) if s.is_not_found()) => {
                continue; // deleted since the listing
            }
            Err(e) => {
                report
                    .skipped
                    .push((place.store.location(&pack.file_name()), e.to_string()));
                continue;
            }
        };
        report.new_packs += 1;
        report.read_whole += whole as u64;
        for (id, loc) in &records {
            match loc.kind {
                BlobKind::Snapshot => snapshots.push((*id, *loc)),
                BlobKind::Forget => forgets.push((*id, *loc)),
                _ => {}
            }
        }
        index.commit(&[(pack, size, records.len() as u64)], &records, None)?;
    }

    // 3. Snapshots, then forgets.
    snapshots.sort_by_key(|(_, l)| (l.pack, l.offset));
    for (id, loc) in snapshots {
        let snap = reader
            .read(&id, &loc, true)
            .map_err(ArchiveError::from)
            .and_then(|b| {
                Snapshot::decode(&b).map_err(|source| ArchiveError::Format {
                    what: "snapshot",
                    id,
                    source,
                })
            });
        match snap {
            Ok(s) => {
                index.commit(&[], &[], Some((id, &s)))?;
                report.snapshots_added += 1;
            }
            Err(e) => report
                .skipped
                .push((place.store.location(&loc.pack.file_name()), e.to_string())),
        }
    }
    for (id, loc) in forgets {
        match reader
            .read(&id, &loc, true)
            .ok()
            .and_then(|b| ForgetRecord::decode(&b).ok())
        {
            Some(f) => {
                index.commit_forget(&[], &[], &f.snapshots)?;
                report.forgets_applied += 1;
            }
            None => report.skipped.push((
                place.store.location(&loc.pack.file_name()),
                format!("forget record {id} does not read back"),
            )),
        }
    }
    Ok(report)
}
