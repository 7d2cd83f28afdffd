//! The command line itself: help, usage errors, one-line error messages, exit codes,
//! `init` options, snapshot resolution (`latest`, prefixes, labels) and `cat` into a
//! closed pipe.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const SUBCOMMANDS: [&str; 6] = ["init", "ingest", "snapshots", "ls", "cat", "restore"];

#[test]
fn help_exits_zero_and_lists_every_subcommand() {
    let out = strata().arg("--help").ok();
    let text = out.stdout_str();
    for sub in SUBCOMMANDS {
        assert!(
            text.contains(sub),
            "`strata --help` does not mention `{sub}`\n{out}"
        );
    }
}

#[test]
fn every_subcommand_help_exits_zero_and_mentions_its_arguments() {
    let expected: [(&str, &[&str]); 6] = [
        (
            "init",
            &[
                "ARCHIVE",
                "--compression-level",
                "--chunk-size",
                "--append-only",
            ],
        ),
        (
            "ingest",
            &[
                "ARCHIVE",
                "SOURCE",
                "--label",
                "--tag",
                "--exclude",
                "--one-file-system",
                "--stdin-as",
                "--cmd",
                "--as",
                "--parent",
                "--strict",
                "--json",
            ],
        ),
        ("snapshots", &["ARCHIVE", "--label", "--json"]),
        ("ls", &["ARCHIVE", "SNAP", "-l", "-R", "--json"]),
        ("cat", &["ARCHIVE", "SNAP"]),
        ("restore", &["ARCHIVE", "SNAP", "TARGET", "--overwrite"]),
    ];
    for (sub, words) in expected {
        let out = strata().arg(sub).arg("--help").ok();
        let text = out.stdout_str();
        for w in words {
            assert!(
                text.contains(w),
                "`strata {sub} --help` does not mention {w}\n{out}"
            );
        }
    }
}

#[test]
fn an_unknown_subcommand_is_a_usage_error_with_exit_code_2() {
    let out = strata().arg("frobnicate").code(2);
    assert!(out.stdout.is_empty(), "usage errors go to stderr\n{out}");
    assert!(
        out.stderr_str().contains("frobnicate"),
        "the usage error should name the subcommand\n{out}"
    );
}

#[test]
fn missing_arguments_and_unknown_flags_are_usage_errors_with_exit_code_2() {
    strata().arg("init").code(2);
    strata().args(["cat", "/nonexistent-archive"]).code(2);
    strata()
        .args(["restore", "/nonexistent-archive", "latest"])
        .code(2);
    strata()
        .args(["snapshots", "/nonexistent-archive", "--no-such-flag"])
        .code(2);
}

#[test]
fn a_cmd_without_its_as_path_is_a_usage_error_with_exit_code_2() {
    let out = strata()
        .arg("ingest")
        .arg("/nonexistent-archive")
        .args(["--cmd", "true"])
        .code(2);
    assert!(
        out.stderr_str().contains("--as"),
        "the usage error should name --as\n{out}"
    );
}

#[test]
fn init_creates_a_private_directory_with_private_files() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode(&archive.path),
        0o700,
        "the archive directory must be 0700"
    );

    // After an ingest there are packs and an index too: every file 0600, every dir 0700.
    let src = wd.mkdir("src");
    generate_plain_tree(&src, 1);
    archive.ingest([&src]);
    let listing = Cmd::new("find")
        .arg(&archive.path)
        .args(["-printf", "%y %m %p\\n"])
        .ok()
        .stdout_str();
    for line in listing.lines() {
        let mut parts = line.splitn(3, ' ');
        let (kind, m, path) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        match kind {
            "f" => assert_eq!(m, "600", "archive file {path} must be 0600\n{listing}"),
            "d" => assert_eq!(m, "700", "archive directory {path} must be 0700\n{listing}"),
            _ => {}
        }
    }
}

#[test]
fn init_refuses_a_non_empty_directory_that_is_not_an_archive() {
    let wd = Workdir::new();
    let dir = wd.mkdir("precious");
    wd.write("precious/data.txt", "keep me");
    let out = strata().arg("init").arg(&dir).code(1);
    out.assert_one_line_error(&dir.display().to_string());
    assert_eq!(fs::read_to_string(dir.join("data.txt")).unwrap(), "keep me");
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "init must not write into a foreign directory: {names:?}"
    );
}

