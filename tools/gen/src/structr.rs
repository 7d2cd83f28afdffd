//! A Structr installation tree `structr/`: uploaded files stored by UUID under
//! `files/a/b/c/d/abcd…` (32 hex digits, no extension), `structr.conf`, `structr.keystore`,
//! executable `scripts/*.sh`, `logs/server.log` with the symlink `logs/current`, the relative
//! symlink `files/latest-upload`, and the empty directory `tmp/`.
//!
//! Time steps are days. Each day about 0.7% of the files change, 0.1% are deleted and 0.3%
//! are added, and the log grows by one day.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::blob::{self, Kind};
use crate::clock::{DAY, DAY0, HOUR, Stamp, day_start};
use crate::fsx::{self, Out};
use crate::model::{Churn, Population, State, scaled};
use crate::rng::Rng;
use crate::{Task, text};

const P_CHANGE: f64 = 0.007;
const P_DELETE: f64 = 0.001;
const ADD_RATE: f64 = 0.003;
/// Files per task.
const BATCH: u64 = 1_000;

const T_CHANGE: u64 = 0x5301;
const T_DELETE: u64 = 0x5302;
const T_FILE: u64 = 0x5303;
const T_CONTENT: u64 = 0x5304;
const T_WHEN: u64 = 0x5305;
const T_LOG: u64 = 0x5306;
const T_STATIC: u64 = 0x5307;

const LOGGERS: [&str; 6] = [
    "org.structr.rest.servlet.JsonRestServlet",
    "org.structr.web.servlet.HtmlServlet",
    "org.structr.core.graph.SyncCommand",
    "org.structr.files.ssh.StructrSSHServer",
    "org.structr.web.common.FileHelper",
    "org.structr.cron.CronService",
];

#[derive(Clone, Copy)]
struct Structr {
    seed: u64,
    files: Population,
    change: Churn,
    delete: Churn,
    log_len: usize,
}

pub fn generate(state: &State, root: &Path, tasks: &mut Vec<Task>) -> io::Result<()> {
    let s = Structr::new(state);
    let day = state.day;
    for dir in ["files", "scripts", "logs"] {
        fsx::mkdirs(&root.join(dir))?;
    }
    fsx::mkdir_mode(&root.join("tmp"), 0o755)?;
    let n = s.files.count(day);
    for start in (0..n).step_by(BATCH as usize) {
        let root = root.to_path_buf();
        let end = (start + BATCH).min(n);
        tasks.push(Task::new((end - start) * 15_000, move || {
            let mut bytes = 0;
            for i in start..end {
                if s.exists(i, day) {
                    bytes += s.write(&root, i, day)?;
                }
            }
            Ok(bytes)
        }));
    }
    let root = root.to_path_buf();
    tasks.push(Task::new(s.log_len as u64 * (day as u64 + 1), move || {
        let mut bytes = s.write_static(&root)?;
        let mut log = Out::create(&root.join("logs/server.log"), 0o644)?;
        for d in 0..=day {
            log.write_all(&s.log_chunk(d))?;
        }
        bytes += log.finish(s.log_mtime(day))?;
        Ok(bytes)
    }));
    Ok(())
}

/// One task, so that removing a deleted upload's emptied directories cannot race with
/// another task creating a file in them.
pub fn next_day(state: &State, root: &Path, tasks: &mut Vec<Task>) -> io::Result<()> {
    let s = Structr::new(state);
    let day = state.day;
    let n = s.files.count(day);
    let root = root.to_path_buf();
    tasks.push(Task::new(n * 150 + s.log_len as u64, move || {
        let mut bytes = 0;
        for i in 0..n {
            let born = s.files.born(i);
            if born == day {
                bytes += s.write(&root, i, day)?;
            } else if !s.exists(i, day - 1) {
                continue;
            } else if !s.exists(i, day) {
                s.remove(&root, i)?;
            } else if s.change.hits(i, day) {
                bytes += s.write(&root, i, day)?;
            }
        }
        let mut log = Out::append(&root.join("logs/server.log"))?;
        log.write_all(&s.log_chunk(day))?;
        bytes += log.finish(s.log_mtime(day))?;
        Ok(bytes)
    }));
    Ok(())
}

impl Structr {
    fn new(state: &State) -> Structr {
        Structr {
            seed: state.seed,
            files: Population::growing(scaled(20_000.0, state.scale, 30), ADD_RATE),
            change: Churn {
                seed: state.seed,
                tag: T_CHANGE,
                p: P_CHANGE,
            },
            delete: Churn {
                seed: state.seed,
                tag: T_DELETE,
                p: P_DELETE,
            },
            log_len: scaled(1_500_000.0, state.scale, 8_192) as usize,
        }
    }

    /// File 0 is the target of `files/latest-upload` and is never deleted.
    fn exists(&self, i: u64, day: u32) -> bool {
        let born = self.files.born(i);
        born <= day && (i == 0 || !self.delete.any(i, born, day))
    }

    fn uuid(&self, i: u64) -> String {
        Rng::keyed(&[self.seed, T_FILE, i]).hex(32)
    }

    /// `files/a/b/c/d/<uuid>`, as Structr lays out its file store.
    fn rel_path(&self, i: u64) -> PathBuf {
        let u = self.uuid(i);
        let mut p = PathBuf::from("files");
        for c in u[..4].chars() {
            p.push(c.to_string());
        }
        p.push(u);
        p
    }

