//! Integrity: every fault of issue 5, injected for real, and what strata must do about it.
//!
//! - `kill -9` of an ingest at random moments (seeded): `check` clean or only unreferenced
//!   packs, which `repair` indexes; every earlier snapshot restores byte for byte; the
//!   next ingest succeeds.
//! - A full disk (a size-limited tmpfs mounted by the test) at many fill levels.
//! - `index.sqlite` deleted, emptied, cut in half, overwritten, or stale.
//! - Bytes flipped in packs: `check --read-data`, `restore` and a real FUSE mount.
//! - A pack cut at every record boundary and inside every record.
//! - Two writers; a writer beside a mount and a restore.
//! - Unreadable and vanishing source paths, with and without `--strict`.
//! - A proptest fuzz over every record decoder, with an allocation bound.
//!
//! Each test prints its figures (`eprintln!`, see them with `--nocapture`); they are
//! copied into docs/RELIABILITY.md. `STRATA_SEED=N` replays another seed.

mod common;
#[path = "common/faults.rs"]
mod faults;

use common::*;
use faults::*;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
/// Mixed into every seed, so the seeds this file printed keep replaying the same faults.
const RNG_SALT: u64 = 0x05ee_d0f5_7a7a;

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

/// A committed snapshot and the source tree it must restore to.
#[derive(Clone, Debug)]
struct Expected {
    id: String,
    source: PathBuf,
    /// The name of the source inside the snapshot.
    name: String,
}

/// `strata restore ID TARGET`, then `diff -r` and a `find -printf` metadata comparison
/// with the source.
fn assert_restores_identically(wd: &Workdir, archive: &Archive, e: &Expected, tag: &str) {
    assert_restores(wd, archive, e, tag, true);
}

/// `strata restore ID TARGET` and `diff -r` with the source; with `metadata`, also the
/// `find -printf` comparison of modes, owners, sizes, mtimes, link counts and targets.
fn assert_restores(wd: &Workdir, archive: &Archive, e: &Expected, tag: &str, metadata: bool) {
    let target = wd.join(format!("verify-{tag}"));
    let _ = fs::remove_dir_all(&target);
    archive.restore(&e.id, &target);
    assert_diff_clean(&e.source, &target.join(&e.name));
    if metadata {
        assert_same_metadata(&e.source, &target.join(&e.name));
    }
    fs::remove_dir_all(&target).unwrap();
}

/// Exit 1 with one `strata: error: ` line and at most one `hint: ` line.
fn assert_typed_error(out: &Out) {
    let err = out.stderr_str();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        out.code() == Some(1)
            && !lines.is_empty()
            && lines[0].starts_with("strata: error: ")
            && lines.len() <= 2
            && (lines.len() == 1 || lines[1].starts_with("hint: ")),
        "expected exit 1 with one `strata: error:` line (and at most a `hint:`)\n{out}"
    );
}

/// Every `damages` path of a `check --json` report.
fn damaged_paths(report: &Json) -> BTreeSet<String> {
    report["findings"]
        .as_array()
        .iter()
        .flat_map(|f| {
            f["damages"]
                .as_array()
                .iter()
                .map(|d| d.as_str().to_string())
        })
        .collect()
}

