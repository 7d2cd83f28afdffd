//! Retention (issue 6) through the real binary: `forget` by policy and by id, `prune`,
//! and append-only archives, judged by what must hold around them:
//!
//! - after forget + prune every kept snapshot restores byte-identical (`diff -r` against
//!   a copy of each generation), `check --read-data` is clean, and `du -sb packs/` shrinks
//!   by about the data only the forgotten snapshots held;
//! - forgotten snapshots leave `strata snapshots` at once and a mount's root within 2 s;
//!   `--dry-run` changes no byte;
//! - policies apply per label, `--label` restricts them, ids forget all or nothing;
//! - append-only archives refuse forget and prune with one line (exit 1), lose nothing,
//!   and the switch cannot be undone;
//! - `repair` (index deleted) never brings forgotten snapshots back.
//!
//! A mount reading while prune rewrites its pack is in `tests/concurrency.rs`; `kill -9`
//! during prune is in `tests/crash.rs`. The shared generation builder and readers of
//! forget's output are in `tests/common/generations.rs`.
//!
//! Seeded tests print their seed; `STRATA_SEED=N` replays one. Figures (reclaimed
//! bytes, timings, kill moments) go to stderr: `cargo test --test retention -- --nocapture`.

mod common;

use common::generations::*;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// 1. forget + prune: kept snapshots intact, space reclaimed
// ---------------------------------------------------------------------------------------

#[test]
fn prune_reclaims_what_only_forgotten_snapshots_held_and_kept_ones_restore_exactly() {
    let mut rng = seeded_rng(61);
    let w = Workdir::new();
    let a = w.archive(&[]);
    let (gens, shared_len) = build_generations(&w, &a, "app", 6, &mut rng);
    let all: Vec<String> = gens.iter().map(|g| g.id.clone()).collect();
    assert_eq!(ids(&a), all, "six generations, oldest first");

    let forgotten = [1usize, 2, 4];
    let kept = [0usize, 3, 5];
    let before_forget = du_packs(&a);
    // Full ids and unique prefixes are both accepted.
    a.cmd("forget")
        .arg(&gens[1].id)
        .arg(short(&gens[2].id))
        .arg(&gens[4].id[..12])
        .ok();
    let want: Vec<String> = kept.iter().map(|&i| gens[i].id.clone()).collect();
    assert_eq!(
        ids(&a),
        want,
        "the three forgotten snapshots are gone from `snapshots`"
    );
    let after_forget = du_packs(&a);
    assert!(
        after_forget >= before_forget && after_forget - before_forget < 64 * KIB,
        "forget only appends a small record: packs went from {before_forget} to {after_forget} bytes"
    );

    let started = Instant::now();
    let out = a.cmd("prune").ok();
    let prune_s = started.elapsed().as_secs_f64();
    let after_prune = du_packs(&a);
    let reclaimed = after_forget.saturating_sub(after_prune);
    let expected: u64 = forgotten.iter().map(|&i| gens[i].unique_len).sum();
    let kept_unique: u64 = kept.iter().map(|&i| gens[i].unique_len).sum();
    eprintln!(
        "packs: {before_forget} B before forget, {after_forget} after, {after_prune} after prune \
         ({prune_s:.2} s); reclaimed {reclaimed} B, unique data of the forgotten snapshots \
         {expected} B ({:+.3}%); kept: shared {shared_len} B + unique {kept_unique} B\n{}",
        (reclaimed as f64 - expected as f64) * 100.0 / expected as f64,
        out.stderr_str().trim_end()
    );
    // Everything only the forgotten snapshots held goes (their unique files, with record
    // headers, trees and snapshot records), and nothing else.
    let slack = 64 * KIB + expected / 100;
    assert!(
        reclaimed >= expected && reclaimed <= expected + slack,
        "prune reclaimed {reclaimed} bytes; the forgotten snapshots alone held {expected} bytes \
         of unique data (allowed: up to {slack} more for headers and metadata)"
    );
    // The shared data and the kept snapshots' unique data remain.
    let floor = shared_len + kept_unique;
    assert!(
        after_prune >= floor && after_prune <= floor + 64 * KIB + floor / 100,
        "after prune the packs take {after_prune} bytes; the kept snapshots hold {floor} bytes \
         (shared {shared_len} + unique {kept_unique})"
    );

    assert_check_clean(&a, true, "after forget + prune");
    assert_eq!(ids(&a), want, "prune does not change the snapshot list");
    for &i in &kept {
        assert_generation_restores(
            &a,
            &gens[i].id,
            &gens[i].copy,
            &w.join(format!("restore-{i}")),
        );
    }
    // The forgotten ones cannot be read any more, and say so in one line.
    for &i in &forgotten {
        a.cmd("ls")
            .arg(&gens[i].id)
            .code(1)
            .assert_one_line_error(&gens[i].id);
    }
    // A second prune finds nothing more to do.
    let again = du_packs(&a);
    a.cmd("prune").ok();
    assert_eq!(du_packs(&a), again, "a second prune changes nothing");
}

