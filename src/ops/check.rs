//! `check`: index and packs agree, every blob a snapshot references exists, every tree
//! and snapshot record decodes; with `read_data`, every stored byte is read and its
//! crc32 and BLAKE3 verified on all cores. Returns findings (never stops at the first),
//! and for each damaged or missing blob the snapshots and paths it damages.
//!
//! Check takes no lock and may run while `forget` and `prune` change the archive: a read
//! that fails is looked up again in the index and retried where the blob is now
//! ([`confirm`]); only a failure at the current location is damage. What moved or was
//! forgotten meanwhile becomes a note, not a finding.

use crate::archive::Location;
use crate::archive::{Archive, ArchiveError};
use crate::format::pack::BLOB_HEADER_LEN;
use crate::format::tree::Node;
use crate::format::{BlobId, PackId};
use crate::tree::Ref;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub severity: Severity,
    /// What is wrong.
    pub what: String,
    /// Where: pack and offset, snapshot, or file.
    pub location: String,
    /// What to do about it.
    pub fix: String,
    /// `SNAPSHOT:/path` of every file or directory this damages.
    pub damages: Vec<String>,
}

pub struct CheckOptions {
    pub read_data: bool,
    /// Only these snapshots (empty: all).
    pub snapshots: Vec<BlobId>,
    /// Verifying threads for `read_data`.
    pub threads: usize,
}

/// Counters for a progress bar.
#[derive(Default)]
pub struct CheckProgress {
    pub bytes_done: AtomicU64,
    pub bytes_total: AtomicU64,
}

#[derive(Default)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    pub packs: u64,
    pub blobs: u64,
    pub snapshots: u64,
    pub trees: u64,
    /// Stored bytes read and verified (with `read_data`).
    pub bytes_verified: u64,
    /// What changed under check while it ran (a concurrent prune or forget), which is
    /// neither damage nor a warning: one line each, for the CLI to print as notes.
    pub notes: Vec<String>,
    pub seconds: f64,
}

impl CheckReport {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }
}

const FIX_DAMAGE: &str = "restore this pack file from another copy of the archive if you have one; \
     the files listed cannot be restored from this archive, every other file can";
const FIX_REPAIR: &str = "run `strata repair ARCHIVE` to rebuild the index from the packs";

/// Blobs found bad while reading data: id → (what, where).
type Bad = HashMap<BlobId, (String, String)>;

