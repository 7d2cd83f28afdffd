//! A Confluence home directory `confluence/`: attachments in the hierarchical layout
//! `attachments/ver003/<s1>/<s2>/<space>/<p1>/<p2>/<page>/<attachment>/<version>` (with
//! `<version>.extracted_text` beside PDF and DOCX versions), `confluence.cfg.xml`,
//! `secrets-config.yaml`, `keys/` and `secured/` (mode 0700), and the directories Confluence
//! rebuilds at start-up: `index/` (Lucene segments), `temp/` and `logs/`.
//!
//! Time steps are days. Attachment versions only accumulate: each day about 1% of the
//! attachments (and always at least one) get a new version; the index gets a new delta
//! segment and the log grows by one day.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::blob::{self, Kind};
use crate::clock::{DAY, DAY0, HOUR, Stamp, day_start};
use crate::fsx::{self, Out};
use crate::model::{Churn, State, scaled};
use crate::rng::{Rng, key};
use crate::{Task, text};

const P_VERSION: f64 = 0.01;
/// Attachments per task.
const BATCH: u64 = 400;

const T_VERSION: u64 = 0x4301;
const T_FORCE: u64 = 0x4302;
const T_ATTACHMENT: u64 = 0x4303;
const T_CONTENT: u64 = 0x4304;
const T_WHEN: u64 = 0x4305;
const T_LOG: u64 = 0x4306;
const T_STATIC: u64 = 0x4307;
const T_INDEX: u64 = 0x4308;

const LOGGERS: [&str; 5] = [
    "c.a.confluence.pages.DefaultAttachmentManager",
    "c.a.c.search.v2.lucene.LuceneIndexManager",
    "c.a.confluence.util.HTMLPairType",
    "c.a.c.impl.hibernate.ConfluenceHibernateTransactionManager",
    "c.a.c.plugins.synchrony.SynchronyProcessManager",
];

#[derive(Clone, Copy)]
struct Confluence {
    seed: u64,
    attachments: u64,
    spaces: u64,
    versions: Churn,
    index_len: usize,
    log_len: usize,
}

/// One stored version of an attachment.
struct Version {
    number: u64,
    bytes: Vec<u8>,
    mtime: Stamp,
}

pub fn generate(state: &State, root: &Path, tasks: &mut Vec<Task>) -> io::Result<()> {
    let c = Confluence::new(state);
    let day = state.day;
    fsx::mkdirs(&root.join("attachments/ver003"))?;
    for dir in ["index/change", "index/edge", "temp", "logs"] {
        fsx::mkdirs(&root.join(dir))?;
    }
    fsx::mkdir_mode(&root.join("keys"), 0o700)?;
    fsx::mkdir_mode(&root.join("secured"), 0o700)?;
    for start in (0..c.attachments).step_by(BATCH as usize) {
        let root = root.to_path_buf();
        let end = (start + BATCH).min(c.attachments);
        tasks.push(Task::new((end - start) * 50_000, move || {
            let mut bytes = 0;
            for a in start..end {
                for v in c.versions_of(a, day) {
                    bytes += c.write_version(&root, a, &v)?;
                }
            }
            Ok(bytes)
        }));
    }
    let root = root.to_path_buf();
    tasks.push(Task::new(c.index_len as u64 * 2, move || {
        let mut bytes = c.write_static(&root)?;
        bytes += c.write_index_day(&root, day)?;
        let mut log = Out::create(&root.join("logs/atlassian-confluence.log"), 0o644)?;
        for d in 0..=day {
            log.write_all(&c.log_chunk(d))?;
        }
        bytes += log.finish(c.log_mtime(day))?;
        Ok(bytes)
    }));
    Ok(())
}

pub fn next_day(state: &State, root: &Path, tasks: &mut Vec<Task>) -> io::Result<()> {
    let c = Confluence::new(state);
    let day = state.day;
    let root = root.to_path_buf();
    tasks.push(Task::new(c.index_len as u64, move || {
        let mut bytes = 0;
        for a in 0..c.attachments {
            if c.new_version_on(a, day)
                && let Some(v) = c.versions_of(a, day).pop()
            {
                bytes += c.write_version(&root, a, &v)?;
            }
        }
        for name in c.index_day_files(day - 1) {
            fsx::remove(&root.join("index").join(name))?;
        }
        bytes += c.write_index_day(&root, day)?;
        let mut log = Out::append(&root.join("logs/atlassian-confluence.log"))?;
        log.write_all(&c.log_chunk(day))?;
        bytes += log.finish(c.log_mtime(day))?;
        Ok(bytes)
    }));
    Ok(())
}

/// Confluence's directory hash of an id: last three digits, then the next three, mod 250.
fn hashed(id: u64) -> [u64; 2] {
    [id % 1000 % 250, id / 1000 % 1000 % 250]
}

fn base36(mut n: u64) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).expect("ascii")
}