#[test]
fn init_accepts_an_empty_existing_directory() {
    let wd = Workdir::new();
    let dir = wd.mkdir("empty");
    strata().arg("init").arg(&dir).ok();
    strata().arg("snapshots").arg(&dir).ok();
}

#[test]
fn init_accepts_chunk_sizes_in_bytes_or_with_k_and_m_suffixes() {
    let wd = Workdir::new();
    for (i, size) in ["256", "4096", "64K", "1M", "4M"].iter().enumerate() {
        let dir = wd.join(format!("ok-{i}"));
        strata()
            .arg("init")
            .arg(&dir)
            .args(["--chunk-size", size])
            .ok();
        strata().arg("snapshots").arg(&dir).ok();
    }
}

#[test]
fn init_rejects_chunk_sizes_out_of_range_or_malformed() {
    let wd = Workdir::new();
    for (i, size) in ["255", "100", "5M", "8M", "12Q", "", "-1K"]
        .iter()
        .enumerate()
    {
        let dir = wd.join(format!("bad-{i}"));
        let out = strata()
            .arg("init")
            .arg(&dir)
            .arg(format!("--chunk-size={size}"))
            .run();
        assert!(
            matches!(out.code(), Some(1 | 2)),
            "--chunk-size {size:?} must be refused with exit 1 or 2\n{out}"
        );
        assert!(
            !dir.join("config").exists(),
            "a refused init must not leave an archive behind ({size:?})"
        );
    }
}

#[test]
fn a_directory_that_is_not_an_archive_gets_a_one_line_error() {
    let wd = Workdir::new();
    let dir = wd.mkdir("not-an-archive");
    wd.write("not-an-archive/file.txt", "x");
    let shown = dir.display().to_string();
    strata()
        .arg("snapshots")
        .arg(&dir)
        .code(1)
        .assert_one_line_error(&shown);
    strata()
        .arg("ls")
        .arg(&dir)
        .arg("latest")
        .code(1)
        .assert_one_line_error(&shown);
    let src = wd.mkdir("src");
    let out = strata().arg("ingest").arg(&dir).arg(&src).code(1);
    out.assert_one_line_error(&shown);
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        1,
        "ingest must not write into a non-archive"
    );

    let missing = wd.join("missing");
    strata()
        .arg("snapshots")
        .arg(&missing)
        .code(1)
        .assert_one_line_error(&missing.display().to_string());
}

#[test]
fn an_archive_of_a_newer_format_is_refused_with_an_upgrade_message() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let config = archive.path.join("config");
    let text = fs::read_to_string(&config).expect("the archive has a `config` file");
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("format")),
        "config has no format line:\n{text}"
    );
    let newer: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("format") {
                "format = 99".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    fs::write(&config, newer).unwrap();

    for sub in [vec!["snapshots"], vec!["ls", "latest"]] {
        let out = strata()
            .arg(sub[0])
            .arg(&archive.path)
            .args(&sub[1..])
            .code(1);
        let err = out.stderr_str().to_lowercase();
        assert!(
            err.starts_with("strata: error: ")
                && (err.contains("newer") || err.contains("upgrade")),
            "format 99 must be refused as newer / needing an upgrade\n{out}"
        );
        out.assert_one_line_error("99");
    }
    let src = wd.mkdir("src");
    let packs_before = archive.pack_files();
    strata().arg("ingest").arg(&archive.path).arg(&src).code(1);
    assert_eq!(
        archive.pack_files(),
        packs_before,
        "nothing may be written to a newer archive"
    );
}

/// Twenty snapshots of `src/n.txt` holding "0" to "19"; returns their ids oldest first.
fn twenty_snapshots(wd: &Workdir, archive: &Archive) -> Vec<String> {
    let src = wd.mkdir("src");
    for i in 0..20 {
        fs::write(src.join("n.txt"), i.to_string()).unwrap();
        archive.ingest([&src]);
    }
    let ids = archive.snapshot_ids();
    assert_eq!(ids.len(), 20, "20 ingests must make 20 snapshots");
    ids
}

