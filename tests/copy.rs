//! `strata copy SRC DST`: snapshots copied between archives encrypted with different keys
//! (or not at all) restore byte for byte; only missing blobs are sent, so a second copy
//! sends nothing; a subset by SNAP or `--label`; a copy killed with kill -9 resumes; DST's
//! password comes from its own sources or SRC's; `--dry-run` writes nothing.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// DST's password in the tests where it differs from SRC's (the tests' own).
const OTHER: &str = "the-destination-has-another-password";

/// `strata init PATH` encrypted with [`OTHER`].
fn init_other(path: PathBuf) -> Archive {
    strata()
        .arg("init")
        .arg(&path)
        .env("STRATA_PASSWORD", OTHER)
        .ok();
    Archive { path }
}

/// A file holding [`OTHER`].
fn other_password_file(wd: &Workdir) -> PathBuf {
    wd.write("other.pw", format!("{OTHER}\n"))
}

/// `strata copy SRC DST --json EXTRA...`.
fn copy(src: &Archive, dst: &Archive, extra: &[&str]) -> Cmd {
    strata()
        .arg("copy")
        .arg(&src.path)
        .arg(&dst.path)
        .arg("--json")
        .args(extra)
}

/// Restores `spec` of `archive` (opened with `password`) into `target`.
fn restore_with(archive: &Archive, password: &str, spec: &str, target: &Path) {
    archive
        .cmd("restore")
        .arg(spec)
        .arg(target)
        .env("STRATA_PASSWORD", password)
        .ok();
}

/// `strata snapshots --json` opened with `password`.
fn snapshots_with(archive: &Archive, password: &str) -> Vec<Json> {
    archive
        .cmd("snapshots")
        .arg("--json")
        .env("STRATA_PASSWORD", password)
        .ok()
        .json()
        .as_array()
        .to_vec()
}

/// The fields of a `snapshots --json` row a copy keeps (all but the ids and `bytes_added`).
fn kept_fields(row: &Json) -> String {
    [
        "time", "host", "label", "tags", "sources", "files", "size", "errors",
    ]
    .iter()
    .map(|k| format!("{k}={}", row[*k]))
    .collect::<Vec<_>>()
    .join(" ")
}

/// Total bytes of an archive's pack files.
fn pack_bytes(archive: &Archive) -> u64 {
    archive.pack_files().iter().map(|(_, n)| n).sum()
}

/// A source with the full tree (every kind of node) ingested twice, a file changed in
/// between: SRC (encrypted with the tests' password, or not) and the source directory.
fn full_source(wd: &Workdir, extra_init: &[&str]) -> (Archive, PathBuf) {
    let src_archive = Archive::init(wd.join("src.strata"), extra_init);
    let src = wd.join("src");
    generate_full_tree(&src);
    src_archive.ingest([&src]);
    write_random_file(&src.join("changed.bin"), 77, 300_000);
    stamp_mtimes(&src);
    src_archive.ingest([&src]);
    (src_archive, src)
}

/// Restores DST's latest snapshot (opened with `password`) and compares it with `src`.
fn assert_latest_restores_exactly(wd: &Workdir, dst: &Archive, password: &str, src: &Path) {
    let restored = wd.join("restored");
    restore_with(dst, password, "latest", &restored);
    assert_rsync_clean(src, &restored.join("src"));
}

