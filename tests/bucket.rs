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

    /// Restores `spec` into `target` and compares the source (named `src`) with rsync.
    fn restore_and_compare(&self, spec: &str, expected: &Path, target: &Path) {
        self.cmd("restore").arg(spec).arg(target).ok();
        assert_rsync_clean(expected, &target.join("src"));
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
