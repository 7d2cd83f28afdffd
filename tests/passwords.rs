//! Passwords through the binary (issue 14): new archives are encrypted by default; the
//! password comes from --password-file, --password-command, STRATA_PASSWORD_FILE,
//! STRATA_PASSWORD_COMMAND or STRATA_PASSWORD (never argv); a wrong or missing one is one
//! line and exit 6 with nothing written and no lock left; key slots can be added, listed,
//! changed and removed, never the last one.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// `env -u STRATA_PASSWORD strata ARGS...`: no password from the test environment.
fn bare() -> Cmd {
    Cmd::new("env")
        .args(["-u", "STRATA_PASSWORD"])
        .arg(strata_bin())
}

fn file_with(wd: &Workdir, name: &str, content: &str) -> PathBuf {
    wd.write(name, content)
}

/// Everything under `dir`: (path, size, mtime) of each entry, to see that nothing changed.
fn listing(dir: &Path) -> String {
    sh(&format!(
        "cd '{}' && find . -printf '%p %s %T@\\n' | sort",
        dir.display()
    ))
    .ok()
    .stdout_str()
}

/// An encrypted archive (password "pw-one", from a file) holding one snapshot.
fn encrypted(wd: &Workdir) -> (PathBuf, PathBuf) {
    let pw = file_with(wd, "pw-one", "pw-one\n");
    let archive = wd.join("archive");
    bare()
        .arg("--password-file")
        .arg(&pw)
        .arg("init")
        .arg(&archive)
        .ok();
    wd.write("src/notes.txt", "hello\n");
    bare()
        .arg("--password-file")
        .arg(&pw)
        .arg("ingest")
        .arg(&archive)
        .arg(wd.join("src"))
        .ok();
    (archive, pw)
}

#[test]
fn init_encrypts_by_default_and_says_where_the_key_is_and_what_a_lost_password_means() {
    let wd = Workdir::new();
    let pw = file_with(&wd, "pw", "secret\n");
    let out = bare()
        .args(["init", "--password-file"])
        .arg(&pw)
        .arg(wd.join("a"))
        .ok();
    let err = out.stderr_str();
    assert!(err.contains("encrypted") && err.contains("keys/"), "{out}");
    assert!(err.contains("lost password"), "{out}");
    let config = std::fs::read_to_string(wd.join("a/config")).unwrap();
    assert!(config.contains("encryption = aes-256-gcm"), "{config}");
}

#[test]
fn init_without_any_password_source_names_the_variables_and_creates_nothing() {
    let wd = Workdir::new();
    let out = bare().arg("init").arg(wd.join("a")).code(6);
    let err = out.stderr_str();
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("strata: error:"))
            .count(),
        1
    );
    for v in [
        "STRATA_PASSWORD_FILE",
        "STRATA_PASSWORD_COMMAND",
        "--no-encryption",
    ] {
        assert!(err.contains(v), "the hint names {v}\n{out}");
    }
    assert!(!wd.join("a").exists(), "nothing created");
}

#[test]
fn no_encryption_is_explicit_and_says_what_it_means() {
    let wd = Workdir::new();
    let out = bare()
        .args(["init", "--no-encryption"])
        .arg(wd.join("a"))
        .ok();
    assert!(out.stderr_str().contains("NOT encrypted"), "{out}");
    assert!(out.stderr_str().contains("anyone who can read"), "{out}");
    wd.write("src/f", "x");
    // No password is needed or asked for.
    bare()
        .arg("ingest")
        .arg(wd.join("a"))
        .arg(wd.join("src"))
        .ok();
    bare().arg("snapshots").arg(wd.join("a")).ok();
}

#[test]
fn every_password_source_opens_the_archive() {
    let wd = Workdir::new();
    let (archive, pw) = encrypted(&wd);
    let snaps = |c: Cmd| c.arg("snapshots").arg(&archive).ok().stdout_str();
    let want = snaps(bare().arg("--password-file").arg(&pw));
    assert!(
        want.contains("1 snapshot") || want.lines().count() == 2,
        "{want}"
    );
    assert_eq!(
        snaps(
            bare()
                .arg("--password-command")
                .arg(format!("cat '{}'", pw.display()))
        ),
        want
    );
    let env = |k: &str, v: String| {
        Cmd::new("env")
            .args(["-u", "STRATA_PASSWORD"])
            .arg(format!("{k}={v}"))
            .arg(strata_bin())
    };
    assert_eq!(
        snaps(env("STRATA_PASSWORD_FILE", pw.display().to_string())),
        want
    );
    assert_eq!(
        snaps(env(
            "STRATA_PASSWORD_COMMAND",
            format!("cat '{}'", pw.display())
        )),
        want
    );
    assert_eq!(snaps(env("STRATA_PASSWORD", "pw-one".into())), want);
}

