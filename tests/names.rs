//! Names and listings: stored names are any bytes but '/' and NUL, so what strata prints
//! for people must keep one entry per line and keep control sequences off the terminal,
//! and what it prints as JSON must give the exact bytes back. Listings must stream: a
//! huge directory, or a few kilobytes of hostile trees that share subtrees down to 2^40
//! paths, must not grow memory before the first line comes out.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Names that forge lines, drive the terminal, or are not UTF-8. `bad\xff` and `bad\xfe`
/// differ only in their invalid byte (both are `bad\u{fffd}` when decoded lossily);
/// `\\377` spells the escape of `\xff` with real backslashes.
const NAMES: &[&[u8]] = &[
    b"new\nline",
    "x\nM src\u{2215}important.db".as_bytes(),
    b"\x1b[31mred\x1b[0m",
    b"\x1b]0;pwned\x07title",
    b"back\\slash",
    b"back\\\\slash",
    b"\\377",
    b"tab\there",
    b"cr\rreturn",
    b"del\x7f",
    b"bad\xff",
    b"bad\xfe",
    b"plain name.txt",
];
const DIR: &[u8] = b"dir\nsub";
const INNER: &[u8] = b"in\x1bside";
const LINK: &[u8] = b"link\x1b[2J";
const LINK_TARGET: &[u8] = b"t\narget\xff";

/// A source directory with every name of [`NAMES`], `DIR/INNER`, and the symlink `LINK`.
fn hostile_source(wd: &Workdir) -> std::path::PathBuf {
    let src = wd.mkdir("src");
    for (i, n) in NAMES.iter().enumerate() {
        write_file(&bytes_path(&src, n), format!("file {i}\n").as_bytes());
    }
    let dir = bytes_path(&src, DIR);
    std::fs::create_dir(&dir).unwrap();
    write_file(&bytes_path(&dir, INNER), b"inside\n");
    symlink(
        std::ffi::OsStr::from_bytes(LINK_TARGET),
        bytes_path(&src, LINK),
    )
    .unwrap();
    src
}

/// The raw names in `src`, sorted as trees sort them (by bytes).
fn top_names() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = NAMES.iter().map(|n| n.to_vec()).collect();
    v.push(DIR.to_vec());
    v.push(LINK.to_vec());
    v.sort();
    v
}

/// Inverse of the `ls -b` escaping strata documents: `\\`, `\a \b \t \n \v \f \r`,
/// `\ooo`. Panics on anything else after a backslash (the escaping must be exactly that).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b
            .get(i + 1)
            .unwrap_or_else(|| panic!("dangling backslash in {s:?}"));
        let simple = match c {
            b'\\' => Some(b'\\'),
            b'a' => Some(7),
            b'b' => Some(8),
            b't' => Some(b'\t'),
            b'n' => Some(b'\n'),
            b'v' => Some(11),
            b'f' => Some(12),
            b'r' => Some(b'\r'),
            _ => None,
        };
        if let Some(v) = simple {
            out.push(v);
            i += 2;
            continue;
        }
        let oct = std::str::from_utf8(&b[i + 1..(i + 4).min(b.len())]).unwrap();
        let v =
            u8::from_str_radix(oct, 8).unwrap_or_else(|_| panic!("bad escape \\{oct} in {s:?}"));
        out.push(v);
        i += 4;
    }
    out
}

/// Output for people: valid UTF-8, and no control character but the line feeds.
fn assert_printable(bytes: &[u8], what: &str) {
    let s = std::str::from_utf8(bytes)
        .unwrap_or_else(|e| panic!("{what}: output is not UTF-8 ({e}): {bytes:?}"));
    for c in s.chars() {
        assert!(
            c == '\n' || !c.is_control(),
            "{what}: raw control character {c:?} in output:\n{s}"
        );
    }
}

