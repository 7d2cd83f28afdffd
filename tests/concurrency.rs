//! One writer at a time: a second ingest fails with exit 4 naming the pid of the writer;
//! readers run alongside the writer; a killed writer leaves no stale lock.

mod common;
#[path = "common/faults.rs"]
mod faults;

use common::*;
use faults::read_files;
use std::fs;
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

#[test]
fn a_second_writer_is_refused_and_an_ingest_a_mount_and_a_restore_agree() {
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

    // A second writer is refused with exit 4, naming the first.
    let second = archive.cmd("ingest").arg(&a).code(4);
    second.assert_one_line_error(&format!("archive is locked by pid {}", writer.pid()));

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
    let out = writer.wait();
    assert_eq!(
        out.code(),
        Some(0),
        "the writer must succeed beside the readers\n{out}"
    );
    assert_eq!(
        restore.code(),
        Some(0),
        "the restore must succeed beside the writer\n{restore}"
    );
    let snap_b = out.json()["snapshot"].as_str().to_string();

    // All three agree: the restored bytes, the mounted bytes and the source.
    assert_diff_clean(&a, &target.join("src"));
    assert_same_metadata(&a, &target.join("src"));
    let source_a = read_files(&a);
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
    // The new snapshot appears in the mount and reads back exactly, as it restores.
    let mounted_b = mount.dir.join("by-id").join(&snap_b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !mounted_b.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let through_mount_b = read_files(&mounted_b.join("src"));
    assert_eq!(
        through_mount_b,
        read_files(&b),
        "snapshot B through the mount"
    );
    assert_eq!(fs::read(mounted_b.join("slow.txt")).unwrap(), b"slow\n");
    let target_b = wd.join("restored-b");
    archive.restore(&snap_b, &target_b);
    assert_diff_clean(&b, &target_b.join("src"));
    drop(mount);
    let (out, report) = archive.check_json(&["--read-data"]);
    assert!(report["findings"].as_array().is_empty(), "{out}");
    eprintln!(
        "concurrency: the second writer was refused (exit 4, pid named); a mount and a restore ran {} the \
         writer; {} files agree between source, restore and mount",
        if overlapped {
            "alongside"
        } else {
            "(partly) alongside"
        },
        source_a.len() + through_mount_b.len()
    );
}