pub fn check(
    archive: &Archive,
    opts: &CheckOptions,
    progress: &CheckProgress,
) -> Result<CheckReport, ArchiveError> {
    let started = Instant::now();
    let mut report = CheckReport::default();
    // Packs and blobs a concurrent prune removed or moved while check ran.
    let moved_packs = check_packs(archive, &mut report)?;
    let (bad, moved_blobs) = check_blobs(archive, opts, progress, &mut report)?;

    // 3. Snapshots: every record decodes; every tree reachable decodes (read with crc32
    //    and BLAKE3); every chunk it references is in the index. Subtrees known to be
    //    clean are not walked again.
    let (walker, forgotten) = check_snapshots(archive, opts, &bad, &mut report)?;
    report.trees = walker.trees;
    if moved_packs > 0 || moved_blobs > 0 {
        report.notes.push(format!(
            "{moved_packs} pack(s) and {} blob(s) were removed or moved by a prune while check ran; \
             blobs were read where the index puts them now",
            moved_blobs
        ));
    }
    for snap in forgotten {
        report.notes.push(format!(
            "snapshot {snap} was forgotten while check ran: skipped"
        ));
    }
    damage_findings(&bad, &walker.damages, &walker.tree_errors, &mut report);
    if archive.is_bucket() && report.errors() == 0 {
        // Every pack of a bucket is indexed once it is read; one that nothing needs was
        // left by a writer that died (its upload finished, its snapshot never came).
        for (pack, size) in crate::ops::retention::unreferenced_packs(archive)? {
            let age = crate::archive::pack_id_time(pack)
                .map(|t| {
                    format!(
                        ", written {} min ago",
                        (crate::sys::now().0 - t).max(0) / 60
                    )
                })
                .unwrap_or_default();
            report.notes.push(format!(
                "{} ({}{age}) holds nothing any snapshot needs: left by an interrupted writer; \
                 `strata prune` removes it once it is an hour old",
                archive.pack_location(pack),
                crate::sys::human_bytes(size)
            ));
        }
    }
    report.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.location.cmp(&b.location))
    });
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Step 1 of [`check`]: every pack the index knows exists with at least its recorded
/// size; every pack in the store is known to the index. Returns how many packs a
/// concurrent prune removed meanwhile.
fn check_packs(archive: &Archive, report: &mut CheckReport) -> Result<u64, ArchiveError> {
    let mut moved_packs = 0u64;
    let known = archive.pack_rows()?;
    let known_ids: HashSet<PackId> = known.iter().map(|(p, _, _)| *p).collect();
    for (p, size, _) in &known {
        report.packs += 1;
        let state = |size: u64| match archive.pack_size(*p) {
            Ok(Some(len)) if len >= size => None,
            Ok(Some(len)) => Some(format!("pack is {len} bytes, the index expects {size}")),
            Ok(None) => Some(format!(
                "pack cannot be read: {} is missing",
                archive.pack_location(*p)
            )),
            Err(e) => Some(format!("pack cannot be read: {e}")),
        };
        if state(*size).is_none() {
            continue;
        }
        // A concurrent prune deletes packs after switching the index away from them:
        // ask the index again before calling a missing pack damage.
        let what = match archive.indexed_pack_size(*p)? {
            None => {
                report.packs -= 1;
                moved_packs += 1;
                continue;
            }
            Some(now) => match state(now) {
                None => continue,
                Some(w) => w,
            },
        };
        report.findings.push(Finding {
            severity: Severity::Error,
            what,
            location: format!("packs/{}", p.file_name()),
            fix: FIX_DAMAGE.into(),
            damages: Vec::new(),
        });
    }
    if let Ok((objects, strays)) = archive.pack_objects() {
        // Listed after the index was read: a pack a writer made since is known now.
        let known_now: HashSet<PackId> = archive.pack_rows()?.iter().map(|(p, _, _)| *p).collect();
        let writer = crate::archive::active_writer(archive.root());
        let mut unknown = Vec::new();
        let mut stray: Vec<(String, bool)> =
            strays.into_iter().map(|st| (st.name, false)).collect();
        for o in objects {
            match PackId::from_file_name(&o.name) {
                Some(p) => {
                    if !known_ids.contains(&p) && !known_now.contains(&p) {
                        unknown.push(o.name);
                    }
                }
                None => stray.push((o.name, true)),
            }
        }
        unknown.sort();
        stray.sort();
        for n in unknown {
            if let Some(pid) = writer {
                report.notes.push(format!(
                    "packs/{n} is not in the index yet: pid {pid} holds the writer lock (an ingest, forget or prune is running)"
                ));
                continue;
            }
            report.findings.push(Finding {
                severity: Severity::Warning,
                what: "pack is not in the index (left by an interrupted ingest, or the index is older than the packs)".into(),
                location: format!("packs/{n}"),
                fix: "`strata repair ARCHIVE` indexes what it holds and sets aside a torn tail".into(),
                damages: Vec::new(),
            });
        }
        for (n, regular) in stray {
            report.findings.push(Finding {
                severity: Severity::Warning,
                what: if regular {
                    "stray entry: not a pack name (packs are named <16 hex digits>.pack)".into()
                } else {
                    "stray entry: not a regular file (repair and prune skip it)".into()
                },
                location: format!("packs/{n}"),
                fix: "move it out of packs/ (strata never writes such an entry there)".into(),
                damages: Vec::new(),
            });
        }
    }

    Ok(moved_packs)
}

