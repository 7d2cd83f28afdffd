//! Jira's export directory `jira/export/`: two XML backup zips a day, named as in
//! `2026-11-20--0200.zip` and `2026-11-20--1400.zip`, each holding `entities.xml` and
//! `activeobjects.xml` (deflated), plus one Structure plugin backup a day,
//! `structure-backup-20261120-030000.xml.zip`.
//!
//! Time steps are zips: step `t` is day `t / 2` at 02:00 (even) or 14:00 (odd). Between two
//! zips about 5% of issues change (status, rank, one more comment and change group) and 0.4%
//! are added; everything else is re-emitted byte for byte, as in real consecutive backups.

use std::fs::{File, FileTimes, Permissions};
use std::io::{self, BufWriter};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::clock::{DAY, DAY0, HOUR, Stamp, civil, date, day_start, push_datetime_ms, push_num};
use crate::fsx::{self, at};
use crate::model::{Churn, Population, State, scaled};
use crate::rng::{Rng, key};
use crate::text::{self, person};
use crate::{Sink, Task};

/// Deflate level of the zips: fast, and about what a backup zip looks like.
const ZIP_LEVEL: i64 = 1;
const P_ISSUE: f64 = 0.05;
const P_USER: f64 = 0.01;
/// Most comments or change groups one issue carries.
const MAX_PER_ISSUE: u64 = 63;

const T_ISSUE_CHURN: u64 = 0x4a01;
const T_USER_CHURN: u64 = 0x4a02;
const T_ISSUE: u64 = 0x4a03;
const T_DESC: u64 = 0x4a04;
const T_COMMENT: u64 = 0x4a05;
const T_GROUP: u64 = 0x4a06;
const T_EXTRA: u64 = 0x4a07;
const T_WHEN: u64 = 0x4a08;
const T_ZIP: u64 = 0x4a09;
const T_PROJECT: u64 = 0x4a0a;
const T_SPRINT: u64 = 0x4a0b;
const T_STRUCTURE: u64 = 0x4a0c;

const STATUSES: [(u32, &str); 5] = [
    (1, "Open"),
    (3, "In Progress"),
    (10001, "In Review"),
    (5, "Resolved"),
    (6, "Closed"),
];
const LABELS: [&str; 12] = [
    "backend",
    "frontend",
    "customer",
    "regression",
    "performance",
    "security",
    "ux",
    "tech-debt",
    "migration",
    "flaky",
    "docs",
    "release-blocker",
];
const FIELDS: [&str; 8] = [
    "status",
    "assignee",
    "priority",
    "Rank",
    "Sprint",
    "resolution",
    "labels",
    "Fix Version",
];

/// An Active Objects table's columns: name, JDBC type, precision.
type AoColumns = &'static [(&'static str, i32, u32)];

/// Step `t`'s zip time (seconds).
pub fn zip_time(t: u32) -> i64 {
    day_start(t / 2) + if t.is_multiple_of(2) { 2 } else { 14 } * HOUR
}

/// The file name Jira's backup service gives step `t`'s zip.
pub fn zip_name(t: u32) -> String {
    let hhmm = if t.is_multiple_of(2) { "0200" } else { "1400" };
    format!("{}--{hhmm}.zip", date(zip_time(t)))
}

/// The Structure plugin's backup of day `day`.
pub fn structure_name(day: u32) -> String {
    format!(
        "structure-backup-{}-030000.xml.zip",
        date(day_start(day)).replace('-', "")
    )
}

fn export_dir(root: &Path) -> PathBuf {
    root.join("export")
}

pub fn generate(state: &State, root: &Path, tasks: &mut Vec<Task>) -> io::Result<()> {
    let dir = export_dir(root);
    fsx::mkdirs(&dir)?;
    let jira = Jira::new(state.seed, state.scale);
    for t in 0..2 * (state.day + 1) {
        jira.zip_task(&dir, t, tasks);
    }
    for day in 0..=state.day {
        jira.structure_task(&dir, day, tasks);
    }
    Ok(())
}

pub fn next_day(state: &State, root: &Path, tasks: &mut Vec<Task>) -> io::Result<()> {
    let dir = export_dir(root);
    fsx::mkdirs(&dir)?;
    let jira = Jira::new(state.seed, state.scale);
    jira.zip_task(&dir, 2 * state.day, tasks);
    jira.zip_task(&dir, 2 * state.day + 1, tasks);
    jira.structure_task(&dir, state.day, tasks);
    Ok(())
}