#[test]
fn a_wrong_password_is_one_line_exit_6_and_writes_nothing() {
    let wd = Workdir::new();
    let (archive, _) = encrypted(&wd);
    let bad = file_with(&wd, "bad", "not-it\n");
    let before = listing(&archive);
    for sub in ["snapshots", "ingest", "check", "repair", "prune"] {
        let mut c = bare()
            .arg("--password-file")
            .arg(&bad)
            .arg(sub)
            .arg(&archive);
        if sub == "ingest" {
            c = c.arg(wd.join("src"));
        }
        let out = c.code(6);
        let err = out.stderr_str();
        assert!(
            err.starts_with("strata: error:") && err.contains("wrong password"),
            "{sub}: {out}"
        );
        assert_eq!(
            err.lines()
                .filter(|l| l.starts_with("strata: error:"))
                .count(),
            1
        );
        assert!(
            !err.contains("not-it"),
            "{sub} must not print the password\n{out}"
        );
    }
    assert_eq!(listing(&archive), before, "nothing written, no lock left");
}

#[test]
fn a_missing_password_for_an_encrypted_archive_is_exit_6_with_the_sources_named() {
    let wd = Workdir::new();
    let (archive, _) = encrypted(&wd);
    let out = bare().arg("ls").arg(&archive).arg("latest").code(6);
    assert!(out.stderr_str().contains("STRATA_PASSWORD_FILE"), "{out}");
}

#[test]
fn key_slots_are_added_listed_changed_and_removed_but_never_the_last() {
    let wd = Workdir::new();
    let (archive, pw) = encrypted(&wd);
    let two = file_with(&wd, "pw-two", "pw-two\n");
    let with = |p: &Path| bare().arg("--password-file").arg(p);
    let added = with(&pw)
        .args(["key", "add"])
        .arg(&archive)
        .arg("--new-password-file")
        .arg(&two)
        .ok()
        .stdout_str()
        .trim()
        .to_string();
    assert_eq!(added.len(), 16, "the new slot's id: {added}");
    let list = with(&two)
        .args(["key", "list"])
        .arg(&archive)
        .ok()
        .stdout_str();
    assert_eq!(list.lines().count(), 3, "header and two slots\n{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with('*') && l.contains(&added)),
        "{list}"
    );

    // The second password changes its own slot; the old second password stops working.
    let three = file_with(&wd, "pw-three", "pw-three\n");
    with(&two)
        .args(["key", "passwd"])
        .arg(&archive)
        .arg("--new-password-file")
        .arg(&three)
        .ok();
    with(&two).arg("snapshots").arg(&archive).code(6);
    with(&three).arg("snapshots").arg(&archive).ok();

    // Remove the first slot with the third password; then the last one is refused.
    let first: String = with(&pw)
        .args(["key", "list"])
        .arg(&archive)
        .ok()
        .stdout_str()
        .lines()
        .find(|l| l.starts_with('*'))
        .map(|l| l[2..18].to_string())
        .unwrap();
    with(&three)
        .args(["key", "remove"])
        .arg(&archive)
        .arg(&first)
        .ok();
    with(&pw).arg("snapshots").arg(&archive).code(6);
    let out = with(&three)
        .args(["key", "remove"])
        .arg(&archive)
        .arg(&added)
        .code(1);
    assert!(out.stderr_str().contains("last"), "{out}");
    with(&three).arg("snapshots").arg(&archive).ok();
}

#[test]
fn a_damaged_key_record_is_named_as_such() {
    let wd = Workdir::new();
    let (archive, pw) = encrypted(&wd);
    let key = std::fs::read_dir(archive.join("keys"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "key"))
        .unwrap();
    let mut bytes = std::fs::read(&key).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x20;
    std::fs::write(&key, &bytes).unwrap();
    let out = bare()
        .arg("--password-file")
        .arg(&pw)
        .arg("snapshots")
        .arg(&archive)
        .run();
    assert_ne!(out.status.code(), Some(0), "{out}");
    let err = out.stderr_str();
    assert!(
        err.contains("damaged") || err.contains("wrong password"),
        "{out}"
    );
}