// ---------------------------------------------------------------------------------------
// 2. forgotten snapshots leave `snapshots` and the mount; --json; --dry-run
// ---------------------------------------------------------------------------------------

/// Four snapshots of `src` as `data` with label `app`, the oldest tagged `release`; the
/// policy `--keep-last 1 --keep-tag release` keeps the oldest and the newest.
struct FourSnapshots {
    w: Workdir,
    a: Archive,
    src: PathBuf,
    snaps: Vec<String>,
}

const POLICY: [&str; 4] = ["--keep-last", "1", "--keep-tag", "release"];

impl FourSnapshots {
    fn new() -> FourSnapshots {
        let w = Workdir::new();
        let a = w.archive(&[]);
        let src = w.join("src");
        let mut snaps = Vec::new();
        for i in 0..4 {
            w.write(format!("src/file-{i}.txt"), format!("generation {i}\n"));
            write_random_file(&src.join("blob.bin"), 900 + i, 300 * KIB);
            let tags: &[&str] = if i == 0 { &["release"] } else { &[] };
            snaps.push(ingest_as(&a, &src, "data", "app", tags));
        }
        FourSnapshots { w, a, src, snaps }
    }

    /// A `--daemon` mount of the archive where every snapshot is in the root, each looked
    /// up once (so the kernel holds an entry for it); `None` without /dev/fuse.
    fn mount(&self) -> Option<DaemonMount> {
        let fuse = fuse_available();
        if !fuse {
            eprintln!("no /dev/fuse here: the mount half of this test does not run");
        }
        let w = &self.w;
        let mount =
            fuse.then(|| DaemonMount::start(&self.a.path, &w.join("mnt"), &[], &w.join("mnt.log")));
        if let Some(m) = &mount {
            for s in &self.snaps {
                assert!(
                    root_has(m, s),
                    "snapshot {s} is in the mount's root: {:?}",
                    m.list("")
                );
                // Looked up once, so the kernel holds an entry for it.
                assert!(m.dir.join("by-id").join(s).join("data/blob.bin").exists());
            }
        }
        mount
    }
}

/// Whether the mount's root lists snapshot `id`.
fn root_has(m: &DaemonMount, id: &str) -> bool {
    m.list("")
        .iter()
        .any(|n| n.ends_with(&format!("-{}", short(id))))
}

#[test]
fn forget_dry_run_reports_the_policys_decisions_and_changes_no_byte() {
    let fx = FourSnapshots::new();
    let (a, snaps) = (&fx.a, &fx.snaps);
    let (s0, s1, s2, s3) = (&snaps[0], &snaps[1], &snaps[2], &snaps[3]);
    // --dry-run: the decisions, and not one byte changes.
    let list_before = listing(a);
    let packs_before = pack_digests(a);
    let dry = forget_json(a, &[&POLICY[..], &["--dry-run"]].concat());
    assert_eq!(dry["dry_run"], Json::Bool(true), "{dry}");
    let d = decisions(&dry);
    assert_eq!(
        d.keys().cloned().collect::<BTreeSet<_>>(),
        set(snaps),
        "every snapshot of the label has a decision: {dry}"
    );
    let (keep3, why3, label3) = &d[s3];
    assert!(
        *keep3 && why3.contains(&"last".to_string()),
        "the newest is kept as `last`: {dry}"
    );
    assert_eq!(label3, "app");
    let (keep0, why0, _) = &d[s0];
    assert!(
        *keep0 && why0.iter().any(|r| r.contains("release")),
        "the release-tagged oldest is kept for its tag: {dry}"
    );
    for s in [s1, s2] {
        let (keep, why, _) = &d[s];
        assert!(
            !keep && why.is_empty(),
            "{s} is forgotten without a reason to keep it: {dry}"
        );
    }
    assert_eq!(forget_list(&dry), set([s1, s2]), "{dry}");
    assert_eq!(
        listing(a),
        list_before,
        "forget --dry-run changed the snapshot list"
    );
    assert_eq!(
        pack_digests(a),
        packs_before,
        "forget --dry-run changed the packs"
    );
    let prune_dry = a.cmd("prune").arg("--dry-run").ok();
    assert_eq!(
        pack_digests(a),
        packs_before,
        "prune --dry-run changed the packs\n{prune_dry}"
    );
    assert_eq!(listing(a), list_before);
}

