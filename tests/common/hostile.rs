//! The fixture of the hostile-archive tests (moved from `tests/hostile.rs`): archives
//! whose trees, blobs and index rows are crafted through the library API (and patched by
//! hand where the encoder refuses), then read by the real `strata` binary.
//!
//! Invariants every `Fx::run` checks: strata must not panic, and must write nothing
//! outside TARGET: every TARGET sits in a temp dir next to a sibling `outside/`, and each
//! run compares a listing of the whole temp dir (TARGET excepted) before and after.
//! Symlinks in these archives point at `outside/`, at `/etc/passwd`, and at a "ghost"
//! absolute path next to the temp dir that must never come to exist.
//!
//! Not glob re-exported from `common` (its `strata` and `Archive` are not the runner's):
//! `use common::hostile::*`.

use super::cmd::{self, Out};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata::archive::{Archive, Config, WriteSession};
use strata::format::BlobId;
use strata::format::pack::BlobKind;
use strata::format::snapshot::{Snapshot, Source, Stats};
use strata::format::tree::{Extent, Node, NodeKind, Payload};

pub const TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------

/// One `strata` run as these tests read it: exit code, stdout, and stderr as text. Built
/// by the shared runner (`common::cmd`), whose `Display` (command, status, stdout, stderr)
/// it prints.
pub struct Run {
    out: Out,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.out)
    }
}

/// Runs `strata ARGS` through `common::cmd` with a timeout (a hang fails the test with
/// the output so far; a panic fails it at once).
pub fn strata(args: &[&str]) -> Run {
    let out = cmd::strata().args(args).timeout(TIMEOUT).run();
    Run {
        code: out.code(),
        stdout: out.stdout.clone(),
        stderr: out.stderr_str(),
        out,
    }
}

/// Never a panic, never a signal: exit 0, 1 or 3.
pub fn assert_no_panic(r: &Run) {
    assert!(
        !r.stderr.contains("panicked"),
        "strata panicked on a hostile archive\n{r}"
    );
    assert!(
        matches!(r.code, Some(0 | 1 | 3)),
        "strata must exit 0, 1 or 3 (not a panic's 101 or a signal)\n{r}"
    );
}

/// A clean failure: exit 1 with exactly one `strata: error:` line (first) and at most
/// `hint:` lines after it, or exit 3 with the list of damaged files. Returns stderr.
pub fn assert_clean_failure(r: &Run) -> &str {
    assert_no_panic(r);
    match r.code {
        Some(1) => {
            let lines: Vec<&str> = r.stderr.lines().collect();
            assert!(
                !lines.is_empty() && lines[0].starts_with("strata: error: "),
                "expected a `strata: error:` line first\n{r}"
            );
            assert!(
                lines[1..].iter().all(|l| l.starts_with("hint: ")),
                "expected one error line (plus hints)\n{r}"
            );
        }
        Some(3) => assert!(
            r.stderr.contains("NOT restored"),
            "exit 3 must list the damaged files\n{r}"
        ),
        _ => panic!("expected a failure (exit 1 or 3)\n{r}"),
    }
    &r.stderr
}

// ---------------------------------------------------------------------------------------
// Nodes and tree patching
// ---------------------------------------------------------------------------------------

pub const T0: (i64, u32) = (1_700_000_000, 0);

pub fn node(name: &[u8], kind: NodeKind, size: u64, payload: Payload) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: match kind {
            NodeKind::Dir => 0o755,
            NodeKind::Symlink => 0o777,
            _ => 0o644,
        },
        uid: 0,
        gid: 0,
        user: Vec::new(),
        group: Vec::new(),
        mtime: T0,
        ctime: T0,
        size,
        dev: 0,
        ino: 0,
        nlink: 1,
        rdev: 0,
        xattrs: Vec::new(),
        payload,
    }
}

pub fn file(name: &str, extents: Vec<Extent>) -> Node {
    let size = extents.iter().map(|e| e.len()).sum();
    node(
        name.as_bytes(),
        NodeKind::File,
        size,
        Payload::File(extents),
    )
}

pub fn dir(name: &str, id: BlobId) -> Node {
    node(name.as_bytes(), NodeKind::Dir, 0, Payload::Dir(id))
}