#[test]
fn latest_a_full_id_and_a_unique_prefix_resolve_to_the_right_snapshot() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let ids = twenty_snapshots(&wd, &archive);

    assert_eq!(
        archive.cat("latest:src/n.txt"),
        b"19",
        "latest is the newest snapshot"
    );
    for (i, id) in ids.iter().enumerate() {
        assert!(is_hex(id, 64), "snapshot id {id:?} is not 64 hex digits");
        assert_eq!(
            archive.cat(format!("{id}:src/n.txt")),
            i.to_string().as_bytes()
        );
        // The shortest prefix that no other snapshot shares.
        let unique = (1..=64)
            .map(|n| &id[..n])
            .find(|p| ids.iter().filter(|other| other.starts_with(p)).count() == 1)
            .unwrap();
        assert_eq!(
            archive.cat(format!("{unique}:src/n.txt")),
            i.to_string().as_bytes(),
            "unique prefix {unique} of snapshot {i} resolves to another snapshot"
        );
    }
}

#[test]
fn an_ambiguous_prefix_is_an_error_listing_the_candidates() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let ids = twenty_snapshots(&wd, &archive);
    // 20 ids over 16 first digits: at least one digit is shared.
    let mut by_digit: BTreeMap<char, Vec<&String>> = BTreeMap::new();
    for id in &ids {
        by_digit
            .entry(id.chars().next().unwrap())
            .or_default()
            .push(id);
    }
    let (digit, candidates) = by_digit.iter().find(|(_, v)| v.len() >= 2).unwrap();

    let packs_before = archive.pack_files();
    for sub in [vec!["ls"], vec!["cat"]] {
        let spec = if sub[0] == "cat" {
            format!("{digit}:src/n.txt")
        } else {
            digit.to_string()
        };
        let out = strata().arg(sub[0]).arg(&archive.path).arg(&spec).code(1);
        let err = out.stderr_str();
        assert!(err.starts_with("strata: error: "), "{out}");
        for c in candidates {
            assert!(
                err.contains(&c[..8]),
                "the error must list candidate {c}\n{out}"
            );
        }
        assert!(
            out.stdout.is_empty(),
            "nothing on stdout for an ambiguous snapshot\n{out}"
        );
    }
    let target = wd.join("restored");
    strata()
        .arg("restore")
        .arg(&archive.path)
        .arg(digit.to_string())
        .arg(&target)
        .code(1);
    assert!(
        !target.join("src").exists(),
        "an ambiguous restore must restore nothing"
    );
    assert_eq!(archive.pack_files(), packs_before);
}

#[test]
fn an_unknown_snapshot_or_path_is_a_one_line_error_naming_it() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    strata()
        .arg("ls")
        .arg(&archive.path)
        .arg("latest")
        .code(1)
        .assert_one_line_error("latest");
    let src = wd.mkdir("src");
    generate_plain_tree(&src, 3);
    archive.ingest([&src]);
    archive
        .cmd("ls")
        .arg("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        .code(1)
        .assert_one_line_error("0123456789abcdef");
    archive
        .cmd("cat")
        .arg("latest:src/no-such-file")
        .code(1)
        .assert_one_line_error("no-such-file");
    archive
        .cmd("cat")
        .arg("latest:src/sub")
        .code(1)
        .assert_one_line_error("sub");
    archive
        .cmd("ls")
        .arg("latest:src/nothing/here")
        .code(1)
        .assert_one_line_error("nothing");
}

#[test]
fn latest_of_a_label_is_the_newest_snapshot_with_that_label() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    // Two different trees that both appear in the snapshot as `src`.
    let x = wd.mkdir("x/src");
    let y = wd.mkdir("y/src");
    generate_plain_tree(&x, 10);
    generate_plain_tree(&y, 20);
    fs::write(y.join("only-in-y.txt"), "y").unwrap();

    let first = archive.ingest([x.as_os_str(), "--label".as_ref(), "nightly".as_ref()]);
    archive.ingest([y.as_os_str(), "--label".as_ref(), "manual".as_ref()]);
    // The default parent is the newest snapshot labelled `nightly`, not the newest overall,
    // so nothing of x has to be read again.
    let again = archive.ingest([x.as_os_str(), "--label".as_ref(), "nightly".as_ref()]);
    assert_eq!(
        again["files_unchanged"].as_u64(),
        first["files"].as_u64(),
        "{again}"
    );
    assert_eq!(
        again["files_changed"].as_u64() + again["files_new"].as_u64(),
        0,
        "{again}"
    );
    assert_eq!(again["bytes_read"].as_u64(), 0, "{again}");

    let nightly = archive
        .cmd("snapshots")
        .args(["--label", "nightly", "--json"])
        .ok()
        .json();
    let nightly = nightly.as_array();
    assert_eq!(nightly.len(), 2, "two nightly snapshots: {nightly:?}");
    assert!(nightly.iter().all(|s| s["label"].as_str() == "nightly"));
    assert_eq!(nightly[1]["id"].as_str(), again["snapshot"].as_str());
    let manual = archive
        .cmd("snapshots")
        .args(["--label", "manual", "--json"])
        .ok()
        .json();
    assert_eq!(manual.as_array().len(), 1);

    // An explicit --parent overrides the label.
    let y_again = archive.ingest([
        y.as_os_str(),
        "--label".as_ref(),
        "nightly".as_ref(),
        "--parent".as_ref(),
        manual[0]["short_id"].as_str().as_ref(),
    ]);
    assert_eq!(
        y_again["files_unchanged"].as_u64(),
        y_again["files"].as_u64(),
        "{y_again}"
    );
}

