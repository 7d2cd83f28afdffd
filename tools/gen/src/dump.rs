//! `dump/jira.sql`: a pg_dump plain-text dump of a Jira database, as made nightly at 23:10:
//! header comments and `SET` lines, `CREATE TABLE`s, one `COPY public.<table> (…) FROM stdin;`
//! block per table (tab-separated rows ending in `\.`), then primary keys and indexes.
//!
//! Time steps are days. Each day every row changes with probability 2% (its `updated` time and
//! one or two fields), and 0.5% more issues are appended together with their child rows.

use std::io::{self, Write};
use std::path::Path;

use crate::clock::{DAY, DAY0, HOUR, Stamp, day_start, push_datetime_ms, push_num};
use crate::fsx::{self, Out};
use crate::model::{Churn, Population, State, scaled};
use crate::rng::{Rng, key};
use crate::text::{self, person};
use crate::{Sink, Task};

const P_ROW: f64 = 0.02;
const GROWTH: f64 = 0.005;

const T_ROW: u64 = 0x4401;
const T_COUNT: u64 = 0x4402;
const T_WHEN: u64 = 0x4403;

/// Table name, columns with types, indexes as (name, columns).
type TableDef = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [(&'static str, &'static str)],
);

const N18: &str = "numeric(18,0)";
const V255: &str = "character varying(255)";
const TEXT: &str = "text";
const TS: &str = "timestamp with time zone";

/// In pg_dump's (alphabetical) order.
const TABLES: [TableDef; 8] = [
    (
        "changegroup",
        &[
            ("id", N18),
            ("issueid", N18),
            ("author", V255),
            ("created", TS),
        ],
        &[("chggroup_issue", "issueid")],
    ),
    (
        "changeitem",
        &[
            ("id", N18),
            ("groupid", N18),
            ("fieldtype", V255),
            ("field", V255),
            ("oldvalue", TEXT),
            ("oldstring", TEXT),
            ("newvalue", TEXT),
            ("newstring", TEXT),
        ],
        &[("chgitem_chggrp", "groupid"), ("chgitem_field", "field")],
    ),
    (
        "customfieldvalue",
        &[
            ("id", N18),
            ("issue", N18),
            ("customfield", N18),
            ("updated", N18),
            ("parentkey", V255),
            ("stringvalue", V255),
            ("numbervalue", "double precision"),
            ("textvalue", TEXT),
            ("datevalue", TS),
            ("valuetype", V255),
        ],
        &[("cfvalue_issue", "issue, customfield")],
    ),
    (
        "cwd_user",
        &[
            ("id", N18),
            ("directory_id", N18),
            ("user_name", V255),
            ("lower_user_name", V255),
            ("active", "integer"),
            ("created_date", TS),
            ("updated_date", TS),
            ("first_name", V255),
            ("last_name", V255),
            ("display_name", V255),
            ("email_address", V255),
            ("credential", V255),
            ("external_id", V255),
        ],
        &[("uk_user_name_dir_id", "lower_user_name, directory_id")],
    ),
    (
        "jiraaction",
        &[
            ("id", N18),
            ("issueid", N18),
            ("author", V255),
            ("actiontype", V255),
            ("actionlevel", V255),
            ("rolelevel", N18),
            ("actionbody", TEXT),
            ("created", TS),
            ("updateauthor", V255),
            ("updated", TS),
            ("actionnum", N18),
        ],
        &[
            ("action_issue", "issueid, actiontype"),
            ("action_author_created", "author, created"),
        ],
    ),
    (
        "jiraissue",
        &[
            ("id", N18),
            ("pkey", V255),
            ("issuenum", N18),
            ("project", N18),
            ("reporter", V255),
            ("assignee", V255),
            ("creator", V255),
            ("issuetype", V255),
            ("summary", V255),
            ("description", TEXT),
            ("environment", TEXT),
            ("priority", V255),
            ("resolution", V255),
            ("issuestatus", V255),
            ("created", TS),
            ("updated", TS),
            ("duedate", TS),
            ("resolutiondate", TS),
            ("votes", N18),
            ("watches", N18),
            ("timeoriginalestimate", N18),
            ("timeestimate", N18),
            ("timespent", N18),
            ("workflow_id", N18),
            ("archived", "character(1)"),
        ],
        &[
            ("issue_proj_num", "issuenum, project"),
            ("issue_proj_status", "project, issuestatus"),
            ("issue_updated", "updated"),
            ("issue_assignee", "assignee"),
        ],
    ),
    (
        "label",
        &[
            ("id", N18),
            ("fieldid", N18),
            ("issue", N18),
            ("label", V255),
        ],
        &[("label_issue", "issue"), ("label_label", "label")],
    ),
    (
        "project",
        &[
            ("id", N18),
            ("pname", V255),
            ("url", V255),
            ("lead", V255),
            ("description", TEXT),
            ("pkey", V255),
            ("pcounter", N18),
            ("assigneetype", N18),
            ("avatar", N18),
            ("originalkey", V255),
            ("projecttype", V255),
        ],
        &[("idx_project_key", "pkey")],
    ),
];