/// Change steps of every issue up to one zip, flattened.
struct History {
    starts: Vec<u32>,
    steps: Vec<u32>,
}

impl History {
    fn of(&self, i: u64) -> &[u32] {
        let i = i as usize;
        &self.steps[self.starts[i] as usize..self.starts[i + 1] as usize]
    }
}

#[derive(Clone, Copy)]
struct Jira {
    seed: u64,
    issues: Population,
    users: u64,
    projects: u64,
    issue_churn: Churn,
    user_churn: Churn,
}

/// Appends ` name="value"`.
fn attr(b: &mut Vec<u8>, name: &str, value: &str) {
    b.push(b' ');
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"=\"");
    b.extend_from_slice(value.as_bytes());
    b.push(b'"');
}

fn attr_num(b: &mut Vec<u8>, name: &str, value: u64) {
    b.push(b' ');
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"=\"");
    push_num(b, value, 0);
    b.push(b'"');
}

/// A Jira timestamp attribute: `name="2026-11-20 02:00:13.5"`.
fn attr_time(b: &mut Vec<u8>, name: &str, secs: i64, millis: u32) {
    b.push(b' ');
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"=\"");
    push_datetime_ms(b, secs, millis);
    b.push(b'"');
}

fn cdata_open(b: &mut Vec<u8>, tag: &str) {
    b.extend_from_slice(b"        <");
    b.extend_from_slice(tag.as_bytes());
    b.extend_from_slice(b"><![CDATA[");
}

fn cdata_close(b: &mut Vec<u8>, tag: &str) {
    b.extend_from_slice(b"]]></");
    b.extend_from_slice(tag.as_bytes());
    b.extend_from_slice(b">\n");
}

fn dos_time(secs: i64) -> DateTime {
    let c = civil(secs);
    DateTime::from_date_and_time(
        c.year as u16,
        c.month as u8,
        c.day as u8,
        c.hour as u8,
        c.minute as u8,
        c.second as u8,
    )
    .unwrap_or_default()
}

/// Writes a deflated zip whose entries `body` fills, one call per entry; returns its size.
fn write_zip(
    path: &Path,
    entries: &[(&str, i64)],
    mtime: Stamp,
    mut body: impl FnMut(usize, &mut Sink<&mut ZipWriter<BufWriter<File>>>) -> io::Result<()>,
) -> io::Result<u64> {
    let file = File::create(path).map_err(at(path))?;
    file.set_permissions(Permissions::from_mode(0o644))
        .map_err(at(path))?;
    let mut zip = ZipWriter::new(BufWriter::with_capacity(1 << 20, file));
    for (n, &(name, when)) in entries.iter().enumerate() {
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(ZIP_LEVEL))
            .last_modified_time(dos_time(when));
        zip.start_file(name, opts).map_err(|e| at(path)(e.into()))?;
        let mut sink = Sink::new(&mut zip);
        body(n, &mut sink).map_err(at(path))?;
        sink.finish().map_err(at(path))?;
    }
    let file = zip
        .finish()
        .map_err(|e| at(path)(e.into()))?
        .into_inner()
        .map_err(|e| at(path)(e.into_error()))?;
    file.set_times(FileTimes::new().set_modified(mtime.system_time()))
        .map_err(at(path))?;
    Ok(file.metadata().map_err(at(path))?.len())
}

impl Jira {
    fn new(seed: u64, scale: f64) -> Jira {
        Jira {
            seed,
            issues: Population::growing(scaled(84_000.0, scale, 40), 0.004),
            users: scaled(2_500.0, scale, 8),
            projects: scaled(60.0, scale.sqrt(), 3),
            issue_churn: Churn {
                seed,
                tag: T_ISSUE_CHURN,
                p: P_ISSUE,
            },
            user_churn: Churn {
                seed,
                tag: T_USER_CHURN,
                p: P_USER,
            },
        }
    }

    fn zip_task(self, dir: &Path, t: u32, tasks: &mut Vec<Task>) {
        let path = dir.join(zip_name(t));
        let cost = self.issues.count(t) * 4_000;
        tasks.push(Task::new(cost, move || self.write_backup(&path, t)));
    }

    fn structure_task(self, dir: &Path, day: u32, tasks: &mut Vec<Task>) {
        let path = dir.join(structure_name(day));
        let cost = self.issues.count(2 * day) * 60;
        tasks.push(Task::new(cost, move || self.write_structure(&path, day)));
    }