pub fn symlink(name: &str, target: &str) -> Node {
    let t = target.as_bytes().to_vec();
    node(
        name.as_bytes(),
        NodeKind::Symlink,
        t.len() as u64,
        Payload::Symlink(t),
    )
}

pub fn find(hay: &[u8], needle: &[u8]) -> usize {
    let hits: Vec<usize> = hay
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "pattern {needle:02x?} must occur exactly once"
    );
    hits[0]
}

/// Replaces the length-prefixed node name `from` by `to` in encoded tree bytes: the way
/// to forge names and orders the encoder refuses. Names must be unique markers.
pub fn rename(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut pat = (from.len() as u16).to_le_bytes().to_vec();
    pat.extend_from_slice(from);
    let at = find(bytes, &pat);
    let mut rep = (to.len().min(u16::MAX as usize) as u16)
        .to_le_bytes()
        .to_vec();
    rep.extend_from_slice(to);
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(&rep);
    out.extend_from_slice(&bytes[at + pat.len()..]);
    out
}

/// Deterministic, poorly compressible bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Fixture: temp dir with archive/, outside/ and targets, and a writer
// ---------------------------------------------------------------------------------------

pub struct W<'a> {
    pub s: WriteSession<'a>,
}

impl W<'_> {
    pub fn chunk(&mut self, data: &[u8]) -> Extent {
        let id = self.s.put(BlobKind::Chunk, data).unwrap();
        Extent::Data {
            id,
            len: data.len() as u64,
        }
    }
    pub fn tree(&mut self, nodes: &[Node]) -> BlobId {
        self.s.put_tree(nodes).unwrap()
    }
    /// Stores tree bytes as they are (hostile ones included).
    pub fn raw_tree(&mut self, bytes: &[u8]) -> BlobId {
        self.s.put(BlobKind::Tree, bytes).unwrap()
    }
    pub fn blob(&mut self, kind: BlobKind, bytes: &[u8]) -> BlobId {
        self.s.put(kind, bytes).unwrap()
    }
    /// Stores `bytes` under an id they do not hash to.
    pub fn lying_blob(&mut self, kind: BlobKind, id: BlobId, bytes: &[u8]) {
        self.s
            .put_stored(&self.s.archive().codec().encode(kind, id, bytes))
            .unwrap();
    }
}

pub struct Fx {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub archive: PathBuf,
    pub outside: PathBuf,
    /// An absolute path outside the temp dir that hostile symlinks name; must never exist.
    pub ghost: PathBuf,
    pub time: Cell<i64>,
}

impl Fx {
    pub fn new() -> Fx {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let archive = root.join("archive");
        let outside = root.join("outside");
        std::fs::create_dir(&outside).unwrap();
        Archive::init(&archive, &Config::new(64 << 10, 3, false)).unwrap();
        let ghost = root.with_file_name(format!(
            "{}-ghost",
            root.file_name().unwrap().to_str().unwrap()
        ));
        Fx {
            _tmp: tmp,
            root,
            archive,
            outside,
            ghost,
            time: Cell::new(T0.0),
        }
    }

