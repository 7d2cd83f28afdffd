//! `check` and `repair` around `prune` (issue 12, findings 8 and 14), through the real
//! binary:
//!
//! - `check` and `check --read-data`, run in a loop while another process runs
//!   forget + prune cycles (which delete packs, rewrite packs and move blobs, and let a
//!   later ingest reuse a deleted pack's number), report no damage and exit 0: a read
//!   that fails is looked up again in the index, and a snapshot forgotten meanwhile is
//!   skipped with a note;
//! - a directory named like a pack in `packs/` is skipped by `repair` with a warning and
//!   named by `check` as a stray entry;
//! - `forget` and `prune` on a full filesystem (a small tmpfs, unmounted by its guard even
//!   when the test fails) say to free space and run *them* again, not "the ingest".

mod common;
#[path = "common/faults.rs"]
mod faults;

use common::*;
use faults::{Tmpfs, free_bytes};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

const KIB: usize = 1024;

/// Generation `i` of the source: `s{i-1}` (shared with the generation before), `u{i}`
/// (its own) and `s{i}` (shared with the next). Forgetting the oldest generation leaves
/// its pack half used, so prune rewrites it and moves the shared half.
fn write_generation(dir: &Path, i: u64, size: usize) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    if i > 0 {
        write_file(&dir.join("shared-old"), &random_bytes(1000 + i - 1, size));
    }
    write_file(&dir.join("own"), &random_bytes(2000 + i, size));
    write_file(&dir.join("shared-new"), &random_bytes(1000 + i, size));
}

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

#[test]
fn repair_skips_a_directory_named_like_a_pack_and_check_names_it() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = wd.join("src");
    write_generation(&src, 0, 64 * KIB);
    archive.ingest([src.as_os_str()]);
    let before = archive.snapshot_ids();
    let stray = archive.path.join("packs").join("00000000000000ff.pack");
    std::fs::create_dir(&stray).unwrap();
    std::fs::write(stray.join("inside"), b"not a pack").unwrap();

    let out = archive.cmd("check").ok();
    let err = out.stderr_str();
    assert!(
        err.contains("stray entry") && err.contains("00000000000000ff.pack"),
        "check must name the stray entry\n{out}"
    );
    assert!(err.contains("no errors"), "{out}");

    let out = archive.cmd("repair").ok();
    let err = out.stderr_str();
    assert!(
        err.contains("strata: warning: packs/00000000000000ff.pack is not a regular file"),
        "repair must skip the directory with a warning\n{out}"
    );
    assert!(stray.join("inside").exists(), "repair must leave it alone");
    assert_eq!(archive.snapshot_ids(), before);
    // Writers and prune still work beside it.
    write_generation(&src, 1, 64 * KIB);
    archive.ingest([src.as_os_str()]);
    archive.cmd("forget").arg(&before[0]).ok();
    archive.cmd("prune").ok();
    archive.cmd("check").arg("--read-data").ok();
}

/// Writes `DIR/filler` until at most `room` bytes are free.
fn fill_leaving(dir: &Path, room: u64) {
    use std::io::Write;
    let avail = free_bytes(dir);
    let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("filler")).unwrap());
    let mut left = avail.saturating_sub(room);
    let zeros = vec![0u8; 1 << 20];
    while left > 0 {
        let k = left.min(1 << 20);
        if w.write_all(&zeros[..k as usize]).is_err() {
            break;
        }
        left -= k;
    }
    let _ = w.flush();
}

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
