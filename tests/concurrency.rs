//! One writer at a time: a second ingest fails with exit 4 naming the pid of the writer;
//! readers run alongside the writer; a killed writer leaves no stale lock.

mod common;

use common::*;
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