/// Step 2 of [`check`]: each index row matches the record in its pack; with `read_data`
/// every record's bytes are verified (crc32 and id), spread over threads. Returns the
/// damaged blobs and how many blobs a concurrent prune moved meanwhile.
fn check_blobs(
    archive: &Archive,
    opts: &CheckOptions,
    progress: &CheckProgress,
    report: &mut CheckReport,
) -> Result<(Bad, u64), ArchiveError> {
    let mut bad: Bad = HashMap::new();
    let mut moved_blobs = AtomicU64::new(0);
    let blobs = archive.blobs()?;
    report.blobs = blobs.len() as u64;
    if opts.read_data {
        let total: u64 = blobs
            .iter()
            .map(|(_, l)| l.stored_len + BLOB_HEADER_LEN as u64)
            .sum();
        progress.bytes_total.store(total, Ordering::Relaxed);
        let next = AtomicUsize::new(0);
        let found = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..opts.threads.max(1) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((id, loc)) = blobs.get(i) else { break };
                        let read = |l: &Location| {
                            archive
                                .read_at(id, l, true)
                                .map(|_| ())
                                .map_err(|e| e.to_string())
                        };
                        match confirm(archive, id, loc, read) {
                            Ok(Verdict::Sound) => {}
                            Ok(Verdict::Moved) => {
                                moved_blobs.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Verdict::Damaged(at, e)) => {
                                found
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push((*id, at, e));
                            }
                            Err(e) => {
                                found.lock().unwrap_or_else(|p| p.into_inner()).push((
                                    *id,
                                    *loc,
                                    format!("the index cannot be read again: {e}"),
                                ));
                            }
                        }
                        progress
                            .bytes_done
                            .fetch_add(loc.stored_len + BLOB_HEADER_LEN as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        report.bytes_verified = total;
        for (id, loc, e) in found.into_inner().unwrap_or_else(|p| p.into_inner()) {
            bad.insert(id, (e, where_of(&loc)));
        }
    } else {
        for (id, loc) in &blobs {
            match confirm(archive, id, loc, |l| header_matches(archive, id, l))? {
                Verdict::Sound => {}
                Verdict::Moved => *moved_blobs.get_mut() += 1,
                Verdict::Damaged(at, e) => {
                    bad.insert(*id, (e, where_of(&at)));
                }
            }
        }
    }

    Ok((bad, *moved_blobs.get_mut()))
}

/// Damaged blobs (whether or not a snapshot uses them) and missing ones, each with the
/// snapshot paths it damages.
fn damage_findings(
    bad: &Bad,
    damages: &HashMap<BlobId, Vec<String>>,
    tree_errors: &HashMap<BlobId, (String, bool)>,
    report: &mut CheckReport,
) {
    let mut ids: Vec<&BlobId> = bad
        .keys()
        .chain(damages.keys().filter(|k| !bad.contains_key(k)))
        .collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        let mut paths = damages.get(id).cloned().unwrap_or_default();
        paths.sort();
        paths.dedup();
        let (what, location, fix) = match (bad.get(id), tree_errors.get(id)) {
            (Some((e, w)), _) => (
                format!("blob {} is damaged: {e}", id.short()),
                w.clone(),
                FIX_DAMAGE.to_string(),
            ),
            (None, Some((e, damaged))) => (
                format!("tree {} cannot be read: {e}", id.short()),
                "index".into(),
                if *damaged { FIX_DAMAGE } else { FIX_REPAIR }.to_string(),
            ),
            (None, None) => (
                format!(
                    "blob {} is referenced but missing from the index",
                    id.short()
                ),
                "index".into(),
                FIX_REPAIR.to_string(),
            ),
        };
        report.findings.push(Finding {
            severity: Severity::Error,
            what,
            location,
            fix,
            damages: paths,
        });
    }
}

