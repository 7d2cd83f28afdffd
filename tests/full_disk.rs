//! A full disk: a size-limited tmpfs mounted by the test (and unmounted by its guard even
//! when the test fails), filled to many levels: every command that runs out of space says
//! so on one line and loses nothing already committed:
//!
//! - an ingest fails with one line and loses nothing;
//! - `forget` and `prune` say to free space and run *them* again, not "the ingest"
//!   (moved from `tests/prune_check.rs`);
//! - a restore cut short leaves no partial file under its real name (moved from
//!   `tests/restore_security.rs`).
//!
//! Each test prints its figures (`eprintln!`, see them with `--nocapture`); they are
//! copied into docs/RELIABILITY.md.

mod common;
#[path = "common/faults.rs"]
mod faults;

use common::generations::{KIB, write_generation};
use common::*;
use faults::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Ingest
// ---------------------------------------------------------------------------------------

/// Whether a one-line error names a full disk.
fn names_a_full_disk(out: &Out) -> bool {
    let first = out
        .stderr_str()
        .lines()
        .next()
        .unwrap_or_default()
        .to_lowercase();
    first.contains("no space left") || first.contains("enospc") || first.contains("disk is full")
}

/// Writes `DIR/filler` until only `room` bytes are free (tmpfs allocates on write, so
/// zeros are written rather than a length set). Returns its path.
fn fill_leaving(dir: &Path, room: u64) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let avail = free_bytes(dir);
    let mut w = std::io::BufWriter::new(fs::File::create(&filler).unwrap());
    let mut left = avail.saturating_sub(room);
    let zeros = vec![0u8; MIB as usize];
    while left > 0 {
        let k = left.min(MIB);
        if w.write_all(&zeros[..k as usize]).is_err() {
            break;
        }
        left -= k;
    }
    let _ = w.flush();
    filler
}

/// A 24 MiB tmpfs (unmounted by its guard) holding an archive with one snapshot of a
/// tree with every kind of node, which must survive everything the tests do.
/// Fields drop in order: the tmpfs is unmounted before the work dir is removed.
struct FullDisk {
    tmpfs: Tmpfs,
    archive: Archive,
    expected: Vec<Expected>,
    fs_dir: PathBuf,
    wd: Workdir,
}

/// The room a filler leaves before each ingest of `FullDisk::ingest_with_room`: enough to
/// fail writing a chunk, a tree, the snapshot record, sealing, or in the SQLite commit,
/// or to succeed.
const ROOM_KB: [u64; 17] = [
    0, 4, 16, 64, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 2560, 3072, 4096, 6144,
];

impl FullDisk {
    fn new() -> FullDisk {
        let wd = Workdir::new();
        let fs_dir = wd.join("small-fs");
        let tmpfs = Tmpfs::mount(&fs_dir, "24m");
        let archive = Archive::init(fs_dir.join("archive"), &[]);
        // An earlier snapshot (every kind of node) that must survive everything below.
        let full = wd.join("full/src");
        generate_full_tree(&full);
        let s = archive.ingest([&full]);
        let expected = vec![Expected {
            id: s["snapshot"].as_str().into(),
            source: full,
            name: "src".into(),
        }];
        FullDisk {
            tmpfs,
            archive,
            expected,
            fs_dir,
            wd,
        }
    }

    /// A source much bigger than the space left: five 8 MiB files.
    fn big_source(&self) -> PathBuf {
        let big = self.wd.join("big/src");
        for i in 0..5 {
            write_random_file(&big.join(format!("part-{i}.bin")), 300 + i, 8 * MIB);
        }
        big
    }

    /// Ingest number `n` (a 2 MiB payload beside a plain tree) with a filler leaving
    /// `free` bytes, removed afterwards. Returns the ingest's output and source.
    fn ingest_with_room(&self, n: usize, free: u64) -> (Out, PathBuf) {
        let src = self.wd.join(format!("medium-{n}/src"));
        generate_plain_tree(&src, 500 + n as u64);
        write_random_file(&src.join("payload.bin"), 600 + n as u64, 2 * MIB);
        let filler = fill_leaving(&self.fs_dir, free);
        let out = self.archive.cmd("ingest").arg(&src).arg("--json").run();
        let _ = fs::remove_file(&filler);
        (out, src)
    }
}