#[test]
fn snapshots_json_lists_every_field_oldest_first() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    assert!(
        archive.snapshots().is_empty(),
        "a new archive has no snapshots"
    );
    let src = wd.mkdir("data/src");
    let files = generate_plain_tree(&src, 4);
    let first = archive.ingest([
        src.as_os_str(),
        "--label".as_ref(),
        "daily".as_ref(),
        "--tag".as_ref(),
        "jira".as_ref(),
        "--tag".as_ref(),
        "prod".as_ref(),
    ]);
    fs::write(src.join("a.txt"), "changed").unwrap();
    let second = archive.ingest([&src]);

    let list = archive.snapshots();
    assert_eq!(list.len(), 2);
    let s = &list[0];
    for key in [
        "id",
        "short_id",
        "time",
        "label",
        "tags",
        "sources",
        "files",
        "size",
        "bytes_added",
        "errors",
    ] {
        assert!(s.get(key).is_some(), "snapshot JSON lacks {key:?}: {s}");
    }
    assert_eq!(s["id"].as_str(), first["snapshot"].as_str(), "oldest first");
    assert_eq!(
        list[1]["id"].as_str(),
        second["snapshot"].as_str(),
        "oldest first"
    );
    assert!(is_hex(s["id"].as_str(), 64), "{s}");
    assert_eq!(
        s["short_id"].as_str(),
        &s["id"].as_str()[..8],
        "short_id is the id's first 8 digits"
    );
    assert!(
        is_rfc3339(s["time"].as_str()),
        "time must be RFC 3339 UTC: {s}"
    );
    assert!(
        s["time"].as_str() <= list[1]["time"].as_str(),
        "times are in order"
    );
    assert_eq!(s["label"].as_str(), "daily");
    let tags: Vec<&str> = s["tags"].as_array().iter().map(|t| t.as_str()).collect();
    assert_eq!(tags, ["jira", "prod"]);
    let sources: Vec<&str> = s["sources"].as_array().iter().map(|t| t.as_str()).collect();
    assert_eq!(sources.len(), 1, "{s}");
    assert!(
        sources[0].contains("src"),
        "sources should name the source: {s}"
    );
    assert_eq!(s["files"].as_u64(), files.len() as u64);
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(s["size"].as_u64(), total, "size is the sum of file sizes");
    assert_eq!(s["bytes_added"].as_u64(), first["bytes_added"].as_u64());
    assert_eq!(s["errors"].as_u64(), 0);

    // The table form shows both short ids.
    let table = archive.cmd("snapshots").ok().stdout_str();
    assert!(
        table.contains(&s["id"].as_str()[..8]) && table.contains(&list[1]["id"].as_str()[..8]),
        "{table}"
    );
}

#[test]
fn cat_into_a_closed_pipe_exits_zero_quietly() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = wd.mkdir("src");
    // Far larger than a pipe buffer, so strata is still writing when `head` goes away.
    let bytes = random_bytes(6, 8 << 20);
    fs::write(src.join("big.bin"), &bytes).unwrap();
    archive.ingest([&src]);

    let script = format!(
        "set -o pipefail; '{}' cat '{}' latest:src/big.bin | head -c 10",
        strata_bin(),
        archive.path.display()
    );
    let out = Cmd::new("bash").arg("-c").arg(&script).run();
    out.assert_no_panic();
    assert_eq!(out.code(), Some(0), "strata cat | head must exit 0\n{out}");
    assert_eq!(out.stdout, &bytes[..10], "head got the first 10 bytes");
    assert!(
        out.stderr.is_empty(),
        "a closed pipe is not an error: nothing on stderr\n{out}"
    );
}

