//! `kill -9` during an ingest or a prune: nothing committed or kept is lost.
//!
//! - An ingest killed at several moments: every earlier snapshot still restores byte for
//!   byte, the torn pack tail is never read as data, no stale lock remains, and the next
//!   ingest succeeds.
//! - An ingest killed at seeded random moments of four kinds (a fraction of its time, its
//!   first pack, a fraction of its bytes, its commit), one test per kind (moved from
//!   `tests/integrity.rs`): `check` is clean or names only unreferenced packs, which
//!   `repair` sets aside; one round in three also cuts the newest pack as a power loss.
//! - A prune killed at once, at its first new pack, at seeded random moments, and the two
//!   states a kill leaves in windows of a few milliseconds, made by hand (moved from
//!   `tests/retention.rs`): no kept byte is lost and the next prune completes.
//!
//! A killed writer's lock is tested in `tests/concurrency.rs`. Each test prints its seed
//! and figures (`--nocapture`); `STRATA_SEED=N` replays another seed.

mod common;
#[path = "common/faults.rs"]
mod faults;

use common::generations::*;
use common::*;
use faults::*;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
/// Mixed into every seed, so the seeds printed before these tests moved here from
/// `tests/integrity.rs` keep replaying the same faults.
const RNG_SALT: u64 = 0x05ee_d0f5_7a7a;

/// Restores every snapshot in `expected` (id, source tree) into a fresh directory and
/// compares it with its source.
fn assert_snapshots_intact(
    wd: &Workdir,
    archive: &Archive,
    expected: &[(String, std::path::PathBuf)],
    round: &str,
) {
    for (n, (id, source)) in expected.iter().enumerate() {
        let target = wd.join(format!("check-{round}-{n}"));
        archive.restore(id, &target);
        assert_diff_clean(source, &target.join("src"));
        assert_same_metadata(source, &target.join("src"));
        std::fs::remove_dir_all(&target).unwrap();
    }
}

/// An archive with two small snapshots that must survive everything, and a large
/// source: 300 MiB of incompressible files, which takes well over a second to ingest.
struct LargeIngests {
    wd: Workdir,
    archive: Archive,
    /// Snapshot ids and their sources.
    expected: Vec<(String, PathBuf)>,
    big: PathBuf,
}

impl LargeIngests {
    fn new() -> LargeIngests {
        let wd = Workdir::new();
        let archive = wd.archive(&[]);

        // Two small snapshots that must survive everything below.
        let mut expected = Vec::new();
        for (i, dir) in ["one/src", "two/src"].iter().enumerate() {
            let src = wd.join(dir);
            generate_plain_tree(&src, 100 + i as u64);
            let s = archive.ingest([&src]);
            expected.push((s["snapshot"].as_str().to_string(), src));
        }

        // A large source: 300 MiB of incompressible files, which takes well over a second.
        let big = wd.join("big/src");
        for i in 0..30 {
            write_random_file(&big.join(format!("part-{i:02}.bin")), 200 + i, 10 * MIB);
        }
        LargeIngests {
            wd,
            archive,
            expected,
            big,
        }
    }

    /// Six large ingests, of the big source or (odd rounds) of command output, which
    /// never touches the disk before strata, each killed after a delay or (None) as soon
    /// as it creates a new pack file. `after` sees each round: its number, the delay,
    /// whether the ingest had finished before the kill, and its output.
    fn kill_large_ingests(&self, mut after: impl FnMut(usize, Option<u64>, bool, &Out)) {
        let archive = &self.archive;
        let urandom = "head -c 400M /dev/urandom";
        // Kill moments: after a delay, or (None) as soon as the ingest creates a new pack file.
        let delays_ms = [
            Some(100u64),
            Some(250),
            None,
            Some(450),
            Some(700),
            Some(1000),
        ];
        for (round, delay) in delays_ms.iter().enumerate() {
            let cmd = if round % 2 == 0 {
                archive.cmd("ingest").arg(&self.big)
            } else {
                archive
                    .cmd("ingest")
                    .args(["--cmd", urandom, "--as", "random.bin"])
            };
            let mut running = cmd.spawn();
            let start = Instant::now();
            let packs_before = archive.pack_files().len();
            let due = || match delay {
                Some(ms) => start.elapsed() >= Duration::from_millis(*ms),
                None => {
                    archive.pack_files().len() > packs_before
                        || start.elapsed() > Duration::from_secs(20)
                }
            };
            while !due() && running.is_running() {
                std::thread::sleep(Duration::from_millis(2));
            }
            let finished = !running.is_running();
            let out = running.kill9();
            eprintln!(
                "round {round}: {} at {delay:?} ms; packs now {:?}",
                if finished { "finished" } else { "killed" },
                archive.pack_files()
            );
            after(round, *delay, finished, &out);
        }
    }
}

