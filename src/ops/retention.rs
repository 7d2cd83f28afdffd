//! Retention: `forget` by policy (restic's semantics, per label) or by id, and `prune`,
//! which reclaims the space of blobs no remaining snapshot references. Prune is
//! crash-safe at every step: new packs are written and synced first, the index switches
//! in one transaction, and only then are old packs deleted. A live snapshot record is
//! never moved (a pack holding one is not rewritten), so the records' order in the packs
//! stays the commit order. Append-only archives refuse both.

use crate::archive::Location;
use crate::archive::SnapshotRow;
use crate::archive::{Archive, ArchiveError, WriteSession};
use crate::format::forget::ForgetRecord;
use crate::format::pack::{BLOB_HEADER_LEN, BlobKind, PACK_HEADER_LEN};
use crate::format::tree::Node;
use crate::format::{BlobId, PackId};
use crate::tree::Ref;
use std::collections::{HashMap, HashSet};

/// A retention policy. Counts are "keep the newest snapshot of each of the last N
/// periods that have snapshots", as in restic.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    /// Keep everything within this span before the newest snapshot of the group.
    pub within: Option<Span>,
    pub tags: Vec<String>,
}

/// A calendar span: `1y6m14d12h` (years, months, days, hours).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub years: i64,
    pub months: i64,
    pub days: i64,
    pub hours: i64,
}

impl Span {
    pub fn parse(s: &str) -> Result<Span, String> {
        let mut span = Span::default();
        let mut num = String::new();
        let mut any = false;
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: i64 = num
                .parse()
                .map_err(|_| format!("{s:?}: expected a number before {c:?}"))?;
            num.clear();
            match c {
                'y' => span.years += n,
                'm' => span.months += n,
                'd' => span.days += n,
                'h' => span.hours += n,
                _ => {
                    return Err(format!(
                        "{s:?}: unknown unit {c:?} (use y, m, d, h: e.g. 1y6m, 14d, 36h)"
                    ));
                }
            }
            any = true;
        }
        if !num.is_empty() || !any {
            return Err(format!("{s:?}: give a duration like 1y6m, 14d or 36h"));
        }
        Ok(span)
    }

    /// `t` minus this span, calendar-wise (as Go's AddDate, which restic uses).
    pub fn before(&self, t: i64) -> i64 {
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400);
        let (y, m, d) = civil(days);
        let total_m = y * 12 + (m as i64 - 1) - self.years * 12 - self.months;
        let (ny, nm) = (total_m.div_euclid(12), total_m.rem_euclid(12) + 1);
        let nd = days_from_civil(ny, nm as u32, 1) + (d as i64 - 1) - self.days;
        nd * 86_400 + secs - self.hours * 3600
    }
}

fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// ISO 8601 (year, week) of a day.
fn iso_week(days: i64) -> (i64, i64) {
    let weekday = (days + 3).rem_euclid(7); // Monday = 0
    let thursday = days - weekday + 3;
    let (y, _, _) = civil(thursday);
    let jan1 = days_from_civil(y, 1, 1);
    (y, (thursday - jan1) / 7 + 1)
}

impl Policy {
    /// The policy as options, for the forget record: `keep-last 2, keep-daily 7`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, n) in [
            ("keep-last", self.last),
            ("keep-hourly", self.hourly),
            ("keep-daily", self.daily),
            ("keep-weekly", self.weekly),
            ("keep-monthly", self.monthly),
            ("keep-yearly", self.yearly),
        ] {
            if let Some(n) = n {
                parts.push(format!("{name} {n}"));
            }
        }
        if let Some(w) = self.within {
            parts.push(format!(
                "keep-within {}y{}m{}d{}h",
                w.years, w.months, w.days, w.hours
            ));
        }
        for t in &self.tags {
            parts.push(format!("keep-tag {t}"));
        }
        parts.join(", ")
    }

    /// No rule that could keep anything: counts of 0 are no rule (as in restic), so
    /// `--keep-last 0` alone is refused instead of forgetting everything.
    pub fn is_empty(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .all(|n| n.unwrap_or(0) == 0)
            && self.within.is_none()
            && self.tags.is_empty()
    }
}

