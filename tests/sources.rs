//! What `strata ingest` accepts as a source, through the real binary:
//!
//! - a `--cmd` pipeline whose first stage fails commits nothing (commands run under
//!   `bash -o pipefail -c`), and so does a failing pipeline in `--before`;
//! - a source name (`SRC:NAME`, `--as NAME`, `--stdin-as NAME`) with a newline or another
//!   control character is refused with one line, before anything is written;
//! - an archive found inside a source directory is left out, with a warning naming it;
//!   a source inside the archive is refused.

mod common;

use common::*;

/// `strata ingest A --cmd CMD --as x` must fail with one line naming the command and its
/// status, and commit nothing.
fn cmd_fails(cmd: &str) {
    let wd = Workdir::new();
    let a = wd.archive(&[]);
    let out = a.cmd("ingest").args(["--cmd", cmd, "--as", "x"]).code(1);
    out.assert_one_line_error(&format!("command `{cmd}` exited with status 1"));
    assert!(
        out.stderr_str().contains("no snapshot was committed"),
        "\n{out}"
    );
    assert!(
        a.snapshots().is_empty(),
        "`{cmd}`: a failing stage must not be committed as a complete dump"
    );
    assert!(a.pack_files().is_empty(), "{:?}", a.pack_files());
}

#[test]
fn a_cmd_pipeline_whose_producer_fails_commits_nothing() {
    // The dump breaks off half way; gzip (the last stage) succeeds.
    cmd_fails("(echo partial; exit 1) | gzip");
}

#[test]
fn a_cmd_pipeline_with_a_failing_first_stage_commits_nothing() {
    cmd_fails("false | cat");
}

#[test]
fn a_cmd_pipeline_that_succeeds_is_stored() {
    let wd = Workdir::new();
    let a = wd.archive(&[]);
    a.ingest([
        "--cmd",
        "printf 'a\\nb\\n' | sort -r | gzip -c | gunzip -c",
        "--as",
        "x",
    ]);
    assert_eq!(a.cat("latest:x"), b"b\na\n");
}

#[test]
fn a_before_pipeline_with_a_failing_stage_fails_the_ingest() {
    let wd = Workdir::new();
    let a = wd.archive(&[]);
    wd.write("app/a.txt", "alpha\n");
    let out = a
        .cmd("ingest")
        .arg(wd.join("app"))
        .args(["--before", "false | cat"])
        .code(1);
    out.assert_one_line_error("--before `false | cat` exited with status 1");
    assert!(a.snapshots().is_empty());
}

/// A source name with a control character: one line, exit 1, nothing written.
fn name_refused(a: &Archive, args: &[&str], shown: &str) {
    let out = a.cmd("ingest").args(args).stdin("data\n").code(1);
    out.assert_one_line_error(&format!("invalid snapshot path \"{shown}\""));
    assert!(
        out.stderr_str().contains("control character"),
        "the error says why\n{out}"
    );
    assert!(a.snapshots().is_empty(), "{args:?}: nothing is committed");
    assert!(a.pack_files().is_empty(), "{args:?}: nothing is written");
}

#[test]
fn a_newline_in_a_stdin_as_name_is_refused() {
    let wd = Workdir::new();
    let a = wd.archive(&[]);
    name_refused(&a, &["--stdin-as", "db/a\nb.sql"], "db/a\\nb.sql");
}

#[test]
fn a_newline_in_an_as_name_is_refused() {
    let wd = Workdir::new();
    let a = wd.archive(&[]);
    name_refused(&a, &["--cmd", "echo x", "--as", "a\nb"], "a\\nb");
}

#[test]
fn a_newline_in_a_src_name_is_refused() {
    let wd = Workdir::new();
    let a = wd.archive(&[]);
    let src = wd.mkdir("app");
    wd.write("app/f", "f\n");
    let spec = format!("{}:app\nother", src.display());
    name_refused(&a, &[spec.as_str()], "app\\nother");
}

#[test]
fn a_tab_in_an_as_name_is_refused() {
    let wd = Workdir::new();
    let a = wd.archive(&[]);
    name_refused(&a, &["--cmd", "echo x", "--as", "a\tb"], "a\\tb");
}

#[test]
fn an_archive_inside_a_source_is_left_out_with_a_warning() {
    let wd = Workdir::new();
    wd.write("srv/app/a.txt", "alpha\n");
    let a = Archive::init(wd.join("srv/backup.strata"), &[]);
    let out = a.cmd("ingest").arg(wd.join("srv")).ok();
    let archive_shown = a.path.display().to_string();
    let warning = out
        .stderr_str()
        .lines()
        .find(|l| l.starts_with("strata: warning: "))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("a warning line is printed\n{out}"));
    assert!(
        warning.contains(&archive_shown) && warning.contains("srv/backup.strata"),
        "the warning names the archive and where it was found: {warning}\n{out}"
    );
    let listing: Vec<String> = a
        .ls_json("latest:srv")
        .iter()
        .map(|e| e["name"].as_str().to_string())
        .collect();
    assert_eq!(
        listing,
        ["app"],
        "the archive's own files must not be in the snapshot"
    );
    // A second night stores nothing new: no pack of the archive was copied into it.
    let out = a.cmd("ingest").arg(wd.join("srv")).arg("--json").ok();
    assert_eq!(
        out.json().field("files_new").as_u64(),
        0,
        "the second run re-stored files\n{out}"
    );
}

#[test]
fn a_source_inside_the_archive_is_refused() {
    let wd = Workdir::new();
    let a = wd.archive(&[]);
    let out = a.cmd("ingest").arg(a.path.join("packs")).code(1);
    out.assert_one_line_error("is inside the archive");
    assert!(a.snapshots().is_empty());
}