const FIELDS: [&str; 6] = [
    "status",
    "assignee",
    "priority",
    "resolution",
    "Sprint",
    "labels",
];
const LABELS: [&str; 8] = [
    "backend",
    "frontend",
    "customer",
    "regression",
    "performance",
    "security",
    "ux",
    "docs",
];

pub fn generate(state: &State, root: &Path, tasks: &mut Vec<Task>) -> io::Result<()> {
    fsx::mkdirs(root)?;
    next_day(state, root, tasks)
}

/// The dump is rewritten whole every day, like a nightly pg_dump.
pub fn next_day(state: &State, root: &Path, tasks: &mut Vec<Task>) -> io::Result<()> {
    let d = Dump::new(state);
    let path = root.join("jira.sql");
    tasks.push(Task::new(d.issues.count(state.day) * 3_000, move || {
        d.write(&path)
    }));
    Ok(())
}

/// One COPY row being written: fields separated by tabs, text escaped as COPY expects.
struct Row<'a> {
    b: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Row<'a> {
    fn new(b: &'a mut Vec<u8>) -> Self {
        Row { b, first: true }
    }

    fn sep(&mut self) -> &mut Vec<u8> {
        if !self.first {
            self.b.push(b'\t');
        }
        self.first = false;
        self.b
    }

    fn num(&mut self, n: u64) -> &mut Self {
        push_num(self.sep(), n, 0);
        self
    }

    fn str(&mut self, s: &str) -> &mut Self {
        self.sep().extend_from_slice(s.as_bytes());
        self
    }

    fn null(&mut self) -> &mut Self {
        self.sep().extend_from_slice(b"\\N");
        self
    }

    fn time(&mut self, secs: i64, millis: u32) -> &mut Self {
        let b = self.sep();
        push_datetime_ms(b, secs, millis);
        b.extend_from_slice(b"+00");
        self
    }

    /// A text field produced by `f`, with tab, newline and backslash escaped.
    fn text(&mut self, f: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        let b = self.sep();
        let start = b.len();
        f(b);
        if b[start..]
            .iter()
            .any(|c| matches!(c, b'\t' | b'\n' | b'\\' | b'\r'))
        {
            let raw = b.split_off(start);
            for c in raw {
                match c {
                    b'\t' => b.extend_from_slice(b"\\t"),
                    b'\n' => b.extend_from_slice(b"\\n"),
                    b'\r' => b.extend_from_slice(b"\\r"),
                    b'\\' => b.extend_from_slice(b"\\\\"),
                    c => b.push(c),
                }
            }
        }
        self
    }

    fn end(&mut self) {
        self.b.push(b'\n');
    }
}

#[derive(Clone, Copy)]
struct Dump {
    seed: u64,
    day: u32,
    issues: Population,
    users: u64,
    projects: u64,
    churn: Churn,
}

/// Child-row counts of one issue.
struct Counts {
    actions: u64,
    groups: u64,
    labels: u64,
}