    fn history(&self, t: u32) -> History {
        let n = self.issues.count(t);
        let mut starts = Vec::with_capacity(n as usize + 1);
        let mut steps = Vec::new();
        let mut buf = Vec::new();
        starts.push(0);
        for i in 0..n {
            self.issue_churn.steps(i, self.issues.born(i), t, &mut buf);
            steps.extend_from_slice(&buf);
            starts.push(steps.len() as u32);
        }
        History { starts, steps }
    }

    /// When issue `i` changed at step `j`: some time in the twelve hours before zip `j`.
    fn change_time(&self, i: u64, j: u32) -> i64 {
        zip_time(j) - 60 - (key(&[self.seed, T_WHEN, i, j as u64]) % (11 * HOUR as u64)) as i64
    }

    fn created(&self, i: u64) -> i64 {
        let jitter = (key(&[self.seed, T_WHEN, i]) % 3_600) as i64;
        if i < self.issues.initial {
            let span = 3 * 365 * DAY;
            DAY0 - span + (i as i64 * (span - 2 * DAY)) / self.issues.initial as i64 + jitter
        } else {
            self.change_time(i, self.issues.born(i)) - jitter
        }
    }

    fn user_login(&self, u: u64) -> String {
        person(u % self.users).login
    }

    /// Comments (or change groups) issue `i` had before its first change.
    fn base_count(&self, i: u64, tag: u64) -> u64 {
        if self.issues.born(i) > 0 {
            0
        } else {
            key(&[self.seed, tag, i]) % 5
        }
    }

    /// Creation time of the `k`-th comment or change group of `i`.
    fn child_time(&self, i: u64, k: u64, base: u64, steps: &[u32]) -> i64 {
        if k < base {
            let gap = (key(&[self.seed, T_WHEN, i, 1_000 + k]) % (72 * HOUR as u64)) as i64;
            (self.created(i) + (k as i64 + 1) * gap).min(DAY0 - HOUR)
        } else {
            self.change_time(i, steps[(k - base) as usize])
        }
    }

    fn write_backup(self, path: &Path, t: u32) -> io::Result<u64> {
        let when = zip_time(t);
        let hist = self.history(t);
        let mut r = Rng::keyed(&[self.seed, T_ZIP, t as u64]);
        let took = 40 + (self.issues.count(t) / 700) as i64;
        let mtime = Stamp::new(
            when + took + r.below(20) as i64,
            r.below(1_000_000_000) as u32,
        );
        let entries = [
            ("entities.xml", when + took / 2),
            ("activeobjects.xml", when + took - 5),
        ];
        write_zip(path, &entries, mtime, |n, sink| {
            if n == 0 {
                self.write_entities(sink, t, &hist)
            } else {
                self.write_ao(sink, t, &hist)
            }
        })
    }