    pub fn s(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    pub fn outside_abs(&self) -> String {
        Self::s(&self.outside).to_string()
    }

    pub fn ghost_abs(&self) -> String {
        Self::s(&self.ghost).to_string()
    }

    /// Writes blobs with `build` (which returns the root tree id) and commits a
    /// snapshot; returns its id in hex.
    pub fn snapshot(&self, build: impl FnOnce(&mut W<'_>) -> BlobId) -> String {
        let archive = crate::common::open_archive(&self.archive);
        let mut w = W {
            s: archive.begin_write().unwrap(),
        };
        let root = build(&mut w);
        let t = self.time.get() + 1;
        self.time.set(t);
        let mut snap = Snapshot {
            time: (t, 0),
            host: "hostile".into(),
            label: "hostile".into(),
            tags: Vec::new(),
            parent: None,
            root,
            sources: vec![Source {
                name: "src".into(),
                origin: "/hostile".into(),
                parents: None,
            }],
            argv: Vec::new(),
            commands: Vec::new(),
            errors: Vec::new(),
            stats: Stats::default(),
        };
        w.s.commit(&mut snap).unwrap().hex()
    }

    /// Runs strata and checks containment: nothing in the temp dir changes except under
    /// `target`, `outside/` gains nothing, the ghost path never appears.
    pub fn run(&self, args: &[&str], target: Option<&Path>) -> Run {
        let outside_before = entries(&self.outside);
        let before = listing(&self.root, target);
        let r = strata(args);
        let after = listing(&self.root, target);
        if before != after {
            let mut diff = String::new();
            for (p, v) in &after {
                if before.get(p) != Some(v) {
                    diff += &format!("  new/changed: {} ({v})\n", p.display());
                }
            }
            for p in before.keys().filter(|p| !after.contains_key(*p)) {
                diff += &format!("  removed: {}\n", p.display());
            }
            panic!("strata changed the temp dir outside TARGET:\n{diff}{r}");
        }
        assert_eq!(
            entries(&self.outside),
            outside_before,
            "outside/ changed\n{r}"
        );
        assert!(
            std::fs::symlink_metadata(&self.ghost).is_err(),
            "{} was created through a symlink\n{r}",
            self.ghost.display()
        );
        assert_no_panic(&r);
        r
    }

    pub fn target(&self, name: &str) -> PathBuf {
        self.root.join(format!("target-{name}"))
    }

    pub fn restore(&self, spec: &str, target: &Path, overwrite: bool) -> Run {
        let mut args = vec!["restore"];
        if overwrite {
            args.push("--overwrite");
        }
        args.extend([Self::s(&self.archive), spec, Self::s(target)]);
        self.run(&args, Some(target))
    }

    pub fn ls(&self, spec: &str, flags: &[&str]) -> Run {
        let mut args = vec!["ls", Self::s(&self.archive), spec];
        args.extend_from_slice(flags);
        self.run(&args, None)
    }

    pub fn cat(&self, spec: &str) -> Run {
        self.run(&["cat", Self::s(&self.archive), spec], None)
    }

    /// The full battery against a snapshot that must be refused: restore of the whole
    /// snapshot, `ls -R` (three formats) and `cat` of `cat_path` all fail cleanly; plain
    /// `ls` of the root may succeed when the hostile part is one level down.
    pub fn expect_refused(&self, case: &str, snap: &str, cat_path: &str) -> String {
        let target = self.target(case);
        let r = self.restore(snap, &target, false);
        let msg = assert_clean_failure(&r).to_string();
        for flags in [&["-R"][..], &["-R", "-l"], &["-R", "--json"]] {
            assert_clean_failure(&self.ls(snap, flags));
        }
        self.ls(snap, &[]);
        self.ls(snap, &["-l"]);
        assert_clean_failure(&self.cat(&format!("{snap}:{cat_path}")));
        assert!(
            entries(&self.outside).is_empty(),
            "{case}: outside/ is not empty"
        );
        msg
    }
}

pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Every path under `root` (never following symlinks, skipping `skip`) with its type,
/// size and mtime; SQLite's WAL side files come and go and are left out, and the index
/// itself is recorded by presence only (a reader may checkpoint the WAL into it).
pub fn listing(root: &Path, skip: Option<&Path>) -> BTreeMap<PathBuf, String> {
    fn rec(p: &Path, skip: Option<&Path>, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            if Some(path.as_path()) == skip {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("index.sqlite-") {
                continue;
            }
            let md = std::fs::symlink_metadata(&path).unwrap();
            let ft = md.file_type();
            let v = if ft.is_dir() {
                "dir".to_string()
            } else if ft.is_symlink() {
                format!(
                    "symlink -> {}",
                    std::fs::read_link(&path).unwrap().display()
                )
            } else if name == "index.sqlite" {
                "index".to_string()
            } else if ft.is_file() {
                format!(
                    "file {} bytes mtime {}.{}",
                    md.len(),
                    md.mtime(),
                    md.mtime_nsec()
                )
            } else {
                format!("special {:o}", md.mode())
            };
            out.insert(path.clone(), v);
            if ft.is_dir() {
                rec(&path, skip, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    rec(root, skip, &mut out);
    out
}