/// Standard base64 (RFC 4648), decoded independently of strata's encoder.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {s:?}"),
        }
    };
    assert_eq!(s.len() % 4, 0, "base64 without padding: {s:?}");
    let mut out = Vec::new();
    for q in s.as_bytes().chunks(4) {
        let pad = q.iter().filter(|&&c| c == b'=').count();
        let n = q[..4 - pad]
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | (val(c) << (18 - 6 * i)));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

/// The exact bytes of a JSON string field: `KEY_bytes` when present (then `KEY` must be
/// its lossy rendering and the bytes must not be UTF-8), else `KEY` itself.
fn raw(j: &Json, key: &str) -> Vec<u8> {
    let text = j.field(key).as_str();
    match j.get(&format!("{key}_bytes")) {
        Some(b) => {
            let bytes = base64_decode(b.as_str());
            assert!(
                std::str::from_utf8(&bytes).is_err(),
                "{key}_bytes only for bytes that are not UTF-8: {j}"
            );
            assert_eq!(String::from_utf8_lossy(&bytes), text, "{j}");
            bytes
        }
        None => text.as_bytes().to_vec(),
    }
}

fn lines(out: &[u8]) -> Vec<String> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn ls_prints_each_hostile_name_on_one_escaped_line_that_decodes_to_the_name() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = hostile_source(&wd);
    archive.ingest([&src]);

    let out = archive.cmd("ls").arg("latest:src").ok();
    assert_printable(&out.stdout, "ls");
    let got = lines(&out.stdout);
    let decoded: Vec<Vec<u8>> = got.iter().map(|l| unescape(l)).collect();
    assert_eq!(
        decoded,
        top_names(),
        "one line per name, decoding back\n{out}"
    );
    assert!(got.contains(&"bad\\377".to_string()), "{out}");
    assert!(got.contains(&"bad\\376".to_string()), "{out}");
    assert!(got.contains(&"\\\\377".to_string()), "{out}");
    assert!(got.contains(&"new\\nline".to_string()), "{out}");
    assert!(got.contains(&"\\033[31mred\\033[0m".to_string()), "{out}");

    let out = archive.cmd("ls").arg("latest").arg("-R").ok();
    assert_printable(&out.stdout, "ls -R");
    let got: Vec<Vec<u8>> = lines(&out.stdout).iter().map(|l| unescape(l)).collect();
    let mut want: Vec<Vec<u8>> = vec![b"src".to_vec()];
    for n in top_names() {
        want.push([b"src/".as_slice(), &n].concat());
        if n == DIR {
            want.push([b"src/".as_slice(), DIR, b"/", INNER].concat());
        }
    }
    assert_eq!(got, want, "ls -R: one line per path\n{out}");
}

#[test]
fn ls_long_escapes_names_and_symlink_targets() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = hostile_source(&wd);
    archive.ingest([&src]);

    let out = archive.cmd("ls").arg("latest:src").arg("-l").ok();
    assert_printable(&out.stdout, "ls -l");
    let got = lines(&out.stdout);
    assert_eq!(got.len(), top_names().len(), "one line per entry\n{out}");
    let link = got
        .iter()
        .find(|l| l.starts_with('l'))
        .unwrap_or_else(|| panic!("no symlink line\n{out}"));
    assert!(
        link.ends_with(" link\\033[2J -> t\\narget\\377"),
        "symlink name and target escaped: {link:?}"
    );
}