#[test]
fn an_ingest_bigger_than_the_disk_fails_with_one_line_and_leaves_nothing_behind() {
    let fx = FullDisk::new();
    let (wd, archive, expected) = (&fx.wd, &fx.archive, &fx.expected);
    let mut problems = Problems::default();
    let big = fx.big_source();
    let packs_before = archive.pack_files();
    let out = archive.cmd("ingest").arg(&big).run();
    assert_ne!(
        out.code(),
        Some(0),
        "an ingest bigger than the disk must fail\n{out}"
    );
    assert_typed_error(&out);
    if !names_a_full_disk(&out) {
        problems.add(
            "the ingest's error does not say the disk is full (ENOSPC)",
            out.to_string(),
        );
    }
    assert_eq!(
        archive.snapshot_ids(),
        [expected[0].id.clone()],
        "no snapshot committed\n{out}"
    );
    assert_eq!(
        archive.pack_files(),
        packs_before,
        "the failed session's packs are removed"
    );
    assert_restores_identically(wd, archive, &expected[0], "after-enospc");
    let (out, report) = archive.check_json(&[]);
    assert!(
        report["findings"].as_array().is_empty(),
        "check after ENOSPC\n{out}"
    );
    problems.assert_none();
}

#[test]
fn readers_list_and_restore_while_the_archives_disk_is_full() {
    let fx = FullDisk::new();
    let (wd, archive, expected) = (&fx.wd, &fx.archive, &fx.expected);
    let mut problems = Problems::default();
    // Readers while the disk stays full: listing and restoring elsewhere need no space on
    // the archive's disk.
    let filler = fill_leaving(&fx.fs_dir, 0);
    let ls = archive.cmd("snapshots").run();
    let target = wd.join("restore-while-full");
    let restore = archive
        .cmd("restore")
        .arg(&expected[0].id)
        .arg(&target)
        .run();
    for out in [&ls, &restore] {
        if out.code() != Some(0) {
            assert_typed_error(out);
            problems.add(
                "readers fail while the archive's disk is full, with a hint to repair an index that is not damaged",
                out.to_string(),
            );
        }
    }
    if restore.code() == Some(0) {
        assert_diff_clean(&expected[0].source, &target.join("src"));
    }
    fs::remove_file(&filler).unwrap();
    let _ = fs::remove_dir_all(&target);
    problems.assert_none();
}