#[test]
fn copy_between_archives_encrypted_with_different_passwords_restores_byte_identical() {
    let wd = Workdir::new();
    let (src_archive, src) = full_source(&wd, &[]);
    let dst = init_other(wd.join("dst.strata"));
    let pw = other_password_file(&wd);
    let out = copy(&src_archive, &dst, &["--dst-password-file"])
        .arg(&pw)
        .ok();
    let j = out.json();
    assert_eq!(j["copied"].as_u64(), 2, "{out}");
    assert_eq!(j["same_ids"], Json::Bool(false), "{out}");
    assert_latest_restores_exactly(&wd, &dst, OTHER, &src);
    // Every field of each record but its ids and bytes_added is kept, in order.
    let from: Vec<String> = src_archive.snapshots().iter().map(kept_fields).collect();
    let to: Vec<String> = snapshots_with(&dst, OTHER)
        .iter()
        .map(kept_fields)
        .collect();
    assert_eq!(
        from, to,
        "the copies keep every record's metadata, in order"
    );
    // Nothing of SRC's ids shows in DST: they are keyed per archive.
    let src_ids = src_archive.snapshot_ids();
    for row in snapshots_with(&dst, OTHER) {
        assert!(!src_ids.contains(&row["id"].as_str().to_string()));
    }
}

#[test]
fn copy_from_an_unencrypted_into_an_encrypted_archive_restores_byte_identical() {
    let wd = Workdir::new();
    let (src_archive, src) = full_source(&wd, &["--no-encryption"]);
    let dst = init_other(wd.join("dst.strata"));
    // SRC needs no password, so DST's comes from the usual sources (STRATA_PASSWORD).
    let out = copy(&src_archive, &dst, &[])
        .env("STRATA_PASSWORD", OTHER)
        .ok();
    assert_eq!(out.json()["copied"].as_u64(), 2, "{out}");
    assert_latest_restores_exactly(&wd, &dst, OTHER, &src);
}

#[test]
fn copy_from_an_encrypted_into_an_unencrypted_archive_restores_byte_identical() {
    let wd = Workdir::new();
    let (src_archive, src) = full_source(&wd, &[]);
    let dst = Archive::init(wd.join("dst.strata"), &["--no-encryption"]);
    let out = copy(&src_archive, &dst, &[]).ok();
    assert_eq!(out.json()["copied"].as_u64(), 2, "{out}");
    assert_latest_restores_exactly(&wd, &dst, TEST_PASSWORD, &src);
    let (_, report) = dst.check_json(&["--read-data"]);
    assert_eq!(report["errors"].as_u64(), 0, "{report}");
}

#[test]
fn copy_between_unencrypted_archives_keeps_the_ids_and_reads_nothing_dst_has() {
    let wd = Workdir::new();
    let (src_archive, src) = full_source(&wd, &["--no-encryption"]);
    let dst = Archive::init(wd.join("dst.strata"), &["--no-encryption"]);
    let first = copy(&src_archive, &dst, &["latest~1"]).ok().json();
    let chunks_first = first["chunks_read"].as_u64();
    let out = copy(&src_archive, &dst, &[]).ok();
    let j = out.json();
    assert_eq!(j["same_ids"], Json::Bool(true), "{out}");
    assert_eq!(
        (j["copied"].as_u64(), j["skipped"].as_u64()),
        (1, 1),
        "{out}"
    );
    // The second snapshot differs by one file of one chunk: only that chunk is read.
    assert_eq!(
        j["chunks_read"].as_u64(),
        1,
        "first copy read {chunks_first}\n{out}"
    );
    assert_eq!(
        src_archive.snapshot_ids(),
        dst.snapshot_ids(),
        "same bytes, same ids: the copies have the source's snapshot ids"
    );
    assert_latest_restores_exactly(&wd, &dst, TEST_PASSWORD, &src);
}

#[test]
fn a_second_copy_sends_nothing_and_says_so() {
    let wd = Workdir::new();
    let (src_archive, _) = full_source(&wd, &[]);
    let dst = init_other(wd.join("dst.strata"));
    let pw = other_password_file(&wd);
    copy(&src_archive, &dst, &["--dst-password-file"])
        .arg(&pw)
        .ok();
    let packs = dst.pack_files();
    let again = copy(&src_archive, &dst, &["--dst-password-file"])
        .arg(&pw)
        .ok();
    let j = again.json();
    assert_eq!(j["copied"].as_u64(), 0, "{again}");
    assert_eq!(j["skipped"].as_u64(), 2, "{again}");
    assert_eq!(j["blobs_sent"].as_u64(), 0, "{again}");
    assert_eq!(j["bytes_sent"].as_u64(), 0, "{again}");
    assert!(
        again
            .stderr_str()
            .contains("nothing to copy: all 2 snapshot(s) are already in"),
        "{again}"
    );
    assert_eq!(dst.pack_files(), packs, "a second copy writes nothing");
}