fn finding_lines(report: &Json) -> String {
    report["findings"]
        .as_array()
        .iter()
        .map(|f| {
            format!(
                "  {}: {} ({})",
                f["severity"].as_str(),
                f["what"].as_str(),
                f["where"].as_str()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Lines of `strata repair` stderr that start with `prefix` (after indentation): the
/// short snapshot id that follows.
fn repair_ids(stderr: &str, prefix: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(prefix))
        .map(|rest| rest.trim_start().chars().take(8).collect())
        .collect()
}

// =======================================================================================
// 1. kill -9 at random moments
// =======================================================================================

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

#[test]
fn kill_9_at_random_moments_of_an_ingest_loses_nothing_committed() {
    const ROUNDS: u64 = 26;
    let seed = seed(0x6b69_6c6c);
    let mut rng = Rng::new(seed ^ RNG_SALT);
    let wd = Workdir::new();

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
    for round in 1..=ROUNDS {
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
        "kill: {ROUNDS} rounds: {killed} ingests killed while running ({} at a fraction of the time, {} at pack \
         creation, {} at a fraction of the bytes, {} during the commit; {orphan_kills} left unreferenced packs, \
         {power_cuts} of those also cut as by a power loss), \
         {finished} finished before the kill, {committed_before_kill} killed after their commit; \
         {repairs} repairs set aside {torn} torn tails and registered {recovered_by_repair} whole snapshot(s); \
         {} snapshots, {restores} restores byte-identical, {} verified by the final check --read-data; nothing lost",
        kinds.get(&1).unwrap_or(&0),
        kinds.get(&2).unwrap_or(&0),
        kinds.get(&3).unwrap_or(&0),
        kinds.get(&0).unwrap_or(&0),
        expected.len(),
        report["bytes_verified"].as_u64()
    );
    eprintln!("kill: time writing sources, repairing, restoring: {timers:?}");
    assert!(
        killed >= 20,
        "only {killed} of {ROUNDS} ingests were still running when killed"
    );
    problems.assert_none();
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

// =======================================================================================
// 3. index.sqlite deleted, emptied, cut, overwritten or stale
// =======================================================================================

/// An archive with four snapshots of different labels, tags and source kinds, one of
/// them with 600 small files (so the index spans many pages). Returns the archive, the
/// expected restores, and a copy of the index taken before the last ingest.
fn archive_with_four_snapshots(wd: &Workdir) -> (Archive, Vec<Expected>, PathBuf) {
    let archive = wd.archive(&[]);
    let mut expected = Vec::new();
    let mut add = |src: PathBuf, args: &[&str], stdin: Option<&[u8]>| {
        let mut c = archive
            .cmd("ingest")
            .arg(format!("{}:src", src.display()))
            .args(args)
            .arg("--json");
        if let Some(b) = stdin {
            c = c.stdin(b.to_vec());
        }
        let s = c.ok().json();
        expected.push(Expected {
            id: s["snapshot"].as_str().into(),
            source: src,
            name: "src".into(),
        });
    };
    let full = wd.join("full");
    generate_full_tree(&full);
    add(full, &["--label", "structr", "--tag", "nightly"], None);
    let p1 = wd.join("p1");
    generate_plain_tree(&p1, 11);
    add(
        p1,
        &["--label", "jira", "--stdin-as", "db/dump.sql"],
        Some(b"CREATE TABLE t(x);\n"),
    );
    let many = wd.join("many");
    for i in 0..600 {
        write_file(
            &many.join(format!("d{}/f{i:04}.txt", i % 7)),
            format!("file {i}\n").as_bytes(),
        );
    }
    stamp_mtimes(&many);
    add(
        many,
        &["--label", "jira", "--tag", "weekly", "--tag", "x"],
        None,
    );
    let stale = wd.join("stale-index");
    fs::create_dir_all(&stale).unwrap();
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        if archive.path.join(f).exists() {
            fs::copy(archive.path.join(f), stale.join(f)).unwrap();
        }
    }
    let p2 = wd.join("p2");
    generate_plain_tree(&p2, 12);
    add(
        p2,
        &[
            "--label",
            "confluence",
            "--cmd",
            "echo from a command",
            "--as",
            "cmd/out.txt",
        ],
        None,
    );
    (archive, expected, stale)
}

/// `ls -R --json` of every snapshot, by id.
fn listings(archive: &Archive, expected: &[Expected]) -> Vec<String> {
    expected
        .iter()
        .map(|e| {
            archive
                .cmd("ls")
                .arg(&e.id)
                .args(["-R", "--json"])
                .ok()
                .stdout_str()
        })
        .collect()
}

#[test]
fn a_lost_or_damaged_index_is_named_with_a_repair_hint_and_rebuilt_from_the_packs() {
    let wd = Workdir::new();
    let (pristine, expected, stale) = archive_with_four_snapshots(&wd);
    let catalog = pristine.cmd("snapshots").arg("--json").ok().stdout_str();
    let lists = listings(&pristine, &expected);
    let index_len = fs::metadata(pristine.path.join("index.sqlite"))
        .unwrap()
        .len();
    let mut rng = Rng::new(seed(0x1dec5) ^ RNG_SALT);

    type Damage = fn(&Path, u64, &mut Rng, &Path);
    let damages: [(&str, Damage); 6] = [
        ("deleted", |a, _, _, _| {
            for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
                let _ = fs::remove_file(a.join(f));
            }
        }),
        ("truncated to 0 bytes", |a, _, _, _| {
            truncate(&a.join("index.sqlite"), 0)
        }),
        ("truncated to half", |a, len, _, _| {
            truncate(&a.join("index.sqlite"), len / 2)
        }),
        ("overwritten with garbage", |a, len, rng, _| {
            let bytes = random_bytes(rng.next_u64(), len as usize);
            fs::write(a.join("index.sqlite"), bytes).unwrap();
        }),
        ("its first 100 bytes overwritten", |a, _, rng, _| {
            use std::os::unix::fs::FileExt;
            let f = fs::OpenOptions::new()
                .write(true)
                .open(a.join("index.sqlite"))
                .unwrap();
            f.write_all_at(&random_bytes(rng.next_u64(), 100), 0)
                .unwrap();
        }),
        ("replaced by a stale copy", |a, _, _, stale| {
            for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
                let _ = fs::remove_file(a.join(f));
                if stale.join(f).exists() {
                    fs::copy(stale.join(f), a.join(f)).unwrap();
                }
            }
        }),
    ];

    let (mut refused, mut repaired, mut restored) = (0, 0, 0);
    for (n, (what, damage)) in damages.iter().enumerate() {
        let archive = Archive {
            path: wd.join(format!("case-{n}")),
        };
        copy_tree(&pristine.path, &archive.path);
        damage(&archive.path, index_len, &mut rng, &stale);
        let last = &expected[expected.len() - 1];
        let target = wd.join(format!("target-{n}"));
        let runs = [
            archive.cmd("snapshots").run(),
            archive.cmd("ls").arg(&expected[0].id).run(),
            archive
                .cmd("restore")
                .arg(&expected[0].id)
                .arg(&target)
                .run(),
            archive
                .cmd("cat")
                .arg(format!("{}:src/a.txt", last.id))
                .run(),
            archive.cmd("check").run(),
        ];
        if *what == "replaced by a stale copy" {
            // Every command works on what the stale index knows; the newest snapshot is
            // missing until repair, and check says so and names the fix.
            let listed = archive.snapshot_ids();
            assert_eq!(
                listed,
                expected[..3]
                    .iter()
                    .map(|e| e.id.clone())
                    .collect::<Vec<_>>()
            );
            assert_eq!(runs[0].code(), Some(0), "{what}\n{}", runs[0]);
            let (out, report) = archive.check_json(&[]);
            assert_eq!(report["errors"].as_u64(), 0, "{what}\n{out}");
            assert!(
                report["warnings"].as_u64() >= 1 && out.stderr_str().contains("strata repair"),
                "{what}: check must warn about the pack the index does not know and name `strata repair`\n{out}"
            );
            fs::remove_dir_all(&target).unwrap();
        } else {
            for out in &runs {
                assert_typed_error(out);
                let err = out.stderr_str();
                assert!(
                    err.lines().next().unwrap().contains("index.sqlite"),
                    "index {what}: the error must name index.sqlite\n{out}"
                );
                assert!(
                    err.lines()
                        .nth(1)
                        .is_some_and(|h| h.contains("strata repair")),
                    "index {what}: the hint must name `strata repair`\n{out}"
                );
                refused += 1;
            }
            assert!(
                !target.exists() || fs::read_dir(&target).unwrap().next().is_none(),
                "index {what}: a refused restore wrote into its target"
            );
        }

        let rep = archive.cmd("repair").run();
        assert_eq!(
            rep.code(),
            Some(0),
            "repair after the index was {what}\n{rep}"
        );
        repaired += 1;
        let after = archive.cmd("snapshots").arg("--json").ok().stdout_str();
        assert_eq!(
            Json::parse(&after).unwrap(),
            Json::parse(&catalog).unwrap(),
            "index {what}: after repair the catalogue (ids, times, labels, tags, sources, counts) must be as before"
        );
        assert_eq!(
            listings(&archive, &expected),
            lists,
            "index {what}: ls -R after repair"
        );
        for (i, e) in expected.iter().enumerate() {
            assert_restores_identically(&wd, &archive, e, &format!("{n}-{i}"));
            restored += 1;
        }
        assert_eq!(
            archive.cat(format!("{}:db/dump.sql", expected[1].id)),
            b"CREATE TABLE t(x);\n"
        );
        assert_eq!(
            archive.cat(format!("{}:cmd/out.txt", last.id)),
            b"from a command\n"
        );
        let (out, report) = archive.check_json(&["--read-data"]);
        assert!(
            report["findings"].as_array().is_empty(),
            "index {what}: check after repair\n{out}"
        );
        // And the archive takes new snapshots again.
        let s = archive.ingest([wd.join("p1")]);
        assert_eq!(
            archive.snapshot_ids().last().unwrap(),
            s["snapshot"].as_str()
        );
        fs::remove_dir_all(&archive.path).unwrap();
    }
    eprintln!(
        "index: {} kinds of index damage; {refused} commands refused with a one-line error and a `strata repair` hint; \
         {repaired} repairs, each recovering all {} snapshots with the same ids, times, labels and tags; \
         {restored} restores byte-identical",
        damages.len(),
        expected.len()
    );
}

// =======================================================================================
// 4. Bytes flipped in packs
// =======================================================================================

/// Two snapshots (`data` in each) of files of every size class: tiny ones stored raw,
/// compressible ones in several zstd chunks, incompressible ones in several raw chunks, a
/// copy (every chunk shared) and an extended copy (the first chunks shared); the second
/// snapshot changes some files and keeps the rest (shared across snapshots).
fn flip_sources(wd: &Workdir) -> [PathBuf; 2] {
    let s1 = wd.join("s1");
    for i in 0..10u64 {
        write_file(
            &s1.join(format!("text/t{i}.txt")),
            format!("tiny {i}\n").as_bytes(),
        );
    }
    for i in 0..8u64 {
        let lines: String = (0..(3_000 + i * 1_500))
            .map(|n| format!("document {i} line {n}: all work and no play\n"))
            .collect();
        write_file(&s1.join(format!("docs/d{i}.txt")), lines.as_bytes());
    }
    for i in 0..8u64 {
        write_file(
            &s1.join(format!("bin/r{i}.bin")),
            &random_bytes(500 + i, 100_000 + i as usize * 50_000),
        );
    }
    fs::create_dir_all(s1.join("dup")).unwrap();
    fs::copy(s1.join("docs/d0.txt"), s1.join("dup/copy-of-d0.txt")).unwrap();
    let mut ext = fs::read(s1.join("bin/r3.bin")).unwrap();
    ext.extend(random_bytes(900, 200_000));
    write_file(&s1.join("dup/r3-extended.bin"), &ext);
    let s2 = wd.join("s2");
    copy_tree(&s1, &s2);
    for i in [1u64, 4, 6] {
        let p = s2.join(format!("docs/d{i}.txt"));
        let mut b = fs::read(&p).unwrap();
        b.extend_from_slice(format!("changed in the second snapshot {i}\n").as_bytes());
        fs::write(&p, b).unwrap();
    }
    write_file(&s2.join("bin/new-a.bin"), &random_bytes(950, 300_000));
    write_file(&s2.join("new.txt"), b"new in the second snapshot\n");
    stamp_mtimes(&s1);
    stamp_mtimes(&s2);
    [s1, s2]
}

/// The paths restore names as damaged (the lines under its "NOT restored" heading).
fn restore_damaged_list(out: &Out) -> BTreeSet<String> {
    let err = out.stderr_str();
    let mut lines = err.lines().skip_while(|l| !l.contains("NOT restored"));
    lines.next();
    lines
        .filter_map(|l| l.strip_prefix("    "))
        .filter_map(|l| l.split_once(": ").map(|(p, _)| p.to_string()))
        .collect()
}

#[test]
fn flipped_pack_bytes_are_named_by_check_refused_by_restore_and_eio_through_the_mount() {
    require_fuse();
    let wd = Workdir::new();
    let sources = flip_sources(&wd);
    let pristine = wd.archive(&["--chunk-size", "64K"]);
    for s in &sources {
        pristine.ingest([format!("{}:data", s.display())]);
    }
    let contents = snapshot_contents(&pristine.path);
    assert_eq!(contents.len(), 2);
    let originals: Vec<BTreeMap<String, Vec<u8>>> = sources.iter().map(|s| read_files(s)).collect();
    let packs: Vec<(PathBuf, Vec<PackRecord>)> = pack_paths(&pristine.path)
        .into_iter()
        .map(|p| {
            let recs = pack_records(&fs::read(&p).unwrap());
            (p, recs)
        })
        .collect();
    let chunks: Vec<(usize, &PackRecord)> = packs
        .iter()
        .enumerate()
        .flat_map(|(i, (_, recs))| recs.iter().filter(|r| r.kind == 1).map(move |r| (i, r)))
        .collect();
    let seed0 = seed(0xf11b);
    let (mut flipped_bytes, mut damaged_records, mut damaged_files, mut intact_files) =
        (0, 0, 0, 0);
    let (mut eio_reads, mut good_reads) = (0, 0);
    for seed in seed0..seed0 + 5 {
        let mut rng = Rng::new(seed ^ RNG_SALT);
        let archive = Archive {
            path: wd.join(format!("flipped-{seed}")),
        };
        copy_tree(&pristine.path, &archive.path);
        // Three records, each with one to three flipped bytes; in odd seeds one of the
        // flips lands in a record header instead of the stored bytes.
        let mut hit: HashSet<strata::format::BlobId> = HashSet::new();
        while hit.len() < 3 {
            let (p, rec) = chunks[rng.below(chunks.len() as u64) as usize];
            if !hit.insert(rec.id) {
                continue;
            }
            let pack = archive
                .path
                .join("packs")
                .join(packs[p].0.file_name().unwrap());
            for _ in 0..1 + rng.below(3) {
                let at = if seed % 2 == 1 && hit.len() == 1 {
                    rec.offset + rng.below(BLOB_HEADER_LEN)
                } else {
                    rec.data_start() + rng.below(rec.stored_len)
                };
                flip_byte(&pack, at, rng.nonzero_byte());
                flipped_bytes += 1;
            }
        }
        damaged_records += hit.len();
        let mut expected: BTreeSet<String> = BTreeSet::new();
        let mut per_snapshot: Vec<BTreeSet<String>> = Vec::new();
        for c in &contents {
            let bad: BTreeSet<String> = c
                .files
                .iter()
                .filter(|(_, ids)| ids.iter().any(|id| hit.contains(id)))
                .map(|(p, _)| p.clone())
                .collect();
            expected.extend(bad.iter().map(|p| format!("{}:/{p}", c.short)));
            per_snapshot.push(bad);
        }

        // check --read-data names exactly those files, one error per damaged record.
        let (out, report) = archive.check_json(&["--read-data"]);
        assert_eq!(
            out.code(),
            Some(5),
            "seed {seed}: check must find the damage\n{out}"
        );
        assert_eq!(
            damaged_paths(&report),
            expected,
            "seed {seed}: check --read-data must name exactly the files whose chunks were flipped\n{out}"
        );
        assert_eq!(
            report["errors"].as_u64(),
            hit.len() as u64,
            "seed {seed}: one error per damaged record\n{}",
            finding_lines(&report)
        );

        // restore: every other file byte for byte, the damaged ones named and absent, exit 3.
        for (k, c) in contents.iter().enumerate() {
            let target = wd.join(format!("restore-{seed}-{k}"));
            let damaged_here = !per_snapshot[k].is_empty();
            let out = archive
                .cmd("restore")
                .arg(c.id.hex())
                .arg(&target)
                .code(if damaged_here { 3 } else { 0 });
            assert_eq!(
                restore_damaged_list(&out),
                per_snapshot[k],
                "seed {seed}: restore's list\n{out}"
            );
            let restored = read_files(&target);
            for (path, bytes) in &originals[k] {
                let in_snapshot = format!("data/{path}");
                if per_snapshot[k].contains(&in_snapshot) {
                    assert!(
                        !restored.contains_key(&in_snapshot),
                        "seed {seed}: damaged {in_snapshot} was written anyway"
                    );
                    damaged_files += 1;
                } else {
                    assert!(
                        restored.get(&in_snapshot) == Some(bytes),
                        "seed {seed}: {in_snapshot} is not restored byte for byte"
                    );
                    intact_files += 1;
                }
            }
            fs::remove_dir_all(&target).unwrap();
        }

        // Through a real mount: EIO for exactly the damaged files, the right bytes for all
        // the others.
        let mnt = wd.join(format!("mnt-{seed}"));
        let mount = DaemonMount::start(
            &archive.path,
            &mnt,
            &[],
            &wd.join(format!("mount-{seed}.log")),
        );
        for (k, c) in contents.iter().enumerate() {
            let root = mount.dir.join("by-id").join(c.id.hex());
            for (path, bytes) in &originals[k] {
                let in_snapshot = format!("data/{path}");
                let got = fs::read(root.join(&in_snapshot));
                if per_snapshot[k].contains(&in_snapshot) {
                    let e = got.expect_err("a damaged file must not read");
                    assert_eq!(
                        e.raw_os_error(),
                        Some(libc::EIO),
                        "seed {seed}: reading damaged {in_snapshot} through the mount: {e}"
                    );
                    eio_reads += 1;
                } else {
                    assert!(
                        got.as_ref().ok() == Some(bytes),
                        "seed {seed}: {in_snapshot} through the mount: {:?}",
                        got.map(|b| b.len())
                    );
                    good_reads += 1;
                }
            }
        }
        drop(mount);
        fs::remove_dir_all(&archive.path).unwrap();
    }
    eprintln!(
        "flip: 5 seeds, {flipped_bytes} bytes flipped in {damaged_records} records; check --read-data named exactly \
         the {damaged_files} damaged files; restore refused them and restored {intact_files} others byte for byte; \
         the mount gave EIO {eio_reads} times and the right bytes {good_reads} times; no wrong byte returned"
    );
}

// =======================================================================================
// 5. A pack cut at every record boundary and inside every record
// =======================================================================================

#[test]
fn a_pack_cut_anywhere_never_panics_and_repair_keeps_every_snapshot_whose_data_survived() {
    let wd = Workdir::new();
    let pristine = wd.archive(&[]);
    // Three snapshots, one pack each (a small file, a 150 kB one in a subdirectory, three
    // trees, the snapshot record); the second and third share a chunk with the first.
    let mut expected = Vec::new();
    for i in 0..3u64 {
        let src = wd.join(format!("src{i}"));
        write_file(&src.join("a.txt"), format!("snapshot {i}\n").as_bytes());
        write_file(&src.join("sub/b.bin"), &random_bytes(700 + i, 150_000));
        if i > 0 {
            fs::copy(wd.join("src0/sub/b.bin"), src.join("shared.bin")).unwrap();
        }
        stamp_mtimes(&src);
        let s = pristine.ingest([format!("{}:src", src.display())]);
        expected.push(Expected {
            id: s["snapshot"].as_str().into(),
            source: src,
            name: "src".into(),
        });
    }
    let contents = snapshot_contents(&pristine.path);
    let packs: Vec<(PathBuf, Vec<u8>)> = pack_paths(&pristine.path)
        .into_iter()
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    // Each snapshot wrote a data pack and then a metadata pack (trees and its record).
    assert_eq!(
        packs.len(),
        2 * expected.len(),
        "a data pack and a metadata pack per snapshot"
    );
    let all_ids: Vec<String> = expected.iter().map(|e| e.id.clone()).collect();

    let (mut cuts, mut runs, mut recovered_total, mut lost_total, mut restores) = (0, 0, 0, 0, 0);
    let mut named_lost = 0;
    let mut problems = Problems::default();
    for (p, (pack_path, bytes)) in packs.iter().enumerate() {
        let records = pack_records(bytes);
        let mut at: BTreeSet<u64> = [0, 10, 23, 24].into_iter().collect();
        for r in &records {
            at.extend([
                r.offset,
                r.offset + 10,
                r.data_start(),
                r.data_start() + r.stored_len / 2,
            ]);
        }
        at.insert(bytes.len() as u64 - 1);
        at.retain(|&c| c < bytes.len() as u64);
        let name = pack_path.file_name().unwrap();
        for cut in at {
            cuts += 1;
            let ctx = format!(
                "packs/{} cut at {cut} of {}",
                name.to_string_lossy(),
                bytes.len()
            );
            let archive = Archive {
                path: wd.join(format!("cut-{p}-{cut}")),
            };
            copy_tree(&pristine.path, &archive.path);
            truncate(&archive.path.join("packs").join(name), cut);

            // What survives: every blob of the other packs, and the records of this one
            // that end at or before the cut (none when the pack header itself is cut).
            let mut surviving: HashSet<strata::format::BlobId> = HashSet::new();
            for (q, (_, b)) in packs.iter().enumerate() {
                for r in pack_records(b) {
                    if q != p || (cut >= PACK_HEADER_LEN && r.end() <= cut) {
                        surviving.insert(r.id);
                    }
                }
            }
            let survives: Vec<bool> = contents
                .iter()
                .map(|c| c.blobs.is_subset(&surviving))
                .collect();
            let record_survives: Vec<bool> =
                contents.iter().map(|c| surviving.contains(&c.id)).collect();
            // Restoring through the index needs the trees and chunks, not the record.
            let data_survives: Vec<bool> = contents
                .iter()
                .map(|c| c.blobs.iter().all(|b| *b == c.id || surviving.contains(b)))
                .collect();

            // Before repair: no panic (checked by every run), typed errors, and check says
            // the pack is shorter than the index expects.
            let (out, _) = archive.check_json(&[]);
            assert_eq!(
                out.code(),
                Some(5),
                "{ctx}: check must report the cut pack\n{out}"
            );
            runs += 1;
            for (k, e) in expected.iter().enumerate() {
                if k == p / 2 {
                    let ls = archive.cmd("ls").arg(&e.id).arg("-R").run();
                    if ls.code() != Some(0) {
                        assert_typed_error(&ls);
                    }
                    runs += 1;
                }
                let target = wd.join(format!("t-{p}-{cut}-{k}"));
                let r = archive.cmd("restore").arg(&e.id).arg(&target).run();
                match r.code() {
                    Some(0) => assert!(
                        data_survives[k],
                        "{ctx}: a snapshot that lost data restored with exit 0\n{r}"
                    ),
                    Some(3) => assert!(
                        !restore_damaged_list(&r).is_empty(),
                        "{ctx}: exit 3 names no file\n{r}"
                    ),
                    _ => assert_typed_error(&r),
                }
                if r.code() != Some(1) && data_survives[k] {
                    assert_diff_clean(&e.source, &target.join("src"));
                }
                let _ = fs::remove_dir_all(&target);
                runs += 1;
            }

            // repair: exit 0 when everything survived, else 3 naming what was not recovered.
            let rep = archive.cmd("repair").run();
            runs += 1;
            let all_survive = survives.iter().all(|s| *s);
            // Known gap, reported at the end: when only snapshots whose records were cut
            // off are lost (a pack cut inside its header is taken for one a crash left
            // empty), repair cannot tell from the packs and exits 0.
            let silent_only = (0..contents.len()).all(|k| survives[k] || !record_survives[k]);
            if !all_survive && silent_only && rep.code() == Some(0) {
                problems.add(
                    "`strata repair` exits 0 although committed snapshots were lost",
                    format!("{ctx}\n{rep}"),
                );
            } else {
                assert_eq!(
                    rep.code(),
                    Some(if all_survive { 0 } else { 3 }),
                    "{ctx}: repair's exit code (survivors {survives:?})\n{rep}"
                );
            }
            let err = rep.stderr_str();
            let recovered = repair_ids(&err, "recovered ");
            let not_recovered = repair_ids(&err, "NOT recovered ");
            for (k, c) in contents.iter().enumerate() {
                if survives[k] {
                    assert!(
                        recovered.contains(&c.short),
                        "{ctx}: {} survived but is not recovered\n{rep}",
                        c.short
                    );
                } else if record_survives[k] {
                    assert!(
                        not_recovered.contains(&c.short),
                        "{ctx}: {} lost data and must be listed as NOT recovered\n{rep}",
                        c.short
                    );
                    named_lost += 1;
                } else if !err.contains(&c.short) {
                    // Its snapshot record itself was cut off: the old index knew it, the
                    // packs no longer do. Repair should still say it is gone.
                    problems.add(
                        "a committed snapshot whose record was cut off disappears without a word from `strata repair`",
                        format!("{ctx}: snapshot {}\n{rep}", c.short),
                    );
                }
            }
            let ids = archive.snapshot_ids();
            let want: Vec<String> = all_ids
                .iter()
                .zip(&survives)
                .filter(|(_, s)| **s)
                .map(|(i, _)| i.clone())
                .collect();
            assert_eq!(ids, want, "{ctx}: the snapshots listed after repair\n{rep}");
            recovered_total += want.len();
            lost_total += all_ids.len() - want.len();
            let (out, report) = archive.check_json(&[]);
            assert!(
                report["findings"].as_array().is_empty(),
                "{ctx}: check after repair must be clean\n{out}"
            );
            for (k, e) in expected.iter().enumerate() {
                if survives[k] {
                    assert_restores(&wd, &archive, e, &format!("cut-{p}-{cut}-{k}"), false);
                    restores += 1;
                }
            }
            fs::remove_dir_all(&archive.path).unwrap();
        }
    }
    eprintln!(
        "truncate: {cuts} truncations of 3 packs (every record boundary, inside every header, at every data start \
         and mid-data); {runs} runs of check, ls, restore and repair without a panic; repair recovered \
         {recovered_total} snapshots; of the {lost_total} that lost data, {named_lost} were named NOT recovered \
         (the others lost their snapshot record too); {restores} restores of survivors byte-identical"
    );
    problems.assert_none();
}

// =======================================================================================
// 2. A full disk
// =======================================================================================

/// Whether a one-line error names a full disk.
fn names_a_full_disk(out: &Out) -> bool {
    let first = out
        .stderr_str()
        .lines()
        .next()
        .unwrap_or_default()
        .to_lowercase();
    first.contains("no space left") || first.contains("enospc") || first.contains("disk is full")
}

/// Writes `DIR/filler` until only `room` bytes are free (tmpfs allocates on write, so
/// zeros are written rather than a length set). Returns its path.
fn fill_leaving(dir: &Path, room: u64) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let avail = free_bytes(dir);
    let mut w = std::io::BufWriter::new(fs::File::create(&filler).unwrap());
    let mut left = avail.saturating_sub(room);
    let zeros = vec![0u8; MIB as usize];
    while left > 0 {
        let k = left.min(MIB);
        if w.write_all(&zeros[..k as usize]).is_err() {
            break;
        }
        left -= k;
    }
    let _ = w.flush();
    filler
}

