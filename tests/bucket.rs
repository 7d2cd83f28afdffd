//! Archives in a bucket (issue 15), through the binary, against a real three-node Garage
//! cluster on loopback (`tests/common/garage.rs`): a generated Jira export, Structr tree
//! and dump round-trip exactly through restore and the mount; a second host with an
//! empty cache sees every snapshot; two hosts ingest at once and dedup across each other;
//! prune is exclusive; stale locks and `strata unlock`; one node killed changes nothing,
//! all nodes stopped is a clear error with nothing committed; a wrong key, a missing
//! bucket and a bad endpoint are one line each.
//!
//! Needs Garage 2.x (`cargo install --locked garage --version 2.5.0`); the tests fail,
//! never skip, without it.

mod common;
#[path = "common/garage.rs"]
mod garage;
#[path = "common/services.rs"]
mod services;

use common::*;
use garage::Garage;
use services::{generate, next_day, wait_for};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One host using the bucket archive: the cluster's credentials and a cache of its own.
struct Host {
    url: String,
    env: Vec<(&'static str, String)>,
    cache: PathBuf,
}

impl Host {
    fn new(g: &Garage, wd: &Workdir, prefix: &str, name: &str) -> Host {
        let cache = wd.mkdir(format!("cache-{name}"));
        let mut env = g.env();
        env.push(("STRATA_CACHE_DIR", cache.display().to_string()));
        Host {
            url: g.url(prefix),
            env,
            cache,
        }
    }

    /// `strata SUB URL` with this host's environment.
    fn cmd(&self, sub: &str) -> Cmd {
        self.raw(sub).arg(&self.url)
    }

    /// `strata SUB` with this host's environment and no archive yet.
    fn raw(&self, sub: &str) -> Cmd {
        let mut c = strata().arg(sub);
        for (k, v) in &self.env {
            c = c.env(k, v);
        }
        c.timeout(Duration::from_secs(300))
    }

    fn ingest(&self, src: &Path, label: &str) -> Json {
        self.cmd("ingest")
            .arg(src)
            .args(["--label", label, "--json"])
            .ok()
            .json()
    }

    fn snapshot_ids(&self) -> Vec<String> {
        self.cmd("snapshots")
            .arg("--json")
            .ok()
            .json()
            .as_array()
            .iter()
            .map(|s| s["id"].as_str().to_string())
            .collect()
    }

