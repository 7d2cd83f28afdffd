//! Archives written by earlier versions keep working. `tests/fixtures/v1-archive` was
//! written by the version-1 binary of commit d303f10 (before the storage seam, the codec
//! and the layer moves) from the tree `tests/fixtures/make-v1-source.sh` builds; two
//! snapshots, label `v1`. Each test works on a copy, so the fixture never changes.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// A fresh copy of the committed fixture, with the modes strata gives an archive.
fn fixture_copy(wd: &Workdir) -> Archive {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-archive");
    let to = wd.join("v1-archive");
    Cmd::new("cp").arg("-a").arg(&from).arg(&to).ok();
    sh(&format!(
        "chmod 0700 '{0}' '{0}/packs' && chmod 0600 '{0}'/config '{0}'/index.sqlite '{0}'/packs/*",
        to.display()
    ))
    .ok();
    Archive { path: to }
}

/// The source tree of the first (`second == false`) or second snapshot.
fn source(wd: &Workdir, name: &str, second: bool) -> PathBuf {
    let dir = wd.join(name);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make-v1-source.sh");
    let mut c = Cmd::new("bash").arg(script).arg(&dir);
    if second {
        c = c.arg("second");
    }
    c.ok();
    dir
}

#[test]
fn a_version_1_archive_checks_clean_with_every_byte_read() {
    let wd = Workdir::new();
    let a = fixture_copy(&wd);
    let out = a.cmd("check").arg("--read-data").ok();
    assert!(out.stderr_str().contains("no errors"), "{out}");
    let out = a.cmd("snapshots").ok();
    assert_eq!(
        out.stdout_str().lines().count(),
        3,
        "header and two snapshots\n{out}"
    );
}

#[test]
fn both_snapshots_of_a_version_1_archive_restore_exactly() {
    let wd = Workdir::new();
    let a = fixture_copy(&wd);
    for (spec, second) in [("latest~1", false), ("latest", true)] {
        let expected = source(&wd, &format!("src-{second}"), second);
        let target = wd.join(format!("restored-{second}"));
        a.cmd("restore").arg(spec).arg(&target).ok();
        assert_rsync_clean(&expected, &target.join("data"));
    }
}

#[test]
fn a_version_1_archive_mounts_and_reads_exactly() {
    let wd = Workdir::new();
    let a = fixture_copy(&wd);
    let expected = source(&wd, "src", true);
    let mnt = wd.mkdir("mnt");
    let m = Mount::new(&a.path, &mnt);
    assert_rsync_clean(&expected, &m.join("latest/data"));
}

#[test]
fn a_version_1_archive_takes_a_new_snapshot_and_keeps_the_old_ones() {
    let wd = Workdir::new();
    let a = fixture_copy(&wd);
    let src = source(&wd, "src", true);
    write_file(&src.join("new.txt"), b"written by this version\n");
    a.cmd("ingest")
        .arg(format!("{}:data", src.display()))
        .args(["--label", "v1"])
        .ok();
    let out = a.cmd("check").arg("--read-data").ok();
    assert!(out.stderr_str().contains("no errors"), "{out}");
    let target = wd.join("restored");
    a.cmd("restore").arg("latest").arg(&target).ok();
    assert_rsync_clean(&src, &target.join("data"));
    let old = wd.join("old");
    a.cmd("restore").arg("latest~2").arg(&old).ok();
    assert_rsync_clean(&source(&wd, "src-first", false), &old.join("data"));
}