#[test]
fn a_full_disk_fails_the_ingest_with_one_line_and_loses_nothing() {
    let wd = Workdir::new();
    let fs_dir = wd.join("small-fs");
    let tmpfs = Tmpfs::mount(&fs_dir, "24m");
    let archive = Archive::init(fs_dir.join("archive"), &[]);
    let mut problems = Problems::default();

    // An earlier snapshot (every kind of node) that must survive everything below.
    let full = wd.join("full/src");
    generate_full_tree(&full);
    let s = archive.ingest([&full]);
    let mut expected = vec![Expected {
        id: s["snapshot"].as_str().into(),
        source: full,
        name: "src".into(),
    }];

    // 1. A source much bigger than the space left.
    let big = wd.join("big/src");
    for i in 0..5 {
        write_random_file(&big.join(format!("part-{i}.bin")), 300 + i, 8 * MIB);
    }
    let packs_before = archive.pack_files();
    let out = archive.cmd("ingest").arg(&big).run();
    assert_ne!(
        out.code(),
        Some(0),
        "an ingest bigger than the disk must fail\n{out}"
    );
    assert_typed_error(&out);
    if !names_a_full_disk(&out) {
        problems.add(
            "the ingest's error does not say the disk is full (ENOSPC)",
            out.to_string(),
        );
    }
    assert_eq!(
        archive.snapshot_ids(),
        [expected[0].id.clone()],
        "no snapshot committed\n{out}"
    );
    assert_eq!(
        archive.pack_files(),
        packs_before,
        "the failed session's packs are removed"
    );
    assert_restores_identically(&wd, &archive, &expected[0], "after-enospc");
    let (out, report) = archive.check_json(&[]);
    assert!(
        report["findings"].as_array().is_empty(),
        "check after ENOSPC\n{out}"
    );

    // Readers while the disk stays full: listing and restoring elsewhere need no space on
    // the archive's disk.
    let filler = fill_leaving(&fs_dir, 0);
    let ls = archive.cmd("snapshots").run();
    let target = wd.join("restore-while-full");
    let restore = archive
        .cmd("restore")
        .arg(&expected[0].id)
        .arg(&target)
        .run();
    for out in [&ls, &restore] {
        if out.code() != Some(0) {
            assert_typed_error(out);
            problems.add(
                "readers fail while the archive's disk is full, with a hint to repair an index that is not damaged",
                out.to_string(),
            );
        }
    }
    if restore.code() == Some(0) {
        assert_diff_clean(&expected[0].source, &target.join("src"));
    }
    fs::remove_file(&filler).unwrap();
    let _ = fs::remove_dir_all(&target);

    // 2. The disk full at every stage of an ingest: a filler leaves it a few kB to a few
    //    MB of room, so the ingest fails writing a chunk, a tree, the snapshot record,
    //    sealing, or in the SQLite commit, or succeeds. Either way nothing is lost.
    tmpfs.resize("64m");
    let (mut attempts, mut failed, mut succeeded, mut leftovers) = (0, 0, 0, 0);
    let mut messages: BTreeSet<String> = BTreeSet::new();
    let room: Vec<u64> = [
        0, 4, 16, 64, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 2560, 3072, 4096, 6144,
    ]
    .iter()
    .map(|k| k * 1024)
    .collect();
    for (n, free) in room.iter().enumerate() {
        let src = wd.join(format!("medium-{n}/src"));
        generate_plain_tree(&src, 500 + n as u64);
        write_random_file(&src.join("payload.bin"), 600 + n as u64, 2 * MIB);
        let ids_before = archive.snapshot_ids();
        let filler = fill_leaving(&fs_dir, *free);
        attempts += 1;
        let out = archive.cmd("ingest").arg(&src).arg("--json").run();
        let _ = fs::remove_file(&filler);
        let ctx = format!("ingest with {} kB free", free / 1024);
        if out.code() == Some(0) {
            succeeded += 1;
            let id = out.json()["snapshot"].as_str().to_string();
            assert_eq!(archive.snapshot_ids().last(), Some(&id), "{ctx}");
            expected.push(Expected {
                id,
                source: src,
                name: "src".into(),
            });
        } else {
            failed += 1;
            assert_typed_error(&out);
            messages.insert(
                out.stderr_str()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
            if !names_a_full_disk(&out) {
                problems.add(
                    "the ingest's error does not say the disk is full (ENOSPC)",
                    format!("{ctx}\n{out}"),
                );
            }
            assert_eq!(
                archive.snapshot_ids(),
                ids_before,
                "{ctx}: nothing committed\n{out}"
            );
        }
        // check: no errors; an unreferenced pack only if the failure came after the
        // session could no longer tell whether its commit happened.
        let (out, report) = archive.check_json(&[]);
        assert_eq!(report["errors"].as_u64(), 0, "{ctx}: check\n{out}");
        leftovers += report["warnings"].as_u64();
        for e in &expected {
            assert_restores(&wd, &archive, e, &format!("room-{n}"), false);
        }
    }

    // 3. Space freed (the tmpfs grows): the big ingest succeeds and everything checks.
    tmpfs.resize("200m");
    let s = archive.ingest([&big]);
    expected.push(Expected {
        id: s["snapshot"].as_str().into(),
        source: big,
        name: "src".into(),
    });
    if leftovers > 0 {
        let rep = archive.cmd("repair").run();
        assert_eq!(rep.code(), Some(0), "repair of the leftovers\n{rep}");
    }
    let (out, report) = archive.check_json(&["--read-data"]);
    assert!(
        report["findings"].as_array().is_empty(),
        "check --read-data at the end\n{out}"
    );
    for (i, e) in expected.iter().enumerate() {
        assert_restores_identically(&wd, &archive, e, &format!("end-{i}"));
    }
    eprintln!(
        "disk full: 1 ingest of 40 MiB into a 24 MiB tmpfs and {attempts} ingests with 0 kB to 6 MiB of room: \
         {} failed cleanly, {succeeded} succeeded; {leftovers} unreferenced packs left; {} snapshots restored \
         byte-identical; nothing lost",
        failed + 1,
        expected.len()
    );
    eprintln!(
        "disk full: the errors were:\n  {}",
        messages.into_iter().collect::<Vec<_>>().join("\n  ")
    );
    drop(tmpfs);
    problems.assert_none();
}

// =======================================================================================
// 6. Two writers; a writer beside a mount and a restore
// =======================================================================================

#[test]
fn a_second_writer_is_refused_and_an_ingest_a_mount_and_a_restore_agree() {
    require_fuse();
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let a = wd.join("a/src");
    generate_full_tree(&a);
    for i in 0..3 {
        write_random_file(&a.join(format!("data/part-{i}.bin")), 60 + i, 8 * MIB);
    }
    stamp_mtimes(&a);
    let snap_a = archive.ingest([&a])["snapshot"].as_str().to_string();
    let b = wd.join("b/src");
    for i in 0..6 {
        write_random_file(&b.join(format!("part-{i}.bin")), 80 + i, 8 * MIB);
    }

    // The writer: a command that holds the archive for a second, then 48 MiB of files.
    let marker = wd.join("writer-started");
    let mut writer = archive
        .cmd("ingest")
        .arg(&b)
        .arg("--cmd")
        .arg(format!("touch '{}'; sleep 1; echo slow", marker.display()))
        .args(["--as", "slow.txt", "--json"])
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marker.exists() {
        assert!(
            writer.is_running(),
            "the writer ended early\n{}",
            writer.wait()
        );
        assert!(
            Instant::now() < deadline,
            "the writer's command did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // A second writer is refused with exit 4, naming the first.
    let second = archive.cmd("ingest").arg(&a).code(4);
    second.assert_one_line_error(&format!("archive is locked by pid {}", writer.pid()));

    // A mount and a restore of snapshot A while the writer runs.
    let mount = DaemonMount::start(&archive.path, &wd.join("mnt"), &[], &wd.join("mount.log"));
    let mounted_a = mount.dir.join("by-id").join(&snap_a).join("src");
    let target = wd.join("restored");
    let (restore, through_mount) = std::thread::scope(|s| {
        let r = s.spawn(|| archive.cmd("restore").arg(&snap_a).arg(&target).run());
        let m = s.spawn(|| read_files(&mounted_a));
        (r.join().unwrap(), m.join().unwrap())
    });
    let overlapped = writer.is_running();
    let out = writer.wait();
    assert_eq!(
        out.code(),
        Some(0),
        "the writer must succeed beside the readers\n{out}"
    );
    assert_eq!(
        restore.code(),
        Some(0),
        "the restore must succeed beside the writer\n{restore}"
    );
    let snap_b = out.json()["snapshot"].as_str().to_string();

    // All three agree: the restored bytes, the mounted bytes and the source.
    assert_diff_clean(&a, &target.join("src"));
    assert_same_metadata(&a, &target.join("src"));
    let source_a = read_files(&a);
    assert_eq!(
        through_mount.len(),
        source_a.len(),
        "files seen through the mount"
    );
    for (p, bytes) in &source_a {
        assert!(
            through_mount.get(p) == Some(bytes),
            "{p} through the mount differs from the source"
        );
    }
    // The new snapshot appears in the mount and reads back exactly, as it restores.
    let mounted_b = mount.dir.join("by-id").join(&snap_b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !mounted_b.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let through_mount_b = read_files(&mounted_b.join("src"));
    assert_eq!(
        through_mount_b,
        read_files(&b),
        "snapshot B through the mount"
    );
    assert_eq!(fs::read(mounted_b.join("slow.txt")).unwrap(), b"slow\n");
    let target_b = wd.join("restored-b");
    archive.restore(&snap_b, &target_b);
    assert_diff_clean(&b, &target_b.join("src"));
    drop(mount);
    let (out, report) = archive.check_json(&["--read-data"]);
    assert!(report["findings"].as_array().is_empty(), "{out}");
    eprintln!(
        "concurrency: the second writer was refused (exit 4, pid named); a mount and a restore ran {} the \
         writer; {} files agree between source, restore and mount",
        if overlapped {
            "alongside"
        } else {
            "(partly) alongside"
        },
        source_a.len() + through_mount_b.len()
    );
}

// =======================================================================================
// 7. Unreadable and vanishing source paths
// =======================================================================================

#[test]
fn unreadable_and_vanishing_source_paths_are_reported_by_path_and_strict_commits_nothing() {
    let wd = Workdir::new();
    // strata runs as `nobody`, so mode 000 means something; the work dir must be
    // reachable for it.
    set_mode(wd.path(), 0o755);
    let home = wd.mkdir("nobody");
    let src = home.join("src");
    let files = generate_plain_tree(&src, 70);
    write_file(&src.join("secret.txt"), b"nobody may read this\n");
    write_file(&src.join("locked/inside.txt"), b"behind a locked door\n");
    Cmd::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&home)
        .ok();
    set_mode(&src.join("secret.txt"), 0o000);
    set_mode(&src.join("locked"), 0o000);
    let as_nobody = || strata_as("nobody", "nogroup");
    let archive = Archive {
        path: home.join("archive"),
    };
    as_nobody().arg("init").arg(&archive.path).ok();

    // Without --strict: exit 3, each unreadable path named, the snapshot committed.
    let out = as_nobody()
        .arg("ingest")
        .arg(&archive.path)
        .arg(&src)
        .arg("--json")
        .code(3);
    let j = out.json();
    let reported: BTreeSet<String> = j["errors"]
        .as_array()
        .iter()
        .map(|e| e["path"].as_str().to_string())
        .collect();
    let want: BTreeSet<String> = ["src/secret.txt", "src/locked"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(reported, want, "the unreadable paths, by path\n{out}");
    for p in &want {
        assert!(
            out.stderr_str().contains(p.as_str()),
            "stderr names {p}\n{out}"
        );
    }
    let id = j["snapshot"].as_str().to_string();
    assert_eq!(
        archive.snapshot_ids(),
        std::slice::from_ref(&id),
        "the snapshot is committed"
    );
    let target = wd.join("restored");
    archive.restore(&id, &target);
    for (p, bytes) in &files {
        assert_eq!(
            &fs::read(target.join("src").join(p)).unwrap(),
            bytes,
            "{}",
            p.display()
        );
    }
    assert!(
        !target.join("src/secret.txt").exists()
            || fs::read(target.join("src/secret.txt")).unwrap().is_empty()
    );
    assert!(!target.join("src/locked/inside.txt").exists());

    // With --strict: exit 1, one line naming a path, nothing committed, no pack left.
    let packs = archive.pack_files();
    let out = as_nobody()
        .arg("ingest")
        .arg(&archive.path)
        .arg(&src)
        .arg("--strict")
        .code(1);
    assert_typed_error(&out);
    assert!(
        want.iter().any(|p| out.stderr_str().contains(p.as_str())),
        "--strict names the unreadable path\n{out}"
    );
    assert_eq!(archive.snapshot_ids(), [id], "--strict commits nothing");
    assert_eq!(
        archive.pack_files(),
        packs,
        "--strict leaves no pack behind"
    );
    set_mode(&src.join("locked"), 0o755);

    // A file deleted while the ingest runs: a 64 MiB file is read first, then the victim,
    // which is deleted in between (retried until the deletion lands mid-walk).
    let root_archive = wd.archive(&[]);
    let vsrc = wd.join("vanish/src");
    write_random_file(&vsrc.join("a-big.bin"), 90, 64 * MIB);
    let mut rng = Rng::new(seed(0x7a) ^ RNG_SALT);
    let (mut tries, mut caught, mut strict_caught) = (0, 0, 0);
    for strict in [false, true] {
        for attempt in 0..12 {
            tries += 1;
            let victim = vsrc.join("z-victim.txt");
            write_file(&victim, b"here today\n");
            let before = root_archive.snapshot_ids();
            // A label of its own: no parent, so the big file is read again every time.
            let mut cmd = root_archive
                .cmd("ingest")
                .arg(&vsrc)
                .arg("--json")
                .args(["--label", &format!("try-{tries}")]);
            if strict {
                cmd = cmd.arg("--strict");
            }
            let running = cmd.spawn();
            std::thread::sleep(Duration::from_millis(20 + rng.below(60) + attempt * 10));
            let _ = fs::remove_file(&victim);
            let out = running.wait();
            let vanished = out.stderr_str().contains("z-victim.txt");
            match (strict, out.code()) {
                (false, Some(3)) => {
                    assert!(vanished, "exit 3 names the vanished file\n{out}");
                    let j = out.json();
                    assert_eq!(j["errors"].as_array().len(), 1, "{out}");
                    assert_eq!(j["errors"][0]["path"].as_str(), "src/z-victim.txt");
                    let t = wd.join(format!("vanish-{attempt}"));
                    root_archive.restore(j["snapshot"].as_str(), &t);
                    assert!(!t.join("src/z-victim.txt").exists(), "no half file");
                    Cmd::new("cmp")
                        .arg(vsrc.join("a-big.bin"))
                        .arg(t.join("src/a-big.bin"))
                        .ok();
                    fs::remove_dir_all(&t).unwrap();
                    caught += 1;
                }
                (true, Some(1)) => {
                    assert!(vanished, "--strict names the vanished file\n{out}");
                    assert_typed_error(&out);
                    assert_eq!(
                        root_archive.snapshot_ids(),
                        before,
                        "--strict commits nothing"
                    );
                    strict_caught += 1;
                }
                (_, Some(0)) => {
                    // The deletion came before the walk saw the file, or after it was read.
                    let ls =
                        root_archive.ls_json(format!("{}:src", out.json()["snapshot"].as_str()));
                    let names: Vec<&str> = ls.iter().map(|e| e["name"].as_str()).collect();
                    if names.contains(&"z-victim.txt") {
                        assert_eq!(
                            root_archive.cat(format!(
                                "{}:src/z-victim.txt",
                                out.json()["snapshot"].as_str()
                            )),
                            b"here today\n"
                        );
                    }
                }
                _ => panic!("unexpected outcome\n{out}"),
            }
            if (strict && strict_caught > 0) || (!strict && caught > 0) {
                break;
            }
        }
    }
    assert!(
        caught > 0 && strict_caught > 0,
        "no deletion landed mid-walk in {tries} tries"
    );
    eprintln!(
        "source errors: a mode-000 file and directory as nobody (exit 3, both named, snapshot committed; \
         --strict exit 1, nothing committed); a file deleted mid-walk caught in {tries} tries (exit 3 naming it; \
         --strict exit 1, nothing committed)"
    );
    assert_eq!((caught, strict_caught), (1, 1));
}

// =======================================================================================
// 8. Fuzz: every record decoder, random and mutated input, with an allocation bound
// =======================================================================================

mod fuzz {
    use proptest::prelude::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use strata::archive::Config;
    use strata::format::pack::{
        BlobHeader, BlobKind, Compression, decode_pack_header, encode_pack_header,
    };
    use strata::format::snapshot::{CommandRun, PathError, Snapshot, Source, Stats};
    use strata::format::tree::{Extent, Node, NodeKind, Payload, decode_tree, encode_tree};
    use strata::format::{BlobId, PackId};
    use strata::packs::{scan_pack, survey_pack};

    // The largest single allocation a thread asks for while it is being watched: a
    // decoder that trusts a length or count from its input shows up here long before it
    // exhausts memory.
    struct Watching;

    thread_local! {
        static WATCHED: Cell<bool> = const { Cell::new(false) };
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    fn note(size: usize) {
        let _ = WATCHED.try_with(|w| {
            if w.get() {
                let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
            }
        });
    }

    // SAFETY: every call is forwarded unchanged to the system allocator; `note` only
    // reads and writes const-initialised thread-locals, which never allocate.
    unsafe impl GlobalAlloc for Watching {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            // SAFETY: the caller's contract for `alloc` is passed on as is.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            // SAFETY: as for `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from `System` with this layout (every allocation does).
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            // SAFETY: as for `dealloc`; the caller guarantees `new_size` is valid.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Watching = Watching;

    /// Runs every decoder on `bytes` and returns the largest allocation any of them made.
    fn decode_everything(bytes: &[u8]) -> usize {
        LARGEST.with(|l| l.set(0));
        WATCHED.with(|w| w.set(true));
        let _ = decode_pack_header(bytes);
        let _ = BlobHeader::decode(bytes);
        let _ = decode_tree(bytes);
        let _ = Snapshot::decode(bytes);
        let _ = Config::decode(&String::from_utf8_lossy(bytes));
        let _ = scan_pack(bytes, PackId(1));
        let _ = survey_pack(bytes, PackId(1));
        WATCHED.with(|w| w.set(false));
        LARGEST.with(|l| l.get())
    }

    /// What a decoder may allocate for an input of `len` bytes: a small multiple of it.
    fn bound(len: usize) -> usize {
        32 * len + (64 << 10)
    }

    fn config() -> ProptestConfig {
        // 256 cases by default; PROPTEST_CASES=100000 for a long run. No regression
        // files: a failure prints its minimal input, which goes into a named test.
        ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    fn id() -> impl Strategy<Value = BlobId> {
        any::<[u8; 32]>().prop_map(BlobId)
    }

    fn time() -> impl Strategy<Value = (i64, u32)> {
        (any::<i64>(), 0u32..1_000_000_000)
    }

    fn node(name: Vec<u8>) -> impl Strategy<Value = Node> {
        let payload = prop_oneof![
            prop::collection::vec(
                prop_oneof![
                    (id(), 1u64..1 << 20).prop_map(|(id, len)| Extent::Data { id, len }),
                    (0u64..1 << 30).prop_map(|len| Extent::Hole { len }),
                ],
                0..4
            )
            .prop_map(Payload::File),
            id().prop_map(Payload::Dir),
            prop::collection::vec(1u8..=255, 1..40).prop_map(Payload::Symlink),
            Just(Payload::Other),
        ];
        (
            payload,
            0u32..0o10000,
            any::<(u32, u32, u64, u64, u64, u64)>(),
            (time(), time()),
            prop::collection::vec(any::<u8>(), 0..8),
            prop::collection::vec(
                (
                    prop::collection::vec(any::<u8>(), 1..12),
                    prop::collection::vec(any::<u8>(), 0..20),
                ),
                0..3,
            ),
            0u8..4,
        )
            .prop_map(
                move |(
                    payload,
                    mode,
                    (uid, gid, dev, ino, nlink, rdev),
                    (mtime, ctime),
                    user,
                    mut xattrs,
                    other,
                )| {
                    let (kind, size) = match &payload {
                        Payload::File(x) => (NodeKind::File, x.iter().map(Extent::len).sum()),
                        Payload::Dir(_) => (NodeKind::Dir, 0),
                        Payload::Symlink(t) => (NodeKind::Symlink, t.len() as u64),
                        Payload::Other => (
                            [
                                NodeKind::Fifo,
                                NodeKind::CharDev,
                                NodeKind::BlockDev,
                                NodeKind::Socket,
                            ][other as usize],
                            0,
                        ),
                    };
                    xattrs.sort();
                    Node {
                        name: name.clone(),
                        kind,
                        mode,
                        uid,
                        gid,
                        user: user.clone(),
                        group: user,
                        mtime,
                        ctime,
                        size,
                        dev,
                        ino,
                        nlink,
                        rdev,
                        xattrs,
                        payload,
                    }
                },
            )
    }

    fn tree_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::btree_set(prop::collection::vec(b'a'..=b'z', 1..12), 0..5).prop_flat_map(
            |names| {
                names
                    .into_iter()
                    .map(node)
                    .collect::<Vec<_>>()
                    .prop_map(|nodes| encode_tree(&nodes).expect("a valid tree encodes"))
            },
        )
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-z0-9 /:.-]{0,24}"
    }

    fn snapshot_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            (time(), text(), text(), prop::collection::vec(text(), 0..3)),
            (prop::option::of(id()), id()),
            prop::collection::vec((text(), text()), 0..3),
            prop::collection::vec(text(), 0..3),
            prop::collection::vec((text(), any::<i32>()), 0..2),
            prop::collection::vec((prop::collection::vec(any::<u8>(), 0..12), text()), 0..3),
            any::<[u64; 9]>(),
        )
            .prop_map(
                |(
                    (time, host, label, tags),
                    (parent, root),
                    sources,
                    argv,
                    commands,
                    errors,
                    s,
                )| {
                    Snapshot {
                        time,
                        host,
                        label,
                        tags,
                        parent,
                        root,
                        sources: sources
                            .into_iter()
                            .map(|(name, origin)| Source {
                                name,
                                origin,
                                parents: None,
                            })
                            .collect(),
                        argv,
                        commands: commands
                            .into_iter()
                            .map(|(command, exit_code)| CommandRun { command, exit_code })
                            .collect(),
                        errors: errors
                            .into_iter()
                            .map(|(path, message)| PathError { path, message })
                            .collect(),
                        stats: Stats {
                            files: s[0],
                            dirs: s[1],
                            files_new: s[2],
                            files_changed: s[3],
                            files_unchanged: s[4],
                            bytes_read: s[5],
                            bytes_added: s[6],
                            total_size: s[7],
                            duration_ms: s[8],
                        },
                    }
                    .encode()
                },
            )
    }

    fn blob_header(kind: u8, stored: &[u8], raw_len: u64, id: BlobId) -> BlobHeader {
        BlobHeader {
            kind: [BlobKind::Chunk, BlobKind::Tree, BlobKind::Snapshot][kind as usize % 3],
            compression: if raw_len == stored.len() as u64 {
                Compression::None
            } else {
                Compression::Zstd
            },
            id,
            raw_len,
            stored_len: stored.len() as u64,
            data_crc: crc32fast::hash(stored),
        }
    }

    /// A whole pack: header and a few sound records.
    fn pack_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            (0u8..3, prop::collection::vec(any::<u8>(), 0..200), id()),
            0..6,
        )
        .prop_map(|recs| {
            let mut b = encode_pack_header(PackId(1)).to_vec();
            for (kind, data, id) in recs {
                b.extend_from_slice(&blob_header(kind, &data, data.len() as u64, id).encode());
                b.extend_from_slice(&data);
            }
            b
        })
    }

    /// Valid encodings of every record kind, whole or as the first bytes of a pack.
    fn valid_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            tree_bytes(),
            snapshot_bytes(),
            pack_bytes(),
            any::<u64>().prop_map(|p| encode_pack_header(PackId(p)).to_vec()),
            (
                0u8..3,
                any::<u64>(),
                prop::collection::vec(any::<u8>(), 0..64),
                id()
            )
                .prop_map(|(k, raw, data, id)| blob_header(
                    k,
                    &data,
                    raw % (1 << 31),
                    id
                )
                .encode()
                .to_vec()),
            (256u32..1 << 22, 1i32..20, any::<bool>()).prop_map(|(avg, l, a)| Config::new(
                avg & !7,
                l,
                a
            )
            .encode()
            .into_bytes()),
        ]
    }

    /// Flip, cut, insert, or overwrite with a large little-endian number (a hostile length
    /// or count); then, half the time, recompute every header crc so that validation past
    /// the crc is reached.
    fn mutate(mut b: Vec<u8>, edits: &[(usize, u8, u64)], fix_crcs: bool) -> Vec<u8> {
        for &(at, op, v) in edits {
            if b.is_empty() {
                b.push(v as u8);
                continue;
            }
            let i = at % b.len();
            match op % 5 {
                0 => b[i] ^= (v as u8) | 1,
                1 => b.truncate(i),
                2 => b.insert(i, v as u8),
                3 => {
                    let bytes = (v as u32 | 0x8000_0000).to_le_bytes();
                    for (k, x) in bytes.iter().enumerate() {
                        if let Some(slot) = b.get_mut(i + k) {
                            *slot = *x;
                        }
                    }
                }
                _ => {
                    for (k, x) in v.to_le_bytes().iter().enumerate() {
                        if let Some(slot) = b.get_mut(i + k) {
                            *slot = *x;
                        }
                    }
                }
            }
        }
        if fix_crcs {
            if b.len() >= 24 && b.starts_with(b"STRATAPK") {
                let crc = crc32fast::hash(&b[..20]);
                b[20..24].copy_from_slice(&crc.to_le_bytes());
                let mut pos = 24;
                while pos + 64 <= b.len() && &b[pos..pos + 4] == b"BLOB" {
                    let crc = crc32fast::hash(&b[pos..pos + 60]);
                    b[pos + 60..pos + 64].copy_from_slice(&crc.to_le_bytes());
                    let stored = u64::from_le_bytes(b[pos + 48..pos + 56].try_into().unwrap());
                    pos = pos
                        .saturating_add(64)
                        .saturating_add(stored.min(usize::MAX as u64 / 4) as usize);
                }
            } else if b.len() >= 64 && b.starts_with(b"BLOB") {
                let crc = crc32fast::hash(&b[..60]);
                b[60..64].copy_from_slice(&crc.to_le_bytes());
            }
        }
        b
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn record_decoders_never_panic_nor_allocate_without_bound_on_random_bytes(
            prefix in prop::sample::select(vec![&b""[..], b"STRATAPK\x01\0\0\0", b"BLOB", b"TREE\x01", b"SNAP\x01", b"# strata archive\n"]),
            rest in prop::collection::vec(any::<u8>(), 0..4096),
        ) {
            let mut bytes = prefix.to_vec();
            bytes.extend_from_slice(&rest);
            let largest = decode_everything(&bytes);
            prop_assert!(largest <= bound(bytes.len()), "{largest} bytes allocated for {} bytes of input", bytes.len());
        }

        #[test]
        fn record_decoders_never_panic_nor_allocate_without_bound_on_mutated_valid_records(
            valid in valid_bytes(),
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u64>()), 1..6),
            fix_crcs in any::<bool>(),
        ) {
            let bytes = mutate(valid, &edits, fix_crcs);
            let largest = decode_everything(&bytes);
            prop_assert!(largest <= bound(bytes.len()), "{largest} bytes allocated for {} bytes of input", bytes.len());
        }

        /// A config value is either refused or taken exactly as written.
        #[test]
        fn config_numbers_are_taken_as_written_or_refused(
            avg in (256u32..1 << 22).prop_map(|a| a & !7),
            key in prop::sample::select(vec!["format", "chunk_min", "chunk_avg", "chunk_max", "compression_level", "pack_size"]),
            value in prop_oneof![any::<u64>(), (0u64..1 << 24).prop_map(|v| v + (1 << 32)), 0u64..1 << 26],
        ) {
            let text: String = Config::new(avg, 3, false)
                .encode()
                .lines()
                .map(|l| if l.starts_with(&format!("{key} =")) { format!("{key} = {value}\n") } else { format!("{l}\n") })
                .collect();
            if let Ok(c) = Config::decode(&text) {
                let got: u64 = match key {
                    "format" => u64::from(c.version),
                    "chunk_min" => u64::from(c.chunk_min),
                    "chunk_avg" => u64::from(c.chunk_avg),
                    "chunk_max" => u64::from(c.chunk_max),
                    "compression_level" => c.compression_level as u64,
                    _ => c.pack_size,
                };
                prop_assert_eq!(got, value, "config line `{} = {}` was accepted as {}", key, value, got);
            }
        }
    }

    /// The watch itself works: a decoder that trusted a hostile count would be caught.
    #[test]
    fn the_allocation_watch_sees_an_allocation_sized_from_the_input() {
        LARGEST.with(|l| l.set(0));
        WATCHED.with(|w| w.set(true));
        let hostile = u32::from_le_bytes([0, 0, 0, 1]) as usize;
        let v: Vec<u8> = Vec::with_capacity(hostile);
        WATCHED.with(|w| w.set(false));
        drop(v);
        assert!(LARGEST.with(|l| l.get()) >= hostile);
        assert!(hostile > bound(4));
    }

    #[test]
    fn the_fuzz_figures() {
        eprintln!(
            "fuzz: {} cases per property (PROPTEST_CASES), over decode_pack_header, BlobHeader::decode, decode_tree, \
             Snapshot::decode, Config::decode, scan_pack and survey_pack; no panic, largest allocation within 32x the input + 64 KiB",
            config().cases
        );
    }
}