impl Confluence {
    fn new(state: &State) -> Confluence {
        Confluence {
            seed: state.seed,
            attachments: scaled(4_000.0, state.scale, 12),
            spaces: scaled(40.0, state.scale.sqrt(), 2),
            versions: Churn {
                seed: state.seed,
                tag: T_VERSION,
                p: P_VERSION,
            },
            index_len: scaled(12_000_000.0, state.scale, 16_384) as usize,
            log_len: scaled(1_000_000.0, state.scale, 8_192) as usize,
        }
    }

    /// Whether attachment `a` gets a new version on `day`; one attachment always does.
    fn new_version_on(&self, a: u64, day: u32) -> bool {
        day > 0
            && (self.versions.hits(a, day)
                || key(&[self.seed, T_FORCE, day as u64]) % self.attachments == a)
    }

    fn dir(&self, a: u64) -> PathBuf {
        let page = a / 3;
        let space_id = 98_305 + (page % self.spaces) * 32_771;
        let page_id = 1_179_649 + page * 4_099;
        let att_id = 2_293_761 + a * 13;
        let [s1, s2] = hashed(space_id);
        let [p1, p2] = hashed(page_id);
        PathBuf::from(format!(
            "attachments/ver003/{s1}/{s2}/{space_id}/{p1}/{p2}/{page_id}/{att_id}"
        ))
    }

    fn kind(&self, a: u64) -> Kind {
        Kind::draw(&mut Rng::keyed(&[self.seed, T_ATTACHMENT, a]))
    }

    /// Every version of attachment `a` that exists on `day`, oldest first.
    fn versions_of(&self, a: u64, day: u32) -> Vec<Version> {
        let kind = self.kind(a);
        let base = 1 + key(&[self.seed, T_ATTACHMENT, a, 1]) % 3;
        let mut w = Rng::keyed(&[self.seed, T_WHEN, a]);
        let mut secs = DAY0 - 1 - w.below(900 * DAY as u64) as i64;
        let mut out: Vec<Version> = Vec::new();
        let mut bytes = Vec::new();
        let days = (1..=day).filter(|&j| self.new_version_on(a, j));
        let stamps: Vec<Stamp> = (1..=base)
            .map(|_| {
                let s = Stamp::new(secs, w.below(1_000_000_000) as u32);
                secs = (secs + w.range(HOUR as u64, 60 * DAY as u64) as i64).min(DAY0 - 1);
                s
            })
            .chain(days.map(|j| {
                let mut w = Rng::keyed(&[self.seed, T_WHEN, a, j as u64]);
                Stamp::new(
                    day_start(j) + 9 * HOUR + w.below(8 * HOUR as u64) as i64,
                    w.below(1_000_000_000) as u32,
                )
            }))
            .collect();
        for (k, mtime) in stamps.into_iter().enumerate() {
            let number = k as u64 + 1;
            let mut r = Rng::keyed(&[self.seed, T_CONTENT, a, number]);
            let size = blob::draw_size(&mut r, kind, 6_000.0, 300_000.0);
            if number == 1 {
                bytes = blob::make(kind, &mut r, size);
            } else {
                blob::edit(kind, &mut bytes, &mut r, size);
            }
            out.push(Version {
                number,
                bytes: bytes.clone(),
                mtime,
            });
        }
        out
    }

    fn write_version(&self, root: &Path, a: u64, v: &Version) -> io::Result<u64> {
        let dir = root.join(self.dir(a));
        fsx::mkdirs(&dir)?;
        let mut bytes = fsx::write_file(&dir.join(v.number.to_string()), &v.bytes, 0o644, v.mtime)?;
        if matches!(self.kind(a), Kind::Pdf | Kind::Docx) {
            let mut r = Rng::keyed(&[self.seed, T_CONTENT, a, v.number, 1]);
            let mut t = Vec::new();
            text::prose(&mut r, &mut t, (v.bytes.len() / 8).min(64 * 1024));
            let mtime = Stamp::new(v.mtime.secs + 30, v.mtime.nanos);
            let path = dir.join(format!("{}.extracted_text", v.number));
            bytes += fsx::write_file(&path, &t, 0o644, mtime)?;
        }
        Ok(bytes)
    }