    fn write_entities<W: io::Write>(
        &self,
        s: &mut Sink<W>,
        t: u32,
        hist: &History,
    ) -> io::Result<()> {
        let when = zip_time(t);
        let n = self.issues.count(t);
        s.buf.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!--\n    Exported from Jira 9.12.15 (build 9120015) at ");
        push_datetime_ms(&mut s.buf, when, 0);
        s.buf.extend_from_slice(b"\n-->\n<entity-engine-xml");
        attr_num(&mut s.buf, "date", when as u64 * 1000);
        s.buf.extend_from_slice(b">\n");

        for p in 0..self.projects {
            let mut r = Rng::keyed(&[self.seed, T_PROJECT, p]);
            let b = &mut s.buf;
            let pkey = text::project_key(p);
            b.extend_from_slice(b"    <Project");
            attr_num(b, "id", 10_000 + p);
            b.extend_from_slice(b" name=\"");
            text::title(&mut r, b);
            b.push(b'"');
            attr(b, "url", "");
            attr(b, "lead", &self.user_login(r.below(self.users)));
            b.extend_from_slice(b" description=\"");
            text::sentence(&mut r, b);
            b.push(b'"');
            attr(b, "key", &pkey);
            attr_num(b, "counter", n.saturating_sub(p).div_ceil(self.projects));
            attr(b, "assigneetype", "3");
            attr_num(b, "avatar", 10_200 + r.below(30));
            attr(b, "originalkey", &pkey);
            attr(b, "projecttype", "software");
            b.extend_from_slice(b"/>\n");
        }

        for u in 0..self.users {
            let who = person(u);
            let updated = match self.user_churn.last(u, 0, t) {
                0 => DAY0 - 800 * DAY + (u as i64 * 3_571) % (700 * DAY),
                j => zip_time(j) - 7 * HOUR,
            };
            let mut r = Rng::keyed(&[self.seed, T_USER_CHURN, u]);
            let b = &mut s.buf;
            let lower_name = format!("{} {}", who.first, who.last).to_ascii_lowercase();
            b.extend_from_slice(b"    <User");
            attr_num(b, "id", 10_000 + u);
            attr(b, "directoryId", "1");
            attr(b, "userName", &who.login);
            attr(b, "lowerUserName", &who.login);
            attr(b, "active", if u % 17 == 16 { "0" } else { "1" });
            attr_time(
                b,
                "createdDate",
                DAY0 - 900 * DAY + u as i64 * 3_571 % (90 * DAY),
                0,
            );
            attr_time(b, "updatedDate", updated, r.below(1000) as u32);
            attr(b, "firstName", who.first);
            attr(b, "lowerFirstName", &who.first.to_ascii_lowercase());
            attr(b, "lastName", who.last);
            attr(b, "lowerLastName", &who.last.to_ascii_lowercase());
            attr(b, "displayName", &format!("{} {}", who.first, who.last));
            attr(b, "lowerDisplayName", &lower_name);
            attr(b, "emailAddress", &format!("{}@example.com", who.login));
            attr(
                b,
                "lowerEmailAddress",
                &format!("{}@example.com", who.login),
            );
            b.extend_from_slice(b" credential=\"{PKCS5S2}");
            b.extend_from_slice(r.hex(48).as_bytes());
            b.push(b'"');
            attr(b, "deletedExternally", "0");
            attr(b, "externalId", &r.hex(32));
            b.extend_from_slice(b"/>\n    <ApplicationUser");
            attr_num(b, "id", 10_000 + u);
            attr(b, "userKey", &format!("JIRAUSER{}", 10_000 + u));
            attr(b, "lowerUserName", &who.login);
            b.extend_from_slice(b"/>\n");
            s.spill()?;
        }

        for i in 0..n {
            self.write_issue(&mut s.buf, i, hist.of(i));
            s.spill()?;
        }
        for i in 0..n {
            self.write_comments(&mut s.buf, i, hist.of(i));
            s.spill()?;
        }
        for i in 0..n {
            self.write_change_groups(&mut s.buf, i, hist.of(i), false);
            s.spill()?;
        }
        for i in 0..n {
            self.write_change_groups(&mut s.buf, i, hist.of(i), true);
            s.spill()?;
        }
        for i in 0..n {
            self.write_extras(&mut s.buf, i, hist.of(i));
            s.spill()?;
        }
        for k in 0..120u64 {
            let b = &mut s.buf;
            b.extend_from_slice(b"    <OSPropertyEntry");
            attr_num(b, "id", 10_000 + k);
            attr(b, "entityName", "jira.properties");
            attr(b, "entityId", "1");
            b.extend_from_slice(b" propertyKey=\"jira.option.");
            text::words(&mut Rng::keyed(&[self.seed, T_EXTRA, k]), b, 2);
            b.extend_from_slice(b"\" type=\"5\"/>\n    <OSPropertyString");
            attr_num(b, "id", 10_000 + k);
            if k == 0 {
                b.extend_from_slice(b" value=\"");
                push_num(b, when as u64 * 1000, 0);
                b.extend_from_slice(b"\"/>\n");
            } else {
                attr(b, "value", if k % 3 == 0 { "false" } else { "true" });
                b.extend_from_slice(b"/>\n");
            }
        }
        s.buf.extend_from_slice(b"</entity-engine-xml>\n");
        Ok(())
    }