#[test]
fn ls_json_gives_the_exact_bytes_of_names_that_are_not_utf8() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = hostile_source(&wd);
    archive.ingest([&src]);

    let out = archive.cmd("ls").arg("latest:src").arg("--json").ok();
    let entries = out.json().as_array().to_vec();
    let names: Vec<Vec<u8>> = entries.iter().map(|e| raw(e, "name")).collect();
    assert_eq!(names, top_names(), "{out}");
    let paths: Vec<Vec<u8>> = entries.iter().map(|e| raw(e, "path")).collect();
    assert_eq!(paths, top_names(), "{out}");
    // The two names that differ only in an invalid byte look alike lossily, and differ
    // in their bytes.
    let bad: Vec<&Json> = entries
        .iter()
        .filter(|e| e["name"].as_str() == "bad\u{fffd}")
        .collect();
    assert_eq!(bad.len(), 2, "{out}");
    assert_ne!(bad[0]["name_bytes"], bad[1]["name_bytes"], "{out}");
    let link = entries
        .iter()
        .find(|e| e["type"].as_str() == "symlink")
        .unwrap();
    assert_eq!(raw(link, "target"), LINK_TARGET, "{link}");

    let out = archive.cmd("ls").arg("latest").args(["-R", "--json"]).ok();
    let paths: Vec<Vec<u8>> = out
        .json()
        .as_array()
        .iter()
        .map(|e| raw(e, "path"))
        .collect();
    assert!(
        paths.contains(&[b"src/".as_slice(), DIR, b"/", INNER].concat()),
        "{out}"
    );
    assert!(paths.contains(&b"src/bad\xff".to_vec()), "{out}");
}

#[test]
fn diff_prints_each_hostile_name_on_one_escaped_line_and_json_gives_its_bytes() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = wd.mkdir("src");
    write_file(&src.join("plain name.txt"), b"file 12\n");
    set_mtime(&src.join("plain name.txt"), 1_700_000_000, 0);
    archive.ingest([&src]);
    std::fs::remove_dir_all(&src).unwrap();
    let src = hostile_source(&wd);
    set_mtime(&src.join("plain name.txt"), 1_700_000_000, 0);
    archive.ingest([&src]);
    let ids = archive.snapshot_ids();

    let out = archive.cmd("diff").arg(&ids[0]).arg(&ids[1]).ok();
    assert_printable(&out.stdout, "diff");
    let mut got: Vec<Vec<u8>> = Vec::new();
    for l in lines(&out.stdout) {
        assert!(!l.starts_with("M "), "a name forged a diff line\n{out}");
        let p = l
            .strip_prefix("+ ")
            .unwrap_or_else(|| panic!("only additions expected: {l:?}\n{out}"));
        got.push(unescape(p.strip_suffix('/').unwrap_or(p)));
    }
    let mut want: Vec<Vec<u8>> = Vec::new();
    for n in top_names().into_iter().filter(|n| n != b"plain name.txt") {
        want.push([b"src/".as_slice(), &n].concat());
        if n == DIR {
            want.push([b"src/".as_slice(), DIR, b"/", INNER].concat());
        }
    }
    assert_eq!(got, want, "one line per added path\n{out}");

    let out = archive
        .cmd("diff")
        .arg(&ids[0])
        .arg(&ids[1])
        .arg("--json")
        .ok();
    let j = out.json();
    let paths: Vec<Vec<u8>> = j
        .field("changes")
        .as_array()
        .iter()
        .map(|c| raw(c, "path"))
        .collect();
    assert_eq!(paths, want, "{out}");
}

#[test]
fn show_and_snapshots_escape_labels_tags_sources_and_the_command_line() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = wd.mkdir("s");
    write_file(&src.join("f"), b"x");
    let mut spec = src.as_os_str().to_owned();
    // Control characters in source names are refused at ingest (tests/sources.rs), so the
    // sources carry a backslash and Unicode bidi and line-separator characters instead.
    spec.push(":na\\me\u{202e}");
    archive
        .cmd("ingest")
        .arg(&spec)
        .args([
            "--label",
            "lab\x1b[2J",
            "--tag",
            "t\tag",
            "--cmd",
            "printf x #\x1b]0;pwned\x07",
            "--as",
            "db/du\u{2028}mp",
        ])
        .ok();
    let out = archive.cmd("show").arg("latest").ok();
    assert_printable(&out.stdout, "show");
    let text = out.stdout_str();
    for want in [
        "label     lab\\033[2J",
        "tags      t\\tag",
        "  na\\\\me\\342\\200\\256  <-  ",
        "  db/du\\342\\200\\250mp  <-  cmd: printf x #\\033]0;pwned\\a",
        "    0  printf x #\\033]0;pwned\\a",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(want)),
            "show must print {want:?}\n{out}"
        );
    }
    let out = archive.cmd("snapshots").ok();
    assert_printable(&out.stdout, "snapshots");
    assert_eq!(lines(&out.stdout).len(), 2, "header and one row\n{out}");
    assert!(out.stdout_str().contains("lab\\033[2J"), "{out}");
}