#[test]
fn copy_takes_only_the_snapshots_named_or_those_of_a_label_then_the_rest() {
    let wd = Workdir::new();
    let src_archive = Archive::init(wd.join("src.strata"), &[]);
    let data = wd.join("data");
    let mut ids = Vec::new();
    for (i, label) in ["jira", "confluence", "jira", "confluence", "jira"]
        .iter()
        .enumerate()
    {
        write_random_file(&data.join(format!("f{i}")), i as u64, 20_000);
        stamp_mtimes(&data);
        ids.push(src_archive.ingest([data.as_path(), Path::new("--label"), Path::new(label)])["snapshot"]
            .as_str()
            .to_string());
    }
    let dst = Archive::init(wd.join("dst.strata"), &[]);
    let labels = |a: &Archive| -> Vec<String> {
        a.snapshots()
            .iter()
            .map(|s| s["label"].as_str().to_string())
            .collect()
    };

    let out = copy(&src_archive, &dst, &["--label", "confluence"]).ok();
    assert_eq!(out.json()["copied"].as_u64(), 2, "{out}");
    assert_eq!(labels(&dst), ["confluence", "confluence"]);

    // By SNAP: a prefix and `latest` of a label.
    let out = copy(&src_archive, &dst, &[&ids[0][..8]]).ok();
    assert_eq!(out.json()["copied"].as_u64(), 1, "{out}");
    let out = copy(&src_archive, &dst, &["latest", "--label", "jira"]).ok();
    assert_eq!(out.json()["copied"].as_u64(), 1, "{out}");
    assert_eq!(
        labels(&dst),
        ["confluence", "confluence", "jira", "jira"],
        "each named snapshot is copied, once"
    );

    // Then everything: only the one left is sent.
    let out = copy(&src_archive, &dst, &[]).ok();
    let j = out.json();
    assert_eq!(
        (j["copied"].as_u64(), j["skipped"].as_u64()),
        (1, 4),
        "{out}"
    );
    let copied: Vec<&Json> = j["snapshots"]
        .as_array()
        .iter()
        .filter(|s| s["action"].as_str() == "copied")
        .collect();
    assert_eq!(copied[0]["source"].as_str(), ids[2]);

    // A label no snapshot has is an error, not a silent success.
    let out = strata()
        .arg("copy")
        .arg(&src_archive.path)
        .arg(&dst.path)
        .args(["--label", "no-such-label"])
        .code(1);
    out.assert_one_line_error("no-such-label");
}

#[test]
fn copying_two_snapshots_that_share_content_adds_about_one_set_of_data() {
    let wd = Workdir::new();
    let src_archive = Archive::init(wd.join("src.strata"), &[]);
    let data = wd.join("data");
    let big = 8 * 1024 * 1024;
    write_random_file(&data.join("big.bin"), 1, big);
    wd.write("data/small.txt", "one\n");
    src_archive.ingest([&data]);
    wd.write("data/small.txt", "two\n");
    stamp_mtimes(&data);
    src_archive.ingest([&data]);

    let dst = init_other(wd.join("dst.strata"));
    let pw = other_password_file(&wd);
    let out = copy(&src_archive, &dst, &["--dst-password-file"])
        .arg(&pw)
        .ok();
    let j = out.json();
    let (src_bytes, dst_bytes) = (pack_bytes(&src_archive), pack_bytes(&dst));
    assert!(
        dst_bytes < big * 11 / 10,
        "two snapshots sharing {big} random bytes take {dst_bytes} bytes in DST: dedup failed\n{out}"
    );
    assert!(
        dst_bytes.abs_diff(src_bytes) < 64 * 1024,
        "DST holds as much as SRC ({src_bytes} vs {dst_bytes} bytes)\n{out}"
    );
    let sent: Vec<u64> = j["snapshots"]
        .as_array()
        .iter()
        .map(|s| s["bytes_sent"].as_u64())
        .collect();
    assert!(
        sent[1] < 16 * 1024,
        "the second snapshot sends only its changed file and trees: {sent:?}"
    );
}

