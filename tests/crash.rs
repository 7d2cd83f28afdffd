//! `kill -9` during an ingest, at several moments: every earlier snapshot still restores
//! byte for byte, the torn pack tail is never read as data, no stale lock remains, and the
//! next ingest succeeds.

mod common;

use common::*;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

/// Restores every snapshot in `expected` (id, source tree) into a fresh directory and
/// compares it with its source.
fn assert_snapshots_intact(
    wd: &Workdir,
    archive: &Archive,
    expected: &[(String, std::path::PathBuf)],
    round: &str,
) {
    for (n, (id, source)) in expected.iter().enumerate() {
        let target = wd.join(format!("check-{round}-{n}"));
        archive.restore(id, &target);
        assert_diff_clean(source, &target.join("src"));
        assert_same_metadata(source, &target.join("src"));
        std::fs::remove_dir_all(&target).unwrap();
    }
}

#[test]
fn earlier_snapshots_survive_an_ingest_killed_at_any_moment() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);

    // Two small snapshots that must survive everything below.
    let mut expected = Vec::new();
    for (i, dir) in ["one/src", "two/src"].iter().enumerate() {
        let src = wd.join(dir);
        generate_plain_tree(&src, 100 + i as u64);
        let s = archive.ingest([&src]);
        expected.push((s["snapshot"].as_str().to_string(), src));
    }

    // A large source: 300 MiB of incompressible files, which takes well over a second.
    let big = wd.join("big/src");
    for i in 0..30 {
        write_random_file(&big.join(format!("part-{i:02}.bin")), 200 + i, 10 * MIB);
    }
    // Or command output, which never touches the disk before strata.
    let urandom = "head -c 400M /dev/urandom";

    // Kill moments: after a delay, or (None) as soon as the ingest creates a new pack file.
    let delays_ms = [
        Some(100u64),
        Some(250),
        None,
        Some(450),
        Some(700),
        Some(1000),
    ];
    let mut killed_while_running = 0;
    // Snapshots committed by the large ingests (finished, or killed just after commit).
    let mut extra = 0;
    for (round, delay) in delays_ms.iter().enumerate() {
        let cmd = if round % 2 == 0 {
            archive.cmd("ingest").arg(&big)
        } else {
            archive
                .cmd("ingest")
                .args(["--cmd", urandom, "--as", "random.bin"])
        };
        let mut running = cmd.spawn();
        let start = Instant::now();
        let packs_before = archive.pack_files().len();
        let due = || match delay {
            Some(ms) => start.elapsed() >= Duration::from_millis(*ms),
            None => {
                archive.pack_files().len() > packs_before
                    || start.elapsed() > Duration::from_secs(20)
            }
        };
        while !due() && running.is_running() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let finished = !running.is_running();
        let out = running.kill9();
        eprintln!(
            "round {round}: {} at {delay:?} ms; packs now {:?}",
            if finished { "finished" } else { "killed" },
            archive.pack_files()
        );
        if finished {
            // Finished before the kill: it must have succeeded and is a valid snapshot.
            assert_eq!(
                out.code(),
                Some(0),
                "round {round}: ingest ended on its own and failed\n{out}"
            );
            extra += 1;
        } else {
            killed_while_running += 1;
        }

        let ids = archive.snapshot_ids();
        let earlier: Vec<&str> = expected.iter().map(|(id, _)| id.as_str()).collect();
        assert!(
            ids.len() >= earlier.len() && ids[..earlier.len()] == earlier[..],
            "round {round} (kill at {delay:?} ms): earlier snapshots are no longer listed first: {ids:?}"
        );
        if !finished && ids.len() > earlier.len() + extra {
            // Killed after its commit but before exiting: the snapshot must be whole.
            extra += 1;
            archive.cmd("ls").arg(ids.last().unwrap()).arg("-R").ok();
        }
        assert_eq!(
            ids.len(),
            earlier.len() + extra,
            "round {round}: unexpected snapshots {ids:?}"
        );
        assert_snapshots_intact(&wd, &archive, &expected, &format!("r{round}"));
    }
    assert!(
        killed_while_running >= 3,
        "only {killed_while_running} ingests were still running when killed; the source is too small"
    );

    // A new ingest succeeds (no stale lock, the torn tails are ignored) and is listed.
    let three = wd.join("three/src");
    generate_plain_tree(&three, 300);
    let s = archive.ingest([&three]);
    let ids = archive.snapshot_ids();
    assert_eq!(ids.last().map(String::as_str), Some(s["snapshot"].as_str()));
    expected.push((s["snapshot"].as_str().to_string(), three));
    assert_snapshots_intact(&wd, &archive, &expected, "after");

    // And a full ingest of the large source after all those crashes reads back exactly.
    let full = archive.ingest([&big]);
    assert!(full["errors"].as_array().is_empty(), "{full}");
    let copy = wd.join("part-17.copy");
    archive
        .cmd("cat")
        .arg(format!("{}:src/part-17.bin", full["short_id"].as_str()))
        .stdout_to(&copy)
        .ok();
    Cmd::new("cmp").arg(big.join("part-17.bin")).arg(&copy).ok();
}