    fn write_issue(&self, b: &mut Vec<u8>, i: u64, steps: &[u32]) {
        let v = steps.len() as u64;
        let created = self.created(i);
        let updated = steps.last().map_or(created, |&j| self.change_time(i, j));
        let mut r = Rng::keyed(&[self.seed, T_ISSUE, i]);
        let p = i % self.projects;
        let number = i / self.projects + 1;
        let (status, _) = STATUSES[((r.below(5) + v) % 5) as usize];
        let reporter = self.user_login(r.below(self.users));
        b.extend_from_slice(b"    <Issue");
        attr_num(b, "id", 10_000 + i);
        attr(b, "key", &format!("{}-{number}", text::project_key(p)));
        attr_num(b, "project", 10_000 + p);
        attr_num(b, "number", number);
        attr(b, "reporter", &reporter);
        attr(b, "assignee", &self.user_login(r.below(self.users) + v));
        attr(b, "creator", &reporter);
        attr_num(b, "type", 10_000 + r.below(5));
        b.extend_from_slice(b" summary=\"");
        text::title(&mut r, b);
        b.push(b'"');
        attr_num(b, "priority", 1 + (r.below(5) + v / 3) % 5);
        if status >= 5 {
            attr(b, "resolution", "10000");
            attr_time(b, "resolutiondate", updated, 0);
        }
        attr_num(b, "status", status as u64);
        attr_time(b, "created", created, r.below(1000) as u32);
        attr_time(b, "updated", updated, r.below(1000) as u32);
        attr_num(b, "votes", r.below(3));
        attr_num(b, "watches", 1 + r.below(4) + v.min(5));
        let estimate = 3_600 * r.range(1, 40);
        attr_num(b, "timeoriginalestimate", estimate);
        attr_num(b, "timeestimate", estimate.saturating_sub(v * 1_800));
        attr_num(b, "timespent", v * 1_800);
        attr_num(b, "workflowId", 10_000 + i);
        b.extend_from_slice(b">\n");
        let mut d = Rng::keyed(&[self.seed, T_DESC, i, v / 4]);
        let len = d.log_normal(350.0, 0.9).clamp(40.0, 6_000.0) as usize;
        cdata_open(b, "description");
        text::jira_markup(&mut d, b, len);
        cdata_close(b, "description");
        b.extend_from_slice(b"    </Issue>\n");
    }

    fn write_comments(&self, b: &mut Vec<u8>, i: u64, steps: &[u32]) {
        let base = self.base_count(i, T_COMMENT);
        let total = (base + steps.len() as u64).min(MAX_PER_ISSUE);
        for k in 0..total {
            let when = self.child_time(i, k, base, steps);
            let mut r = Rng::keyed(&[self.seed, T_COMMENT, i, k]);
            let author = self.user_login(r.below(self.users));
            b.extend_from_slice(b"    <Action");
            attr_num(b, "id", 10_000 + i * 64 + k);
            attr_num(b, "issue", 10_000 + i);
            attr(b, "author", &author);
            attr(b, "type", "comment");
            attr_time(b, "created", when, r.below(1000) as u32);
            attr(b, "updateauthor", &author);
            attr_time(b, "updated", when, r.below(1000) as u32);
            b.extend_from_slice(b">\n");
            cdata_open(b, "body");
            let len = r.log_normal(220.0, 0.8).clamp(20.0, 4_000.0) as usize;
            text::prose(&mut r, b, len);
            if r.chance(0.12) {
                b.extend_from_slice(b"{noformat}\n");
                text::stack_trace(&mut r, b, 8);
                b.extend_from_slice(b"{noformat}");
            }
            cdata_close(b, "body");
            b.extend_from_slice(b"    </Action>\n");
        }
    }

    /// `ChangeGroup` rows, or with `items` the `ChangeItem` rows under them.
    fn write_change_groups(&self, b: &mut Vec<u8>, i: u64, steps: &[u32], items: bool) {
        let base = self.base_count(i, T_GROUP);
        let total = (base + steps.len() as u64).min(MAX_PER_ISSUE);
        for g in 0..total {
            let id = 10_000 + i * 64 + g;
            let mut r = Rng::keyed(&[self.seed, T_GROUP, i, g]);
            if !items {
                let when = self.child_time(i, g, base, steps);
                b.extend_from_slice(b"    <ChangeGroup");
                attr_num(b, "id", id);
                attr_num(b, "issue", 10_000 + i);
                attr(b, "author", &self.user_login(r.below(self.users)));
                attr_time(b, "created", when, r.below(1000) as u32);
                b.extend_from_slice(b"/>\n");
                continue;
            }
            r.below(self.users);
            for x in 0..r.range(1, 2) {
                let field = *r.pick(&FIELDS);
                b.extend_from_slice(b"    <ChangeItem");
                attr_num(b, "id", id * 2 + x);
                attr_num(b, "group", id);
                attr(b, "fieldtype", if x == 0 { "jira" } else { "custom" });
                attr(b, "field", field);
                if field == "status" {
                    let (old, old_name) = *r.pick(&STATUSES);
                    let (new, new_name) = *r.pick(&STATUSES);
                    attr_num(b, "oldvalue", old as u64);
                    attr(b, "oldstring", old_name);
                    attr_num(b, "newvalue", new as u64);
                    attr(b, "newstring", new_name);
                } else {
                    attr(b, "oldvalue", &self.user_login(r.below(self.users)));
                    b.extend_from_slice(b" oldstring=\"");
                    text::words(&mut r, b, 2);
                    b.push(b'"');
                    attr(b, "newvalue", &self.user_login(r.below(self.users)));
                    b.extend_from_slice(b" newstring=\"");
                    text::words(&mut r, b, 2);
                    b.push(b'"');
                }
                b.extend_from_slice(b"/>\n");
            }
        }
    }