#[test]
fn show_escapes_unreadable_paths_and_json_gives_their_bytes() {
    let wd = Workdir::new();
    std::fs::set_permissions(wd.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let base = wd.mkdir("nobody");
    std::os::unix::fs::chown(&base, Some(65534), Some(65534)).unwrap();
    let archive_path = base.join("archive");
    strata_as("65534", "65534")
        .arg("init")
        .arg(&archive_path)
        .ok();
    let archive = Archive { path: archive_path };
    let src = wd.mkdir("src");
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = bytes_path(&src, b"sec\nret\xff\x1b[2J");
    write_file(&secret, b"no\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    write_file(&src.join("ok"), b"ok\n");

    let out = strata_as("65534", "65534")
        .arg("ingest")
        .arg(&archive.path)
        .arg(&src)
        .run();
    assert_eq!(out.code(), Some(3), "one unreadable path\n{out}");
    assert_printable(&out.stderr, "ingest report");

    let out = archive.cmd("show").arg("latest").ok();
    assert_printable(&out.stdout, "show");
    assert!(
        out.stdout_str()
            .lines()
            .any(|l| l.starts_with("  src/sec\\nret\\377\\033[2J: ")),
        "show must list the unreadable path escaped\n{out}"
    );
    let out = archive.cmd("show").arg("latest").arg("--json").ok();
    let errors = out.json().field("errors").as_array().to_vec();
    assert_eq!(errors.len(), 1, "{out}");
    assert_eq!(raw(&errors[0], "path"), b"src/sec\nret\xff\x1b[2J", "{out}");
}

#[test]
fn check_and_restore_reports_escape_the_names_of_damaged_files() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = wd.mkdir("src");
    let name: &[u8] = b"dam\naged\x1b[31m";
    write_file(&bytes_path(&src, name), &random_bytes(7, 20_000));
    write_file(&src.join("empty"), b"");
    archive.ingest([&src]);
    // The only chunk in the archive is the file's: damage it.
    let mut damaged = 0;
    for pack in pack_paths(&archive.path) {
        let mut bytes = std::fs::read(&pack).unwrap();
        for r in pack_records(&bytes) {
            if r.kind == 1 {
                let at = (r.data_start() + r.stored_len / 2) as usize;
                bytes[at] ^= 0x55;
                damaged += 1;
            }
        }
        std::fs::write(&pack, &bytes).unwrap();
    }
    assert_eq!(damaged, 1, "one chunk");

    let out = archive.cmd("check").arg("--read-data").code(5);
    assert_printable(&out.stderr, "check");
    assert!(
        out.stderr_str()
            .lines()
            .any(|l| l.starts_with("  damages: ") && l.contains("src/dam\\naged\\033[31m")),
        "check must name the damaged file, escaped\n{out}"
    );

    let out = archive
        .cmd("restore")
        .arg("latest")
        .arg(wd.join("target"))
        .code(3);
    assert_printable(&out.stderr, "restore");
    assert!(
        out.stderr_str().contains("dam\\naged\\033[31m"),
        "restore must name the damaged file, escaped\n{out}"
    );
}

// ---------------------------------------------------------------------------------------
// Streaming: shared subtrees and huge directories
// ---------------------------------------------------------------------------------------

/// A child strata killed and reaped when the test ends, pass or fail.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Peak resident memory of a running process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
}

/// Limit for the peak memory of a streaming strata (a debug build lists a small tree in
/// about 10 MiB).
const STREAM_RSS_LIMIT_KIB: u64 = 48 << 10;