impl Dump {
    fn new(state: &State) -> Dump {
        Dump {
            seed: state.seed,
            day: state.day,
            issues: Population::growing(scaled(93_000.0, state.scale, 40), GROWTH),
            users: scaled(2_500.0, state.scale, 8),
            projects: scaled(60.0, state.scale.sqrt(), 3),
            churn: Churn {
                seed: state.seed,
                tag: T_ROW,
                p: P_ROW,
            },
        }
    }

    fn counts(&self, i: u64) -> Counts {
        let k = key(&[self.seed, T_COUNT, i]);
        Counts {
            actions: k % 6,
            groups: (k >> 8) % 5,
            labels: (k >> 16) % 4,
        }
    }

    fn login(&self, u: u64) -> String {
        person(u % self.users).login
    }

    /// The day row `id` of `table` last changed (its birth day if never), and its rng.
    fn row(&self, table: u64, id: u64, born: u32) -> (u32, Rng) {
        let row_key = key(&[table, id]);
        let last = self.churn.last(row_key, born, self.day);
        (last, Rng::keyed(&[self.seed, T_ROW, row_key]))
    }

    /// When a row that changed on `day` was updated.
    fn when(&self, id: u64, day: u32) -> (i64, u32) {
        let mut w = Rng::keyed(&[self.seed, T_WHEN, id, day as u64]);
        let secs = if day == 0 {
            DAY0 - 1 - w.below(1_000 * DAY as u64) as i64
        } else {
            day_start(day) + 7 * HOUR + w.below(14 * HOUR as u64) as i64
        };
        (secs, w.below(1000) as u32)
    }

    fn created(&self, i: u64) -> i64 {
        let born = self.issues.born(i);
        if born == 0 {
            let span = 3 * 365 * DAY;
            DAY0 - span + i as i64 * (span - 2 * DAY) / self.issues.initial as i64
        } else {
            self.when(i, born).0
        }
    }

    fn write(self, path: &Path) -> io::Result<u64> {
        let n = self.issues.count(self.day);
        let mut s = Sink::new(Out::create(path, 0o644)?);
        s.buf.extend_from_slice(
            b"--\n-- PostgreSQL database dump\n--\n\n\
-- Dumped from database version 16.4 (Debian 16.4-1.pgdg120+2)\n\
-- Dumped by pg_dump version 16.4 (Debian 16.4-1.pgdg120+2)\n\n\
SET statement_timeout = 0;\nSET lock_timeout = 0;\nSET idle_in_transaction_session_timeout = 0;\n\
SET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n\
SELECT pg_catalog.set_config('search_path', '', false);\nSET check_function_bodies = false;\n\
SET xmloption = content;\nSET client_min_messages = warning;\nSET row_security = off;\n\n\
SET default_tablespace = '';\n\nSET default_table_access_method = heap;\n\n",
        );
        for (name, cols, _) in TABLES {
            let b = &mut s.buf;
            let _ = write!(
                b,
                "--\n-- Name: {name}; Type: TABLE; Schema: public; Owner: jira\n--\n\nCREATE TABLE public.{name} (\n"
            );
            for (k, (col, ty)) in cols.iter().enumerate() {
                let not_null = if *col == "id" { " NOT NULL" } else { "" };
                let comma = if k + 1 < cols.len() { "," } else { "" };
                let _ = writeln!(b, "    {col} {ty}{not_null}{comma}");
            }
            let _ = write!(b, ");\n\n\nALTER TABLE public.{name} OWNER TO jira;\n\n");
        }
        for (t, (name, cols, _)) in TABLES.iter().enumerate() {
            let names: Vec<&str> = cols.iter().map(|c| c.0).collect();
            let _ = write!(
                s.buf,
                "--\n-- Data for Name: {name}; Type: TABLE DATA; Schema: public; Owner: jira\n--\n\n\
COPY public.{name} ({}) FROM stdin;\n",
                names.join(", ")
            );
            match *name {
                "project" => {
                    for p in 0..self.projects {
                        self.project_row(&mut s.buf, p, n);
                    }
                }
                "cwd_user" => {
                    for u in 0..self.users {
                        self.user_row(&mut s.buf, u);
                    }
                }
                _ => {
                    for i in 0..n {
                        self.issue_rows(&mut s.buf, t as u64, name, i);
                        s.spill()?;
                    }
                }
            }
            s.buf.extend_from_slice(b"\\.\n\n\n");
        }
        for (name, _, indexes) in TABLES {
            let _ = write!(
                s.buf,
                "--\n-- Name: {name} pk_{name}; Type: CONSTRAINT; Schema: public; Owner: jira\n--\n\n\
ALTER TABLE ONLY public.{name}\n    ADD CONSTRAINT pk_{name} PRIMARY KEY (id);\n\n\n"
            );
            for (index, cols) in indexes.iter() {
                let _ = write!(
                    s.buf,
                    "--\n-- Name: {index}; Type: INDEX; Schema: public; Owner: jira\n--\n\n\
CREATE INDEX {index} ON public.{name} USING btree ({cols});\n\n\n"
                );
            }
        }
        s.buf
            .extend_from_slice(b"--\n-- PostgreSQL database dump complete\n--\n\n");
        let out = s.finish()?;
        let took = 5 + (n / 4_000) as i64;
        let mut r = Rng::keyed(&[self.seed, T_WHEN, u64::MAX, self.day as u64]);
        let mtime = Stamp::new(
            day_start(self.day) + 23 * HOUR + 10 * 60 + took,
            r.below(1_000_000_000) as u32,
        );
        out.finish(mtime).map_err(fsx::at(path))
    }