    /// Custom field values, labels and worklogs of issue `i`.
    fn write_extras(&self, b: &mut Vec<u8>, i: u64, steps: &[u32]) {
        let v = steps.len() as u64;
        let mut r = Rng::keyed(&[self.seed, T_EXTRA, i]);
        let issue = 10_000 + i;
        b.extend_from_slice(b"    <CustomFieldValue");
        attr_num(b, "id", 10_000 + i * 4);
        attr_num(b, "issue", issue);
        attr(b, "customfield", "10106");
        attr_num(b, "numbervalue", *r.pick(&[1, 2, 3, 5, 8, 13]));
        b.extend_from_slice(b"/>\n    <CustomFieldValue");
        attr_num(b, "id", 10_000 + i * 4 + 1);
        attr_num(b, "issue", issue);
        attr(b, "customfield", "10019");
        b.extend_from_slice(b" stringvalue=\"0|i");
        let rank = mix_rank(i, v);
        b.extend_from_slice(rank.as_bytes());
        b.extend_from_slice(b":\"/>\n    <CustomFieldValue");
        attr_num(b, "id", 10_000 + i * 4 + 2);
        attr_num(b, "issue", issue);
        attr(b, "customfield", "10020");
        attr_num(
            b,
            "stringvalue",
            1 + (self.created(i) - (DAY0 - 3 * 365 * DAY)).max(0) as u64 / (14 * DAY as u64) + v,
        );
        b.extend_from_slice(b"/>\n");
        for l in 0..r.below(4) {
            b.extend_from_slice(b"    <Label");
            attr_num(b, "id", 10_000 + i * 4 + l);
            attr(b, "fieldid", "");
            attr_num(b, "issue", issue);
            attr(b, "label", LABELS[r.below(LABELS.len() as u64) as usize]);
            b.extend_from_slice(b"/>\n");
        }
        if self.issues.born(i) == 0 {
            for w in 0..r.below(3) {
                let author = self.user_login(r.below(self.users));
                let when = self.created(i) + (w as i64 + 1) * 5 * HOUR;
                b.extend_from_slice(b"    <Worklog");
                attr_num(b, "id", 10_000 + i * 4 + w);
                attr_num(b, "issue", issue);
                attr(b, "author", &author);
                b.extend_from_slice(b" body=\"");
                text::sentence(&mut r, b);
                b.push(b'"');
                attr_time(b, "created", when, 0);
                attr(b, "updateauthor", &author);
                attr_time(b, "updated", when, 0);
                attr_time(b, "startdate", when - 2 * HOUR, 0);
                attr_num(b, "timeworked", 900 * r.range(1, 16));
                b.extend_from_slice(b"/>\n");
            }
        }
    }