#[test]
fn init_accepts_compression_level_and_append_only_and_rejects_bad_levels() {
    let wd = Workdir::new();
    let archive = Archive::init(
        wd.join("tuned"),
        &["--compression-level", "19", "--append-only"],
    );
    let src = wd.mkdir("src");
    fs::write(src.join("text.txt"), "compressible ".repeat(100_000)).unwrap();
    let s = archive.ingest([&src]);
    assert!(
        s["bytes_added"].as_u64() < 100_000,
        "1.3 MB of repeated text compresses well at level 19: {s}"
    );
    assert_eq!(
        archive.cat("latest:src/text.txt"),
        "compressible ".repeat(100_000).as_bytes()
    );

    for (i, level) in ["0", "23", "-5", "high"].iter().enumerate() {
        let dir = wd.join(format!("bad-level-{i}"));
        let out = strata()
            .arg("init")
            .arg(&dir)
            .arg(format!("--compression-level={level}"))
            .run();
        assert!(
            matches!(out.code(), Some(1 | 2)),
            "--compression-level {level} must be refused with exit 1 or 2\n{out}"
        );
        assert!(!dir.join("config").exists());
    }
}

#[test]
fn odd_snapshot_specs_are_answered_without_a_panic() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = wd.join("src");
    generate_plain_tree(&src, 5);
    archive.ingest([&src]);
    let specs = [
        "",
        ":",
        "latest:",
        "latest:/",
        "latest://src",
        "latest:..",
        "latest:src/../..",
        "latest:src/a.txt/x",
        "latest:src\n",
        "LATEST",
        "zz",
        "g",
        "0000000000000000000000000000000000000000000000000000000000000000000",
    ];
    for spec in specs {
        for sub in ["ls", "cat"] {
            let out = archive.cmd(sub).arg(spec).run();
            match out.code() {
                Some(0) => {}
                Some(1) => assert!(
                    out.stderr_str().starts_with("strata: error: "),
                    "errors start with `strata: error: `\n{out}"
                ),
                _ => panic!("`{sub}` of {spec:?} must exit 0 or 1\n{out}"),
            }
        }
    }
    // A restore target that is a file.
    let file = wd.write("a-file", "x");
    archive
        .cmd("restore")
        .arg("latest")
        .arg(&file)
        .code(1)
        .assert_one_line_error("a-file");
}

// STRATA_ARCHIVE: ARCHIVE may be left out where the variable names it.

/// An archive with one snapshot of a small tree, and that tree.
fn env_archive(wd: &Workdir, name: &str) -> (Archive, std::path::PathBuf) {
    let archive = Archive::init(wd.join(name), &[]);
    let src = wd.join(format!("{name}-src"));
    generate_plain_tree(&src, 3);
    archive.ingest([&src]);
    (archive, src)
}

#[test]
fn with_strata_archive_set_archive_may_be_left_out_of_every_command_that_takes_one() {
    let wd = Workdir::new();
    let (archive, src) = env_archive(&wd, "env.strata");
    let env = |sub: &str| strata().arg(sub).env("STRATA_ARCHIVE", &archive.path);
    let id = archive.snapshot_ids()[0].clone();
    let listed = env("snapshots").arg("--json").ok().json();
    assert_eq!(listed[0]["id"].as_str(), id);
    let shown = env("show").arg("latest").arg("--json").ok().json();
    assert_eq!(shown["id"].as_str(), id, "{shown}");
    let ls = env("ls").arg("latest:env.strata-src").ok();
    assert!(ls.stdout_str().contains("a.txt"), "{ls}");
    assert_eq!(
        env("cat").arg("latest:env.strata-src/a.txt").ok().stdout,
        fs::read(src.join("a.txt")).unwrap()
    );
    let target = wd.join("restored");
    env("restore").arg("latest").arg(&target).ok();
    assert_rsync_clean(&src, &target.join("env.strata-src"));
    env("diff").args(["latest", "latest"]).ok();
    env("check").ok();
    env("forget").args(["--keep-last", "3", "--dry-run"]).ok();
    env("prune").arg("--dry-run").ok();
    strata()
        .args(["key", "list"])
        .env("STRATA_ARCHIVE", &archive.path)
        .ok();
    // Global options with a value, before the command, do not take ARCHIVE's place.
    let cache = wd.mkdir("cache");
    strata()
        .arg("--cache-dir")
        .arg(&cache)
        .args(["--disk-cache", "64M", "snapshots"])
        .env("STRATA_ARCHIVE", &archive.path)
        .ok();
    let fresh = wd.join("fresh.strata");
    strata().arg("init").env("STRATA_ARCHIVE", &fresh).ok();
    assert!(fresh.join("config").is_file(), "init made STRATA_ARCHIVE");
}