    fn project_row(&self, b: &mut Vec<u8>, p: u64, issues: u64) {
        let (last, mut r) = self.row(u64::MAX, p, 0);
        let pkey = text::project_key(p);
        let mut row = Row::new(b);
        row.num(10_000 + p)
            .text(|b| text::title(&mut r, b))
            .null()
            .str(&self.login(r.below(self.users) + last as u64))
            .text(|b| text::sentence(&mut r, b))
            .str(&pkey)
            .num(issues.saturating_sub(p).div_ceil(self.projects))
            .num(3)
            .num(10_200 + r.below(30))
            .str(&pkey)
            .str("software")
            .end();
    }

    fn user_row(&self, b: &mut Vec<u8>, u: u64) {
        let (last, mut r) = self.row(u64::MAX - 1, u, 0);
        let who = person(u);
        let (updated, ms) = self.when(u, last);
        let mut row = Row::new(b);
        row.num(10_000 + u)
            .num(1)
            .str(&who.login)
            .str(&who.login)
            .num(u64::from(u % 17 != 16 || last > 0))
            .time(DAY0 - 900 * DAY + (u as i64 * 3_571) % (90 * DAY), 0)
            .time(updated, ms)
            .str(who.first)
            .str(who.last)
            .str(&format!("{} {}", who.first, who.last))
            .str(&format!("{}@example.com", who.login))
            .str(&format!("{{PKCS5S2}}{}", r.hex(48)))
            .str(&r.hex(32))
            .end();
    }