#[test]
fn earlier_snapshots_survive_an_ingest_killed_at_any_moment() {
    let fx = LargeIngests::new();
    let (wd, archive, expected) = (&fx.wd, &fx.archive, &fx.expected);
    let mut killed_while_running = 0;
    // Snapshots committed by the large ingests (finished, or killed just after commit).
    let mut extra = 0;
    fx.kill_large_ingests(|round, delay, finished, out| {
        if finished {
            // Finished before the kill: it must have succeeded and is a valid snapshot.
            assert_eq!(
                out.code(),
                Some(0),
                "round {round}: ingest ended on its own and failed\n{out}"
            );
            extra += 1;
        } else {
            killed_while_running += 1;
        }

        let ids = archive.snapshot_ids();
        let earlier: Vec<&str> = expected.iter().map(|(id, _)| id.as_str()).collect();
        assert!(
            ids.len() >= earlier.len() && ids[..earlier.len()] == earlier[..],
            "round {round} (kill at {delay:?} ms): earlier snapshots are no longer listed first: {ids:?}"
        );
        if !finished && ids.len() > earlier.len() + extra {
            // Killed after its commit but before exiting: the snapshot must be whole.
            extra += 1;
            archive.cmd("ls").arg(ids.last().unwrap()).arg("-R").ok();
        }
        assert_eq!(
            ids.len(),
            earlier.len() + extra,
            "round {round}: unexpected snapshots {ids:?}"
        );
        assert_snapshots_intact(wd, archive, expected, &format!("r{round}"));
    });
    assert!(
        killed_while_running >= 3,
        "only {killed_while_running} ingests were still running when killed; the source is too small"
    );
}

#[test]
fn after_ingests_killed_at_any_moment_the_next_ingests_succeed_and_read_back_exactly() {
    let mut fx = LargeIngests::new();
    // The kills of the test above, judged there.
    fx.kill_large_ingests(|_, _, _, _| {});
    let (wd, archive, big) = (&fx.wd, &fx.archive, &fx.big);

    // A new ingest succeeds (no stale lock, the torn tails are ignored) and is listed.
    let three = wd.join("three/src");
    generate_plain_tree(&three, 300);
    let s = archive.ingest([&three]);
    let ids = archive.snapshot_ids();
    assert_eq!(ids.last().map(String::as_str), Some(s["snapshot"].as_str()));
    fx.expected
        .push((s["snapshot"].as_str().to_string(), three));
    assert_snapshots_intact(wd, archive, &fx.expected, "after");

    // And a full ingest of the large source after all those crashes reads back exactly.
    let full = archive.ingest([big]);
    assert!(full["errors"].as_array().is_empty(), "{full}");
    let copy = wd.join("part-17.copy");
    archive
        .cmd("cat")
        .arg(format!("{}:src/part-17.bin", full["short_id"].as_str()))
        .stdout_to(&copy)
        .ok();
    Cmd::new("cmp").arg(big.join("part-17.bin")).arg(&copy).ok();
}

// ---------------------------------------------------------------------------------------
// kill -9 at random moments of an ingest, seeded (moved from tests/integrity.rs)
// ---------------------------------------------------------------------------------------

/// The big source of one round: eight 8 MiB files; the even ones are the same in every
/// round (they deduplicate), the odd ones are new (they are written: `NEW_BYTES`).
const BIG_FILES: u64 = 8;
const NEW_BYTES: u64 = BIG_FILES / 2 * 8 * MIB;

fn write_big_source(dir: &Path, round: u64) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..BIG_FILES {
        let seed = if i % 2 == 0 {
            7_000 + i
        } else {
            10_000 + round * 100 + i
        };
        write_random_file(&dir.join(format!("part-{i}.bin")), seed, 8 * MIB);
    }
}

/// The rounds of the kill test; round `r` kills at the moment of kind `r % 4`.
const ROUNDS: u64 = 26;

