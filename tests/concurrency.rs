//! One writer at a time: a second ingest fails with exit 4 naming the pid of the writer;
//! readers run alongside the writer; a killed writer leaves no stale lock.
//!
//! - A second writer is refused while an ingest, a FUSE mount and a restore agree on what
//!   is committed (moved from `tests/integrity.rs`).
//! - A mount reading a file while prune rewrites its pack reads correct bytes, never EIO
//!   (moved from `tests/retention.rs`).
//! - `check` and `check --read-data`, run in a loop while another process runs
//!   forget + prune cycles (which delete packs, rewrite packs and move blobs, and let a
//!   later ingest reuse a deleted pack's number), report no damage and exit 0: a read
//!   that fails is looked up again in the index, and a snapshot forgotten meanwhile is
//!   skipped with a note (moved from `tests/prune_check.rs`).

mod common;
#[path = "common/faults.rs"]
mod faults;

use common::generations::*;
use common::*;
use faults::read_files;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Starts an ingest that holds the archive for about three seconds, and returns once its
/// command is running (so the writer is surely inside its ingest).
fn start_slow_ingest(wd: &Workdir, archive: &Archive, marker: &str) -> Running {
    let marker = wd.join(marker);
    let mut running = archive
        .cmd("ingest")
        .arg("--cmd")
        .arg(format!("touch '{}'; sleep 3; echo x", marker.display()))
        .args(["--as", "slow/f", "--json"])
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marker.exists() {
        if !running.is_running() {
            panic!(
                "the slow ingest ended before its command ran\n{}",
                running.wait()
            );
        }
        if Instant::now() > deadline {
            panic!(
                "the slow ingest's command did not start within 30 s\n{}",
                running.kill9()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    running
}

#[test]
fn a_second_writer_fails_with_exit_4_naming_the_pid_of_the_first() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = wd.join("src");
    generate_plain_tree(&src, 1);

    let first = start_slow_ingest(&wd, &archive, "first-started");
    let packs_before = archive.pack_files();
    let second = archive.cmd("ingest").arg(&src).code(4);
    let expected = format!("archive is locked by pid {}", first.pid());
    assert!(
        second.stderr_str().contains(&expected),
        "the second writer must say {expected:?}\n{second}"
    );
    assert!(
        second.stderr_str().starts_with("strata: error: "),
        "{second}"
    );
    assert_eq!(
        archive.pack_files(),
        packs_before,
        "the refused writer must write nothing"
    );

    let first = first.wait();
    assert_eq!(
        first.code(),
        Some(0),
        "the first ingest must finish normally\n{first}"
    );
    let snap = first.json();
    assert_eq!(archive.snapshot_ids(), [snap["snapshot"].as_str()]);
    assert_eq!(archive.cat("latest:slow/f"), b"x\n");

    let third = archive.ingest([&src]);
    assert_eq!(
        archive.snapshot_ids(),
        [snap["snapshot"].as_str(), third["snapshot"].as_str()],
        "after the lock is released a new ingest succeeds"
    );
}

#[test]
fn readers_work_while_a_writer_holds_the_lock() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = wd.join("src");
    let files = generate_plain_tree(&src, 2);
    archive.ingest([&src]);
    let before = archive.snapshot_ids();

    let writer = start_slow_ingest(&wd, &archive, "writer-started");
    assert_eq!(
        archive.snapshot_ids(),
        before,
        "the running ingest is not visible yet"
    );
    assert_eq!(archive.cat("latest:src/a.txt"), files[0].1);
    archive.cmd("ls").arg("latest:src").arg("-R").ok();
    let restored = wd.join("restored");
    archive.restore("latest", &restored);
    assert_diff_clean(&src, &restored.join("src"));
    assert!(writer.child.id() > 0);

    let out = writer.wait();
    assert_eq!(out.code(), Some(0), "{out}");
    let after = archive.snapshot_ids();
    assert_eq!(after.len(), 2, "the committed snapshot is seen by readers");
    assert_eq!(after[1], out.json()["snapshot"].as_str());
}

#[test]
fn a_killed_writer_leaves_no_stale_lock() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = wd.join("src");
    generate_plain_tree(&src, 3);

    let writer = start_slow_ingest(&wd, &archive, "killed-started");
    writer.kill9();
    assert!(
        archive.snapshots().is_empty(),
        "a killed ingest commits nothing"
    );
    let s = archive.ingest([&src]);
    assert_eq!(archive.snapshot_ids(), [s["snapshot"].as_str()]);
}