/// Step 3 of [`check`]: every selected snapshot's record and trees. Returns the walk
/// (what it found damaged) and the snapshots forgotten by another process meanwhile.
fn check_snapshots<'a>(
    archive: &'a Archive,
    opts: &CheckOptions,
    bad: &'a Bad,
    report: &mut CheckReport,
) -> Result<(Walker<'a>, Vec<String>), ArchiveError> {
    let rows = archive.snapshots()?;
    let selected: Vec<_> = rows
        .iter()
        .filter(|r| opts.snapshots.is_empty() || opts.snapshots.contains(&r.id))
        .collect();
    let mut walker = Walker {
        archive,
        bad,
        clean: HashSet::new(),
        damages: HashMap::new(),
        tree_errors: HashMap::new(),
        trees: 0,
        snap: String::new(),
    };
    let mut forgotten = Vec::new();
    for row in selected {
        report.snapshots += 1;
        let snap = row.id.short();
        let loaded = archive.load_snapshot(&row.id);
        // A snapshot forgotten (and pruned) by another process while check ran is not
        // damage: whatever went wrong reading it, skip it once the catalogue no longer
        // lists it.
        let mark = walker.mark();
        let sound = match &loaded {
            Ok(s) => walker.walk(&snap, row.root) && s.root == row.root,
            Err(_) => false,
        };
        if !sound && !archive.has_snapshot(&row.id)? {
            walker.forget_since(mark, &snap);
            report.snapshots -= 1;
            forgotten.push(snap);
            continue;
        }
        match loaded {
            Ok(s) => {
                if s.root != row.root {
                    report.findings.push(Finding {
                        severity: Severity::Error,
                        what: "the index row and the snapshot record disagree on the root tree"
                            .into(),
                        location: format!("snapshot {snap}"),
                        fix: FIX_REPAIR.into(),
                        damages: Vec::new(),
                    });
                }
            }
            Err(e) => report.findings.push(Finding {
                severity: Severity::Error,
                what: format!("snapshot record cannot be read: {e}"),
                location: format!("snapshot {snap}"),
                fix: if e.is_corruption() {
                    FIX_DAMAGE.into()
                } else {
                    FIX_REPAIR.into()
                },
                damages: vec![format!("{snap}:/")],
            }),
        }
    }
    Ok((walker, forgotten))
}

/// What a read that was checked twice concluded.
enum Verdict {
    Sound,
    /// The blob is no longer where check first looked: a concurrent prune moved it
    /// (and it reads fine where it is now) or removed it.
    Moved,
    /// The read fails at the location the index still gives.
    Damaged(Location, String),
}

/// Runs `read` at `loc`; when it fails, looks the blob up again in the index (a
/// concurrent prune may have moved it and deleted the old pack, or removed it) and
/// reads it where it is now. Damage is only a failure at the current location.
fn confirm(
    archive: &Archive,
    id: &BlobId,
    loc: &Location,
    read: impl Fn(&Location) -> Result<(), String>,
) -> Result<Verdict, ArchiveError> {
    let mut loc = *loc;
    let mut last = match read(&loc) {
        Ok(()) => return Ok(Verdict::Sound),
        Err(e) => e,
    };
    // Each retry needs another prune to have switched the index meanwhile.
    for _ in 0..4 {
        archive.evict_pack(loc.pack);
        match archive.indexed_location(id)? {
            None => return Ok(Verdict::Moved),
            Some(now) if now == loc => return Ok(Verdict::Damaged(loc, last)),
            Some(now) => loc = now,
        }
        match read(&loc) {
            Ok(()) => return Ok(Verdict::Moved),
            Err(e) => last = e,
        }
    }
    Ok(Verdict::Damaged(loc, last))
}

fn where_of(loc: &Location) -> String {
    format!("packs/{} offset {}", loc.pack.file_name(), loc.offset)
}

/// Reads only the 64-byte record header and compares it with the index row.
fn header_matches(archive: &Archive, id: &BlobId, loc: &Location) -> Result<(), String> {
    archive.check_header(id, loc).map_err(|e| e.to_string())
}

struct Walker<'a> {
    archive: &'a Archive,
    bad: &'a Bad,
    /// Trees whose whole subtree is known to be sound.
    clean: HashSet<BlobId>,
    /// Damaged or missing blob → `snapshot:/path` it damages.
    damages: HashMap<BlobId, Vec<String>>,
    /// Trees that could not be read: the error, and whether stored bytes are damaged.
    tree_errors: HashMap<BlobId, (String, bool)>,
    trees: u64,
    /// The snapshot being walked (short id), for the paths in `damages`.
    snap: String,
}