/// How long one round's ingest takes here, and how long its commit takes (from the last
/// new byte in the pack to the exit), measured on a scratch archive.
fn calibrate(wd: &Workdir, seed: u64) -> (Duration, Duration) {
    // How long one round's ingest takes here, measured on a scratch archive: the mean of
    // two runs shaped like a round (half the bytes new, half deduplicated).
    let scratch = Archive::init(wd.join("scratch"), &[]);
    let mut expected_time = Duration::ZERO;
    // And how long its commit takes: from the last new byte in the pack to the exit.
    let mut commit_time = Duration::ZERO;
    for r in 0..3u64 {
        let src = wd.join(format!("cal/{r}"));
        write_big_source(&src, 1_000 + r);
        let before = scratch.pack_files();
        let t0 = Instant::now();
        let mut running = scratch.cmd("ingest").arg(&src).spawn();
        let mut written: Option<Instant> = None;
        while running.is_running() {
            if written.is_none() {
                let new: u64 = scratch
                    .pack_files()
                    .iter()
                    .filter(|p| !before.iter().any(|b| b.0 == p.0))
                    .map(|p| p.1)
                    .sum();
                if new >= NEW_BYTES {
                    written = Some(Instant::now());
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let out = running.wait();
        assert_eq!(out.code(), Some(0), "calibration ingest\n{out}");
        if r > 0 {
            expected_time += t0.elapsed() / 2;
            commit_time += written.map(|w| w.elapsed()).unwrap_or_default() / 2;
        }
    }
    fs::remove_dir_all(&scratch.path).unwrap();
    fs::remove_dir_all(wd.join("cal")).unwrap();
    eprintln!(
        "kill: seed {seed}; one ingest of 64 MiB (32 MiB new) takes {expected_time:?}, its commit {commit_time:?}"
    );
    (expected_time, commit_time)
}

/// The four kinds of moment, as `round % 4`: 1, a random fraction of the expected time;
/// 2, as soon as the ingest creates its first pack; 3, when a random fraction of the new
/// bytes is in its packs; 0, after all of them are, during the commit.
const MOMENT_NAMES: [&str; 4] = [
    "during the commit",
    "at a fraction of the time",
    "at pack creation",
    "at a fraction of the bytes",
];

/// Runs the rounds of `1..=ROUNDS` whose kind of moment is `mode` (the same rounds as
/// when one test ran all 26), judging after every kill: the committed snapshots survive
/// and restore byte for byte, at most this round's snapshot is new, `check` is clean or
/// warns only of unreferenced packs, `repair` sets them aside and loses nothing, and
/// the next ingest succeeds. At the end, `check --read-data` is clean and every snapshot
/// restores with its metadata. Asserts that at least `min_killed` ingests were still
/// running when killed, and returns how many were.
fn kill_9_rounds(mode: u64, min_killed: u64) -> u64 {
    let seed = seed(0x6b69_6c6c);
    let mut rng = Rng::new(seed ^ RNG_SALT);
    let wd = Workdir::new();
    // Only kills at a fraction of the time, and during the commit, need the timings.
    let (mut expected_time, commit_time) = if mode == 0 || mode == 1 {
        calibrate(&wd, seed)
    } else {
        eprintln!("kill: seed {seed}");
        (Duration::ZERO, Duration::ZERO)
    };

    let archive = wd.archive(&[]);
    let mut expected: Vec<Expected> = Vec::new();
    // Snapshots that must survive everything: a tree with every kind of node.
    let full = wd.join("full/src");
    generate_full_tree(&full);
    let s = archive.ingest([&full]);
    expected.push(Expected {
        id: s["snapshot"].as_str().into(),
        source: full,
        name: "src".into(),
    });
    let small = wd.join("small/src");
    generate_plain_tree(&small, 1);

    let (mut killed, mut finished, mut committed_before_kill, mut repairs, mut torn) =
        (0, 0, 0, 0, 0);
    let (mut recovered_by_repair, mut orphan_kills, mut restores) = (0, 0, 0);
    let mut power_cuts = 0;
    let mut timers = [Duration::ZERO; 3];
    // Kills per kind of moment (see below).
    let mut kinds: BTreeMap<u64, u64> = BTreeMap::new();
    // Bugs that do not stop the run: reported together at the end.
    let mut problems = Problems::default();
    let rounds: Vec<u64> = (1..=ROUNDS).filter(|r| r % 4 == mode).collect();
    for &round in &rounds {
        let src = wd.join(format!("rounds/{round}/big"));
        let t = Instant::now();
        write_big_source(&src, round);
        timers[0] += t.elapsed();
        let packs_before = archive.pack_files();
        // Four kinds of moment, in turn: a random fraction of the expected time; as soon
        // as the ingest creates its first pack; when a random fraction of the new bytes is
        // in its packs; and after all of them are, during the commit.
        let mode = round % 4;
        let frac = rng.float(0.02, 0.98);
        let delay = expected_time.mul_f64(frac);
        let commit_wait = commit_time.mul_f64(rng.float(0.0, 1.3));
        let new_bytes = |packs: &[(String, u64)]| -> u64 {
            packs
                .iter()
                .filter(|p| !packs_before.iter().any(|b| b.0 == p.0))
                .map(|p| p.1)
                .sum()
        };
        let mut running = archive
            .cmd("ingest")
            .arg(&src)
            .args(["--label", "big"])
            .spawn();
        let start = Instant::now();
        let mut all_written: Option<Instant> = None;
        loop {
            if !running.is_running() || start.elapsed() > Duration::from_secs(30) {
                break;
            }
            let due = match mode {
                1 => start.elapsed() >= delay,
                2 => archive.pack_files().len() > packs_before.len(),
                3 => new_bytes(&archive.pack_files()) as f64 >= frac * NEW_BYTES as f64,
                _ => {
                    if all_written.is_none() && new_bytes(&archive.pack_files()) >= NEW_BYTES {
                        all_written = Some(Instant::now());
                    }
                    all_written.is_some_and(|t| t.elapsed() >= commit_wait)
                }
            };
            if due {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let was_running = running.is_running();
        let out = running.kill9();
        let elapsed = start.elapsed();
        let ctx = match mode {
            1 => format!(
                "round {round} (kill at {:.0}% of {expected_time:?})",
                frac * 100.0
            ),
            2 => format!("round {round} (kill at pack creation, {elapsed:?})"),
            3 => format!(
                "round {round} (kill at {:.0}% of the new bytes, {elapsed:?})",
                frac * 100.0
            ),
            _ => format!("round {round} (kill {commit_wait:?} after the last data, {elapsed:?})"),
        };
        *kinds.entry(mode).or_insert(0) += u64::from(was_running);
        let round_exp = Expected {
            id: String::new(),
            source: src.clone(),
            name: "big".into(),
        };
        if was_running {
            killed += 1;
        } else {
            finished += 1;
            assert_eq!(
                out.code(),
                Some(0),
                "{ctx}: the ingest ended on its own and failed\n{out}"
            );
            // Kill earlier from now on: the ingests run faster than the calibration.
            expected_time = expected_time.min(elapsed);
        }
        let new_packs: Vec<(String, u64)> = archive
            .pack_files()
            .into_iter()
            .filter(|p| !packs_before.iter().any(|b| b.0 == p.0))
            .collect();
        eprintln!(
            "kill: {ctx}: {}, new packs {new_packs:?}",
            if was_running {
                "killed"
            } else {
                "had finished"
            }
        );

        // Committed snapshots: the earlier ones, plus this round's if it got that far.
        let known: HashSet<String> = expected.iter().map(|e| e.id.clone()).collect();
        let adopt_new = |expected: &mut Vec<Expected>, why: &str| -> usize {
            let ids = archive.snapshot_ids();
            for e in expected.iter() {
                assert!(
                    ids.contains(&e.id),
                    "{ctx}: snapshot {} is gone ({why}): {ids:?}",
                    e.id
                );
            }
            let new: Vec<&String> = ids.iter().filter(|i| !known.contains(*i)).collect();
            assert!(
                new.len() <= 1,
                "{ctx}: unexpected snapshots {new:?} ({why})"
            );
            for id in &new {
                let e = Expected {
                    id: (*id).clone(),
                    ..round_exp.clone()
                };
                assert_restores_identically(&wd, &archive, &e, &format!("r{round}-new"));
                expected.push(e);
            }
            new.len()
        };
        let n = adopt_new(&mut expected, "after the kill");
        if n == 1 && was_running {
            committed_before_kill += 1;
        }
        if !was_running {
            assert_eq!(n, 1, "{ctx}: a finished ingest is listed");
        }
        if n == 0 && !new_packs.is_empty() {
            orphan_kills += 1;
            // Power loss on top of the kill, one time in three: the unsynced end of the
            // newest (uncommitted) pack never reached the disk.
            let (name, len) = new_packs.last().unwrap();
            if *len > PACK_HEADER_LEN + 1 && rng.below(3) == 0 {
                let cut = PACK_HEADER_LEN + rng.below(len - PACK_HEADER_LEN);
                truncate(&archive.path.join("packs").join(name), cut);
                power_cuts += 1;
            }
        }

        // check: clean, or only packs the index does not know (the interrupted session's).
        let (out, report) = archive.check_json(&[]);
        assert_eq!(
            report["errors"].as_u64(),
            0,
            "{ctx}: check finds errors after a kill\n{out}"
        );
        let warnings = report["warnings"].as_u64();
        for f in report["findings"].as_array() {
            assert!(
                f["what"].as_str().contains("not in the index"),
                "{ctx}: check warns about something else than an unreferenced pack\n{out}"
            );
        }
        let ingest_small = |expected: &mut Vec<Expected>| {
            let s = archive.ingest([&small]);
            expected.push(Expected {
                id: s["snapshot"].as_str().into(),
                source: small.clone(),
                name: "src".into(),
            });
        };
        // Every other round, the next ingest runs before the repair (beside the orphans).
        if round % 2 == 1 {
            ingest_small(&mut expected);
        }
        if warnings > 0 {
            // New packs whose header was still in the writer's buffer at the kill.
            let empty_new: Vec<String> = new_packs
                .iter()
                .filter(|(_, len)| *len < PACK_HEADER_LEN)
                .map(|(n, _)| n.clone())
                .collect();
            let t = Instant::now();
            let (rep, unreadable) = archive.repair_after_kill(&empty_new, &ctx);
            timers[1] += t.elapsed();
            // Exit 3 for those is acceptable only as a known bug, reported at the end.
            if !unreadable.is_empty() {
                problems.add(
                    "`strata repair` exits 3 for an empty pack left by kill -9, although nothing was lost",
                    format!("{ctx}: {}", unreadable.join("; ")),
                );
            }
            repairs += 1;
            torn += rep.stderr_str().matches("torn tail of").count();
            let known: HashSet<String> = expected.iter().map(|e| e.id.clone()).collect();
            let ids = archive.snapshot_ids();
            let extra: Vec<&String> = ids.iter().filter(|i| !known.contains(*i)).collect();
            if !extra.is_empty() {
                // A snapshot record written whole before the kill, registered by repair.
                assert!(was_running && n == 0, "{ctx}: repair adds {extra:?}\n{rep}");
                assert_eq!(extra.len(), 1, "{ctx}: repair adds {extra:?}\n{rep}");
                let e = Expected {
                    id: extra[0].clone(),
                    ..round_exp.clone()
                };
                assert_restores_identically(&wd, &archive, &e, &format!("r{round}-repaired"));
                expected.push(e);
                recovered_by_repair += 1;
            }
            for e in &expected {
                assert!(
                    ids.contains(&e.id),
                    "{ctx}: repair lost snapshot {}\n{rep}",
                    e.id
                );
            }
            let (out, report) = archive.check_json(&[]);
            assert!(
                report["findings"].as_array().is_empty(),
                "{ctx}: check after repair must be clean\n{out}"
            );
        }
        let t = Instant::now();
        // Every earlier snapshot, byte for byte (metadata too for the tree with every kind
        // of node; for all of them at the end).
        for (i, e) in expected.iter().enumerate() {
            assert_restores(&wd, &archive, e, &format!("r{round}-{i}"), i == 0);
            restores += 1;
        }
        timers[2] += t.elapsed();
        if round % 2 == 0 {
            ingest_small(&mut expected);
        }
        if !expected.iter().any(|e| e.source == src) {
            fs::remove_dir_all(&src).unwrap();
        }
    }
    // Everything stored reads back: every byte verified, every snapshot restored.
    let (out, report) = archive.check_json(&["--read-data"]);
    assert!(
        report["findings"].as_array().is_empty(),
        "final check --read-data\n{out}"
    );
    for (i, e) in expected.iter().enumerate() {
        assert_restores_identically(&wd, &archive, e, &format!("final-{i}"));
        restores += 1;
    }
    assert_eq!(archive.snapshot_ids().len(), expected.len());
    eprintln!(
        "kill: {} rounds, killed {}: {killed} ingests killed while running ({orphan_kills} left unreferenced \
         packs, {power_cuts} of those also cut as by a power loss), {finished} finished before the kill, \
         {committed_before_kill} killed after their commit; {repairs} repairs set aside {torn} torn tails and \
         registered {recovered_by_repair} whole snapshot(s); {} snapshots, {restores} restores byte-identical, {} \
         verified by the final check --read-data; nothing lost",
        rounds.len(),
        MOMENT_NAMES[mode as usize],
        expected.len(),
        report["bytes_verified"].as_u64()
    );
    eprintln!("kill: time writing sources, repairing, restoring: {timers:?}");
    assert!(
        killed >= min_killed,
        "only {killed} of {} ingests were still running when killed",
        rounds.len()
    );
    problems.assert_none();
    killed
}

// The old single test asked for at least 20 of its 26 ingests to be killed while running
// (it saw 7 of 7, 7 of 7, 6 of 6 and 4 of 6 by kind). Each kind now asks for its own share
// of those 20: every kill at pack creation (7) and at a fraction of the bytes (6) lands
// while the ingest runs by construction; 5 of 7 at a fraction of the time and 2 of 6
// during the commit, where an ingest may finish first. 7 + 6 + 5 + 2 = 20, so every
// outcome that passes all four would have passed the old floor.

#[test]
fn an_ingest_killed_at_a_random_fraction_of_its_time_loses_nothing_committed() {
    kill_9_rounds(1, 5);
}

#[test]
fn an_ingest_killed_when_its_first_pack_appears_loses_nothing_committed() {
    kill_9_rounds(2, 7);
}

#[test]
fn an_ingest_killed_when_a_random_fraction_of_its_bytes_is_written_loses_nothing_committed() {
    kill_9_rounds(3, 6);
}

#[test]
fn an_ingest_killed_during_its_commit_loses_nothing_committed() {
    kill_9_rounds(0, 2);
}

/// The exact state a `kill -9` leaves when it lands just after a pack was created: the
/// pack header is still in the writer's buffer, so the file is empty (seen in the loop
/// above). Nothing was lost, so repair should set it aside and exit 0.
#[test]
fn an_empty_pack_left_by_a_kill_at_pack_creation_is_set_aside_without_a_failure() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = wd.join("src");
    generate_plain_tree(&src, 3);
    let e = Expected {
        id: archive.ingest([&src])["snapshot"].as_str().into(),
        source: src,
        name: "src".into(),
    };
    // The next pack number after every existing pack: one that no index row knows.
    let next = fs::read_dir(archive.path.join("packs"))
        .unwrap()
        .filter_map(|e| {
            u64::from_str_radix(e.ok()?.file_name().to_str()?.strip_suffix(".pack")?, 16).ok()
        })
        .max()
        .unwrap()
        + 1;
    fs::write(archive.path.join(format!("packs/{next:016x}.pack")), b"").unwrap();
    let (out, report) = archive.check_json(&[]);
    assert_eq!(report["errors"].as_u64(), 0, "{out}");
    let rep = archive.cmd("repair").run();
    let (out, report) = archive.check_json(&[]);
    assert!(report["findings"].as_array().is_empty(), "{out}");
    assert_restores_identically(&wd, &archive, &e, "empty-pack");
    assert_eq!(
        rep.code(),
        Some(0),
        "repair must not call an empty pack left by a crash unrecoverable (nothing was lost)\n{rep}"
    );
}

// ---------------------------------------------------------------------------------------
// kill -9 during prune (moved from tests/retention.rs)
// ---------------------------------------------------------------------------------------

/// Five generations (1 and 3 forgotten) and a pack prune must rewrite (keep.bin stays,
/// junk.bin goes with M1), seeded (`STRATA_SEED`, default 65); a copy pruned to the end
/// gives the reference duration, size and pack names. Every round works on its own copy.
struct PruneKill {
    w: Workdir,
    rng: Rng,
    template: Archive,
    template_packs: BTreeSet<String>,
    kept: Vec<(String, PathBuf)>,
    kept_ids: Vec<String>,
    reference: Archive,
    reference_packs: BTreeSet<String>,
    reference_size: u64,
    full: Duration,
}

/// When a round's prune is killed, or which state a kill leaves is made by hand.
#[derive(Clone, Copy, PartialEq)]
enum PruneMoment {
    /// After a seeded delay (0: at once).
    After(u64),
    /// As soon as prune creates its first new pack file.
    AtNewPack,
    /// Emulated: an empty new pack file, as a kill leaves it between the creation of
    /// prune's first new pack and its first write.
    EmptyPack,
    /// Emulated: the archive of a finished prune plus the old packs, as a kill leaves it
    /// after the index switched, before the old packs were deleted.
    OldPacks,
}

impl PruneKill {
    fn new() -> PruneKill {
        let mut rng = seeded_rng(65);
        let w = Workdir::new();
        let template = Archive::init(w.join("template"), &[]);
        let (gens, _) = build_generations(&w, &template, "g", 5, &mut rng);
        // A pack that prune must rewrite: keep.bin stays, junk.bin goes with M1.
        let mix = w.join("src-mix");
        write_random_file(&mix.join("keep.bin"), rng.next_u64(), 24 * MIB + 99);
        write_random_file(&mix.join("junk.bin"), rng.next_u64(), 8 * MIB);
        let m1 = ingest_as(&template, &mix, "data", "mix", &[]);
        fs::remove_file(mix.join("junk.bin")).unwrap();
        let m2 = ingest_as(&template, &mix, "data", "mix", &[]);
        let m2_copy = w.join("copies/mix");
        copy_tree(&mix, &m2_copy);
        template
            .cmd("forget")
            .arg(&gens[1].id)
            .arg(&gens[3].id)
            .arg(&m1)
            .ok();
        let kept: Vec<(String, PathBuf)> = [0, 2, 4]
            .iter()
            .map(|&i| (gens[i].id.clone(), gens[i].copy.clone()))
            .chain([(m2.clone(), m2_copy)])
            .collect();
        let kept_ids = ids(&template);
        assert_eq!(
            set(&kept_ids),
            kept.iter().map(|(i, _)| i.clone()).collect()
        );
        let template_packs = pack_names(&template);

        // A prune that runs to the end: how long it takes, what it leaves.
        let reference = Archive {
            path: w.join("reference"),
        };
        copy_tree(&template.path, &reference.path);
        let t = Instant::now();
        let out = reference.cmd("prune").ok();
        let full = t.elapsed();
        let reference_size = du_packs(&reference);
        let reference_packs = pack_names(&reference);
        eprintln!(
            "uninterrupted prune: {:.3} s, packs {} -> {} bytes\n{}",
            full.as_secs_f64(),
            du_packs(&template),
            reference_size,
            out.stderr_str().trim_end()
        );
        assert!(reference_size < du_packs(&template) - 10 * MIB);
        PruneKill {
            w,
            rng,
            template,
            template_packs,
            kept,
            kept_ids,
            reference,
            reference_packs,
            reference_size,
            full,
        }
    }

    /// Round `round`: a copy of the template, then the kill (or the emulated state).
    /// Returns the copy, the state the kill left, and how long prune ran when it
    /// finished on its own before a delayed kill.
    fn kill(&self, round: usize, moment: PruneMoment) -> (Archive, &'static str, Option<Duration>) {
        let (template_packs, reference_packs) = (&self.template_packs, &self.reference_packs);
        let arch = Archive {
            path: self.w.join(format!("round-{round}")),
        };
        copy_tree(&self.template.path, &arch.path);
        let packs_dir = arch.path.join("packs");
        let mut finished_after = None;
        let state = if moment == PruneMoment::EmptyPack {
            let next = template_packs
                .iter()
                .filter_map(|n| u64::from_str_radix(n.strip_suffix(".pack")?, 16).ok())
                .max()
                .unwrap()
                + 1;
            let name = format!("{next:016x}.pack");
            assert!(
                reference_packs.contains(&name),
                "prune names its first new pack {name}: {reference_packs:?}"
            );
            File::create(packs_dir.join(&name)).unwrap();
            "an empty new pack, as a kill leaves it just after prune creates the file"
        } else if moment == PruneMoment::OldPacks {
            fs::remove_dir_all(&arch.path).unwrap();
            copy_tree(&self.reference.path, &arch.path);
            for p in template_packs.difference(reference_packs) {
                fs::copy(self.template.path.join("packs").join(p), packs_dir.join(p)).unwrap();
            }
            "the index switched but the old packs still there, as a kill leaves it before they are deleted"
        } else {
            let at_new_pack = moment == PruneMoment::AtNewPack;
            let delay = match moment {
                PruneMoment::After(us) => us,
                _ => 0,
            };
            let mut running = arch.cmd("prune").spawn();
            let started = Instant::now();
            let mut was_running = true;
            loop {
                let el = started.elapsed();
                if at_new_pack {
                    let appeared = fs::read_dir(&packs_dir).unwrap().any(|e| {
                        !template_packs.contains(&*e.unwrap().file_name().to_string_lossy())
                    });
                    if appeared {
                        break;
                    }
                } else if el >= Duration::from_micros(delay) {
                    break;
                }
                if !running.is_running() {
                    was_running = false;
                    if !at_new_pack {
                        finished_after = Some(el);
                    }
                    break;
                }
                if !at_new_pack {
                    // Wake up at the moment, or every 0.5 ms to see whether prune finished.
                    let left = Duration::from_micros(delay).saturating_sub(el);
                    std::thread::sleep(left.min(Duration::from_micros(500)));
                }
            }
            let was_running = was_running && running.is_running();
            let killed = running.kill9();
            let now = pack_names(&arch);
            if !was_running {
                assert!(
                    killed.status.success(),
                    "round {round}: prune failed on its own\n{killed}"
                );
                "finished before the kill"
            } else if now == *template_packs {
                "killed before writing anything"
            } else if now == *reference_packs {
                "killed after its last step"
            } else if template_packs.iter().any(|p| !now.contains(p)) {
                "killed while deleting old packs"
            } else {
                "killed after writing new packs"
            }
        };
        (arch, state, finished_after)
    }

    /// What must hold after any kill: `check` clean, or clean after a `repair` that
    /// exits 0 (exit 3 for empty new packs is collected in `problems`); the same
    /// snapshot list; every kept snapshot restores byte-identical; the next prune
    /// completes, `check --read-data` is clean, and the packs are within 1% + 64 KiB of
    /// the uninterrupted prune's. Returns whether repair ran. Removes the copy.
    fn judge(
        &self,
        round: usize,
        moment: PruneMoment,
        state: &str,
        arch: &Archive,
        problems: &mut Vec<String>,
    ) -> bool {
        let (w, kept, kept_ids) = (&self.w, &self.kept, &self.kept_ids);
        let (template_packs, reference_size) = (&self.template_packs, self.reference_size);
        let moment = match moment {
            PruneMoment::EmptyPack | PruneMoment::OldPacks => "emulated".to_string(),
            PruneMoment::AtNewPack => "at its first new pack".to_string(),
            PruneMoment::After(delay) => format!("after {delay} us"),
        };
        let ctx = format!("round {round} (kill {moment}, {state})");
        // New pack files shorter than a pack header: nothing was written into them yet.
        let empty_new: Vec<String> = arch
            .pack_files()
            .into_iter()
            .filter(|(n, len)| !template_packs.contains(n) && *len < PACK_HEADER_LEN)
            .map(|(n, _)| n)
            .collect();

        // check; if it finds anything, repair, and then check must be clean.
        let (out, report) = arch.check_json(&[]);
        let mut note = String::new();
        if out.code() != Some(0) || report["errors"].as_u64() > 0 || report["warnings"].as_u64() > 0
        {
            // Exit 3 says "partial: some paths unreadable or damaged". Tolerated only for
            // the empty new packs, to go on testing, and reported at the end.
            let (r, unreadable) = arch.repair_after_kill(&empty_new, &ctx);
            if !unreadable.is_empty() {
                problems.push(format!(
                    "{ctx}: `strata repair` exits 3 for an empty pack left by kill -9, though nothing was lost:\n{}",
                    unreadable.join("\n")
                ));
            }
            note = format!(
                "; check found {} error(s), {} warning(s), repair: {}",
                report["errors"].as_u64(),
                report["warnings"].as_u64(),
                r.stderr_str().lines().next().unwrap_or("")
            );
            let (out, after) = arch.check_json(&[]);
            assert!(
                out.code() == Some(0) && after["errors"].as_u64() == 0,
                "{ctx}: check after repair is not clean:\n{after}\nbefore repair:\n{report}\nrepair:\n{r}"
            );
        }
        eprintln!(
            "round {round}: kill {moment}: {state}{}{note}",
            if empty_new.is_empty() {
                ""
            } else {
                " (an empty new pack)"
            }
        );
        assert_eq!(ids(arch), *kept_ids, "{ctx}: the snapshot list changed");
        for (n, (id, copy)) in kept.iter().enumerate() {
            let target = w.join(format!("restore-{round}-{n}"));
            assert_generation_restores(arch, id, copy, &target);
        }

        // The next prune completes, and the archive ends up as small as after a clean prune.
        arch.cmd("prune").ok();
        assert_check_clean(arch, true, &format!("round {round}: after the next prune"));
        let size = du_packs(arch);
        assert!(
            size <= reference_size + 64 * KIB + reference_size / 100,
            "{ctx}: after the kill, {}prune the packs take \
             {size} bytes, an uninterrupted prune leaves {reference_size}",
            if note.is_empty() { "" } else { "repair " }
        );
        assert_eq!(ids(arch), *kept_ids);
        // After a repair, the snapshots are restored once more after the prune too.
        if round == 0 || !note.is_empty() {
            for (n, (id, copy)) in kept.iter().enumerate() {
                assert_generation_restores(arch, id, copy, &w.join(format!("final-{n}")));
            }
        }
        fs::remove_dir_all(&arch.path).unwrap();
        !note.is_empty()
    }

    /// One round with a fixed moment, judged; asserts no problem was found.
    fn one_round(&self, round: usize, moment: PruneMoment) {
        let mut problems = Vec::new();
        let (arch, state, _) = self.kill(round, moment);
        self.judge(round, moment, state, &arch, &mut problems);
        assert_no_prune_problems(&problems);
    }
}

fn assert_no_prune_problems(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// Rounds 0 to 3 were the fixed rounds of one test; they keep their numbers. Rounds 1 and 2
// do not run prune: they make the states a kill leaves in two windows of a few
// milliseconds that random kills hit only now and then, so these states are tested on
// every run.

#[test]
fn a_prune_killed_at_once_loses_no_kept_byte_and_the_next_prune_completes() {
    PruneKill::new().one_round(0, PruneMoment::After(0));
}

#[test]
fn an_empty_new_pack_left_by_a_prune_killed_at_pack_creation_loses_no_kept_byte() {
    PruneKill::new().one_round(1, PruneMoment::EmptyPack);
}

#[test]
fn old_packs_left_by_a_prune_killed_after_its_index_switch_lose_no_kept_byte() {
    PruneKill::new().one_round(2, PruneMoment::OldPacks);
}

#[test]
fn a_prune_killed_when_its_first_new_pack_appears_loses_no_kept_byte() {
    PruneKill::new().one_round(3, PruneMoment::AtNewPack);
}

#[test]
fn prune_killed_at_random_moments_loses_no_kept_byte_and_the_next_prune_completes() {
    let mut fx = PruneKill::new();
    // Seeded moments within a window that starts at the measured duration and shrinks to
    // the shortest prune seen finishing on its own. Rounds go on until at least 10 kills
    // landed while prune ran, one of them after it had written new packs (rounds 4 to 39;
    // the fixed rounds 0 to 3 have their own tests and no longer count towards the 10).
    const MIN_MID_RUN: usize = 10;
    const MAX_ROUNDS: usize = 40;
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    let mut repaired = 0;
    let mut problems: Vec<String> = Vec::new();
    let mut window_us = (fx.full.as_micros() as u64).max(2_000);
    let mut round = 4;
    let mid_run = |t: &BTreeMap<&str, usize>| -> (usize, usize) {
        let all = t
            .iter()
            .filter(|(k, _)| k.starts_with("killed"))
            .map(|(_, n)| n)
            .sum();
        let late = t
            .iter()
            .filter(|(k, _)| k.starts_with("killed") && !k.contains("before writing"))
            .map(|(_, n)| n)
            .sum();
        (all, late)
    };
    loop {
        let (all, late) = mid_run(&tally);
        if round >= 10 && all >= MIN_MID_RUN && late >= 1 {
            break;
        }
        assert!(
            round < MAX_ROUNDS,
            "after {round} rounds only {all} kills landed while prune ran ({late} after it wrote \
             new packs): {tally:?}; the test cannot hit prune"
        );
        let moment = PruneMoment::After(fx.rng.range(0, window_us));
        let (arch, state, finished_after) = fx.kill(round, moment);
        if let Some(el) = finished_after {
            window_us = window_us.min((el.as_micros() as u64).max(2_000));
        }
        *tally.entry(state).or_default() += 1;
        if fx.judge(round, moment, state, &arch, &mut problems) {
            repaired += 1;
        }
        round += 1;
    }
    eprintln!(
        "kill moments: {tally:?}; repaired {repaired} of {} random rounds",
        round - 4
    );
    assert_no_prune_problems(&problems);
}
