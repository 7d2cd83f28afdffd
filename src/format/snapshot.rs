//! Snapshot record: what one ingest produced. Its BLAKE3 id is the snapshot id.
//!
//! ```text
//! magic "SNAP" [4], version u8 = 2
//! time sec i64, time nsec u32
//! host str16, label str16, tags count u16 + str16 each
//! parent: u8 (0 none, 1 present) + id [32]
//! root tree id [32]
//! sources count u16, each: name str16, origin str16,
//!     parents: u8 (0 unknown, 1 present) + count u16 + (uid u32, gid u32, mode u32) each
//! argv count u16 + str16 each          (the command line that made it)
//! commands count u16, each: command str16, exit code i32
//! errors count u32, each: path bytes16, message str16   (paths that could not be read)
//! stats: files u64, dirs u64, new u64, changed u64, unchanged u64,
//!        bytes read u64, bytes added u64, total size u64, duration ms u64
//! ```

use super::{BlobId, Decoder, Encoder, FormatError};

pub const SNAPSHOT_MAGIC: [u8; 4] = *b"SNAP";
pub const SNAPSHOT_VERSION: u8 = 2;
/// Retired: version 1 did not record the directories above each source, so a mount with
/// `--allow-other` could not keep the protection they gave on the source host (a 0700
/// parent). Still read: its sources decode with `parents: None`.
pub const SNAPSHOT_VERSION_1: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Source {
    /// Path of the source inside the snapshot (e.g. `export` or `db/jira.sql`).
    pub name: String,
    /// Where it came from: an absolute path, `stdin`, or `cmd: ...`.
    pub origin: String,
    /// The directories a process had to search to reach the source on its host, from `/`
    /// down (empty for stdin and commands). `None`: not recorded (a version 1 record).
    pub parents: Option<Vec<ParentDir>>,
}

/// Owner and permission bits of one directory above a source, as `stat` gave them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ParentDir {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