    fn log_chunk(&self, day: u32) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.log_len + 4096);
        let mut r = Rng::keyed(&[self.seed, T_LOG, day as u64]);
        text::log_day(&mut r, &mut b, day_start(day), self.log_len, &LOGGERS);
        b
    }

    fn log_mtime(&self, day: u32) -> Stamp {
        Stamp::new(day_start(day) + 23 * HOUR + 58 * 60, 500_000_000)
    }

    /// Index files that belong to one day: a delta segment and the segments file naming it.
    fn index_day_files(&self, day: u32) -> [String; 2] {
        [
            format!("_{}.cfs", base36(day as u64 + 1)),
            format!("segments_{}", base36(day as u64 + 2)),
        ]
    }

    fn write_index_day(&self, root: &Path, day: u32) -> io::Result<u64> {
        let mut r = Rng::keyed(&[self.seed, T_INDEX, day as u64]);
        let when = Stamp::new(day_start(day) + 22 * HOUR + r.below(HOUR as u64) as i64, 0);
        let [delta, segments] = self.index_day_files(day);
        let mut seg = vec![0u8; self.index_len / 50 + 64];
        r.fill(&mut seg);
        let mut bytes = fsx::write_file(&root.join("index").join(delta), &seg, 0o644, when)?;
        let mut list = b"?\xD7l\x17\x08segments".to_vec();
        list.extend_from_slice(&day.to_le_bytes());
        bytes += fsx::write_file(&root.join("index").join(segments), &list, 0o644, when)?;
        Ok(bytes)
    }

    /// Configuration, secrets, the base index and temp files: written once.
    fn write_static(&self, root: &Path) -> io::Result<u64> {
        let mut r = Rng::keyed(&[self.seed, T_STATIC]);
        let installed = Stamp::new(DAY0 - 500 * DAY + 10 * HOUR, 0);
        let configured = Stamp::new(DAY0 - 45 * DAY + 15 * HOUR + 321, 123_456_789);
        let mut bytes = 0;

        let license: String = (0..8).map(|_| r.hex(80) + "\n").collect();
        let cfg = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n<confluence-configuration>\n  \
<setupStep>complete</setupStep>\n  <setupType>custom</setupType>\n  <buildNumber>9012</buildNumber>\n  \
<properties>\n    <property name=\"atlassian.license.message\">{license}</property>\n    \
<property name=\"attachments.dir\">${{confluenceHome}}/attachments</property>\n    \
<property name=\"confluence.setup.server.id\">{}</property>\n    \
<property name=\"hibernate.connection.url\">jdbc:postgresql://db.example.com:5432/confluence</property>\n    \
<property name=\"hibernate.connection.username\">confluence</property>\n    \
<property name=\"hibernate.connection.password\">{}</property>\n    \
<property name=\"hibernate.dialect\">com.atlassian.confluence.impl.hibernate.dialect.PostgreSQLDialect</property>\n    \
<property name=\"lucene.index.dir\">${{confluenceHome}}/index</property>\n    \
<property name=\"webwork.multipart.saveDir\">${{localHome}}/temp</property>\n  \
</properties>\n</confluence-configuration>\n",
            r.hex(16).to_uppercase(),
            r.hex(20),
        );
        bytes += fsx::write_file(
            &root.join("confluence.cfg.xml"),
            cfg.as_bytes(),
            0o600,
            configured,
        )?;
        let secrets = format!(
            "secrets:\n  provider: aes-gcm\n  keyFile: keys/confluence-aes.key\n  salt: {}\n",
            r.hex(32)
        );
        bytes += fsx::write_file(
            &root.join("secrets-config.yaml"),
            secrets.as_bytes(),
            0o600,
            configured,
        )?;

        let mut key_bytes = vec![0u8; 32];
        r.fill(&mut key_bytes);
        bytes += fsx::write_file(
            &root.join("keys/confluence-aes.key"),
            &key_bytes,
            0o600,
            installed,
        )?;
        let mut dek = vec![0u8; 256];
        r.fill(&mut dek);
        bytes += fsx::write_file(&root.join("secured/dek.bin"), &dek, 0o600, configured)?;
        let secure = format!(
            "encryption.algorithm=AES/GCM/NoPadding\nencryption.key.id={}\n",
            r.hex(16)
        );
        bytes += fsx::write_file(
            &root.join("secured/secure-config.properties"),
            secure.as_bytes(),
            0o600,
            configured,
        )?;

        let index_base = Stamp::new(DAY0 - 2 * DAY + 4 * HOUR, 0);
        for (dir, share) in [("index", 1), ("index/change", 8), ("index/edge", 16)] {
            let dir = root.join(dir);
            let mut cfs = Vec::with_capacity(self.index_len / share + 64);
            while cfs.len() < self.index_len / share {
                text::words(&mut r, &mut cfs, 64);
                let start = cfs.len();
                cfs.resize(start + 512, 0);
                r.fill(&mut cfs[start..]);
            }
            bytes += fsx::write_file(&dir.join("_0.cfs"), &cfs, 0o644, index_base)?;
            let mut small = vec![0u8; 400];
            r.fill(&mut small);
            bytes += fsx::write_file(&dir.join("_0.cfe"), &small, 0o644, index_base)?;
            bytes += fsx::write_file(&dir.join("_0.si"), &small[..120], 0o644, index_base)?;
            bytes += fsx::write_file(&dir.join("write.lock"), b"", 0o644, index_base)?;
        }

        for n in 0..3u64 {
            let mut t = vec![0u8; 2_048 << n];
            r.fill(&mut t);
            let path = root.join(format!("temp/upload-{}.tmp", 4_000_000 + n * 7_919));
            bytes += fsx::write_file(&path, &t, 0o644, configured)?;
        }
        Ok(bytes)
    }
}