    /// The file's content and mtime on `day`.
    fn content(&self, i: u64, day: u32) -> (Vec<u8>, Stamp) {
        let born = self.files.born(i);
        let kind = Kind::draw(&mut Rng::keyed(&[self.seed, T_FILE, i, 1]));
        let mut r = Rng::keyed(&[self.seed, T_CONTENT, i, born as u64]);
        let size = blob::draw_size(&mut r, kind, 2_500.0, 150_000.0);
        let mut bytes = blob::make(kind, &mut r, size);
        let mut steps = Vec::new();
        self.change.steps(i, born, day, &mut steps);
        for &j in &steps {
            let mut r = Rng::keyed(&[self.seed, T_CONTENT, i, j as u64]);
            let size = blob::draw_size(&mut r, kind, 2_500.0, 150_000.0);
            blob::edit(kind, &mut bytes, &mut r, size);
        }
        let last = steps.last().copied().unwrap_or(born);
        let mut w = Rng::keyed(&[self.seed, T_WHEN, i, last as u64]);
        let secs = if last == 0 {
            DAY0 - 1 - w.below(730 * DAY as u64) as i64
        } else {
            day_start(last) + 7 * HOUR + w.below(14 * HOUR as u64) as i64
        };
        (bytes, Stamp::new(secs, w.below(1_000_000_000) as u32))
    }

    fn write(&self, root: &Path, i: u64, day: u32) -> io::Result<u64> {
        let path = root.join(self.rel_path(i));
        if let Some(dir) = path.parent() {
            fsx::mkdirs(dir)?;
        }
        let (bytes, mtime) = self.content(i, day);
        fsx::write_file(&path, &bytes, 0o644, mtime)
    }

    /// Deletes an upload and the directories it leaves empty, as a fresh tree would not
    /// have them.
    fn remove(&self, root: &Path, i: u64) -> io::Result<()> {
        let path = root.join(self.rel_path(i));
        fsx::remove(&path)?;
        let files = root.join("files");
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != files) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn log_chunk(&self, day: u32) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.log_len + 4096);
        let mut r = Rng::keyed(&[self.seed, T_LOG, day as u64]);
        text::log_day(&mut r, &mut b, day_start(day), self.log_len, &LOGGERS);
        b
    }

    fn log_mtime(&self, day: u32) -> Stamp {
        Stamp::new(day_start(day) + 23 * HOUR + 59 * 60, 250_000_000)
    }

    /// Configuration, keystore, scripts and symlinks: written once, never changed.
    fn write_static(&self, root: &Path) -> io::Result<u64> {
        let mut r = Rng::keyed(&[self.seed, T_STATIC]);
        let installed = Stamp::new(DAY0 - 420 * DAY + 11 * HOUR, 0);
        let configured = Stamp::new(DAY0 - 30 * DAY + 16 * HOUR + 1234, 987_654_321);
        let mut bytes = 0;

        let conf = format!(
            "# Structr configuration\n\
application.title = Structr {}\n\
application.host = structr.example.com\n\
application.http.port = 8082\n\
application.https.port = 8443\n\
application.https.enabled = true\n\
application.keystore.path = structr.keystore\n\
application.keystore.password = {}\n\
superuser.username = superadmin\n\
superuser.password = {}\n\
files.path = /var/lib/structr/files\n\
log.level = INFO\n\
database.connection.url = bolt://localhost:7687\n\
database.connection.username = neo4j\n\
database.connection.password = {}\n\
application.filesystem.enabled = true\n\
application.filesystem.unique.paths = true\n\
CronService.tasks = cleanup\n\
cleanup.cronExpression = 0 0 3 * * *\n",
            text::title_string(&mut r),
            r.hex(24),
            r.hex(24),
            r.hex(24),
        );
        bytes += fsx::write_file(
            &root.join("structr.conf"),
            conf.as_bytes(),
            0o600,
            configured,
        )?;

        let mut keystore =
            b"\xFE\xED\xFE\xED\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x01\x00\x06structr"
                .to_vec();
        let len = keystore.len() + 2_600 + r.below(2_000) as usize;
        keystore.resize(len, 0);
        r.fill(&mut keystore[22..]);
        bytes += fsx::write_file(&root.join("structr.keystore"), &keystore, 0o600, installed)?;

        let scripts: [(&str, &str); 4] = [
            (
                "backup.sh",
                "#!/bin/sh\nset -eu\n# Nightly backup of the Structr directory and a Neo4j dump.\nsystemctl stop structr\nneo4j-admin database dump neo4j --to-path=/var/backups/neo4j\nsystemctl start structr\n",
            ),
            (
                "cleanup-tmp.sh",
                "#!/bin/sh\nset -eu\nfind /usr/lib/structr/tmp -type f -mtime +2 -delete\n",
            ),
            (
                "export-users.sh",
                "#!/bin/sh\nset -eu\ncurl -fsS -u \"$STRUCTR_USER:$STRUCTR_PASSWORD\" http://localhost:8082/structr/rest/User > \"$1\"\n",
            ),
            (
                "reindex.sh",
                "#!/bin/sh\nset -eu\ncurl -fsS -X POST http://localhost:8082/structr/rest/maintenance/rebuildIndex\n",
            ),
        ];
        for (name, body) in scripts {
            bytes += fsx::write_file(
                &root.join("scripts").join(name),
                body.as_bytes(),
                0o755,
                configured,
            )?;
        }

        fsx::symlink("server.log", &root.join("logs/current"), installed)?;
        let target: PathBuf = self.rel_path(0).iter().skip(1).collect();
        fsx::symlink(
            target.to_str().expect("hex path"),
            &root.join("files/latest-upload"),
            configured,
        )?;
        Ok(bytes)
    }
}