#[test]
fn with_strata_archive_set_ingest_and_forget_take_every_positional_as_a_source_or_snapshot() {
    let wd = Workdir::new();
    let (archive, _) = env_archive(&wd, "env.strata");
    let one = wd.join("one");
    let two = wd.join("two");
    generate_plain_tree(&one, 1);
    generate_plain_tree(&two, 2);
    let out = strata()
        .arg("ingest")
        .arg(&one)
        .arg(&two)
        .args(["--label", "both", "--json"])
        .env("STRATA_ARCHIVE", &archive.path)
        .ok();
    let id = out.json()["snapshot"].as_str().to_string();
    let rows = archive.snapshots();
    assert_eq!(rows.len(), 2, "the snapshot went into STRATA_ARCHIVE");
    let sources: Vec<&str> = rows[1]["sources"]
        .as_array()
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(sources, ["one", "two"], "both positionals are sources");
    strata()
        .arg("forget")
        .arg(&id[..8])
        .env("STRATA_ARCHIVE", &archive.path)
        .ok();
    assert!(
        !archive.snapshot_ids().contains(&id),
        "forget took the positional as a snapshot of STRATA_ARCHIVE"
    );
}

#[test]
fn with_strata_archive_set_an_archive_given_first_is_still_the_archive() {
    let wd = Workdir::new();
    let (env_arch, _) = env_archive(&wd, "env.strata");
    let (other, _) = env_archive(&wd, "other.strata");
    let env = |sub: &str| {
        strata()
            .arg(sub)
            .env("STRATA_ARCHIVE", &env_arch.path)
            .arg(&other.path)
    };
    let other_id = other.snapshot_ids()[0].clone();
    let listed = env("snapshots").arg("--json").ok().json();
    assert_eq!(listed.as_array().len(), 1);
    assert_eq!(listed[0]["id"].as_str(), other_id);
    let shown = env("show").arg("latest").arg("--json").ok().json();
    assert_eq!(shown["id"].as_str(), other_id);
    let src = wd.join("more");
    generate_plain_tree(&src, 9);
    env("ingest").arg(&src).ok();
    assert_eq!(
        other.snapshot_ids().len(),
        2,
        "ingest ARCHIVE SOURCE wrote ARCHIVE"
    );
    assert_eq!(env_arch.snapshot_ids().len(), 1, "and not STRATA_ARCHIVE");
    env("forget").arg(&other_id[..8]).ok();
    assert!(!other.snapshot_ids().contains(&other_id));
    // The variable's own value given first is the archive too (`ingest "$STRATA_ARCHIVE" SRC`).
    strata()
        .arg("ingest")
        .arg(&env_arch.path)
        .arg(&src)
        .env("STRATA_ARCHIVE", &env_arch.path)
        .ok();
    let rows = env_arch.snapshots();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["sources"].as_array().len(), 1, "{}", rows[1]);
}

#[test]
fn without_strata_archive_a_missing_archive_is_a_usage_error_naming_the_variable() {
    let out = strata()
        .arg("snapshots")
        .env_remove("STRATA_ARCHIVE")
        .code(2);
    let err = out.stderr_str();
    assert!(
        err.contains("<ARCHIVE>") && err.contains("STRATA_ARCHIVE"),
        "{out}"
    );
}

#[test]
fn with_strata_archive_set_wrong_argument_counts_are_still_usage_errors() {
    let wd = Workdir::new();
    let (archive, _) = env_archive(&wd, "env.strata");
    let env = |sub: &str| strata().arg(sub).env("STRATA_ARCHIVE", &archive.path);
    let out = env("show").args(["a", "b", "c"]).code(2);
    assert!(out.stderr_str().contains("'c'"), "{out}");
    let out = env("restore").code(2);
    assert!(out.stderr_str().contains("<SPEC>"), "{out}");
    // copy names both archives and ignores the variable; umount takes no archive.
    let out = env("copy").arg(&archive.path).code(2);
    assert!(out.stderr_str().contains("<DST>"), "{out}");
    env("umount").code(2);
}
