//! Real FUSE mounts of the `strata` binary (issue 12, group "mount"): what `--allow-other`
//! keeps of the source host's protection, unmounting only one's own mount, the `--log`
//! file's mode, a `strata repair` under a running mount, SEEK_DATA/SEEK_HOLE, and the
//! memory a long `ls -l` leaves behind. Every mount is a `common::fuse` guard, so it is
//! unmounted even when a test fails.

mod common;

use common::fuse::{daemon_pid, fuse_mount_at, wait_gone};
use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn as_nobody_cat(p: &Path) -> Out {
    Cmd::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(p)
        .run()
}

#[test]
fn allow_other_keeps_out_who_could_not_search_the_sources_parents() {
    require_tool("setpriv", "util-linux");
    let wd = Workdir::new();
    set_mode(wd.path(), 0o755);
    let archive = wd.archive(&[]);
    // leak/private is 0700: on this host only root reaches leak/private/data.
    let private = wd.mkdir("leak/private");
    let data = wd.mkdir("leak/private/data");
    set_mode(&data, 0o755);
    let conf = wd.write("leak/private/data/app.conf", "password=hunter2\n");
    set_mode(&conf, 0o644);
    set_mode(&wd.join("leak"), 0o755);
    set_mode(&private, 0o700);
    let site = wd.mkdir("open/site");
    set_mode(&wd.join("open"), 0o755);
    set_mode(&site, 0o755);
    let index = wd.write("open/site/index.html", "hello\n");
    set_mode(&index, 0o644);
    let ctl = as_nobody_cat(&conf);
    assert!(
        !ctl.status.success(),
        "control: nobody cannot read the source\n{ctl}"
    );
    archive.ingest([&data, &site]);
    let mnt = wd.mkdir("mnt");
    set_mode(&mnt, 0o755);
    let m = Mount::with_args(&archive.path, &mnt, &["--allow-other"]);
    // Root first, so the kernel has the entries cached when nobody comes.
    assert_eq!(
        fs::read(m.join("latest/data/app.conf")).unwrap(),
        b"password=hunter2\n",
        "the mount owner (root) still reads it"
    );
    for _ in 0..2 {
        let out = as_nobody_cat(&m.join("latest/data/app.conf"));
        assert!(
            !out.status.success() && out.stderr_str().contains("Permission denied"),
            "a user who could not search leak/private must not read it through the mount\n{out}"
        );
    }
    let out = as_nobody_cat(&m.join("latest/site/index.html"));
    assert!(
        out.status.success() && out.stdout_str() == "hello\n",
        "a world-searchable source stays readable by anyone\n{out}"
    );
}

/// `strata mount ARCHIVE DIR --daemon` with its output in `log`; returns the serving pid.
fn mount_daemon(archive: &Path, dir: &Path, log: &Path) -> u32 {
    let f = fs::File::create(log).unwrap();
    let st = Command::new(strata_bin())
        .arg("mount")
        .arg(archive)
        .arg(dir)
        .arg("--daemon")
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .status()
        .unwrap();
    let text = fs::read_to_string(log).unwrap();
    assert!(st.success(), "strata mount --daemon: {st}\n{text}");
    daemon_pid(&text).unwrap_or_else(|| panic!("no pid in\n{text}"))
}

#[test]
fn umount_then_mount_leaves_the_new_mount_mounted() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    wd.write("src/a.txt", "a\n");
    archive.ingest([wd.join("src")]);
    let mnt = fs::canonicalize(wd.mkdir("mnt")).unwrap();
    let mut guard = fuse::DaemonMount::watch(&mnt);
    guard.log = Some(wd.join("log0"));
    guard.pid = Some(mount_daemon(&archive.path, &mnt, &wd.join("log0")));
    for round in 0..10 {
        let old = guard.pid.take().unwrap();
        strata().arg("umount").arg(&mnt).ok();
        let log = wd.join(format!("log{}", round + 1));
        guard.log = Some(log.clone());
        guard.pid = Some(mount_daemon(&archive.path, &mnt, &log));
        assert!(
            wait_gone(old, Duration::from_secs(10)),
            "round {round}: the old mount process exits"
        );
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            fuse_mount_at(&mnt).is_some(),
            "round {round}: the exiting old process unmounted the new mount"
        );
        assert_eq!(fs::read(mnt.join("latest/src/a.txt")).unwrap(), b"a\n");
    }
}

#[test]
fn the_log_file_is_created_0600_and_a_symlink_there_is_refused() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    wd.write("src/a.txt", "a\n");
    archive.ingest([wd.join("src")]);
    let log = wd.join("mount.log");
    {
        let _m = fuse::DaemonMount::start(
            &archive.path,
            &wd.mkdir("mnt"),
            &["--log", log.to_str().unwrap()],
            &wd.join("out"),
        );
        assert_eq!(fs::metadata(&log).unwrap().mode() & 0o777, 0o600);
    }
    let target = wd.write("elsewhere", "");
    let link = wd.join("link.log");
    symlink(&target, &link).unwrap();
    let out = strata()
        .arg("mount")
        .arg(&archive.path)
        .arg(wd.mkdir("mnt2"))
        .arg("--log")
        .arg(&link)
        .code(1);
    assert!(
        out.stderr_str().contains("--log") && out.stderr_str().contains("symlink"),
        "one clear line naming --log\n{out}"
    );
    assert!(fuse_mount_at(&wd.join("mnt2")).is_none());
}