#[test]
fn forget_dry_run_hides_no_snapshot_from_a_mount() {
    let fx = FourSnapshots::new();
    let Some(m) = fx.mount() else { return };
    forget_json(&fx.a, &[&POLICY[..], &["--dry-run"]].concat());
    fx.a.cmd("prune").arg("--dry-run").ok();
    // Longer than the mount's catalogue refresh: a dry run hides nothing.
    std::thread::sleep(Duration::from_millis(1300));
    for s in &fx.snaps {
        assert!(
            root_has(&m, s),
            "after a dry run {s} is still in the mount: {:?}",
            m.list("")
        );
    }
}

#[test]
fn forget_decides_as_its_dry_run_and_forgotten_snapshots_leave_snapshots_at_once() {
    let fx = FourSnapshots::new();
    let (a, snaps) = (&fx.a, &fx.snaps);
    let (s0, s1, s2, s3) = (&snaps[0], &snaps[1], &snaps[2], &snaps[3]);
    let d = decisions(&forget_json(a, &[&POLICY[..], &["--dry-run"]].concat()));
    // The real forget: the same decisions, then gone from `snapshots` at once.
    let real = forget_json(a, &POLICY);
    assert_eq!(real["dry_run"], Json::Bool(false));
    assert_eq!(
        decisions(&real),
        d,
        "the real run decides as the dry run did"
    );
    assert_eq!(forget_list(&real), set([s1, s2]));
    assert_eq!(
        ids(a),
        vec![s0.clone(), s3.clone()],
        "forgotten snapshots leave `snapshots`"
    );
    assert_check_clean(a, false, "after forget");
}