impl ParentDir {
    /// Could a process with these credentials search (`x`) this directory? Root always
    /// can; otherwise the owner, group or other bits apply, as the kernel checks them.
    pub fn searchable_by(&self, uid: u32, in_group: &mut dyn FnMut(u32) -> bool) -> bool {
        if uid == 0 {
            return true;
        }
        if uid == self.uid {
            return self.mode & 0o100 != 0;
        }
        if in_group(self.gid) {
            return self.mode & 0o010 != 0;
        }
        self.mode & 0o001 != 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CommandRun {
    pub command: String,
    pub exit_code: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PathError {
    pub path: Vec<u8>,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Stats {
    pub files: u64,
    pub dirs: u64,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub bytes_read: u64,
    pub bytes_added: u64,
    pub total_size: u64,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub time: (i64, u32),
    pub host: String,
    pub label: String,
    pub tags: Vec<String>,
    pub parent: Option<BlobId>,
    pub root: BlobId,
    pub sources: Vec<Source>,
    pub argv: Vec<String>,
    pub commands: Vec<CommandRun>,
    pub errors: Vec<PathError>,
    pub stats: Stats,
}

fn clip(s: &str) -> &[u8] {
    // str16 fields hold at most 65535 bytes; cut on a char boundary.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.bytes(&SNAPSHOT_MAGIC);
        e.u8(SNAPSHOT_VERSION);
        e.i64(self.time.0);
        e.u32(self.time.1);
        e.bytes16(clip(&self.host));
        e.bytes16(clip(&self.label));
        e.u16(self.tags.len().min(u16::MAX as usize) as u16);
        for t in self.tags.iter().take(u16::MAX as usize) {
            e.bytes16(clip(t));
        }
        match self.parent {
            Some(p) => {
                e.u8(1);
                e.bytes(&p.0);
            }
            None => e.u8(0),
        }
        e.bytes(&self.root.0);
        e.u16(self.sources.len().min(u16::MAX as usize) as u16);
        for s in self.sources.iter().take(u16::MAX as usize) {
            e.bytes16(clip(&s.name));
            e.bytes16(clip(&s.origin));
            match &s.parents {
                None => e.u8(0),
                Some(p) => {
                    e.u8(1);
                    e.u16(p.len().min(u16::MAX as usize) as u16);
                    for d in p.iter().take(u16::MAX as usize) {
                        e.u32(d.uid);
                        e.u32(d.gid);
                        e.u32(d.mode);
                    }
                }
            }
        }
        e.u16(self.argv.len().min(u16::MAX as usize) as u16);
        for a in self.argv.iter().take(u16::MAX as usize) {
            e.bytes16(clip(a));
        }
        e.u16(self.commands.len().min(u16::MAX as usize) as u16);
        for c in self.commands.iter().take(u16::MAX as usize) {
            e.bytes16(clip(&c.command));
            e.i32(c.exit_code);
        }
        e.u32(self.errors.len() as u32);
        for err in &self.errors {
            e.bytes16(&err.path);
            e.bytes16(clip(&err.message));
        }
        let s = &self.stats;
        for v in [
            s.files,
            s.dirs,
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            s.bytes_read,
            s.bytes_added,
            s.total_size,
            s.duration_ms,
        ] {
            e.u64(v);
        }
        e.buf
    }

    pub fn decode(b: &[u8]) -> Result<Snapshot, FormatError> {
        let mut d = Decoder::new(b);
        let magic = d.bytes(4)?;
        if magic != SNAPSHOT_MAGIC {
            return Err(FormatError::BadMagic {
                what: "snapshot",
                expected: SNAPSHOT_MAGIC.to_vec(),
                found: magic.to_vec(),
            });
        }
        let version = d.u8()?;
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_1 {
            return Err(FormatError::UnsupportedVersion {
                what: "snapshot",
                found: version as u32,
                supported: SNAPSHOT_VERSION as u32,
            });
        }
        let time = (d.i64()?, d.u32()?);
        if time.1 >= 1_000_000_000 {
            return Err(FormatError::Invalid {
                what: "snapshot time nanoseconds",
                value: time.1.to_string(),
            });
        }
        let host = d.str16("snapshot host")?;
        let label = d.str16("snapshot label")?;
        let n = d.u16()? as u64;
        let n = d.count("tag count", n, 2)?;
        let mut tags = Vec::with_capacity(n);
        for _ in 0..n {
            tags.push(d.str16("snapshot tag")?);
        }
        let parent = match d.u8()? {
            0 => None,
            1 => Some(BlobId(d.array()?)),
            v => {
                return Err(FormatError::Invalid {
                    what: "snapshot parent flag",
                    value: v.to_string(),
                });
            }
        };
        let root = BlobId(d.array()?);
        let n = d.u16()? as u64;
        let n = d.count("source count", n, 4)?;
        let mut sources = Vec::with_capacity(n);
        for _ in 0..n {
            let name = d.str16("source name")?;
            let origin = d.str16("source origin")?;
            let parents = if version == SNAPSHOT_VERSION_1 {
                None
            } else {
                match d.u8()? {
                    0 => None,
                    1 => {
                        let n = d.u16()? as u64;
                        let n = d.count("source parent count", n, 12)?;
                        let mut p = Vec::with_capacity(n);
                        for _ in 0..n {
                            p.push(ParentDir {
                                uid: d.u32()?,
                                gid: d.u32()?,
                                mode: d.u32()?,
                            });
                        }
                        Some(p)
                    }
                    v => {
                        return Err(FormatError::Invalid {
                            what: "source parents flag",
                            value: v.to_string(),
                        });
                    }
                }
            };
            sources.push(Source {
                name,
                origin,
                parents,
            });
        }
        let n = d.u16()? as u64;
        let n = d.count("argv count", n, 2)?;
        let mut argv = Vec::with_capacity(n);
        for _ in 0..n {
            argv.push(d.str16("argv")?);
        }
        let n = d.u16()? as u64;
        let n = d.count("command count", n, 6)?;
        let mut commands = Vec::with_capacity(n);
        for _ in 0..n {
            commands.push(CommandRun {
                command: d.str16("command")?,
                exit_code: d.i32()?,
            });
        }
        let n = d.u32()? as u64;
        let n = d.count("error count", n, 4)?;
        let mut errors = Vec::with_capacity(n);
        for _ in 0..n {
            errors.push(PathError {
                path: d.bytes16()?.to_vec(),
                message: d.str16("error message")?,
            });
        }
        let stats = Stats {
            files: d.u64()?,
            dirs: d.u64()?,
            files_new: d.u64()?,
            files_changed: d.u64()?,
            files_unchanged: d.u64()?,
            bytes_read: d.u64()?,
            bytes_added: d.u64()?,
            total_size: d.u64()?,
            duration_ms: d.u64()?,
        };
        d.finish()?;
        Ok(Snapshot {
            time,
            host,
            label,
            tags,
            parent,
            root,
            sources,
            argv,
            commands,
            errors,
            stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Snapshot {
        Snapshot {
            time: (1_763_700_000, 1),
            host: "h".into(),
            label: "jira".into(),
            tags: vec!["nightly".into()],
            parent: None,
            root: BlobId([2; 32]),
            sources: vec![Source {
                name: "export".into(),
                origin: "/var/jira/export".into(),
                parents: Some(vec![ParentDir {
                    uid: 0,
                    gid: 0,
                    mode: 0o755,
                }]),
            }],
            argv: vec!["strata".into()],
            commands: vec![CommandRun {
                command: "true".into(),
                exit_code: 0,
            }],
            errors: vec![PathError {
                path: b"x".to_vec(),
                message: "denied".into(),
            }],
            stats: Stats {
                files: 1,
                ..Stats::default()
            },
        }
    }

    #[test]
    fn snapshot_golden_bytes() {
        let bytes = sample().encode();
        let hex = crate::format::to_hex(&bytes);
        let expected = concat!(
            "534e415002",
            "20ed1f6900000000",
            "01000000", // magic, version, time
            "010068",
            "04006a697261",
            "0100",
            "07006e696768746c79", // host, label, tags
            "00",
            "0202020202020202020202020202020202020202020202020202020202020202",
            "0100",
            "06006578706f7274",
            "10002f7661722f6a6972612f6578706f7274",
            "01",
            "0100",
            "00000000",
            "00000000",
            "ed010000", // source: name, origin, parents (uid, gid, mode 0755)
            "0100",
            "0600737472617461",
            "0100",
            "040074727565",
            "00000000",
            "01000000",
            "010078",
            "060064656e696564",
            "0100000000000000",
            "0000000000000000",
            "0000000000000000",
            "0000000000000000",
            "0000000000000000",
            "0000000000000000",
            "0000000000000000",
            "0000000000000000",
            "0000000000000000",
        );
        assert_eq!(hex, expected, "format changed, version bump required");
        assert_eq!(Snapshot::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn version_1_records_still_decode_with_unknown_parents() {
        // A v1 record is the v2 encoding without the parents field of each source.
        let mut s = sample();
        s.sources[0].parents = None;
        let mut bytes = s.encode();
        bytes[4] = SNAPSHOT_VERSION_1;
        let flag = bytes
            .windows(17)
            .position(|w| w == b"/var/jira/export\x00")
            .expect("origin then the parents flag")
            + 16;
        bytes.remove(flag);
        assert_eq!(Snapshot::decode(&bytes).unwrap(), s);
    }

    #[test]
    fn parent_dirs_decide_search_like_the_kernel() {
        let d = ParentDir {
            uid: 1000,
            gid: 50,
            mode: 0o710,
        };
        assert!(d.searchable_by(0, &mut |_| false));
        assert!(d.searchable_by(1000, &mut |_| false));
        assert!(d.searchable_by(7, &mut |g| g == 50));
        assert!(!d.searchable_by(7, &mut |_| false));
        assert!(!d.searchable_by(65534, &mut |_| false));
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(
                Snapshot::decode(&bytes[..cut]).is_err(),
                "cut at {cut} accepted"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Snapshot::decode(&long), Err(FormatError::TrailingBytes(1)));
    }

    #[test]
    fn newer_version_is_a_typed_error() {
        let mut bytes = sample().encode();
        bytes[4] = 9;
        assert!(matches!(
            Snapshot::decode(&bytes),
            Err(FormatError::UnsupportedVersion { found: 9, .. })
        ));
    }

    proptest! {
        #[test]
        fn snapshots_round_trip(label in ".{0,40}", tags in proptest::collection::vec("[a-z]{1,8}", 0..4),
                                path in proptest::collection::vec(any::<u8>(), 0..100), secs in any::<i64>()) {
            let mut s = sample();
            s.label = label;
            s.tags = tags;
            s.errors[0].path = path;
            s.time.0 = secs;
            prop_assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Snapshot::decode(&bytes);
        }
    }
}
