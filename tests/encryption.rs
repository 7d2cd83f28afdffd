//! Encrypted archives through the binary (issue 14), with the password from
//! `STRATA_PASSWORD` (the first of the CLI's password sources): nothing in the archive
//! directory shows a file name, content, xattr, label, tag, host, source path or command
//! line, and a restore is exact.

mod common;

use common::*;
use std::path::Path;

const MARKER: &str = "QZXENCMARKERXZQ";
const PASSWORD: &str = "correct horse battery staple";

/// `env STRATA_PASSWORD=PASSWORD strata ARGS...`
fn with_password(password: &str) -> Cmd {
    Cmd::new("env")
        .arg(format!("STRATA_PASSWORD={password}"))
        .arg(strata_bin())
}

#[test]
fn an_encrypted_archive_shows_no_marker_anywhere_and_restores_exactly() {
    require_tool("unshare", "util-linux");
    require_tool("setfattr", "attr");
    let wd = Workdir::new();
    let src = wd.mkdir(format!("src-{MARKER}"));
    wd.write(
        format!("src-{MARKER}/dir-{MARKER}/file-{MARKER}.txt"),
        format!("content {MARKER}\n").repeat(3000),
    );
    wd.write(format!("src-{MARKER}/small"), MARKER);
    wd.write(
        format!("src-{MARKER}/big.bin"),
        (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    Cmd::new("setfattr")
        .args(["-n", &format!("user.{MARKER}"), "-v", MARKER])
        .arg(src.join("small"))
        .ok();
    let archive = wd.join("archive");
    with_password(PASSWORD)
        .arg("init")
        .arg(&archive)
        .args(["--chunk-size", "64K"])
        .ok();
    let config = std::fs::read_to_string(archive.join("config")).unwrap();
    assert!(config.contains("format = 2") && config.contains("encryption = aes-256-gcm"));

    // Host name, label, tag, source path and --cmd command line all carry the marker.
    let ingest = format!(
        "hostname host-{MARKER} && exec env STRATA_PASSWORD='{PASSWORD}' '{}' ingest '{}' '{}' \
         --label label-{MARKER} --tag tag-{MARKER} --cmd 'echo out-{MARKER}' --as cmd-{MARKER}.txt",
        strata_bin(),
        archive.display(),
        src.display()
    );
    for _ in 0..2 {
        Cmd::new("unshare")
            .args(["--uts", "sh", "-c", &ingest])
            .ok();
    }
    let out = with_password(PASSWORD)
        .args(["snapshots"])
        .arg(&archive)
        .ok();
    assert!(
        out.stdout_str().contains(&format!("label-{MARKER}")),
        "{out}"
    );

    // Not a byte of it anywhere in the archive directory.
    let grep = Cmd::new("grep").args(["-ra", MARKER]).arg(&archive).run();
    assert_eq!(grep.code(), Some(1), "grep found the marker\n{grep}");

    // Without the password: one clear error; with a wrong one: another; nothing read.
    Cmd::new("env")
        .args(["-u", "STRATA_PASSWORD", strata_bin(), "snapshots"])
        .arg(&archive)
        .run()
        .assert_one_line_error("no password was given");
    with_password("wrong")
        .arg("snapshots")
        .arg(&archive)
        .run()
        .assert_one_line_error("wrong password");

    let out = with_password(PASSWORD)
        .args(["check", "--read-data"])
        .arg(&archive)
        .ok();
    assert!(out.stderr_str().contains("no errors"), "{out}");

    let target = wd.join("restored");
    with_password(PASSWORD)
        .arg("restore")
        .arg(&archive)
        .arg("latest")
        .arg(&target)
        .ok();
    assert_rsync_clean(&src, &target.join(src.file_name().unwrap()));
    let cmd_out = std::fs::read(target.join(format!("cmd-{MARKER}.txt"))).unwrap();
    assert_eq!(cmd_out, format!("out-{MARKER}\n").into_bytes());
    assert!(Path::new(&archive.join("keys")).is_dir());
}

#[test]
fn forget_prune_repair_append_only_and_mount_work_on_an_encrypted_archive() {
    let wd = Workdir::new();
    let archive = wd.join("archive");
    with_password(PASSWORD).arg("init").arg(&archive).ok();
    let mut srcs = Vec::new();
    for i in 0..3 {
        let src = wd.mkdir(format!("gen{i}/data"));
        wd.write(format!("gen{i}/data/same.txt"), "shared\n".repeat(5000));
        wd.write(
            format!("gen{i}/data/own-{i}.txt"),
            format!("generation {i}\n").repeat(4000),
        );
        with_password(PASSWORD)
            .arg("ingest")
            .arg(&archive)
            .arg(&src)
            .args(["--label", "l"])
            .ok();
        srcs.push(src);
    }
    let pw = || with_password(PASSWORD);
    pw().args(["forget", "--keep-last", "1"]).arg(&archive).ok();
    pw().arg("prune").arg(&archive).ok();
    let out = pw().args(["check", "--read-data"]).arg(&archive).ok();
    assert!(out.stderr_str().contains("no errors"), "{out}");

    // Repair rebuilds the sealed catalogue from the packs with the key, and only with it.
    std::fs::remove_file(archive.join("index.sqlite")).unwrap();
    with_password("wrong")
        .arg("repair")
        .arg(&archive)
        .run()
        .assert_one_line_error("wrong password");
    assert!(
        !archive.join("index.sqlite").exists(),
        "a wrong password writes nothing"
    );
    pw().arg("repair").arg(&archive).ok();
    let out = pw().arg("snapshots").arg(&archive).ok();
    assert_eq!(
        out.stdout_str().lines().count(),
        2,
        "header and one snapshot\n{out}"
    );

    // The mount opens through the archive with the same password.
    if fuse_available() {
        // SAFETY: nextest runs each test in a process of its own; the mount process
        // inherits the variable. Every other test here passes its password explicitly.
        unsafe { std::env::set_var("STRATA_PASSWORD", PASSWORD) };
        let dir = wd.mkdir("mnt");
        let m = Mount::new(&archive, &dir);
        assert_rsync_clean(&srcs[2], &m.join("latest/data"));
        drop(m);
    }

    // Append-only: forget is refused afterwards, ingest still works.
    pw().arg("append-only").arg(&archive).ok();
    let out = pw()
        .args(["forget", "--keep-last", "1"])
        .arg(&archive)
        .run();
    assert!(out.stderr_str().contains("append-only"), "{out}");
    assert_ne!(out.code(), Some(0), "{out}");
    pw().arg("ingest").arg(&archive).arg(&srcs[0]).ok();
    let target = wd.join("restored");
    pw().arg("restore")
        .arg(&archive)
        .arg("latest")
        .arg(&target)
        .ok();
    assert_rsync_clean(&srcs[0], &target.join("data"));
}