    fn write_ao<W: io::Write>(&self, s: &mut Sink<W>, t: u32, hist: &History) -> io::Result<()> {
        let when = zip_time(t);
        s.buf.extend_from_slice(
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<backup xmlns=\"http://www.atlassian.com/ao\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n\
    <database>\n\
        <meta key=\"database.name\" value=\"PostgreSQL\"/>\n\
        <meta key=\"database.version\" value=\"16.4\"/>\n\
        <meta key=\"database.minorVersion\" value=\"4\"/>\n\
        <meta key=\"database.majorVersion\" value=\"16\"/>\n\
        <meta key=\"driver.name\" value=\"PostgreSQL JDBC Driver\"/>\n\
        <meta key=\"driver.version\" value=\"42.7.4\"/>\n\
    </database>\n",
        );
        let tables: [(&str, AoColumns); 3] = [
            (
                "AO_60DB71_RAPIDVIEW",
                &[
                    ("ID", -5, 19),
                    ("KAN_PLAN_ENABLED", 16, 1),
                    ("NAME", 12, 255),
                    ("OWNER_USER_NAME", 12, 255),
                    ("SAVED_FILTER_ID", -5, 19),
                ],
            ),
            (
                "AO_60DB71_SPRINT",
                &[
                    ("CLOSED", 16, 1),
                    ("END_DATE", -5, 19),
                    ("GOAL", -1, 2_147_483_647),
                    ("ID", -5, 19),
                    ("NAME", 12, 255),
                    ("RAPID_VIEW_ID", -5, 19),
                    ("START_DATE", -5, 19),
                ],
            ),
            (
                "AO_575BF5_DEV_SUMMARY",
                &[
                    ("ID", 4, 10),
                    ("ISSUE_ID", -5, 19),
                    ("JSON", -1, 2_147_483_647),
                    ("LAST_UPDATED", 93, 35),
                    ("PROVIDER_SOURCE_ID", 12, 255),
                ],
            ),
        ];
        for (name, cols) in &tables {
            let b = &mut s.buf;
            b.extend_from_slice(b"    <table name=\"");
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(b"\">\n");
            for &(col, sql_type, precision) in cols.iter() {
                b.extend_from_slice(b"        <column");
                attr(b, "name", col);
                attr(b, "primaryKey", if col == "ID" { "true" } else { "false" });
                attr(
                    b,
                    "autoIncrement",
                    if col == "ID" { "true" } else { "false" },
                );
                attr(b, "sqlType", &sql_type.to_string());
                attr_num(b, "precision", precision as u64);
                b.extend_from_slice(b"/>\n");
            }
            b.extend_from_slice(b"    </table>\n");
        }
        let open_data = |b: &mut Vec<u8>, (name, cols): &(&str, AoColumns)| {
            b.extend_from_slice(b"    <data tableName=\"");
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(b"\">\n");
            for (col, _, _) in cols.iter() {
                b.extend_from_slice(b"        <column name=\"");
                b.extend_from_slice(col.as_bytes());
                b.extend_from_slice(b"\"/>\n");
            }
        };
        let val = |b: &mut Vec<u8>, kind: &str, v: &[u8]| {
            b.extend_from_slice(b"            <");
            b.extend_from_slice(kind.as_bytes());
            b.push(b'>');
            b.extend_from_slice(v);
            b.extend_from_slice(b"</");
            b.extend_from_slice(kind.as_bytes());
            b.extend_from_slice(b">\n");
        };
        let num = |n: i64| n.to_string().into_bytes();

        open_data(&mut s.buf, &tables[0]);
        for p in 0..self.projects {
            let b = &mut s.buf;
            b.extend_from_slice(b"        <row>\n");
            val(b, "integer", &num(p as i64 + 1));
            val(b, "boolean", b"false");
            val(
                b,
                "string",
                format!("{} board", text::project_key(p)).as_bytes(),
            );
            val(b, "string", self.user_login(p * 7).as_bytes());
            val(b, "integer", &num(10_000 + p as i64));
            b.extend_from_slice(b"        </row>\n");
        }
        s.buf.extend_from_slice(b"    </data>\n");

        open_data(&mut s.buf, &tables[1]);
        let first = DAY0 - 3 * 365 * DAY;
        let sprints = ((when - first) / (14 * DAY)) as u64 + 1;
        for p in 0..self.projects {
            for k in 0..sprints {
                let start = first + k as i64 * 14 * DAY + p as i64 * 600;
                let end = start + 14 * DAY;
                let b = &mut s.buf;
                b.extend_from_slice(b"        <row>\n");
                val(b, "boolean", if end < when { b"true" } else { b"false" });
                val(b, "integer", &num(end * 1000));
                b.extend_from_slice(b"            <string>");
                text::sentence(&mut Rng::keyed(&[self.seed, T_SPRINT, p, k]), b);
                b.extend_from_slice(b"</string>\n");
                val(b, "integer", &num((p * sprints + k) as i64 + 1));
                val(
                    b,
                    "string",
                    format!("{} Sprint {}", text::project_key(p), k + 1).as_bytes(),
                );
                val(b, "integer", &num(p as i64 + 1));
                val(b, "integer", &num(start * 1000));
                b.extend_from_slice(b"        </row>\n");
            }
            s.spill()?;
        }
        s.buf.extend_from_slice(b"    </data>\n");

        open_data(&mut s.buf, &tables[2]);
        for i in (0..self.issues.count(t)).step_by(3) {
            let steps = hist.of(i);
            let v = steps.len() as u64;
            let updated = steps
                .last()
                .map_or(self.created(i), |&j| self.change_time(i, j));
            let mut r = Rng::keyed(&[self.seed, T_EXTRA, i, 7]);
            let b = &mut s.buf;
            b.extend_from_slice(b"        <row>\n");
            val(b, "integer", &num(i as i64 / 3 + 1));
            val(b, "integer", &num(10_000 + i as i64));
            let json = format!(
                "{{\"pullrequest\":{{\"overall\":{{\"count\":{},\"state\":\"{}\",\"details\":[]}}}},\
\"repository\":{{\"overall\":{{\"count\":{}}}}},\"build\":{{\"overall\":{{\"count\":{},\"failedBuildCount\":{}}}}}}}",
                r.below(3) + v / 2,
                if v.is_multiple_of(2) {
                    "MERGED"
                } else {
                    "OPEN"
                },
                1 + r.below(3),
                r.below(20) + v,
                r.below(3)
            );
            val(b, "string", json.as_bytes());
            let mut ts = Vec::with_capacity(24);
            push_datetime_ms(&mut ts, updated, 0);
            ts[10] = b'T';
            ts.push(b'Z');
            val(b, "timestamp", &ts);
            val(b, "string", b"stash-1");
            b.extend_from_slice(b"        </row>\n");
            s.spill()?;
        }
        s.buf.extend_from_slice(b"    </data>\n</backup>\n");
        Ok(())
    }