/// Whether one snapshot is kept, and why.
#[derive(Clone, Debug)]
pub struct Decision {
    pub row: SnapshotRow,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// Applies `policy` to one group of snapshots (one label), given in commit order (as
/// [`Archive::snapshots`] lists them). `keep-last` counts in commit order, so a snapshot
/// made under a clock running ahead does not stay "last"; the time rules (hourly to
/// yearly, within) bucket the recorded times, in UTC.
pub fn apply(policy: &Policy, group: &[SnapshotRow]) -> Vec<Decision> {
    // How many snapshots were committed after each one.
    let committed_after: HashMap<BlobId, usize> = group
        .iter()
        .rev()
        .enumerate()
        .map(|(i, r)| (r.id, i))
        .collect();
    let mut rows: Vec<&SnapshotRow> = group.iter().collect();
    rows.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
    let newest = rows.first().map(|r| r.time.0);
    type Bucket = fn(i64) -> i64;
    let hour: Bucket = |t| t.div_euclid(3600);
    let day: Bucket = |t| t.div_euclid(86_400);
    let week: Bucket = |t| {
        let (y, w) = iso_week(t.div_euclid(86_400));
        y * 100 + w
    };
    let month: Bucket = |t| {
        let (y, m, _) = civil(t.div_euclid(86_400));
        y * 100 + m as i64
    };
    let year: Bucket = |t| civil(t.div_euclid(86_400)).0;
    let mut rules: Vec<(&str, Bucket, u32, Option<i64>)> = Vec::new();
    for (name, n, b) in [
        ("hourly", policy.hourly, hour),
        ("daily", policy.daily, day),
        ("weekly", policy.weekly, week),
        ("monthly", policy.monthly, month),
        ("yearly", policy.yearly, year),
    ] {
        if let Some(n) = n {
            rules.push((name, b, n, None));
        }
    }
    let cutoff = match (policy.within, newest) {
        (Some(span), Some(t)) => Some(span.before(t)),
        _ => None,
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in rows.iter() {
        let mut reasons = Vec::new();
        for t in &policy.tags {
            if r.tags.contains(t) {
                reasons.push(format!("tag {t}"));
            }
        }
        if let Some(c) = cutoff
            && r.time.0 >= c
        {
            reasons.push("within".to_string());
        }
        if policy
            .last
            .is_some_and(|n| committed_after.get(&r.id).is_some_and(|&i| i < n as usize))
        {
            reasons.push("last".to_string());
        }
        for (name, bucket, left, last) in rules.iter_mut() {
            if *left == 0 {
                continue;
            }
            let value = bucket(r.time.0);
            if *last != Some(value) {
                *last = Some(value);
                *left -= 1;
                reasons.push(name.to_string());
            }
        }
        out.push(Decision {
            row: (*r).clone(),
            keep: !reasons.is_empty(),
            reasons,
        });
    }
    out
}

/// Decides per label: every label is its own group (or only `label`, when given).
pub fn plan(
    archive: &Archive,
    policy: &Policy,
    label: Option<&str>,
) -> Result<Vec<Decision>, ArchiveError> {
    let rows = archive.snapshots()?;
    let mut groups: HashMap<String, Vec<SnapshotRow>> = HashMap::new();
    for r in rows {
        if label.is_none_or(|l| r.label == l) {
            groups.entry(r.label.clone()).or_default().push(r);
        }
    }
    let mut labels: Vec<String> = groups.keys().cloned().collect();
    labels.sort();
    let mut out = Vec::new();
    for l in labels {
        out.extend(apply(policy, &groups[&l]));
    }
    Ok(out)
}

/// Appends a forget record for `ids` and removes them from the catalogue.
pub fn forget(
    archive: &Archive,
    ids: &[BlobId],
    reason: &str,
) -> Result<Option<BlobId>, ArchiveError> {
    if archive.config().append_only {
        return Err(ArchiveError::AppendOnly("forget"));
    }
    if ids.is_empty() {
        return Ok(None);
    }
    // The commit checks append-only again under the lock.
    let session = archive.begin_write_as(crate::archive::LockKind::Shared, "forget")?;
    let record = ForgetRecord {
        time: crate::sys::now(),
        reason: reason.to_string(),
        snapshots: ids.to_vec(),
    };
    session.commit_forget(&record).map(Some)
}

#[derive(Clone, Copy)]
pub struct PruneOptions {
    pub dry_run: bool,
    /// Packs with more than this share of unused bytes are rewritten.
    pub max_unused_percent: f64,
}

#[derive(Default, Debug)]
pub struct PruneReport {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub packs_before: u64,
    pub packs_deleted: u64,
    pub packs_rewritten: u64,
    pub packs_written: u64,
    pub blobs_removed: u64,
    pub blobs_moved: u64,
    /// Unused bytes left in packs that were not worth rewriting.
    pub unused_kept: u64,
    /// Pack files on disk the index does not know (left by crashes): not touched.
    pub unknown_packs: Vec<String>,
    /// Bucket packs that nothing references, younger than [`ORPHAN_GRACE`]: left alone
    /// (a writer that lost its lock may still commit a snapshot naming them).
    pub young_orphans: u64,
}

/// How old an unreferenced pack of a bucket archive must be before prune deletes it.
pub const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// The packs of which no remaining snapshot needs anything (an interrupted writer's
/// packs in a bucket archive, where every pack is indexed once the bucket is read):
/// (pack, size), for `check` to name. Forget records count as needed, as in prune.
pub fn unreferenced_packs(archive: &Archive) -> Result<Vec<(PackId, u64)>, ArchiveError> {
    let used = used_blobs(archive)?;
    let mut needed: HashSet<PackId> = HashSet::new();
    for (id, l) in archive.blobs()? {
        if used.contains(&id) || l.kind == BlobKind::Forget {
            needed.insert(l.pack);
        }
    }
    Ok(archive
        .pack_rows()?
        .into_iter()
        .filter(|(p, _, _)| !needed.contains(p))
        .map(|(p, size, _)| (p, size))
        .collect())
}

/// Every blob a remaining snapshot needs: its record, its trees and their chunks. A
/// tree shared by several snapshots (or directories) is walked once.
fn used_blobs(archive: &Archive) -> Result<HashSet<BlobId>, ArchiveError> {
    let mut used = Used(HashSet::new());
    for r in archive.snapshots()? {
        used.0.insert(r.id);
        let root = crate::tree::root_node(r.root, r.time);
        crate::tree::walk_node(archive, &mut (), &root, &mut used)?;
    }
    Ok(used.0)
}

/// The blobs found in use so far.
struct Used(HashSet<BlobId>);

impl crate::tree::Visitor for Used {
    type Frame = ();
    type Error = ArchiveError;

    fn visit(&mut self, _: &mut (), _: &[u8], n: &Node) -> Result<Option<()>, ArchiveError> {
        let mut descend = None;
        for r in crate::tree::refs(n) {
            match r {
                Ref::Chunk(id) => {
                    self.0.insert(id);
                }
                Ref::Tree(id) => {
                    if self.0.insert(id) {
                        descend = Some(());
                    }
                }
            }
        }
        Ok(descend)
    }

    fn unreadable(
        &mut self,
        _: &mut (),
        _: (),
        _: &[u8],
        n: &Node,
        e: ArchiveError,
    ) -> Result<(), ArchiveError> {
        let tree = n.subtree().map(|t| t.short()).unwrap_or_default();
        Err(ArchiveError::Invalid(format!(
            "tree {tree} cannot be read ({e}); prune needs every tree: run `strata check` and `strata repair` first"
        )))
    }
}

pub fn prune(archive: &Archive, opts: PruneOptions) -> Result<PruneReport, ArchiveError> {
    if archive.config().append_only {
        return Err(ArchiveError::AppendOnly("prune"));
    }
    // The writer lock first (exclusive, on a bucket too): no ingest may add references
    // while we decide.
    let mut session = archive.begin_write_as(crate::archive::LockKind::Exclusive, "prune")?;
    session.refuse_if_append_only("prune")?;
    let used = used_blobs(archive)?;
    let blobs = archive.blobs()?;
    let packs = archive.pack_rows()?;
    let mut report = PruneReport {
        packs_before: packs.len() as u64,
        ..PruneReport::default()
    };
    let known: HashSet<PackId> = packs.iter().map(|p| p.0).collect();
    // Only regular files named like packs: a stray directory is check's to report.
    for o in archive.pack_objects()?.0 {
        if PackId::from_file_name(&o.name).is_some_and(|p| !known.contains(&p)) {
            report.unknown_packs.push(o.name);
        }
    }
    report.unknown_packs.sort();
    let record = |l: &Location| BLOB_HEADER_LEN as u64 + l.stored_len;
    let keep = |id: &BlobId, l: &Location| used.contains(id) || l.kind == BlobKind::Forget;
    // A live snapshot record never moves: the order of the records in the packs is the
    // order the snapshots were committed in (`latest`, `--keep-last`), and `repair`
    // rebuilds it from there. The pack of an ingest's snapshot record holds that
    // ingest's own trees, all used while the snapshot lives, so this keeps nothing an
    // ordinary prune would have reclaimed.
    let holds_snapshot: HashSet<PackId> = blobs
        .iter()
        .filter(|(i, l)| l.kind == BlobKind::Snapshot && used.contains(i))
        .map(|(_, l)| l.pack)
        .collect();
    let mut by_pack: HashMap<PackId, Vec<(BlobId, Location)>> = HashMap::new();
    for (id, l) in &blobs {
        by_pack.entry(l.pack).or_default().push((*id, *l));
    }
    let mut moved = Vec::new();
    let mut removed_blobs = Vec::new();
    let mut removed_packs = Vec::new();
    for (pack, size, _) in &packs {
        report.bytes_before += size;
        let list = by_pack.remove(pack).unwrap_or_default();
        let used_bytes: u64 = list
            .iter()
            .filter(|(i, l)| keep(i, l))
            .map(|(_, l)| record(l))
            .sum();
        let unused = size.saturating_sub(used_bytes + PACK_HEADER_LEN as u64);
        let young = crate::archive::pack_id_time(*pack)
            .is_some_and(|t| crate::sys::now().0 - t < ORPHAN_GRACE.as_secs() as i64);
        if used_bytes == 0 && young && archive.is_bucket() {
            report.young_orphans += 1;
            report.unused_kept += unused;
            report.bytes_after += size;
        } else if used_bytes == 0 {
            report.packs_deleted += 1;
            removed_packs.push(*pack);
            removed_blobs.extend(list.iter().map(|(i, _)| *i));
        } else if unused as f64 > *size as f64 * opts.max_unused_percent / 100.0
            && !holds_snapshot.contains(pack)
        {
            report.packs_rewritten += 1;
            removed_packs.push(*pack);
            for (id, l) in &list {
                if keep(id, l) {
                    if !opts.dry_run {
                        moved.push((*id, session.copy_blob(id, l)?));
                    }
                    report.blobs_moved += 1;
                    report.bytes_after += record(l);
                } else {
                    removed_blobs.push(*id);
                }
            }
        } else {
            report.unused_kept += unused;
            report.bytes_after += size;
            removed_blobs.extend(list.iter().filter(|(i, l)| !keep(i, l)).map(|(i, _)| *i));
        }
    }
    // Blobs left in kept packs stay readable there; only those in removed packs go.
    let removed_set: HashSet<PackId> = removed_packs.iter().copied().collect();
    let in_removed: HashSet<BlobId> = blobs
        .iter()
        .filter(|(_, l)| removed_set.contains(&l.pack))
        .map(|(i, _)| *i)
        .collect();
    removed_blobs.retain(|i| in_removed.contains(i));
    report.blobs_removed = removed_blobs.len() as u64;
    if opts.dry_run {
        report.bytes_after += (report.packs_rewritten.min(1)) * PACK_HEADER_LEN as u64;
        drop(session);
        return Ok(report);
    }
    if removed_packs.is_empty() {
        drop(session);
        return Ok(report);
    }
    finish(
        session,
        &moved,
        &removed_blobs,
        &removed_packs,
        archive,
        &mut report,
    )?;
    Ok(report)
}

fn finish(
    session: WriteSession<'_>,
    moved: &[(BlobId, Location)],
    removed_blobs: &[BlobId],
    removed_packs: &[PackId],
    archive: &Archive,
    report: &mut PruneReport,
) -> Result<(), ArchiveError> {
    // New packs sealed, the index switched in one transaction, and only then the old
    // packs deleted: all inside commit_switch.
    let new_packs: HashSet<PackId> = moved.iter().map(|(_, l)| l.pack).collect();
    report.packs_written = new_packs.len() as u64;
    session.commit_switch(moved, removed_blobs, removed_packs)?;
    report.bytes_after = archive.pack_rows()?.iter().map(|(_, s, _)| s).sum();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u8, t: i64, tags: &[&str]) -> SnapshotRow {
        SnapshotRow {
            id: BlobId([i; 32]),
            time: (t, 0),
            host: String::new(),
            label: "jira".into(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            sources: vec![],
            root: BlobId([0; 32]),
            files: 0,
            size: 0,
            added: 0,
            errors: 0,
        }
    }

    /// 2026-01-01T00:00:00Z
    const JAN1: i64 = 1_767_225_600;

    /// A year of two snapshots a day, at 02:00 and 14:00 UTC.
    fn year() -> Vec<SnapshotRow> {
        (0..365 * 2)
            .map(|i| {
                let day = (i / 2) as i64;
                let t = JAN1 + day * 86_400 + if i % 2 == 0 { 2 * 3600 } else { 14 * 3600 };
                let mut r = row(0, t, &[]);
                r.id = BlobId(*blake3::hash(&t.to_le_bytes()).as_bytes());
                r
            })
            .collect()
    }

    fn kept(p: &Policy, rows: &[SnapshotRow]) -> Vec<String> {
        let mut k: Vec<String> = apply(p, rows)
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| crate::sys::rfc3339(d.row.time.0, 0, false))
            .collect();
        k.sort();
        k
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let p = Policy {
            last: Some(3),
            ..Policy::default()
        };
        assert_eq!(
            kept(&p, &year()),
            vec![
                "2026-12-30T14:00:00Z",
                "2026-12-31T02:00:00Z",
                "2026-12-31T14:00:00Z"
            ]
        );
    }

    #[test]
    fn keep_last_counts_commit_order_and_time_rules_the_recorded_times() {
        // Committed in this order; the second was made under a clock a year ahead.
        let rows = vec![
            row(1, JAN1, &[]),
            row(2, JAN1 + 365 * 86_400, &[]),
            row(3, JAN1 + 3600, &[]),
        ];
        let p = Policy {
            last: Some(1),
            ..Policy::default()
        };
        let kept: Vec<u8> = apply(&p, &rows)
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.row.id.0[0])
            .collect();
        assert_eq!(kept, vec![3], "the last committed, not the latest clock");
        let p = Policy {
            yearly: Some(1),
            ..Policy::default()
        };
        let kept: Vec<u8> = apply(&p, &rows)
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.row.id.0[0])
            .collect();
        assert_eq!(kept, vec![2], "time rules bucket the recorded times");
    }

    #[test]
    fn keep_daily_keeps_the_newest_of_each_of_the_last_n_days() {
        let p = Policy {
            daily: Some(3),
            ..Policy::default()
        };
        assert_eq!(
            kept(&p, &year()),
            vec![
                "2026-12-29T14:00:00Z",
                "2026-12-30T14:00:00Z",
                "2026-12-31T14:00:00Z"
            ]
        );
    }

    #[test]
    fn keep_weekly_uses_iso_weeks() {
        // 2026-12-31 is a Thursday (ISO week 53 of 2026); weeks end on Sundays.
        let p = Policy {
            weekly: Some(3),
            ..Policy::default()
        };
        assert_eq!(
            kept(&p, &year()),
            vec![
                "2026-12-20T14:00:00Z",
                "2026-12-27T14:00:00Z",
                "2026-12-31T14:00:00Z"
            ]
        );
    }

    #[test]
    fn keep_monthly_and_yearly() {
        let p = Policy {
            monthly: Some(3),
            ..Policy::default()
        };
        assert_eq!(
            kept(&p, &year()),
            vec![
                "2026-10-31T14:00:00Z",
                "2026-11-30T14:00:00Z",
                "2026-12-31T14:00:00Z"
            ]
        );
        let p = Policy {
            yearly: Some(5),
            ..Policy::default()
        };
        assert_eq!(kept(&p, &year()), vec!["2026-12-31T14:00:00Z"]);
    }

    #[test]
    fn keep_hourly_counts_hours_that_have_snapshots() {
        let p = Policy {
            hourly: Some(4),
            ..Policy::default()
        };
        assert_eq!(
            kept(&p, &year()),
            vec![
                "2026-12-30T02:00:00Z",
                "2026-12-30T14:00:00Z",
                "2026-12-31T02:00:00Z",
                "2026-12-31T14:00:00Z"
            ]
        );
    }

    #[test]
    fn keep_within_is_relative_to_the_newest_snapshot() {
        let p = Policy {
            within: Some(Span::parse("2d").unwrap()),
            ..Policy::default()
        };
        assert_eq!(
            kept(&p, &year()),
            vec![
                "2026-12-29T14:00:00Z",
                "2026-12-30T02:00:00Z",
                "2026-12-30T14:00:00Z",
                "2026-12-31T02:00:00Z",
                "2026-12-31T14:00:00Z"
            ]
        );
    }

    #[test]
    fn keep_tag_keeps_tagged_snapshots_whatever_their_age() {
        let mut rows = year();
        rows[10].tags = vec!["release".into()];
        let p = Policy {
            last: Some(1),
            tags: vec!["release".into()],
            ..Policy::default()
        };
        assert_eq!(
            kept(&p, &rows),
            vec!["2026-01-06T02:00:00Z", "2026-12-31T14:00:00Z"]
        );
    }

    #[test]
    fn combined_policies_keep_the_union_with_reasons() {
        let p = Policy {
            last: Some(2),
            daily: Some(7),
            weekly: Some(4),
            monthly: Some(12),
            yearly: Some(1),
            ..Policy::default()
        };
        let rows = year();
        let k = kept(&p, &rows);
        let mut expected = vec!["2026-12-31T02:00:00Z".to_string()]; // last 2
        for d in 25..=31 {
            expected.push(format!("2026-12-{d}T14:00:00Z")); // daily 7 (the 31st is last too)
        }
        expected.push("2026-12-20T14:00:00Z".into()); // weekly: weeks 53, 52, 51 (20th), 50 (13th)
        expected.push("2026-12-13T14:00:00Z".into());
        for m in [
            "01-31", "02-28", "03-31", "04-30", "05-31", "06-30", "07-31", "08-31", "09-30",
            "10-31", "11-30",
        ] {
            expected.push(format!("2026-{m}T14:00:00Z")); // monthly 12 (December is the 31st)
        }
        expected.sort();
        assert_eq!(k, expected);
        let newest = apply(&p, &rows)
            .into_iter()
            .find(|d| d.row.time.0 == rows[729].time.0)
            .unwrap();
        assert_eq!(
            newest.reasons,
            vec!["last", "daily", "weekly", "monthly", "yearly"]
        );
        assert_eq!(
            apply(&p, &rows).iter().filter(|d| d.keep).count(),
            expected.len()
        );
    }

    #[test]
    fn spans_parse_and_subtract_by_the_calendar() {
        assert_eq!(
            Span::parse("1y6m14d12h").unwrap(),
            Span {
                years: 1,
                months: 6,
                days: 14,
                hours: 12
            }
        );
        assert!(Span::parse("5").is_err());
        assert!(Span::parse("3w").is_err());
        // 2026-03-31 minus one month is "2026-02-31", which normalises to 2026-03-03.
        let t = days_from_civil(2026, 3, 31) * 86_400;
        let back = Span::parse("1m").unwrap().before(t);
        assert_eq!(crate::sys::rfc3339(back, 0, false), "2026-03-03T00:00:00Z");
        assert_eq!(iso_week(days_from_civil(2026, 12, 31)), (2026, 53));
        assert_eq!(iso_week(days_from_civil(2027, 1, 4)), (2027, 1));
    }
}