/// A point in a walk to go back to: the damage recorded so far.
struct Mark {
    tree_errors: HashSet<BlobId>,
}

impl Walker<'_> {
    fn mark(&self) -> Mark {
        Mark {
            tree_errors: self.tree_errors.keys().copied().collect(),
        }
    }

    /// Drops what the walk of `snap` recorded since `mark` (the snapshot turned out
    /// to be forgotten meanwhile).
    fn forget_since(&mut self, mark: Mark, snap: &str) {
        let prefix = format!("{snap}:/");
        self.damages.retain(|_, paths| {
            paths.retain(|p| !p.starts_with(&prefix));
            !paths.is_empty()
        });
        let damages = &self.damages;
        self.tree_errors
            .retain(|id, _| mark.tree_errors.contains(id) || damages.contains_key(id));
    }

    /// Walks a snapshot's trees from `root`; returns true when everything below it is
    /// sound.
    fn walk(&mut self, snap: &str, root: BlobId) -> bool {
        self.snap = snap.to_string();
        let mut top = Dir {
            tree: root,
            sound: true,
        };
        let archive = self.archive;
        let node = crate::tree::root_node(root, (0, 0));
        // Check's visitor records every problem and never stops the walk.
        let walked = crate::tree::walk_node(archive, &mut top, &node, self);
        walked.is_ok() && top.sound
    }

    fn show(&self, path: &[u8]) -> String {
        format!("{}:/{}", self.snap, String::from_utf8_lossy(path))
    }

    /// The tree of `dir` (at `path`) cannot be walked.
    fn damaged_tree(&mut self, parent: &mut Dir, dir: Dir, path: &[u8], error: (String, bool)) {
        parent.sound = false;
        if !self.bad.contains_key(&dir.tree) {
            self.tree_errors.insert(dir.tree, error);
        }
        let p = self.show(path);
        self.damages.entry(dir.tree).or_default().push(p);
    }
}

/// A directory check is walking: its tree, and whether all below it is sound so far.
struct Dir {
    tree: BlobId,
    sound: bool,
}

impl crate::tree::Visitor for Walker<'_> {
    type Frame = Dir;
    type Error = ArchiveError;

    fn visit(
        &mut self,
        parent: &mut Dir,
        path: &[u8],
        n: &Node,
    ) -> Result<Option<Dir>, ArchiveError> {
        let mut descend = None;
        for r in crate::tree::refs(n) {
            match r {
                Ref::Tree(tree) if !self.clean.contains(&tree) => {
                    descend = Some(Dir { tree, sound: true });
                }
                Ref::Tree(_) => {}
                Ref::Chunk(id) => {
                    let present =
                        !self.bad.contains_key(&id) && self.archive.contains(&id).unwrap_or(false);
                    if !present {
                        parent.sound = false;
                        let p = self.show(path);
                        let v = self.damages.entry(id).or_default();
                        if v.last() != Some(&p) {
                            v.push(p);
                        }
                    }
                }
            }
        }
        Ok(descend)
    }

    fn leave(
        &mut self,
        parent: &mut Dir,
        dir: Dir,
        _: &[u8],
        _: &Node,
    ) -> Result<(), ArchiveError> {
        self.trees += 1;
        if dir.sound {
            self.clean.insert(dir.tree);
        }
        parent.sound &= dir.sound;
        Ok(())
    }

    fn unreadable(
        &mut self,
        parent: &mut Dir,
        dir: Dir,
        path: &[u8],
        _: &Node,
        e: ArchiveError,
    ) -> Result<(), ArchiveError> {
        self.damaged_tree(parent, dir, path, (e.to_string(), e.is_corruption()));
        Ok(())
    }

    fn too_deep(
        &mut self,
        parent: &mut Dir,
        dir: Dir,
        path: &[u8],
        _: &Node,
        _: ArchiveError,
    ) -> Result<(), ArchiveError> {
        self.damaged_tree(
            parent,
            dir,
            path,
            ("nested too deep (a cycle?)".into(), true),
        );
        Ok(())
    }
}