/// Runs `strata ARGS`, reads `want` lines of its stdout (failing if they do not come
/// within a few seconds), checks its peak memory meanwhile, then closes the pipe: strata
/// must exit 0 quickly (a closed pipe is not an error). Returns the lines read.
fn stream_then_close(args: &[&std::ffi::OsStr], want: usize) -> Vec<String> {
    let mut child = Guard(
        Command::new(strata_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let (close_tx, close_rx) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut got = Vec::new();
        let mut line = String::new();
        while got.len() < want {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            got.push(line.trim_end_matches('\n').to_string());
        }
        let _ = tx.send(got);
        // Keep the pipe open until the memory is read, then drop the read end: strata's
        // next write fails with EPIPE.
        let _ = close_rx.recv();
    });
    let got = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(got) => got,
        Err(_) => panic!(
            "strata {args:?} did not print {want} lines within 20 s (peak memory {} KiB): \
             it does not stream",
            peak_rss_kib(pid)
        ),
    };
    let peak = peak_rss_kib(pid);
    drop(close_tx);
    assert_eq!(got.len(), want, "strata {args:?} ended early");
    assert!(
        peak < STREAM_RSS_LIMIT_KIB,
        "strata {args:?} reached {peak} KiB after {want} lines (limit {STREAM_RSS_LIMIT_KIB})"
    );
    reader.join().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "strata {args:?} kept running after its stdout was closed"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "closed pipe is not an error: {err}");
    got
}

mod dag {
    use strata::archive::{Archive, Config};
    use strata::format::BlobId;
    use strata::format::snapshot::{Snapshot, Source, Stats};
    use strata::format::tree::{Node, NodeKind, Payload};

    fn node(name: &str, kind: NodeKind, payload: Payload) -> Node {
        Node {
            name: name.as_bytes().to_vec(),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            user: Vec::new(),
            group: Vec::new(),
            mtime: (1_700_000_000, 0),
            ctime: (1_700_000_000, 0),
            size: 0,
            dev: 0,
            ino: 0,
            nlink: 1,
            rdev: 0,
            xattrs: Vec::new(),
            payload,
        }
    }