    /// The rows of issue `i` in table number `t`.
    fn issue_rows(&self, b: &mut Vec<u8>, t: u64, table: &str, i: u64) {
        let born = self.issues.born(i);
        let c = self.counts(i);
        let issue = 10_000 + i;
        let created = self.created(i);
        match table {
            "jiraissue" => {
                let (last, mut r) = self.row(t, issue, born);
                let (updated, ms) = if last > born {
                    self.when(issue, last)
                } else {
                    (created, 0)
                };
                let status = [1, 3, 10001, 5, 6][((r.below(5) + last as u64) % 5) as usize];
                let reporter = self.login(r.below(self.users));
                let estimate = 3_600 * r.range(1, 40);
                let mut row = Row::new(b);
                row.num(issue)
                    .null()
                    .num(i / self.projects + 1)
                    .num(10_000 + i % self.projects)
                    .str(&reporter)
                    .str(&self.login(r.below(self.users) + last as u64))
                    .str(&reporter)
                    .num(10_000 + r.below(5))
                    .text(|b| text::title(&mut r, b));
                let len = r.log_normal(380.0, 0.9).clamp(40.0, 8_000.0) as usize;
                row.text(|b| text::jira_markup(&mut r, b, len));
                if r.chance(0.2) {
                    row.text(|b| text::words(&mut r, b, 6));
                } else {
                    row.null();
                }
                row.num(1 + r.below(5));
                if status >= 5 {
                    row.num(10_000);
                } else {
                    row.null();
                }
                row.num(status).time(created, 0).time(updated, ms);
                if r.chance(0.3) {
                    row.time(created + r.range(7, 60) as i64 * DAY, 0);
                } else {
                    row.null();
                }
                if status >= 5 {
                    row.time(updated, ms);
                } else {
                    row.null();
                }
                row.num(r.below(4))
                    .num(1 + r.below(6))
                    .num(estimate)
                    .num(estimate.saturating_sub(last as u64 * 1_800))
                    .num(last as u64 * 1_800)
                    .num(issue)
                    .str("N")
                    .end();
            }
            "jiraaction" => {
                for k in 0..c.actions {
                    let id = 10_000 + i * 8 + k;
                    let (last, mut r) = self.row(t, id, born);
                    let (when, ms) = self.when(id, born);
                    let when = when.max(created) + k as i64 * 3_600;
                    let (updated, ums) = if last > born {
                        self.when(id, last)
                    } else {
                        (when, ms)
                    };
                    let author = self.login(r.below(self.users));
                    let mut body = Rng::keyed(&[self.seed, T_ROW, id, last as u64]);
                    let len = body.log_normal(260.0, 0.8).clamp(20.0, 4_000.0) as usize;
                    Row::new(b)
                        .num(id)
                        .num(issue)
                        .str(&author)
                        .str("comment")
                        .null()
                        .null()
                        .text(|b| {
                            text::prose(&mut body, b, len);
                            if body.chance(0.1) {
                                text::stack_trace(&mut body, b, 6);
                            }
                        })
                        .time(when, ms)
                        .str(&author)
                        .time(updated, ums)
                        .num(k + 1)
                        .end();
                }
            }
            "changegroup" | "changeitem" => {
                for g in 0..c.groups {
                    let gid = 10_000 + i * 8 + g;
                    if table == "changegroup" {
                        let (last, mut r) = self.row(t, gid, born);
                        Row::new(b)
                            .num(gid)
                            .num(issue)
                            .str(&self.login(r.below(self.users) + last as u64))
                            .time(created + (g as i64 + 1) * 2 * HOUR, 0)
                            .end();
                        continue;
                    }
                    let items = 1 + key(&[self.seed, T_COUNT, gid]) % 3;
                    for x in 0..items {
                        let id = gid * 4 + x;
                        let (last, mut r) = self.row(t, id, born);
                        let field = *r.pick(&FIELDS);
                        Row::new(b)
                            .num(id)
                            .num(gid)
                            .str("jira")
                            .str(field)
                            .str(&self.login(r.below(self.users)))
                            .text(|b| text::words(&mut r, b, 2))
                            .str(&self.login(r.below(self.users) + last as u64))
                            .text(|b| text::words(&mut r, b, 2))
                            .end();
                    }
                }
            }
            "customfieldvalue" => {
                for (k, field) in [10_106u64, 10_019, 10_020].into_iter().enumerate() {
                    let id = 10_000 + i * 4 + k as u64;
                    let (last, mut r) = self.row(t, id, born);
                    let mut row = Row::new(b);
                    row.num(id).num(issue).num(field).null().null();
                    match k {
                        0 => row
                            .null()
                            .num([1, 2, 3, 5, 8, 13][((r.below(6) + last as u64) % 6) as usize]),
                        1 => row
                            .str(&format!(
                                "0|i{:06x}:",
                                (i * 7_919 + last as u64 * 104_729) & 0xFF_FFFF
                            ))
                            .null(),
                        _ => row.num(1 + i / 40 + last as u64).null(),
                    };
                    row.null().null().null().end();
                }
            }
            "label" => {
                for l in 0..c.labels {
                    let id = 10_000 + i * 4 + l;
                    let (last, mut r) = self.row(t, id, born);
                    let label = LABELS[((r.below(8) + last as u64) % 8) as usize];
                    Row::new(b).num(id).null().num(issue).str(label).end();
                }
            }
            _ => unreachable!("issue table {table}"),
        }
    }
}