    fn write_structure(self, path: &Path, day: u32) -> io::Result<u64> {
        let t = 2 * day;
        let when = day_start(day) + 3 * HOUR;
        let mut r = Rng::keyed(&[self.seed, T_STRUCTURE, day as u64]);
        let mtime = Stamp::new(when + 5 + r.below(30) as i64, r.below(1_000_000_000) as u32);
        let structures = self.projects.div_ceil(2);
        let n = self.issues.count(t);
        let this = self;
        write_zip(path, &[("structure.xml", when)], mtime, move |_, s| {
            s.buf.extend_from_slice(
                b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<structure-backup",
            );
            attr(&mut s.buf, "version", "3");
            attr(&mut s.buf, "build", "8.5.2");
            attr_num(&mut s.buf, "timestamp", when as u64 * 1000);
            s.buf.extend_from_slice(b">\n");
            for st in 0..structures {
                let mut r = Rng::keyed(&[this.seed, T_STRUCTURE, st]);
                let b = &mut s.buf;
                b.extend_from_slice(b"  <structure");
                attr_num(b, "id", st + 1);
                b.extend_from_slice(b" name=\"");
                text::title(&mut r, b);
                b.push(b'"');
                attr(b, "owner", &this.user_login(r.below(this.users)));
                b.extend_from_slice(b">\n    <forest>\n");
                let mut row = 0u64;
                for p in (st..this.projects).step_by(structures as usize) {
                    for i in (p..n).step_by(this.projects as usize) {
                        row += 1;
                        let b = &mut s.buf;
                        b.extend_from_slice(b"      <r");
                        attr_num(b, "i", st * 1_000_000 + row);
                        attr(
                            b,
                            "d",
                            if (i / this.projects).is_multiple_of(10) {
                                "0"
                            } else {
                                "1"
                            },
                        );
                        attr(b, "t", "com.almworks.jira.structure:type-issue");
                        attr_num(b, "o", 10_000 + i);
                        b.extend_from_slice(b"/>\n");
                        s.spill()?;
                    }
                }
                s.buf.extend_from_slice(b"    </forest>\n  </structure>\n");
            }
            s.buf.extend_from_slice(b"</structure-backup>\n");
            Ok(())
        })
    }
}

/// A LexoRank-looking bucket string that moves when the issue changes.
fn mix_rank(i: u64, v: u64) -> String {
    let n = i.wrapping_mul(7_919).wrapping_add(v.wrapping_mul(104_729)) % 2_176_782_336;
    let mut digits = [b'0'; 6];
    let mut x = n;
    for d in digits.iter_mut().rev() {
        *d = b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize];
        x /= 36;
    }
    String::from_utf8(digits.to_vec()).expect("ascii")
}
