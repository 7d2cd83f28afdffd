//! Commit order (issue 12, finding 12), through the real binary with a faked clock
//! (`faketime`, Debian package faketime): a snapshot taken under a clock a year ahead
//! does not stay `latest`; `latest~N`, `snapshots` and `--keep-last` follow the order the
//! snapshots were committed in; `ingest` warns when the clock went backwards; `repair`
//! (index deleted) and `prune` keep the same order.

mod common;

use common::*;
use std::path::Path;

/// `strata ingest` of `src` under a clock shifted by `offset` (faketime syntax, e.g.
/// `+365d`), or the real one; returns (snapshot id, stderr).
fn ingest_at(archive: &Archive, src: &Path, label: &str, offset: Option<&str>) -> (String, String) {
    let args = |c: Cmd| {
        c.arg("ingest")
            .arg(&archive.path)
            .arg(src)
            .args(["--label", label, "--json"])
    };
    let out = match offset {
        Some(o) => args(Cmd::new("faketime").arg("-f").arg(o).arg(strata_bin())).ok(),
        None => args(strata()).ok(),
    };
    (
        out.json()["snapshot"].as_str().to_string(),
        out.stderr_str(),
    )
}

fn show_id(archive: &Archive, spec: &str) -> String {
    archive.cmd("show").arg(spec).arg("--json").ok().json()["id"]
        .as_str()
        .to_string()
}

fn generation(wd: &Workdir, i: u64) -> std::path::PathBuf {
    let dir = wd.join("src");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_file(&dir.join("own"), &random_bytes(500 + i, 200 * 1024));
    write_file(&dir.join("same"), b"the same in every generation");
    dir
}

#[test]
fn latest_and_keep_last_follow_commit_order_not_a_clock_that_ran_ahead() {
    require_tool("faketime", "faketime");
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let (a, err_a) = ingest_at(&archive, &generation(&wd, 0), "app", None);
    let (b, err_b) = ingest_at(&archive, &generation(&wd, 1), "app", Some("+365d"));
    let (c, err_c) = ingest_at(&archive, &generation(&wd, 2), "app", None);
    let (d, _) = ingest_at(&archive, &generation(&wd, 3), "other", None);
    for e in [&err_a, &err_b] {
        assert!(!e.contains("clock went backwards"), "{e}");
    }
    // C's clock is a year behind B's, which was committed before it.
    let warn: Vec<&str> = err_c
        .lines()
        .filter(|l| l.contains("clock went backwards"))
        .collect();
    assert_eq!(warn.len(), 1, "one warning line expected:\n{err_c}");
    assert!(
        warn[0].starts_with("strata: warning: ") && warn[0].contains(&b[..8]),
        "the warning names the snapshot with the later time:\n{err_c}"
    );

    let order = || archive.snapshot_ids();
    assert_eq!(order(), vec![a.clone(), b.clone(), c.clone(), d.clone()]);
    assert_eq!(show_id(&archive, "latest"), d);
    let label = |spec: &str| {
        archive
            .cmd("show")
            .arg(spec)
            .args(["--label", "app", "--json"])
            .ok()
            .json()["id"]
            .as_str()
            .to_string()
    };
    assert_eq!(
        label("latest"),
        c,
        "latest of label app is the last committed"
    );
    assert_eq!(label("latest~1"), b);
    assert_eq!(label("latest~2"), a);

    // repair rebuilds the same order from the packs alone.
    std::fs::remove_file(archive.path.join("index.sqlite")).unwrap();
    archive.cmd("repair").ok();
    assert_eq!(order(), vec![a.clone(), b.clone(), c.clone(), d.clone()]);
    assert_eq!(label("latest"), c);

    // --keep-last 1 keeps the last committed (C), not the one with the latest time (B).
    let out = archive
        .cmd("forget")
        .args(["--label", "app", "--keep-last", "1", "--json"])
        .ok();
    let forgotten: Vec<String> = out.json()["forget"]
        .as_array()
        .iter()
        .map(|j| j.as_str().to_string())
        .collect();
    assert_eq!(
        forgotten.iter().collect::<std::collections::BTreeSet<_>>(),
        [&a, &b].into_iter().collect(),
        "{out}"
    );
    assert_eq!(order(), vec![c.clone(), d.clone()]);

    // Prune (which deletes A's and B's packs) and a later ingest keep commit order.
    archive.cmd("prune").ok();
    let (e, err_e) = ingest_at(&archive, &generation(&wd, 4), "app", None);
    assert!(!err_e.contains("clock went backwards"), "{err_e}");
    assert_eq!(order(), vec![c.clone(), d.clone(), e.clone()]);
    assert_eq!(show_id(&archive, "latest"), e);
    std::fs::remove_file(archive.path.join("index.sqlite")).unwrap();
    archive.cmd("repair").ok();
    assert_eq!(order(), vec![c, d, e.clone()]);
    assert_eq!(label("latest"), e);
    archive.cmd("check").arg("--read-data").ok();
}

#[test]
fn a_snapshot_from_the_past_is_latest_once_committed_and_time_rules_use_its_time() {
    require_tool("faketime", "faketime");
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let (a, _) = ingest_at(&archive, &generation(&wd, 0), "app", None);
    // A machine whose clock says ten days ago commits after A.
    let (b, err_b) = ingest_at(&archive, &generation(&wd, 1), "app", Some("-10d"));
    assert!(err_b.contains("clock went backwards"), "{err_b}");
    assert_eq!(show_id(&archive, "latest"), b);
    // --keep-daily buckets the recorded times: A's day is the newest day, so A is kept
    // by daily 1 and B by last 1.
    let out = archive
        .cmd("forget")
        .args([
            "--keep-daily",
            "1",
            "--keep-last",
            "1",
            "--dry-run",
            "--json",
        ])
        .ok();
    let decisions = out.json()["decisions"].as_array().to_vec();
    let reasons = |id: &str| -> Vec<String> {
        decisions
            .iter()
            .find(|d| d["id"].as_str() == id)
            .unwrap_or_else(|| panic!("no decision for {id}\n{out}"))["reasons"]
            .as_array()
            .iter()
            .map(|r| r.as_str().to_string())
            .collect()
    };
    assert_eq!(reasons(&a), vec!["daily"], "{out}");
    assert_eq!(reasons(&b), vec!["last"], "{out}");
}
