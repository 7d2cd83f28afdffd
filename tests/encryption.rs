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
    wd.write(format!("src-{MARKER}/small"), format!("{MARKER}"));
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
    strata()
        .arg("snapshots")
        .arg(&archive)
        .run()
        .assert_one_line_error("a password is needed");
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