    /// Restores `spec` into `target` and compares the source with rsync.
    fn restore_and_compare(&self, spec: &str, expected: &Path, target: &Path) {
        self.cmd("restore").arg(spec).arg(target).ok();
        assert_rsync_clean(expected, &target.join(expected.file_name().unwrap()));
    }
}

/// Sets the cluster's credentials in this test process's environment, so a mount the
/// test starts inherits them (each test is its own process under nextest).
fn export_env(h: &Host) {
    for (k, v) in &h.env {
        // SAFETY: set before the test starts any thread that reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
}

/// A cluster, a work directory and two hosts (separate caches) on one archive under
/// `prefix`, initialised by the first.
fn two_hosts(prefix: &str) -> (Garage, Workdir, Host, Host) {
    let g = Garage::start();
    let wd = Workdir::new();
    let a = Host::new(&g, &wd, prefix, "a");
    let b = Host::new(&g, &wd, prefix, "b");
    a.cmd("init").ok();
    (g, wd, a, b)
}

/// Waits until `h` sees a pack in the bucket (another host's running ingest sealed one).
fn wait_for_a_pack(h: &Host, what: &str) {
    wait_for(what, Duration::from_secs(120), || {
        h.cmd("check").arg("--json").ok().json()["packs"].as_u64() > 0
    });
}

fn services(wd: &Workdir, name: &str) -> PathBuf {
    let dir = wd.join(name);
    generate(&dir, "jira,structr,dump", "0.02");
    dir
}

#[test]
fn a_generated_export_tree_and_dump_round_trip_exactly_through_a_bucket_archive() {
    let g = Garage::start();
    let wd = Workdir::new();
    let host = Host::new(&g, &wd, "roundtrip", "a");
    let out = host.cmd("init").ok();
    assert!(out.stderr_str().contains("password"), "{out}");
    let src = services(&wd, "src");
    let first = host.ingest(&src, "nightly");
    assert!(first["bytes_added"].as_u64() > 0, "{first:?}");
    next_day(&src);
    let second = host.ingest(&src, "nightly");
    assert!(
        second["bytes_added"].as_u64() < first["bytes_added"].as_u64(),
        "the second night dedups against the first: {second:?} vs {first:?}"
    );
    host.restore_and_compare("latest", &src, &wd.join("restored"));

    // Through the mount.
    export_env(&host);
    let mnt = wd.mkdir("mnt");
    let m = Mount::new(Path::new(&host.url), &mnt);
    let snap = mnt.join("latest").join("src");
    wait_for(
        "the mount to show the snapshot",
        Duration::from_secs(30),
        || snap.exists(),
    );
    assert_rsync_clean(&src, &snap);
    drop(m);

    // check reads every byte back from the bucket.
    let out = host.cmd("check").arg("--read-data").ok();
    assert!(out.stderr_str().contains("no errors"), "{out}");
}

/// `files` files of `mib` MiB of random bytes under `dir`, plus a small text file.
fn random_tree(dir: &Path, files: u32, mib: u32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..files {
        sh(&format!(
            "head -c {}M /dev/urandom > '{}/f{i}.bin'",
            mib,
            dir.display()
        ))
        .ok();
    }
    std::fs::write(dir.join("note.txt"), "a small file\n").unwrap();
    dir.to_path_buf()
}

#[test]
fn a_second_host_with_an_empty_cache_sees_every_snapshot_and_restores_exactly() {
    let g = Garage::start();
    let wd = Workdir::new();
    let a = Host::new(&g, &wd, "hosts", "a");
    a.cmd("init").ok();
    let src = wd.join("src");
    generate(&src, "structr", "0.02");
    a.ingest(&src, "structr");
    next_day(&src);
    a.ingest(&src, "structr");
    let ids = a.snapshot_ids();
    assert_eq!(ids.len(), 2);

    let b = Host::new(&g, &wd, "hosts", "b");
    assert_eq!(b.snapshot_ids(), ids, "host b lists what host a committed");
    b.restore_and_compare("latest", &src, &wd.join("restored"));
    // b learned the packs from their pack indexes, not by downloading them.
    let chunks = b.cache.read_dir().unwrap().next().unwrap().unwrap().path();
    assert!(chunks.join("index.sqlite").exists(), "{}", chunks.display());

    // A snapshot b commits is seen by a at its next command.
    b.ingest(&src, "from-b");
    assert_eq!(a.snapshot_ids().len(), 3);
    // a forgets on its side; b sees the forget.
    a.cmd("forget").arg(&ids[0]).ok();
    assert_eq!(b.snapshot_ids().len(), 2);
}

#[test]
fn two_hosts_ingest_at_once_both_commit_and_dedup_across_hosts() {
    let (_g, wd, a, b) = two_hosts("multi");
    let shared = random_tree(&wd.join("shared"), 3, 8);
    let src_a = wd.join("jira");
    let src_b = wd.join("confluence");
    for (src, uniq) in [(&src_a, "a"), (&src_b, "b")] {
        sh(&format!("cp -a '{}' '{}'", shared.display(), src.display())).ok();
        std::fs::write(src.join(format!("only-{uniq}.txt")), uniq.repeat(1000)).unwrap();
    }
    let ra = a
        .cmd("ingest")
        .arg(&src_a)
        .args(["--label", "jira", "--json"])
        .spawn();
    let rb = b
        .cmd("ingest")
        .arg(&src_b)
        .args(["--label", "confluence", "--json"])
        .spawn();
    let (oa, ob) = (ra.wait(), rb.wait());
    assert_eq!(oa.code(), Some(0), "{oa}");
    assert_eq!(ob.code(), Some(0), "{ob}");
    assert_eq!(a.snapshot_ids().len(), 2, "both snapshots are listed");
    // The next night each host dedups against what the other wrote.
    let again = a.ingest(&src_b, "jira-sees-confluence");
    assert!(
        again["bytes_added"].as_u64() < 1 << 20,
        "host a stores nothing of host b's data again: {again:?}"
    );
    a.restore_and_compare("latest", &src_b, &wd.join("ra"));
    b.cmd("check").arg("--read-data").ok();
}

#[test]
fn prune_waits_for_no_ingest_and_loses_nothing_and_stale_locks_need_unlock() {
    let (_g, wd, a, b) = two_hosts("locks");
    let src = random_tree(&wd.join("src"), 2, 4);
    a.ingest(&src, "files");
    a.ingest(&src, "files");
    let first = a.snapshot_ids()[0].clone();
    b.cmd("forget").arg(&first).ok();

    // A slow ingest on host a holds a shared lock; prune on host b is refused, exit 4,
    // naming it. (Wait for its lock object first: a prune that ran before it would make
    // the ingest the one refused.)
    let slow = a
        .cmd("ingest")
        .args([
            "--cmd",
            "sleep 6; head -c 3M /dev/urandom",
            "--as",
            "dump.bin",
        ])
        .args(["--label", "db"])
        .spawn();
    wait_for("the ingest's lock object", Duration::from_secs(30), || {
        b.cmd("unlock")
            .run()
            .stderr_str()
            .contains("left active lock")
    });
    let locked = b.cmd("prune").run();
    assert_eq!(locked.code(), Some(4), "{locked}");
    locked.assert_one_line_error("locked");
    assert!(locked.stderr_str().contains("ingest (shared)"), "{locked}");
    let out = slow.wait();
    assert_eq!(out.code(), Some(0), "{out}");
    b.cmd("prune").ok();
    a.restore_and_compare("latest~1", &src, &wd.join("r1"));
    assert_eq!(a.snapshot_ids().len(), 2);

    // An ingest killed with kill -9 leaves its lock object: not stale yet, it still
    // blocks prune, and unlock leaves it; 11 minutes later unlock removes it.
    let killed = a
        .cmd("ingest")
        .args(["--cmd", "sleep 30", "--as", "never.bin"])
        .spawn();
    wait_for("the ingest's lock object", Duration::from_secs(30), || {
        b.cmd("unlock")
            .run()
            .stderr_str()
            .contains("left active lock")
    });
    assert_eq!(b.cmd("prune").run().code(), Some(4));
    killed.kill9();
    let out = b.cmd("unlock").ok();
    assert!(out.stderr_str().contains("no stale lock"), "{out}");
    assert!(out.stderr_str().contains("left active lock"), "{out}");
    let out = b.cmd("unlock").env("FAKETIME", "+11m").env(
        "LD_PRELOAD",
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    );
    let out = out.ok();
    assert!(
        out.stdout_str()
            .contains("removed stale lock: ingest (shared)"),
        "{out}"
    );
    b.cmd("prune").ok();
    assert_eq!(b.snapshot_ids().len(), 2);
    b.cmd("check").arg("--read-data").ok();
}

#[test]
fn one_node_killed_during_an_ingest_and_a_mount_copy_changes_nothing() {
    let mut g = Garage::start();
    let wd = Workdir::new();
    let a = Host::new(&g, &wd, "quorum", "a");
    a.cmd("init").ok();
    let src = random_tree(&wd.join("src"), 6, 16);
    let running = a.cmd("ingest").arg(&src).arg("--json").spawn();
    std::thread::sleep(Duration::from_millis(1500));
    g.kill_node(2);
    let out = running.wait();
    assert_eq!(out.code(), Some(0), "{out}");
    a.restore_and_compare("latest", &src, &wd.join("restored"));

    // A mount reading with an empty cache while a second node goes is refused by
    // quorum (2 of 3 needed): bring node 2 back first, then kill node 1 during the copy.
    g.start_node(2);
    export_env(&a);
    let cold = wd.mkdir("cold-cache");
    // SAFETY: as in export_env.
    unsafe { std::env::set_var("STRATA_CACHE_DIR", &cold) };
    let mnt = wd.mkdir("mnt");
    let m = Mount::new(Path::new(&a.url), &mnt);
    let file = mnt.join("latest/src/f5.bin");
    wait_for("the mount", Duration::from_secs(30), || file.exists());
    let copy = sh(&format!(
        "cp '{}' '{}'",
        file.display(),
        wd.join("f5.copy").display()
    ))
    .spawn();
    std::thread::sleep(Duration::from_millis(300));
    g.kill_node(1);
    let out = copy.wait();
    assert_eq!(out.code(), Some(0), "{out}");
    drop(m);
    sh(&format!(
        "cmp '{}' '{}'",
        src.join("f5.bin").display(),
        wd.join("f5.copy").display()
    ))
    .ok();
}

#[test]
fn all_nodes_stopped_during_an_ingest_is_a_clear_error_and_nothing_is_committed() {
    let mut g = Garage::start();
    let wd = Workdir::new();
    let mut a = Host::new(&g, &wd, "outage", "a");
    a.env.push(("STRATA_S3_TIMEOUT", "3".into()));
    a.env.push(("STRATA_S3_RETRIES", "2".into()));
    a.cmd("init").ok();
    let src = random_tree(&wd.join("src"), 4, 16);
    let running = a.cmd("ingest").arg(&src).spawn();
    std::thread::sleep(Duration::from_millis(1000));
    g.stop_all();
    let started = std::time::Instant::now();
    let out = running.wait();
    assert_eq!(out.code(), Some(7), "the store is unusable: exit 7\n{out}");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "gave up in bounded time"
    );
    out.assert_one_line_error("strata-test");
    g.start_all();
    assert!(a.snapshot_ids().is_empty(), "nothing was committed");
    a.ingest(&src, "after");
    a.restore_and_compare("latest", &src, &wd.join("restored"));
}

#[test]
fn a_paused_node_makes_requests_time_out_instead_of_hanging() {
    let mut g = Garage::start();
    let wd = Workdir::new();
    let mut a = Host::new(&g, &wd, "paused", "a");
    a.cmd("init").ok();
    a.env.push(("STRATA_S3_TIMEOUT", "2".into()));
    a.env.push(("STRATA_S3_RETRIES", "1".into()));
    g.pause_node(0);
    let started = std::time::Instant::now();
    let out = a.cmd("snapshots").run();
    g.resume_node(0);
    assert_eq!(out.code(), Some(7), "{out}");
    assert!(started.elapsed() < Duration::from_secs(60), "{out}");
    out.assert_one_line_error("did not answer");
    a.cmd("snapshots").ok();
}

#[test]
fn a_wrong_key_a_missing_bucket_and_a_bad_endpoint_are_one_line_each_exit_7() {
    let g = Garage::start();
    let wd = Workdir::new();
    let a = Host::new(&g, &wd, "errors", "a");
    a.cmd("init").ok();

    let wrong = a
        .cmd("snapshots")
        .env("AWS_SECRET_ACCESS_KEY", "0".repeat(64))
        .run();
    assert_eq!(wrong.code(), Some(7), "{wrong}");
    wrong.assert_one_line_error("access denied");
    assert!(
        !wrong.stderr_str().contains(&g.secret),
        "the secret is never printed"
    );

    let missing = a
        .raw("snapshots")
        .arg(format!("s3:{}/no-such-bucket", g.endpoint()))
        .run();
    assert_eq!(missing.code(), Some(7), "{missing}");
    missing.assert_one_line_error("no such bucket");

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let bad = a
        .raw("snapshots")
        .arg(format!("s3:http://127.0.0.1:{port}/strata-test"))
        .run();
    assert_eq!(bad.code(), Some(7), "{bad}");
    bad.assert_one_line_error("cannot reach");

    let empty = a.raw("snapshots").arg(g.url("nothing-here")).run();
    assert_eq!(empty.code(), Some(1), "{empty}");
    empty.assert_one_line_error("not a strata archive");

    let again = a.cmd("init").run();
    again.assert_one_line_error("already a strata archive");
}

#[test]
fn copy_local_to_bucket_to_local_restores_exactly_and_a_second_copy_sends_nothing() {
    let g = Garage::start();
    let wd = Workdir::new();
    let h = Host::new(&g, &wd, "offsite", "a");
    let local = wd.archive(&[]);
    let src = services(&wd, "src");
    local.ingest([src.as_os_str(), "--label".as_ref(), "nightly".as_ref()]);
    h.cmd("init").ok();
    h.raw("copy").arg(&local.path).arg(&h.url).ok();
    let second = h
        .raw("copy")
        .arg(&local.path)
        .arg(&h.url)
        .arg("--json")
        .ok()
        .json();
    assert_eq!(second["blobs_sent"].as_u64(), 0, "{second:?}");
    let back = wd.join("back.strata");
    h.raw("init").arg(&back).ok();
    h.raw("copy").arg(&h.url).arg(&back).ok();
    let back = Archive { path: back };
    back.restore("latest", wd.join("restored"));
    assert_rsync_clean(&src, &wd.join("restored/src"));
    h.restore_and_compare("latest", &src, &wd.join("from-bucket"));
}

#[test]
fn every_command_works_on_a_bucket_archive() {
    let g = Garage::start();
    let wd = Workdir::new();
    let h = Host::new(&g, &wd, "all/commands", "a");
    h.cmd("init").ok();
    let src = random_tree(&wd.join("src"), 2, 2);
    h.ingest(&src, "one");
    std::fs::write(src.join("note.txt"), "changed\n").unwrap();
    h.ingest(&src, "one");
    let ids = h.snapshot_ids();
    h.cmd("show").arg("latest").ok();
    let ls = h.cmd("ls").arg("latest:src").ok().stdout_str();
    assert!(ls.contains("f1.bin"), "{ls}");
    assert_eq!(
        h.cmd("cat").arg("latest:src/note.txt").ok().stdout,
        b"changed\n"
    );
    let diff = h.cmd("diff").arg(&ids[0]).arg(&ids[1]).ok().stdout_str();
    assert!(diff.contains("note.txt"), "{diff}");

    // Keys: a second password opens the archive; the first can then be removed.
    let pw2 = wd.write("pw2", "second password\n");
    h.raw("key")
        .arg("add")
        .arg(&h.url)
        .arg("--new-password-file")
        .arg(&pw2)
        .ok();
    let list = h.raw("key").arg("list").arg(&h.url).ok().stdout_str();
    assert_eq!(
        list.lines().filter(|l| l.contains("argon2")).count(),
        2,
        "{list}"
    );
    h.cmd("snapshots")
        .env("STRATA_PASSWORD", "second password")
        .ok();
    let wrong = h.cmd("snapshots").env("STRATA_PASSWORD", "nope").run();
    assert_eq!(wrong.code(), Some(6), "{wrong}");

    // repair rebuilds this host's cached index from the bucket.
    h.cmd("repair").ok();
    assert_eq!(h.snapshot_ids(), ids);
    h.cmd("forget").arg(&ids[0]).ok();
    h.cmd("prune").ok();
    h.restore_and_compare("latest", &src, &wd.join("restored"));
    let out = h.cmd("unlock").ok();
    assert!(out.stderr_str().contains("no stale lock"), "{out}");
    h.cmd("append-only").ok();
    let refused = h.cmd("prune").run();
    refused.assert_one_line_error("append-only");
    h.cmd("check").arg("--read-data").ok();
}

#[test]
fn packs_of_a_killed_ingest_are_named_by_check_and_left_by_prune_for_an_hour() {
    let (_g, wd, a, b) = two_hosts("orphans");
    // 80 MiB, then a pause: the first 64 MiB pack is sealed and uploaded meanwhile.
    let running = a
        .cmd("ingest")
        .args([
            "--cmd",
            "head -c 80M /dev/urandom; sleep 120",
            "--as",
            "dump.bin",
        ])
        .spawn();
    // Host b sees the first sealed pack (64 MiB) of host a's ingest, then a dies.
    wait_for(
        "a sealed pack of the running ingest",
        Duration::from_secs(120),
        || b.cmd("check").arg("--json").ok().json()["packs"].as_u64() > 0,
    );
    let killed = running.kill9();
    let out = b.cmd("unlock").arg("--remove-all").ok();
    assert!(
        out.stdout_str().contains("removed active lock"),
        "{out}\nthe ingest: {killed}"
    );
    let out = b.cmd("check").ok();
    assert!(
        out.stderr_str()
            .contains("holds nothing any snapshot needs"),
        "{out}"
    );
    let out = b.cmd("prune").ok();
    assert!(out.stderr_str().contains("younger than an hour"), "{out}");
    assert!(b.snapshot_ids().is_empty());
    // The next ingest commits beside the orphans.
    let src = random_tree(&wd.join("src"), 1, 1);
    b.ingest(&src, "again");
    b.restore_and_compare("latest", &src, &wd.join("restored"));
    b.cmd("check").arg("--read-data").ok();
}

#[test]
fn a_failed_ingest_keeps_the_packs_another_host_deduplicated_against() {
    let (_g, wd, a, b) = two_hosts("dedup-race");
    let src = random_tree(&wd.join("src"), 1, 80);
    let big = src.join("f0.bin");
    // Host a streams the same 80 MiB, then its command fails: no snapshot. Its first
    // pack (64 MiB) is in the bucket meanwhile, and host b deduplicates against it.
    let failing = a
        .cmd("ingest")
        .args([
            "--cmd",
            &format!("cat '{}'; sleep 6; exit 1", big.display()),
            "--as",
            "f0.bin",
        ])
        .spawn();
    wait_for_a_pack(&b, "host a's first pack");
    let j = b.ingest(&src, "b");
    assert!(
        j["bytes_added"].as_u64() < 40 << 20,
        "host b stored only what host a's sealed pack lacks: {j:?}"
    );
    let out = failing.wait();
    assert_ne!(out.code(), Some(0), "{out}");
    b.cmd("check").arg("--read-data").ok();
    b.restore_and_compare("latest", &src, &wd.join("restored"));
}

#[test]
fn a_running_mount_shows_a_snapshot_another_host_commits() {
    let (_g, wd, a, b) = two_hosts("live");
    let src = random_tree(&wd.join("src"), 1, 1);
    a.ingest(&src, "first");
    export_env(&a);
    let mnt = wd.mkdir("mnt");
    let m = Mount::new(Path::new(&a.url), &mnt);
    wait_for("the mount", Duration::from_secs(30), || {
        mnt.join("latest-first").exists()
    });
    b.ingest(&src, "from-b");
    // The mount reads the bucket every 30 s.
    wait_for(
        "host b's snapshot in host a's mount",
        Duration::from_secs(75),
        || mnt.join("latest-from-b/src/note.txt").exists(),
    );
    assert_rsync_clean(&src, &mnt.join("latest-from-b/src"));
    drop(m);
}