#[test]
fn a_copys_parent_is_the_copy_of_the_source_parent() {
    let wd = Workdir::new();
    let (src_archive, _) = full_source(&wd, &[]);
    let dst = Archive::init(wd.join("dst.strata"), &[]);
    copy(&src_archive, &dst, &[]).ok();
    let ids = dst.snapshot_ids();
    let show = dst.cmd("show").arg("latest").arg("--json").ok().json();
    assert_eq!(show["parent"].as_str(), ids[0], "{show}");
    let first = dst.cmd("show").arg(&ids[0]).arg("--json").ok().json();
    assert!(first["parent"].is_null(), "{first}");
}

#[test]
fn a_copy_killed_with_kill_9_resumes_when_run_again_and_dst_checks_clean() {
    let wd = Workdir::new();
    let src_archive = Archive::init(wd.join("src.strata"), &[]);
    let data = wd.join("data");
    let rounds = 8u64;
    let per_round = 12 * 1024 * 1024;
    for i in 0..rounds {
        write_random_file(&data.join(format!("f{i}.bin")), 100 + i, per_round);
        stamp_mtimes(&data);
        src_archive.ingest([&data]);
    }
    let dst = init_other(wd.join("dst.strata"));
    let pw = other_password_file(&wd);

    let mut running = copy(&src_archive, &dst, &["--dst-password-file"])
        .arg(&pw)
        .spawn();
    // Kill once DST's packs hold about 40% of the data: some snapshots are committed
    // and one is in flight.
    let threshold = rounds * per_round * 2 / 5;
    let deadline = Instant::now() + Duration::from_secs(120);
    let dst_packs = dst.path.join("packs");
    let packed = || -> u64 {
        fs::read_dir(&dst_packs)
            .map(|d| {
                d.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    while running.is_running() && packed() < threshold && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        running.is_running(),
        "the copy ended before it could be killed: give it more data\n{}",
        running.wait()
    );
    running.kill9();
    let committed = snapshots_with(&dst, OTHER).len() as u64;
    assert!(
        (1..rounds).contains(&committed),
        "the kill must come after a commit and before the last: {committed} of {rounds} committed"
    );

    let out = copy(&src_archive, &dst, &["--dst-password-file"])
        .arg(&pw)
        .ok();
    let j = out.json();
    assert_eq!(j["skipped"].as_u64(), committed, "{out}");
    assert_eq!(j["copied"].as_u64(), rounds - committed, "{out}");
    let check = dst
        .cmd("check")
        .arg("--read-data")
        .env("STRATA_PASSWORD", OTHER)
        .ok();
    assert!(check.stderr_str().contains("no errors"), "{check}");
    let from: Vec<String> = src_archive.snapshots().iter().map(kept_fields).collect();
    let to: Vec<String> = snapshots_with(&dst, OTHER)
        .iter()
        .map(kept_fields)
        .collect();
    assert_eq!(from, to, "every snapshot once, in SRC's order");
    let restored = wd.join("restored");
    restore_with(&dst, OTHER, "latest", &restored);
    assert_rsync_clean(&data, &restored.join("data"));
}

#[test]
fn a_copy_stopped_by_sigterm_exits_143_and_leaves_no_pack_behind() {
    let wd = Workdir::new();
    let src_archive = Archive::init(wd.join("src.strata"), &[]);
    let data = wd.join("data");
    for i in 0..4u64 {
        write_random_file(&data.join(format!("f{i}.bin")), 200 + i, 12 * 1024 * 1024);
        stamp_mtimes(&data);
        src_archive.ingest([&data]);
    }
    let dst = Archive::init(wd.join("dst.strata"), &[]);
    let mut running = copy(&src_archive, &dst, &[]).spawn();
    let deadline = Instant::now() + Duration::from_secs(120);
    while running.is_running() && dst.pack_files().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        running.is_running(),
        "the copy ended before the signal\n{}",
        running.wait()
    );
    Cmd::new("kill")
        .args(["-TERM", &running.pid().to_string()])
        .ok();
    let out = running.wait();
    assert_eq!(out.code(), Some(143), "128 + SIGTERM\n{out}");
    out.assert_one_line_error("interrupted");
    let (check, report) = dst.check_json(&[]);
    assert_eq!(
        (report["errors"].as_u64(), report["warnings"].as_u64()),
        (0, 0),
        "the snapshot in flight left no unreferenced pack\n{check}"
    );
    let out = copy(&src_archive, &dst, &[]).ok();
    let j = out.json();
    assert_eq!(j["copied"].as_u64() + j["skipped"].as_u64(), 4, "{out}");
}

#[test]
fn a_wrong_dst_password_exits_6_and_writes_nothing() {
    let wd = Workdir::new();
    let (src_archive, _) = full_source(&wd, &[]);
    let dst = init_other(wd.join("dst.strata"));
    let before = dst.pack_files();
    let wrong = wd.write("wrong.pw", "not-the-password\n");
    let out = copy(&src_archive, &dst, &["--dst-password-file"])
        .arg(&wrong)
        .code(6);
    out.assert_one_line_error("wrong password");
    assert!(out.stderr_str().contains("dst.strata"), "{out}");
    // Without a DST password of its own, DST is tried with SRC's, and the hint says how
    // to give it one.
    let out = copy(&src_archive, &dst, &[]).code(6);
    out.assert_one_line_error("wrong password");
    assert!(out.stderr_str().contains("--dst-password-file"), "{out}");
    let out = copy(&src_archive, &dst, &[])
        .env("STRATA_DST_PASSWORD", "still-wrong")
        .code(6);
    out.assert_one_line_error("wrong password");
    assert_eq!(dst.pack_files(), before, "nothing was written to DST");
    assert!(snapshots_with(&dst, OTHER).is_empty());
    // The right one from the environment works.
    copy(&src_archive, &dst, &[])
        .env("STRATA_DST_PASSWORD", OTHER)
        .ok();
}

#[test]
fn a_dry_run_writes_nothing_and_predicts_what_the_copy_sends() {
    let wd = Workdir::new();
    let (src_archive, _) = full_source(&wd, &[]);
    let dst = Archive::init(wd.join("dst.strata"), &[]);
    let before = dst.pack_files();
    let dry = copy(&src_archive, &dst, &["--dry-run"]).ok();
    let d = dry.json();
    assert_eq!(d["would_copy"].as_u64(), 2, "{dry}");
    assert_eq!(d["copied"].as_u64(), 0, "{dry}");
    assert_eq!(dst.pack_files(), before, "a dry run writes nothing");
    assert!(dry.stderr_str().contains("nothing was written"), "{dry}");
    let real = copy(&src_archive, &dst, &[]).ok().json();
    assert_eq!(real["blobs_sent"], d["blobs_sent"], "dry {d}\nreal {real}");
}

#[test]
fn copy_into_an_append_only_archive_is_allowed_and_verify_reads_the_data_back() {
    let wd = Workdir::new();
    let (src_archive, src) = full_source(&wd, &[]);
    let dst = Archive::init(wd.join("dst.strata"), &["--append-only"]);
    let out = copy(&src_archive, &dst, &["--verify"]).ok();
    let j = out.json();
    assert_eq!(j["copied"].as_u64(), 2, "{out}");
    assert_eq!(j["verify"].as_str(), "read-data", "{out}");
    assert_latest_restores_exactly(&wd, &dst, TEST_PASSWORD, &src);
}

#[test]
fn copy_refuses_an_archive_into_itself_and_a_missing_dst() {
    let wd = Workdir::new();
    let (src_archive, _) = full_source(&wd, &[]);
    let out = copy(&src_archive, &src_archive, &[]).code(2);
    out.assert_one_line_error("same archive");
    let out = strata()
        .arg("copy")
        .arg(&src_archive.path)
        .arg(wd.join("nowhere.strata"))
        .code(1);
    out.assert_one_line_error("nowhere.strata");
}

#[test]
fn a_copy_beside_another_writer_of_dst_exits_4() {
    let wd = Workdir::new();
    let (src_archive, _) = full_source(&wd, &[]);
    let dst = Archive::init(wd.join("dst.strata"), &[]);
    // An ingest whose standard input stays open holds DST's writer lock.
    let mut holder = sh(&format!(
        "sleep 3 | {} ingest {} --stdin-as slow",
        strata_bin(),
        dst.path.display()
    ))
    .spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::read_to_string(dst.path.join("lock")).map_or(true, |s| s.trim().is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = copy(&src_archive, &dst, &[]).code(4);
    out.assert_one_line_error("locked");
    assert!(holder.is_running(), "the holder must outlive the copy");
    holder.wait();
    copy(&src_archive, &dst, &[]).ok();
}

/// The recipe in docs/recipes/offsite-copy.md: a nightly copy of the local archive to an
/// off-site one with its own password, and a restore from the off-site copy back into a
/// fresh local archive.
#[test]
fn the_offsite_recipe_copies_out_and_back_and_restores_exactly() {
    let wd = Workdir::new();
    let local = Archive::init(wd.join("jira.strata"), &[]);
    let export = wd.join("export");
    write_random_file(&export.join("2026-11-20--0200.zip"), 5, 2_000_000);
    stamp_mtimes(&export);
    local.ingest([export.as_path(), Path::new("--label"), Path::new("jira")]);
    write_random_file(&export.join("2026-11-20--1400.zip"), 6, 2_000_000);
    stamp_mtimes(&export);
    local.ingest([export.as_path(), Path::new("--label"), Path::new("jira")]);

    let offsite = init_other(wd.join("offsite.strata"));
    let pw = other_password_file(&wd);
    // Night: copy what is new.
    copy(&local, &offsite, &["--label", "jira"])
        .env("STRATA_DST_PASSWORD_FILE", &pw)
        .ok();
    // The local disk is lost: a fresh archive, filled back from off-site.
    let fresh = Archive::init(wd.join("new-local.strata"), &[]);
    let back = strata()
        .arg("copy")
        .arg(&offsite.path)
        .arg(&fresh.path)
        .arg("--json")
        .env("STRATA_PASSWORD_FILE", &pw)
        .env("STRATA_DST_PASSWORD", TEST_PASSWORD)
        .ok();
    assert_eq!(back.json()["copied"].as_u64(), 2, "{back}");
    let restored = wd.join("restored");
    fresh.restore("latest", &restored);
    assert_rsync_clean(&export, &restored.join("export"));
}

#[test]
fn copy_help_names_its_arguments_passwords_verification_and_an_example() {
    let out = strata().args(["copy", "--help"]).ok();
    let text = out.stdout_str();
    for w in [
        "<SRC>",
        "<DST>",
        "[SNAP]...",
        "--label",
        "--verify",
        "--dry-run",
        "--json",
        "--dst-password-file",
        "--dst-password-command",
        "STRATA_DST_PASSWORD_FILE",
        "STRATA_DST_PASSWORD",
        "The same snapshot",
        "Verification",
        "Examples:",
        "strata copy /backups/jira.strata",
    ] {
        assert!(
            text.contains(w),
            "`strata copy --help` does not mention {w}\n{out}"
        );
    }
}
