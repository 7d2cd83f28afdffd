//! What a committed snapshot must give back, and how a refused command must look, as the
//! fault tests judge them (moved from `tests/integrity.rs`): `Expected` restores, the
//! one-line error contract with an optional hint, and readers of `check --json` findings
//! and `repair` output. Independent of strata's own answers: restores are compared with
//! their sources by `diff -r` and `find -printf`.

use super::cmd::{Archive, Out};
use super::compare::{assert_diff_clean, assert_same_metadata};
use super::json::Json;
use super::workdir::Workdir;
use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

/// A committed snapshot and the source tree it must restore to.
#[derive(Clone, Debug)]
pub struct Expected {
    pub id: String,
    pub source: PathBuf,
    /// The name of the source inside the snapshot.
    pub name: String,
}

/// `strata restore ID TARGET`, then `diff -r` and a `find -printf` metadata comparison
/// with the source.
pub fn assert_restores_identically(wd: &Workdir, archive: &Archive, e: &Expected, tag: &str) {
    assert_restores(wd, archive, e, tag, true);
}

/// `strata restore ID TARGET` and `diff -r` with the source; with `metadata`, also the
/// `find -printf` comparison of modes, owners, sizes, mtimes, link counts and targets.
pub fn assert_restores(wd: &Workdir, archive: &Archive, e: &Expected, tag: &str, metadata: bool) {
    let target = wd.join(format!("verify-{tag}"));
    let _ = fs::remove_dir_all(&target);
    archive.restore(&e.id, &target);
    assert_diff_clean(&e.source, &target.join(&e.name));
    if metadata {
        assert_same_metadata(&e.source, &target.join(&e.name));
    }
    fs::remove_dir_all(&target).unwrap();
}

/// Exit 1 with one `strata: error: ` line and at most one `hint: ` line.
pub fn assert_typed_error(out: &Out) {
    let err = out.stderr_str();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        out.code() == Some(1)
            && !lines.is_empty()
            && lines[0].starts_with("strata: error: ")
            && lines.len() <= 2
            && (lines.len() == 1 || lines[1].starts_with("hint: ")),
        "expected exit 1 with one `strata: error:` line (and at most a `hint:`)\n{out}"
    );
}

/// Every `damages` path of a `check --json` report.
pub fn damaged_paths(report: &Json) -> BTreeSet<String> {
    report["findings"]
        .as_array()
        .iter()
        .flat_map(|f| {
            f["damages"]
                .as_array()
                .iter()
                .map(|d| d.as_str().to_string())
        })
        .collect()
}

pub fn finding_lines(report: &Json) -> String {
    report["findings"]
        .as_array()
        .iter()
        .map(|f| {
            format!(
                "  {}: {} ({})",
                f["severity"].as_str(),
                f["what"].as_str(),
                f["where"].as_str()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Lines of `strata repair` stderr that start with `prefix` (after indentation): the
/// short snapshot id that follows.
pub fn repair_ids(stderr: &str, prefix: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(prefix))
        .map(|rest| rest.trim_start().chars().take(8).collect())
        .collect()
}