#[test]
fn a_running_mount_serves_the_index_that_repair_rebuilt() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    wd.write("one/a.txt", "a\n");
    archive.ingest([wd.join("one")]);
    let m = fuse::DaemonMount::start(
        &archive.path,
        &wd.mkdir("mnt"),
        &["--log", wd.join("mount.log").to_str().unwrap()],
        &wd.join("out"),
    );
    archive.cmd("repair").ok();
    wd.write("two/b.txt", "b\n");
    archive.ingest([wd.join("two")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.dir.join("latest/two/b.txt").exists() {
        assert!(
            Instant::now() < deadline,
            "the snapshot ingested after the repair never appeared in the mount\n{}",
            fs::read_to_string(wd.join("mount.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        fs::read_to_string(wd.join("mount.log"))
            .unwrap()
            .contains("reopened"),
        "the log says the index was reopened"
    );
}

#[test]
fn seek_data_and_seek_hole_skip_the_holes_of_a_large_sparse_file() {
    require_tool("python3", "python3");
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let big = wd.join("src/big.img");
    fs::create_dir_all(big.parent().unwrap()).unwrap();
    const MIB: u64 = 1 << 20;
    const SIZE: u64 = 64 << 30;
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(&big).unwrap();
        f.set_len(SIZE).unwrap();
        for (i, at) in [0, 32 << 30, SIZE - 2 * MIB].into_iter().enumerate() {
            f.write_all_at(&random_bytes(i as u64, MIB as usize), at)
                .unwrap();
        }
    }
    archive.ingest([wd.join("src")]);
    let m = Mount::new(&archive.path, &wd.mkdir("mnt"));
    let file = m.join("latest/src/big.img");
    let script = format!(
        "import os\nfd=os.open({:?},os.O_RDONLY)\n\
         print(os.lseek(fd,0,os.SEEK_DATA),os.lseek(fd,0,os.SEEK_HOLE),\
         os.lseek(fd,{MIB},os.SEEK_DATA),os.lseek(fd,{},os.SEEK_HOLE))",
        file.to_str().unwrap(),
        (32u64 << 30) + 10
    );
    let out = Cmd::new("python3").arg("-c").arg(&script).ok();
    assert_eq!(
        out.stdout_str().trim(),
        format!("0 {MIB} {} {}", 32u64 << 30, (32u64 << 30) + MIB),
        "SEEK_DATA/SEEK_HOLE follow the stored extents"
    );
    let copy = wd.join("copy.img");
    let t = Instant::now();
    Cmd::new("cp")
        .arg("--sparse=always")
        .arg(&file)
        .arg(&copy)
        .timeout(Duration::from_secs(120))
        .ok();
    let took = t.elapsed();
    let meta = fs::metadata(&copy).unwrap();
    assert_eq!(meta.len(), SIZE);
    assert!(
        meta.blocks() * 512 < 64 * MIB,
        "the copy is sparse: {} bytes allocated",
        meta.blocks() * 512
    );
    assert!(took < Duration::from_secs(60), "cp took {took:?}");
    Cmd::new("cmp")
        .args(["-n", "4194304"])
        .arg(&big)
        .arg(&copy)
        .ok();
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn ls_l_of_a_big_directory_leaves_the_mount_small() {
    const N: usize = 50_000;
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let dir = wd.mkdir("src/big");
    for i in 0..N {
        fs::File::create(dir.join(format!("f{i:06}"))).unwrap();
    }
    archive.ingest([wd.join("src")]);
    let m = Mount::new(&archive.path, &wd.mkdir("mnt"));
    // Warm up the top level so only the listing is measured.
    let _ = fs::read_dir(m.join("latest/src")).unwrap().count();
    let before = rss_kib(m.pid(), "VmRSS:");
    sh(&format!(
        "ls -l {} > /dev/null",
        m.join("latest/src/big").display()
    ))
    .timeout(Duration::from_secs(300))
    .ok();
    // The mount hands freed heap back every 2 s.
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_kib(m.pid(), "VmRSS:");
    let per_entry = (after.saturating_sub(before)) * 1024 / N as u64;
    eprintln!("RSS {before} KiB -> {after} KiB: {per_entry} bytes per entry");
    assert!(
        per_entry < 1200,
        "the mount kept {per_entry} bytes per listed entry (RSS {before} -> {after} KiB)"
    );
}

#[test]
fn sources_of_a_snapshot_without_the_record_are_for_the_owner_and_root_only() {
    require_tool("setpriv", "util-linux");
    let wd = Workdir::new();
    set_mode(wd.path(), 0o755);
    let archive = wd.archive(&[]);
    let site = wd.mkdir("open/site");
    set_mode(&wd.join("open"), 0o755);
    set_mode(&site, 0o755);
    let index = wd.write("open/site/index.html", "hello\n");
    set_mode(&index, 0o644);
    archive.ingest([&site]);
    // The same snapshot again, as a record that does not say what was above its source
    // (as every snapshot written before strata recorded it).
    {
        let a = crate::common::open_archive(&archive.path);
        let id = a.snapshots().unwrap().last().unwrap().id;
        let mut snap = a.load_snapshot(&id).unwrap();
        for s in &mut snap.sources {
            s.parents = None;
        }
        snap.time.0 += 10;
        a.begin_write().unwrap().commit(&mut snap).unwrap();
    }
    let mnt = wd.mkdir("mnt");
    set_mode(&mnt, 0o755);
    let m = Mount::with_args(&archive.path, &mnt, &["--allow-other"]);
    assert_eq!(
        fs::read(m.join("latest/site/index.html")).unwrap(),
        b"hello\n"
    );
    let out = as_nobody_cat(&m.join("latest/site/index.html"));
    assert!(
        !out.status.success() && out.stderr_str().contains("Permission denied"),
        "an unrecorded source is not served to other users\n{out}"
    );
    assert!(
        m.stderr().contains("1 snapshot(s) do not record"),
        "the mount warns\n{}",
        m.stderr()
    );
}