#[test]
fn an_ingest_meeting_a_full_disk_at_any_stage_commits_whole_or_nothing_and_loses_nothing() {
    let mut fx = FullDisk::new();
    let mut problems = Problems::default();
    // The disk full at every stage of an ingest: a filler leaves it a few kB to a few
    // MB of room, so the ingest fails writing a chunk, a tree, the snapshot record,
    // sealing, or in the SQLite commit, or succeeds. Either way nothing is lost.
    fx.tmpfs.resize("64m");
    let (mut attempts, mut failed, mut succeeded, mut leftovers) = (0, 0, 0, 0);
    let mut messages: BTreeSet<String> = BTreeSet::new();
    for (n, kb) in ROOM_KB.iter().enumerate() {
        let free = kb * 1024;
        let ids_before = fx.archive.snapshot_ids();
        attempts += 1;
        let (out, src) = fx.ingest_with_room(n, free);
        let (wd, archive) = (&fx.wd, &fx.archive);
        let ctx = format!("ingest with {} kB free", free / 1024);
        if out.code() == Some(0) {
            succeeded += 1;
            let id = out.json()["snapshot"].as_str().to_string();
            assert_eq!(archive.snapshot_ids().last(), Some(&id), "{ctx}");
            fx.expected.push(Expected {
                id,
                source: src,
                name: "src".into(),
            });
        } else {
            failed += 1;
            assert_typed_error(&out);
            messages.insert(
                out.stderr_str()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
            if !names_a_full_disk(&out) {
                problems.add(
                    "the ingest's error does not say the disk is full (ENOSPC)",
                    format!("{ctx}\n{out}"),
                );
            }
            assert_eq!(
                archive.snapshot_ids(),
                ids_before,
                "{ctx}: nothing committed\n{out}"
            );
        }
        // check: no errors; an unreferenced pack only if the failure came after the
        // session could no longer tell whether its commit happened.
        let (out, report) = archive.check_json(&[]);
        assert_eq!(report["errors"].as_u64(), 0, "{ctx}: check\n{out}");
        leftovers += report["warnings"].as_u64();
        for e in &fx.expected {
            assert_restores(wd, archive, e, &format!("room-{n}"), false);
        }
    }
    eprintln!(
        "disk full: {attempts} ingests with 0 kB to 6 MiB of room: {failed} failed cleanly, {succeeded} succeeded; \
         {leftovers} unreferenced packs left; nothing lost"
    );
    eprintln!(
        "disk full: the errors were:\n  {}",
        messages.into_iter().collect::<Vec<_>>().join("\n  ")
    );
    problems.assert_none();
}

#[test]
fn once_space_is_freed_after_full_disk_failures_a_big_ingest_succeeds_and_everything_checks() {
    let mut fx = FullDisk::new();
    // The failures of the two tests above, replayed without judging them: the big
    // ingest into 24 MiB, then an ingest at every fill level in 64 MiB.
    let big = fx.big_source();
    fx.archive.cmd("ingest").arg(&big).run();
    fx.tmpfs.resize("64m");
    for (n, kb) in ROOM_KB.iter().enumerate() {
        let (out, src) = fx.ingest_with_room(n, kb * 1024);
        if out.code() == Some(0) {
            fx.expected.push(Expected {
                id: out.json()["snapshot"].as_str().to_string(),
                source: src,
                name: "src".into(),
            });
        }
    }
    let (_, report) = fx.archive.check_json(&[]);
    let leftovers = report["warnings"].as_u64();

    // Space freed (the tmpfs grows): the big ingest succeeds and everything checks.
    fx.tmpfs.resize("200m");
    let (wd, archive) = (&fx.wd, &fx.archive);
    let s = archive.ingest([&big]);
    fx.expected.push(Expected {
        id: s["snapshot"].as_str().into(),
        source: big,
        name: "src".into(),
    });
    if leftovers > 0 {
        let rep = archive.cmd("repair").run();
        assert_eq!(rep.code(), Some(0), "repair of the leftovers\n{rep}");
    }
    let (out, report) = archive.check_json(&["--read-data"]);
    assert!(
        report["findings"].as_array().is_empty(),
        "check --read-data at the end\n{out}"
    );
    for (i, e) in fx.expected.iter().enumerate() {
        assert_restores_identically(wd, archive, e, &format!("end-{i}"));
    }
    eprintln!(
        "disk full: after the failures, {} snapshots restored byte-identical; nothing lost",
        fx.expected.len()
    );
}

// ---------------------------------------------------------------------------------------
// Forget and prune (moved from tests/prune_check.rs)
// ---------------------------------------------------------------------------------------

#[test]
fn forget_and_prune_on_a_full_disk_say_to_run_them_again() {
    let wd = Workdir::new();
    let fs_dir = wd.join("small-fs");
    let tmpfs = Tmpfs::mount(&fs_dir, "16m");
    let archive = Archive::init(fs_dir.join("archive"), &["--chunk-size", "64K"]);
    let src = wd.join("src");
    for i in 0..3 {
        write_generation(&src, i, 1024 * KIB);
        archive.ingest([src.as_os_str()]);
    }
    let ids = archive.snapshot_ids();

    // Forget on a full disk.
    fill_leaving(&fs_dir, 0);
    let out = archive.cmd("forget").arg(&ids[0]).code(1);
    out.assert_one_line_error("");
    let err = out.stderr_str();
    assert!(
        err.contains("hint: ") && err.contains("run the forget again") && !err.contains("ingest"),
        "forget on a full disk needs its own hint\n{out}"
    );
    assert_eq!(archive.snapshot_ids(), ids, "nothing was forgotten");
    std::fs::remove_file(fs_dir.join("filler")).unwrap();
    archive.cmd("forget").arg(&ids[0]).ok();

    // Prune on a full disk: the pack of the forgotten snapshot is half used, so prune
    // must write a new pack (1 MiB) with only a little room left.
    fill_leaving(&fs_dir, 64 * 1024);
    let out = archive.cmd("prune").arg("--max-unused").arg("1").code(1);
    out.assert_one_line_error("");
    let err = out.stderr_str();
    assert!(
        err.contains("run `strata prune` again")
            && err.contains("nothing was lost")
            && !err.contains("ingest"),
        "prune on a full disk needs its own hint\n{out}"
    );
    std::fs::remove_file(fs_dir.join("filler")).unwrap();
    let out = archive.cmd("prune").arg("--max-unused").arg("1").ok();
    assert!(out.stderr_str().contains("rewrite 1"), "{out}");
    archive.cmd("check").arg("--read-data").ok();
    for id in &ids[1..] {
        archive.cmd("restore").arg(id).arg(wd.join(&id[..8])).ok();
    }
    drop(tmpfs);
}

// ---------------------------------------------------------------------------------------
// Restore (moved from tests/restore_security.rs)
// ---------------------------------------------------------------------------------------

#[test]
fn a_restore_cut_short_by_a_full_disk_leaves_no_partial_file() {
    let wd = Workdir::new();
    let src = wd.join("src");
    write_file(&src.join("a-small"), b"small\n");
    write_random_file(&src.join("b-big"), 7, 6 << 20);
    let archive = wd.archive(&[]);
    archive.ingest([format!("{}:data", src.display())]);
    let disk = Tmpfs::mount(&wd.join("disk"), "2M");
    let target = disk.dir.join("target");
    let out = archive.cmd("restore").arg("latest").arg(&target).code(1);
    out.assert_one_line_error("data/b-big");
    assert!(
        out.stderr_str().contains("removed"),
        "the error says the partial file was removed\n{out}"
    );
    assert!(
        !target.join("data/b-big").exists(),
        "a partial file is left under its real name\n{out}"
    );
    assert!(
        fs::read_dir(target.join("data"))
            .unwrap()
            .all(|e| e.unwrap().file_name() == "a-small"),
        "no leftover under another name either\n{out}"
    );
    drop(disk);
}