// ---------------------------------------------------------------------------------------
// A writer beside a mount and a restore (moved from tests/integrity.rs)
// ---------------------------------------------------------------------------------------

const MIB: u64 = 1024 * 1024;

/// Snapshot A (every kind of node and 24 MiB), then a writer (a command that holds the
/// archive for a second, then 48 MiB of files as snapshot B) and, while it runs, a second
/// writer, a `--daemon` mount and a restore of A through it. What each one gave.
///
/// Fields drop in order: the mount goes before the work dir holding its mount point.
struct WriterBesideReaders {
    mount: DaemonMount,
    wd: Workdir,
    archive: Archive,
    a: PathBuf,
    b: PathBuf,
    /// The writer's pid and its output.
    writer_pid: u32,
    writer: Out,
    /// Whether the writer still ran after the restore and the mount read had finished.
    overlapped: bool,
    second: Out,
    restore: Out,
    target: PathBuf,
    through_mount: BTreeMap<String, Vec<u8>>,
}

impl WriterBesideReaders {
    fn run() -> WriterBesideReaders {
        require_fuse();
        let wd = Workdir::new();
        let archive = wd.archive(&[]);
        let a = wd.join("a/src");
        generate_full_tree(&a);
        for i in 0..3 {
            write_random_file(&a.join(format!("data/part-{i}.bin")), 60 + i, 8 * MIB);
        }
        stamp_mtimes(&a);
        let snap_a = archive.ingest([&a])["snapshot"].as_str().to_string();
        let b = wd.join("b/src");
        for i in 0..6 {
            write_random_file(&b.join(format!("part-{i}.bin")), 80 + i, 8 * MIB);
        }

        // The writer: a command that holds the archive for a second, then 48 MiB of files.
        let marker = wd.join("writer-started");
        let mut writer = archive
            .cmd("ingest")
            .arg(&b)
            .arg("--cmd")
            .arg(format!("touch '{}'; sleep 1; echo slow", marker.display()))
            .args(["--as", "slow.txt", "--json"])
            .spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !marker.exists() {
            assert!(
                writer.is_running(),
                "the writer ended early\n{}",
                writer.wait()
            );
            assert!(
                Instant::now() < deadline,
                "the writer's command did not start"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let writer_pid = writer.pid();

        // A second writer while the first runs.
        let second = archive.cmd("ingest").arg(&a).run();

        // A mount and a restore of snapshot A while the writer runs.
        let mount = DaemonMount::start(&archive.path, &wd.join("mnt"), &[], &wd.join("mount.log"));
        let mounted_a = mount.dir.join("by-id").join(&snap_a).join("src");
        let target = wd.join("restored");
        let (restore, through_mount) = std::thread::scope(|s| {
            let r = s.spawn(|| archive.cmd("restore").arg(&snap_a).arg(&target).run());
            let m = s.spawn(|| read_files(&mounted_a));
            (r.join().unwrap(), m.join().unwrap())
        });
        let overlapped = writer.is_running();
        let writer = writer.wait();
        WriterBesideReaders {
            mount,
            wd,
            archive,
            a,
            b,
            writer_pid,
            writer,
            overlapped,
            second,
            restore,
            target,
            through_mount,
        }
    }

    /// The writer succeeded; its snapshot's id.
    fn snap_b(&self) -> String {
        let out = &self.writer;
        assert_eq!(
            out.code(),
            Some(0),
            "the writer must succeed beside the readers\n{out}"
        );
        out.json()["snapshot"].as_str().to_string()
    }
}

#[test]
fn a_second_writer_beside_a_running_ingest_is_refused_with_exit_4_naming_its_pid() {
    let fx = WriterBesideReaders::run();
    // A second writer is refused with exit 4, naming the first.
    let second = &fx.second;
    assert_eq!(second.code(), Some(4), "expected exit code 4\n{second}");
    second.assert_one_line_error(&format!("archive is locked by pid {}", fx.writer_pid));
}

#[test]
fn a_restore_and_a_mount_beside_a_writer_give_the_source_bytes_and_the_writer_succeeds() {
    let fx = WriterBesideReaders::run();
    let (a, restore, through_mount) = (&fx.a, &fx.restore, &fx.through_mount);
    fx.snap_b();
    assert_eq!(
        restore.code(),
        Some(0),
        "the restore must succeed beside the writer\n{restore}"
    );
    // All three agree: the restored bytes, the mounted bytes and the source.
    assert_diff_clean(a, &fx.target.join("src"));
    assert_same_metadata(a, &fx.target.join("src"));
    let source_a = read_files(a);
    assert_eq!(
        through_mount.len(),
        source_a.len(),
        "files seen through the mount"
    );
    for (p, bytes) in &source_a {
        assert!(
            through_mount.get(p) == Some(bytes),
            "{p} through the mount differs from the source"
        );
    }
    eprintln!(
        "concurrency: a mount and a restore ran {} the writer; {} files agree between source, restore and mount",
        if fx.overlapped {
            "alongside"
        } else {
            "(partly) alongside"
        },
        source_a.len()
    );
}

#[test]
fn a_snapshot_written_beside_a_mount_appears_in_it_reads_back_exactly_and_checks_clean() {
    let fx = WriterBesideReaders::run();
    let (wd, archive, b) = (&fx.wd, &fx.archive, &fx.b);
    let snap_b = fx.snap_b();
    // The new snapshot appears in the mount and reads back exactly, as it restores.
    let mounted_b = fx.mount.dir.join("by-id").join(&snap_b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !mounted_b.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let through_mount_b = read_files(&mounted_b.join("src"));
    assert_eq!(
        through_mount_b,
        read_files(b),
        "snapshot B through the mount"
    );
    assert_eq!(fs::read(mounted_b.join("slow.txt")).unwrap(), b"slow\n");
    let target_b = wd.join("restored-b");
    archive.restore(&snap_b, &target_b);
    assert_diff_clean(b, &target_b.join("src"));
    drop(fx.mount);
    let (out, report) = archive.check_json(&["--read-data"]);
    assert!(report["findings"].as_array().is_empty(), "{out}");
}

// ---------------------------------------------------------------------------------------
// A mount reading during prune (moved from tests/retention.rs)
// ---------------------------------------------------------------------------------------

/// One pass over `f`, comparing every block with `expected`; the kernel's cached pages
/// of the file are dropped first, so the bytes come from the mount process.
fn read_pass(f: &File, expected: &[u8], what: &str, errors: &Mutex<Vec<String>>) {
    // SAFETY: posix_fadvise on a file descriptor `f` owns for the whole call; it only
    // advises the kernel and touches no memory of ours.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut buf = vec![0u8; 256 * KIB as usize];
    let mut off = 0usize;
    let fail = |m: String| errors.lock().unwrap().push(format!("{what}: {m}"));
    while off < expected.len() {
        let want = buf.len().min(expected.len() - off);
        match f.read_at(&mut buf[..want], off as u64) {
            Ok(0) => return fail(format!("end of file at {off} of {}", expected.len())),
            Ok(n) => {
                if buf[..n] != expected[off..off + n] {
                    let at = (0..n).find(|&i| buf[i] != expected[off + i]).unwrap();
                    return fail(format!("wrong byte at offset {}", off + at));
                }
                off += n;
            }
            Err(e) => {
                return fail(format!(
                    "read at offset {off} failed: {e} (errno {:?})",
                    e.raw_os_error()
                ));
            }
        }
    }
    match f.read_at(&mut buf[..1], off as u64) {
        Ok(0) => {}
        other => fail(format!("reading past the end gave {other:?}")),
    }
}

/// Reads `path` pass after pass (alternately through a handle opened once and a fresh
/// one) until `stop` is set and two more passes have run; returns each pass's interval.
fn reader(
    path: PathBuf,
    expected: Arc<Vec<u8>>,
    name: &'static str,
    stop: Arc<AtomicBool>,
    passes: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<Vec<(Instant, Instant)>> {
    std::thread::spawn(move || {
        let long = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let mut spans = Vec::new();
        let mut after_stop = 0;
        for pass in 0.. {
            if stop.load(Ordering::SeqCst) {
                after_stop += 1;
                if after_stop > 2 {
                    break;
                }
            }
            let t0 = Instant::now();
            if pass % 2 == 0 {
                read_pass(
                    &long,
                    &expected,
                    &format!("{name} pass {pass} (long-lived handle)"),
                    &errors,
                );
            } else {
                match File::open(&path) {
                    Ok(f) => read_pass(
                        &f,
                        &expected,
                        &format!("{name} pass {pass} (fresh open)"),
                        &errors,
                    ),
                    Err(e) => errors
                        .lock()
                        .unwrap()
                        .push(format!("{name} pass {pass}: open failed: {e}")),
                }
            }
            spans.push((t0, Instant::now()));
            passes.fetch_add(1, Ordering::SeqCst);
            if errors.lock().unwrap().len() > 20 || pass > 10_000 {
                break;
            }
        }
        spans
    })
}

/// Snapshot A holds keep.bin (24 MiB) and junk.bin (8 MiB) in one pack, B holds keep.bin
/// only; A is forgotten, so that pack is a quarter unused. Two `--daemon` mounts read
/// keep.bin pass after pass (mnt1 from before prune, mnt2 from when it starts) while
/// `prune --max-unused 0` rewrites the pack. What happened, for the tests to judge.
///
/// Fields drop in order: the mounts go before the work dir holding their mount points.
struct PruneUnderMounts {
    m1: DaemonMount,
    m2: DaemonMount,
    _w: Workdir,
    a: Archive,
    snap_b: String,
    expected: Arc<Vec<u8>>,
    keep_len: u64,
    big_pack: String,
    packs_before: BTreeMap<String, String>,
    errors: Vec<String>,
    spans1: Vec<(Instant, Instant)>,
    spans2: Vec<(Instant, Instant)>,
    /// When the first pass of mnt1 began, and prune's start and end.
    warm: Instant,
    t0: Instant,
    t1: Instant,
    /// Bytes mnt1's process read from disk during the passes.
    rchar: u64,
}

impl PruneUnderMounts {
    fn run() -> PruneUnderMounts {
        require_fuse();
        let w = Workdir::new();
        let a = w.archive(&[]);
        let src = w.join("src");
        let keep_len = 24 * MIB + 4321;
        write_random_file(&src.join("keep.bin"), 4001, keep_len);
        write_random_file(&src.join("junk.bin"), 4002, 8 * MIB);
        // Snapshot A holds keep.bin and junk.bin in one pack; B holds keep.bin only (deduplicated
        // into A's pack). Forgetting A leaves that pack a quarter unused: prune rewrites it.
        let snap_a = ingest_as(&a, &src, "data", "mix", &[]);
        fs::remove_file(src.join("junk.bin")).unwrap();
        let snap_b = ingest_as(&a, &src, "data", "mix", &[]);
        let expected = Arc::new(fs::read(src.join("keep.bin")).unwrap());
        a.cmd("forget").arg(&snap_a).ok();
        let packs_before = pack_digests(&a);
        let (big_pack, big_len) = a
            .pack_files()
            .into_iter()
            .max_by_key(|(_, len)| *len)
            .unwrap();
        assert!(
            big_len > 30 * MIB,
            "keep.bin and junk.bin share pack {big_pack} ({big_len} bytes)"
        );

        // mnt1 has read keep.bin (and opened its pack) before prune; mnt2 starts reading as
        // prune starts. Small chunk caches, so the passes read the packs again.
        let m1 = DaemonMount::start(
            &a.path,
            &w.join("mnt1"),
            &["--cache-size", "8M"],
            &w.join("mnt1.log"),
        );
        let m2 = DaemonMount::start(
            &a.path,
            &w.join("mnt2"),
            &["--cache-size", "8M", "--threads", "2"],
            &w.join("mnt2.log"),
        );
        let path_in = |m: &DaemonMount| m.dir.join("by-id").join(&snap_b).join("data/keep.bin");
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let passes1 = Arc::new(AtomicUsize::new(0));
        let passes2 = Arc::new(AtomicUsize::new(0));
        let rchar0 = m1.rchar();
        let r1 = reader(
            path_in(&m1),
            expected.clone(),
            "mnt1",
            stop.clone(),
            passes1.clone(),
            errors.clone(),
        );
        let warm = Instant::now();
        while passes1.load(Ordering::SeqCst) < 1 {
            assert!(
                warm.elapsed() < Duration::from_secs(60),
                "the first pass takes over 60 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let r2 = reader(
            path_in(&m2),
            expected.clone(),
            "mnt2",
            stop.clone(),
            passes2.clone(),
            errors.clone(),
        );

        let t0 = Instant::now();
        let out = a.cmd("prune").arg("--max-unused").arg("0").ok();
        let t1 = Instant::now();
        stop.store(true, Ordering::SeqCst);
        let spans1 = r1.join().expect("reader 1");
        let spans2 = r2.join().expect("reader 2");
        let rchar = m1.rchar() - rchar0;
        eprintln!(
            "prune took {:.3} s; mnt1 read {} passes, mnt2 {} passes; mnt1 read {} MiB from disk\n{}",
            (t1 - t0).as_secs_f64(),
            spans1.len(),
            spans2.len(),
            rchar / MIB,
            out.stderr_str().trim_end()
        );
        let errors = errors.lock().unwrap().clone();
        PruneUnderMounts {
            m1,
            m2,
            _w: w,
            a,
            snap_b,
            expected,
            keep_len,
            big_pack,
            packs_before,
            errors,
            spans1,
            spans2,
            warm,
            t0,
            t1,
            rchar,
        }
    }
}

#[test]
fn a_mount_keeps_reading_correct_bytes_while_prune_rewrites_the_pack() {
    let fx = PruneUnderMounts::run();
    let (errors, m1, m2) = (&fx.errors, &fx.m1, &fx.m2);
    let (spans1, spans2, t0, t1, warm) = (&fx.spans1, &fx.spans2, fx.t0, fx.t1, fx.warm);
    let (rchar, keep_len) = (fx.rchar, fx.keep_len);
    assert!(
        errors.is_empty(),
        "reads through the mount went wrong while prune ran ({} problem(s)):\n{}\nmount logs:\n{}\n{}",
        errors.len(),
        errors.join("\n"),
        m1.log_text(),
        m2.log_text()
    );
    // The test proves something only if reads ran across the prune and came from strata.
    let overlaps = |s: &[(Instant, Instant)]| s.iter().filter(|(b, e)| *b < t1 && *e > t0).count();
    assert!(
        overlaps(spans1) >= 1 && overlaps(spans2) >= 1,
        "no read pass overlapped the prune ({:?} to {:?} after start)",
        t0 - warm,
        t1 - warm
    );
    assert!(
        rchar >= (spans1.len() as u64 - 1) * keep_len / 2,
        "mnt1 read only {rchar} bytes in {} passes of {keep_len}: the passes were served from \
         the kernel's cache, not by strata",
        spans1.len()
    );
}

#[test]
fn prune_under_two_mounts_rewrites_the_shared_pack_and_leaves_a_clean_archive() {
    let fx = PruneUnderMounts::run();
    let (a, snap_b, big_pack, packs_before) = (&fx.a, &fx.snap_b, &fx.big_pack, &fx.packs_before);
    let packs_after = pack_digests(a);
    assert!(
        !packs_after.contains_key(big_pack),
        "prune --max-unused 0 rewrote and deleted {big_pack}: before {packs_before:?}, after {packs_after:?}"
    );
    assert!(
        packs_after.keys().any(|p| !packs_before.contains_key(p)),
        "prune wrote a new pack"
    );
    drop(fx.m2);
    drop(fx.m1);
    assert_eq!(ids(a), vec![snap_b.clone()]);
    assert_check_clean(a, true, "after the prune under the mounts");
    assert_eq!(a.cat(format!("{snap_b}:data/keep.bin")), *fx.expected);
}

// ---------------------------------------------------------------------------------------
// check beside forget and prune (moved from tests/prune_check.rs)
// ---------------------------------------------------------------------------------------

/// `strata check` outputs that are not clean: exit code other than 0, or any error or
/// damage line.
fn unclean(out: &Out) -> bool {
    let err = out.stderr_str();
    out.code() != Some(0)
        || err.lines().any(|l| l.starts_with("error:"))
        || err.contains("damaged")
        || err.contains("cannot be read")
}

#[test]
fn check_while_forget_and_prune_run_reports_no_damage() {
    let wd = Workdir::new();
    let archive = wd.archive(&["--chunk-size", "64K"]);
    let src = wd.join("src");
    let mut next = 0u64;
    for _ in 0..6 {
        write_generation(&src, next, 512 * KIB);
        archive.ingest([src.as_os_str()]);
        next += 1;
    }
    archive.cmd("check").arg("--read-data").ok();

    let done = AtomicBool::new(false);
    let bad: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let runs = Mutex::new((0u32, 0u32, 0u32)); // checks, with --read-data, with notes
    let cycles = 10;
    let started = Instant::now();
    std::thread::scope(|s| {
        for read_data in [false, true] {
            let (done, bad, runs, archive) = (&done, &bad, &runs, &archive);
            s.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let mut c = archive.cmd("check");
                    if read_data {
                        c = c.arg("--read-data");
                    }
                    let out = c.run();
                    out.assert_no_panic();
                    let mut r = runs.lock().unwrap();
                    r.0 += 1;
                    r.1 += u32::from(read_data);
                    r.2 += u32::from(out.stderr_str().contains("note:"));
                    if unclean(&out) {
                        bad.lock().unwrap().push(out.to_string());
                    }
                }
            });
        }
        // The writer: forget the oldest snapshot and prune (a half-used pack is
        // rewritten, an unused one deleted), then ingest a new generation (which may
        // reuse the number of a pack prune just deleted).
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for _ in 0..cycles {
                let oldest = archive.snapshot_ids()[0].clone();
                archive.cmd("forget").arg(&oldest).ok();
                archive.cmd("prune").arg("--max-unused").arg("1").ok();
                write_generation(&src, next, 512 * KIB);
                archive.ingest([src.as_os_str()]);
                next += 1;
            }
        }));
        done.store(true, Ordering::Relaxed);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    });
    let (checks, read_data, noted) = *runs.lock().unwrap();
    eprintln!(
        "{cycles} forget+prune+ingest cycles in {:.1} s; {checks} checks ran alongside ({read_data} with --read-data, {noted} printed notes)",
        started.elapsed().as_secs_f64()
    );
    let bad = bad.into_inner().unwrap();
    assert!(
        bad.is_empty(),
        "{} of {checks} checks during prune reported damage; the first:\n{}",
        bad.len(),
        bad[0]
    );
    assert!(checks >= 4, "too few checks ran alongside the prunes");
    // And at rest, everything is sound.
    let out = archive.cmd("check").arg("--read-data").ok();
    assert!(!unclean(&out), "{out}");
}
