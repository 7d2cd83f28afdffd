//! Regression tests for bugs found after the fact, each named after what went wrong.

use std::process::Command;

fn strata() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata"))
}

/// The stat-ahead thread once listed the source root through a `dup` of the walker's
/// descriptor: both shared one getdents position, so each saw part of the directory and
/// an ingest could lose entries or fail with "node order". A wide root listed while the
/// stat-ahead runs must come out whole, every time.
#[test]
fn a_wide_source_root_is_listed_whole_while_stat_ahead_runs() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..3000 {
        std::fs::write(src.join(format!("f{i:05}")), format!("{i}")).unwrap();
        if i % 100 == 0 {
            std::fs::create_dir_all(src.join(format!("d{i:05}/x"))).unwrap();
        }
    }
    let archive = t.path().join("a");
    assert!(
        strata()
            .arg("init")
            .arg(&archive)
            .status()
            .unwrap()
            .success()
    );
    for round in 0..6 {
        // Drop the cache of dentries now and then, so the listing is slow enough to race.
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "2");
        let out = strata()
            .args(["ingest", "--label"])
            .arg(format!("r{round}"))
            .arg(&archive)
            .arg(&src)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ls = strata()
            .arg("ls")
            .arg(&archive)
            .arg("latest:src")
            .output()
            .unwrap();
        assert!(ls.status.success());
        let names = String::from_utf8_lossy(&ls.stdout).lines().count();
        assert_eq!(names, 3000 + 30, "round {round}: every entry of the root");
    }
}