    /// An archive whose two snapshots hold `src`, a tree where each level is
    /// `{a -> T, b -> T}` (one shared tree per level) over `depth` levels: 2^depth
    /// paths from depth + 1 small tree records. The second snapshot also has a new file
    /// `new` beside `src`. Returns the snapshot ids (hex).
    pub fn build(path: &std::path::Path, depth: usize) -> [String; 2] {
        Archive::init(path, &Config::new(64 << 10, 3, false)).unwrap();
        let archive = crate::common::open_archive(path);
        let mut ids = Vec::new();
        for with_new in [false, true] {
            let mut s = archive.begin_write().unwrap();
            let leaf = node("f", NodeKind::File, Payload::File(Vec::new()));
            let mut t: BlobId = s.put_tree(&[leaf]).unwrap();
            for _ in 0..depth {
                let a = node("a", NodeKind::Dir, Payload::Dir(t));
                let b = node("b", NodeKind::Dir, Payload::Dir(t));
                t = s.put_tree(&[a, b]).unwrap();
            }
            let mut top = vec![];
            if with_new {
                top.push(node("new", NodeKind::File, Payload::File(Vec::new())));
            }
            top.push(node("src", NodeKind::Dir, Payload::Dir(t)));
            let root = s.put_tree(&top).unwrap();
            let mut snap = Snapshot {
                time: (1_700_000_000 + ids.len() as i64, 0),
                host: "test".into(),
                label: "dag".into(),
                tags: Vec::new(),
                parent: None,
                root,
                sources: vec![Source {
                    name: "src".into(),
                    origin: "/dag".into(),
                    parents: None,
                }],
                argv: Vec::new(),
                commands: Vec::new(),
                errors: Vec::new(),
                stats: Stats::default(),
            };
            ids.push(s.commit(&mut snap).unwrap().hex());
        }
        [ids[0].clone(), ids[1].clone()]
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

#[test]
fn ls_recursive_of_shared_subtrees_2_to_the_40_paths_deep_streams_in_flat_memory() {
    let wd = Workdir::new();
    let path = wd.join("dag");
    let [old, _] = dag::build(&path, 40);
    let a = path.as_os_str();
    let got = stream_then_close(&[os("ls"), a, os(&old), os("-R")], 100_000);
    assert_eq!(got[0], "src");
    assert_eq!(got[1], "src/a");
    assert!(got[41].ends_with("/a/f"), "{}", got[41]);
    let got = stream_then_close(&[os("ls"), a, os(&old), os("-R"), os("--json")], 30_000);
    assert!(got[0].starts_with("[{\"path\":\"src\""), "{}", got[0]);
}

#[test]
fn diff_of_shared_subtrees_streams_and_skips_what_both_snapshots_share() {
    let wd = Workdir::new();
    let path = wd.join("dag");
    let [old, new] = dag::build(&path, 40);
    let archive = Archive { path: path.clone() };
    // Both snapshots share `src` (2^40 paths): only the new file differs, at once.
    let out = archive
        .cmd("diff")
        .arg(&old)
        .arg(&new)
        .timeout(Duration::from_secs(20))
        .ok();
    assert_eq!(lines(&out.stdout), ["+ new"], "{out}");
    // Against an empty snapshot, the 2^40 added paths stream out in flat memory.
    let empty = {
        let a = crate::common::open_archive(&path);
        let mut s = a.begin_write().unwrap();
        let root = s.put_tree(&[]).unwrap();
        let mut snap = strata::format::snapshot::Snapshot {
            time: (1_800_000_000, 0),
            host: "test".into(),
            label: "empty".into(),
            tags: Vec::new(),
            parent: None,
            root,
            sources: Vec::new(),
            argv: Vec::new(),
            commands: Vec::new(),
            errors: Vec::new(),
            stats: Default::default(),
        };
        s.commit(&mut snap).unwrap().hex()
    };
    let p = path.as_os_str();
    let got = stream_then_close(&[os("diff"), p, os(&empty), os(&old)], 100_000);
    assert_eq!(got[0], "+ src/");
    let got = stream_then_close(&[os("diff"), p, os(&empty), os(&old), os("--json")], 30_000);
    assert!(got[0].starts_with("{\"old\":"), "{}", got[0]);
}

/// Peak memory (KiB) of `strata ARGS` run to completion with stdout to /dev/null, from
/// `/usr/bin/time`.
fn peak_rss_of_run(wd: &Workdir, args: &[&str]) -> u64 {
    let report = wd.join("time.out");
    Cmd::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&report)
        .arg(strata_bin())
        .args(args)
        .stdout_to("/dev/null")
        .ok();
    std::fs::read_to_string(&report)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn ls_of_a_200000_entry_directory_streams_in_bounded_memory() {
    require_tool("/usr/bin/time", "time");
    let wd = Workdir::new();
    // Unencrypted: unlocking an encrypted archive costs Argon2id's 64 MiB for a moment,
    // which would hide what this test measures, the listing's own memory.
    let archive = wd.archive(&["--no-encryption"]);
    let big = wd.mkdir("big");
    for i in 0..200_000 {
        std::fs::File::create(big.join(format!("file-with-a-moderately-long-name-{i:06}.dat")))
            .unwrap();
    }
    archive.ingest([&big]);
    let a = archive.path.to_str().unwrap();
    // Before streaming: 151 MB for `ls` and `ls -R`, 412 MB with --json (debug build);
    // after: 36 MB, most of it the tree's own bytes (about 30 MB).
    for flags in [&[][..], &["-l"], &["--json"], &["-R"], &["-R", "--json"]] {
        let mut args = vec!["ls", a, "latest:big"];
        args.extend_from_slice(flags);
        let kib = peak_rss_of_run(&wd, &args);
        assert!(
            kib < 64 << 10,
            "strata {args:?} peaked at {kib} KiB (limit 64 MiB)"
        );
    }
    let out = archive.cmd("ls").arg("latest:big").ok();
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 200_000);
}