#[test]
fn forgotten_snapshots_leave_a_mounts_root_and_by_id_within_two_seconds() {
    let fx = FourSnapshots::new();
    let (a, snaps, src) = (&fx.a, &fx.snaps, &fx.src);
    let (s0, s1, s2, s3): (&String, &String, &String, &String) =
        (&snaps[0], &snaps[1], &snaps[2], &snaps[3]);
    let mount = fx.mount();
    forget_json(a, &POLICY);
    let forgot_at = Instant::now();
    if let Some(m) = &mount {
        // Gone from the root listing and from by-id/ within 2 s; the kept ones stay.
        let deadline = forgot_at + Duration::from_secs(2);
        loop {
            let root = m.list("");
            let by_id = m.list("by-id");
            let gone = [s1, s2].iter().all(|s| {
                !root.iter().any(|n| n.ends_with(&format!("-{}", short(s)))) && !by_id.contains(*s)
            });
            if gone {
                for s in [s0, s3] {
                    assert!(root_has(m, s), "kept {s} left the mount: {root:?}");
                    assert!(by_id.contains(s), "kept {s} left by-id/: {by_id:?}");
                }
                eprintln!(
                    "forgotten snapshots left the mount's root after {:.2} s",
                    forgot_at.elapsed().as_secs_f64()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "2 s after forget the mount still shows forgotten snapshots\nroot: {root:?}\nby-id: {by_id:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // A path the kernel had looked up stops resolving too, once its 1 s entry TTL
        // runs out on top of the mount's 1 s catalogue refresh.
        let deadline = forgot_at + Duration::from_secs(3);
        for s in [s1, s2] {
            let p = m.dir.join("by-id").join(s).join("data/blob.bin");
            while p.exists() {
                assert!(
                    Instant::now() < deadline,
                    "3 s after forget {} still resolves",
                    p.display()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        eprintln!(
            "looked-up paths of forgotten snapshots stopped resolving after {:.2} s",
            forgot_at.elapsed().as_secs_f64()
        );
        assert_eq!(
            fs::read(m.dir.join("latest/data/blob.bin")).unwrap(),
            fs::read(src.join("blob.bin")).unwrap(),
            "latest still reads the newest snapshot"
        );
    }
    drop(mount);
    assert_check_clean(a, false, "after forget");
}

// ---------------------------------------------------------------------------------------
// 3. per label, --label, by id
// ---------------------------------------------------------------------------------------

/// Nine snapshots, interleaved: jira j0..j3, db d0..d2, unlabelled u0, u1, each of its
/// own `dump.txt`. The steps below forget some of them in the order the tests replay:
/// each test runs the steps before its own (unjudged: the earlier tests judge them).
struct Labelled {
    a: Archive,
    j: Vec<String>,
    d: Vec<String>,
    u: Vec<String>,
    /// What `strata snapshots` must list now.
    alive_now: BTreeSet<String>,
    _w: Workdir,
}

const LABEL_ORDER: [&str; 9] = ["jira", "db", "", "jira", "db", "jira", "", "db", "jira"];

fn listed(a: &Archive) -> BTreeSet<String> {
    set(&ids(a))
}

impl Labelled {
    fn new() -> Labelled {
        let w = Workdir::new();
        let a = w.archive(&[]);
        let mut by_label: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (n, label) in LABEL_ORDER.iter().enumerate() {
            let dir = format!("src-{}", if label.is_empty() { "none" } else { label });
            w.write(format!("{dir}/dump.txt"), format!("{label} #{n}\n"));
            let id = ingest_as(&a, &w.join(&dir), "data", label, &[]);
            by_label.entry(label).or_default().push(id);
        }
        let (j, d, u) = (
            by_label["jira"].clone(),
            by_label["db"].clone(),
            by_label[""].clone(),
        );
        let alive_now = listed(&a);
        assert_eq!(alive_now.len(), 9);
        Labelled {
            a,
            j,
            d,
            u,
            alive_now,
            _w: w,
        }
    }

    /// Step 1: `forget --label db --keep-last 1` (forgets d0, d1).
    fn forget_db_keep_last_1(&mut self) -> Json {
        let r = forget_json(&self.a, &["--label", "db", "--keep-last", "1"]);
        self.alive_now.remove(&self.d[0]);
        self.alive_now.remove(&self.d[1]);
        r
    }

    /// Step 2: `forget --keep-last 2` over every label (forgets j0, j1).
    fn forget_keep_last_2(&mut self) -> Json {
        let r = forget_json(&self.a, &["--keep-last", "2"]);
        self.alive_now.remove(&self.j[0]);
        self.alive_now.remove(&self.j[1]);
        r
    }

    /// Step 3: u0 by a short prefix and j2 by its full id, in one command.
    fn forget_u0_and_j2_by_id(&mut self) {
        self.a
            .cmd("forget")
            .arg(short(&self.u[0]))
            .arg(&self.j[2])
            .ok();
        self.alive_now.remove(&self.u[0]);
        self.alive_now.remove(&self.j[2]);
    }
}

#[test]
fn forget_with_label_judges_and_forgets_only_that_labels_snapshots() {
    let mut fx = Labelled::new();
    let d = fx.d.clone();
    // --label db: only db is judged, and only db loses snapshots.
    let r = fx.forget_db_keep_last_1();
    let dec = decisions(&r);
    assert_eq!(
        dec.keys().cloned().collect::<BTreeSet<_>>(),
        set(&d),
        "only db decided: {r}"
    );
    assert!(dec.values().all(|(_, _, l)| l == "db"));
    assert_eq!(forget_list(&r), set([&d[0], &d[1]]), "{r}");
    assert_eq!(
        listed(&fx.a),
        fx.alive_now,
        "jira and unlabelled snapshots are untouched"
    );
}

#[test]
fn without_label_a_policy_keeps_per_label_and_unlabelled_snapshots_form_their_own_group() {
    let mut fx = Labelled::new();
    fx.forget_db_keep_last_1();
    let alive_before = fx.alive_now.clone();
    let (j, d, u) = (fx.j.clone(), fx.d.clone(), fx.u.clone());
    // No --label: --keep-last 2 keeps the two newest of *each* label (a global reading
    // would keep j3 and d2 only).
    let r = fx.forget_keep_last_2();
    let dec = decisions(&r);
    assert_eq!(
        dec.keys().cloned().collect::<BTreeSet<_>>(),
        alive_before,
        "every remaining snapshot is decided: {r}"
    );
    for id in [&j[2], &j[3], &d[2], &u[0], &u[1]] {
        assert!(dec[id].0, "{id} is among the newest 2 of its label: {r}");
        assert_eq!(dec[id].1, vec!["last".to_string()], "{r}");
    }
    assert_eq!(forget_list(&r), set([&j[0], &j[1]]), "{r}");
    assert_eq!(
        dec[&u[0]].2, "",
        "unlabelled snapshots form their own group"
    );
    assert_eq!(listed(&fx.a), fx.alive_now);
}

#[test]
fn time_policies_and_an_unknown_label_decide_per_label_and_dry_runs_change_nothing() {
    let mut fx = Labelled::new();
    fx.forget_db_keep_last_1();
    fx.forget_keep_last_2();
    let (a, j, u) = (&fx.a, &fx.j, &fx.u);
    // --keep-daily 1 keeps the newest snapshot of the newest day: per label, j3 / d2 / u1.
    let r = forget_json(a, &["--keep-daily", "1", "--dry-run"]);
    assert_eq!(forget_list(&r), set([&j[2], &u[0]]), "{r}");
    assert_eq!(decisions(&r)[&j[3]].1, vec!["daily".to_string()]);
    // --keep-within 1d keeps everything (all were taken within seconds).
    let r = forget_json(a, &["--keep-within", "1d", "--dry-run"]);
    assert!(forget_list(&r).is_empty(), "{r}");
    assert_eq!(listed(a), fx.alive_now, "dry runs change nothing");
    // A label nothing has: nothing to decide, nothing forgotten.
    let r = forget_json(a, &["--label", "nosuch", "--keep-last", "1"]);
    assert!(
        r["decisions"].as_array().is_empty() && forget_list(&r).is_empty(),
        "{r}"
    );
}

#[test]
fn a_refused_forget_changes_nothing_and_ids_forget_all_or_nothing() {
    let mut fx = Labelled::new();
    fx.forget_db_keep_last_1();
    fx.forget_keep_last_2();
    let (a, j) = (&fx.a, &fx.j);
    // Misuse changes nothing: ids with a policy, or neither.
    let packs = pack_digests(a);
    a.cmd("forget")
        .arg(&j[2])
        .args(["--keep-last", "1"])
        .code(2);
    a.cmd("forget").code(2);
    // All or nothing: one unknown id and the known one is not forgotten either.
    a.cmd("forget")
        .arg(&j[2])
        .arg("00000000deadbeef")
        .code(1)
        .assert_one_line_error("00000000deadbeef");
    assert_eq!(listed(a), fx.alive_now, "a refused forget forgot something");
    assert_eq!(
        pack_digests(a),
        packs,
        "a refused forget wrote to the packs"
    );
}

#[test]
fn forget_by_id_takes_prefixes_and_full_ids_across_labels_and_names_an_id_already_forgotten() {
    let mut fx = Labelled::new();
    fx.forget_db_keep_last_1();
    fx.forget_keep_last_2();
    // By id across labels: a short prefix and a full id in one command.
    fx.forget_u0_and_j2_by_id();
    let (a, j, d, u) = (&fx.a, &fx.j, &fx.d, &fx.u);
    assert_eq!(listed(a), fx.alive_now, "u0 and j2 are forgotten by id");
    assert_eq!(fx.alive_now, set([&j[3], &d[2], &u[1]]));
    // Forgetting a forgotten snapshot is an error naming it.
    a.cmd("forget")
        .arg(&j[2])
        .code(1)
        .assert_one_line_error(&j[2]);
}

#[test]
fn after_forgets_by_label_and_id_prune_leaves_each_kept_snapshot_reading_its_own_data() {
    let mut fx = Labelled::new();
    fx.forget_db_keep_last_1();
    fx.forget_keep_last_2();
    fx.forget_u0_and_j2_by_id();
    let (a, j, d, u) = (&fx.a, &fx.j, &fx.d, &fx.u);
    a.cmd("prune").ok();
    assert_check_clean(a, true, "after forgets by label and id, and prune");
    for (id, label) in [(&j[3], "jira"), (&d[2], "db"), (&u[1], "")] {
        let n = LABEL_ORDER
            .iter()
            .enumerate()
            .filter(|(_, l)| **l == label)
            .map(|(n, _)| n)
            .next_back()
            .unwrap();
        assert_eq!(
            a.cat(format!("{id}:data/dump.txt")),
            format!("{label} #{n}\n").into_bytes(),
            "the kept {label:?} snapshot reads its own dump"
        );
    }
}

/// restic counts a zero `--keep-*` as no policy at all ("no policy was specified, no
/// snapshots will be removed"); strata refuses an empty policy ("nothing would be
/// kept"). `--keep-last 0` must not be the one spelling that forgets every snapshot.
#[test]
fn zero_counts_are_no_policy_and_forget_nothing() {
    let w = Workdir::new();
    let a = w.archive(&[]);
    for i in 0..3 {
        w.write("src/dump.txt", format!("dump {i}\n"));
        ingest_as(&a, &w.join("src"), "data", "app", &[]);
    }
    let list = listing(&a);
    let packs = pack_digests(&a);
    for args in [
        vec!["--keep-last", "0"],
        vec!["--keep-daily", "0", "--keep-weekly", "0"],
        vec!["--label", "app", "--keep-last", "0", "--keep-yearly", "0"],
    ] {
        let out = a.cmd("forget").args(&args).run();
        assert!(
            matches!(out.code(), Some(0 | 2)),
            "forget with zero counts must forget nothing (exit 0) or refuse like an empty \
             policy (exit 2)\n{out}"
        );
        assert_eq!(
            listing(&a),
            list,
            "`strata forget ARCHIVE {}` forgot snapshots: a zero count is no policy, as in \
             restic, not \"keep nothing\"\n{out}",
            args.join(" ")
        );
        assert_eq!(pack_digests(&a), packs, "{out}");
    }
}

// ---------------------------------------------------------------------------------------
// 6. append-only
// ---------------------------------------------------------------------------------------

fn config_text(a: &Archive) -> String {
    fs::read_to_string(a.path.join("config")).unwrap()
}

fn assert_append_only_config(a: &Archive, when: &str) {
    let c = config_text(a);
    assert!(
        c.lines().any(|l| l.trim() == "append_only = true"),
        "{when}: the config must say append_only = true:\n{c}"
    );
}

/// forget (by id, by policy) and prune are refused with one line and exit 1, and change
/// no byte of the packs and no snapshot.
fn assert_refuses_retention(a: &Archive, when: &str) {
    let packs = pack_digests(a);
    let list = listing(a);
    let first = ids(a)[0].clone();
    for args in [
        vec![first.as_str()],
        vec!["--keep-last", "1"],
        vec!["--keep-daily", "1", "--label", "app"],
    ] {
        a.cmd("forget")
            .args(&args)
            .code(1)
            .assert_one_line_error("append-only");
    }
    a.cmd("prune").code(1).assert_one_line_error("append-only");
    a.cmd("prune")
        .args(["--max-unused", "0"])
        .code(1)
        .assert_one_line_error("append-only");
    // A dry run may show what would happen; it must not change anything either.
    a.cmd("forget")
        .args(["--keep-last", "1", "--dry-run"])
        .run();
    a.cmd("prune").arg("--dry-run").run();
    assert_eq!(
        pack_digests(a),
        packs,
        "{when}: a refused command changed the packs"
    );
    assert_eq!(
        listing(a),
        list,
        "{when}: a refused command changed the snapshot list"
    );
}

#[test]
fn append_only_archives_refuse_forget_and_prune_and_the_switch_is_one_way() {
    let w = Workdir::new();

    // Created append-only.
    let a = Archive::init(w.join("born"), &["--append-only"]);
    assert_append_only_config(&a, "after init --append-only");
    for i in 0..3 {
        w.write(format!("src/f{i}.txt"), format!("file {i}\n"));
        ingest_as(&a, &w.join("src"), "data", "app", &[]);
    }
    assert_refuses_retention(&a, "created with --append-only");
    assert_eq!(ids(&a).len(), 3);

    // Switched later: forget and prune work before, are refused after.
    let b = Archive::init(w.join("switched"), &[]);
    let cfg_before = config_text(&b);
    assert!(cfg_before.contains("append_only = false"), "{cfg_before}");
    for i in 0..4 {
        write_random_file(&w.join(format!("src2/f{i}.bin")), 70 + i, 200 * KIB);
        ingest_as(&b, &w.join("src2"), "data", "app", &[]);
    }
    let first = ids(&b)[0].clone();
    b.cmd("forget").arg(&first).ok();
    b.cmd("prune").ok();
    let out = b.cmd("append-only").ok();
    assert!(out.stdout.is_empty(), "messages go to stderr\n{out}");
    assert_append_only_config(&b, "after `strata append-only`");
    // Nothing but append_only changed in the config.
    let flip = cfg_before.replace("append_only = false", "append_only = true");
    assert_eq!(config_text(&b), flip, "the switch changes only append_only");
    assert_refuses_retention(&b, "switched with `strata append-only`");

    // No way back: a second switch, init over it, repair with or without an index, an
    // ingest, and made-up flags all leave it append-only.
    b.cmd("append-only").ok();
    b.cmd("append-only").arg("--off").code(2);
    b.cmd("append-only").arg("false").code(2);
    let re_init = strata().arg("init").arg(&b.path).run();
    assert_eq!(
        re_init.code(),
        Some(1),
        "init over an archive is refused\n{re_init}"
    );
    strata()
        .arg("init")
        .arg(&b.path)
        .arg("--append-only")
        .code(1);
    b.cmd("repair").ok();
    fs::remove_file(b.path.join("index.sqlite")).unwrap();
    b.cmd("repair").ok();
    w.write("src2/new.txt", "after the switch\n");
    let added = ingest_as(&b, &w.join("src2"), "data", "app", &[]);
    assert!(
        ids(&b).contains(&added),
        "append-only archives still take new snapshots"
    );
    b.cmd("check").ok();
    assert_eq!(config_text(&b), flip, "the config is as the switch left it");
    assert_refuses_retention(&b, "after re-init, repair and ingest");
    assert_eq!(
        ids(&b).len(),
        4,
        "three survivors of the earlier forget and the new one"
    );
    assert_check_clean(&b, true, "append-only archive at the end");
}

// ---------------------------------------------------------------------------------------
// 7. repair does not resurrect
// ---------------------------------------------------------------------------------------

#[test]
fn repair_after_forget_does_not_bring_forgotten_snapshots_back() {
    let mut rng = seeded_rng(67);
    let w = Workdir::new();
    let a = w.archive(&[]);
    let (gens, _) = build_generations(&w, &a, "app", 5, &mut rng);
    w.write("src-db/dump.sql", "create table t (x int);\n");
    let db_old = ingest_as(&a, &w.join("src-db"), "data", "db", &[]);
    w.write("src-db/dump.sql", "create table t (x int, y int);\n");
    let db_new = ingest_as(&a, &w.join("src-db"), "data", "db", &[]);

    // Two forget records: one by id, one by policy.
    a.cmd("forget")
        .arg(&gens[1].id)
        .arg(short(&gens[3].id))
        .ok();
    a.cmd("forget")
        .args(["--label", "db", "--keep-last", "1"])
        .ok();
    let want = vec![
        gens[0].id.clone(),
        gens[2].id.clone(),
        gens[4].id.clone(),
        db_new.clone(),
    ];
    assert_eq!(ids(&a), want);
    let rows = listing(&a);

    let rebuild = |when: &str| {
        fs::remove_file(a.path.join("index.sqlite")).unwrap();
        let out = a.cmd("repair").ok();
        assert_eq!(
            ids(&a),
            want,
            "{when}: repair from the packs alone brought forgotten snapshots back (or lost \
             kept ones)\n{out}"
        );
        assert_eq!(listing(&a), rows, "{when}: the rebuilt catalogue differs");
        assert_check_clean(&a, false, when);
    };
    // Before prune the forgotten snapshots' records are still in the packs.
    rebuild("forget, then repair");
    assert!(
        a.cmd("ls").arg(&db_old).run().code() == Some(1),
        "the forgotten db snapshot is not readable after repair"
    );
    // After prune the forget records must still be there for the next repair.
    a.cmd("prune").ok();
    rebuild("forget, prune, then repair");
    a.cmd("prune").ok();
    rebuild("forget, prune, repair, prune, then repair");
    assert_check_clean(&a, true, "at the end");
    for &i in &[0usize, 2, 4] {
        assert_generation_restores(
            &a,
            &gens[i].id,
            &gens[i].copy,
            &w.join(format!("restore-{i}")),
        );
    }
    assert_eq!(
        a.cat(format!("{db_new}:data/dump.sql")),
        b"create table t (x int, y int);\n"
    );
}
