//! Corruption: damage done to a real archive, and what `check`, `repair`, `restore` and
//! the mount make of it.
//!
//! - `index.sqlite` deleted, emptied, cut in half, overwritten, or stale: named with a
//!   repair hint, rebuilt from the packs.
//! - Bytes flipped in packs: named by `check --read-data`, refused by `restore`, EIO
//!   through a real FUSE mount.
//! - A pack cut at every record boundary and inside every record: no panic, and `repair`
//!   keeps every snapshot whose data survived.
//! - A pack of a crafted archive (two-chunk, holed and symlinked files) cut at every
//!   record boundary, one byte before it and inside each record: `ls -R`, `restore` and
//!   `cat` give clean errors or correct bytes (moved from `tests/hostile.rs`).
//! - A directory named like a pack in `packs/`: skipped by `repair` with a warning, named
//!   by `check` as a stray entry (moved from `tests/prune_check.rs`).
//! - A damaged directory (tree blob): skipped and listed by `restore`, the rest restored,
//!   exit 3 (moved from `tests/restore_security.rs`).
//!
//! Each test prints its figures (`eprintln!`, see them with `--nocapture`); they are
//! copied into docs/RELIABILITY.md. `STRATA_SEED=N` replays another seed.

mod common;
#[path = "common/faults.rs"]
mod faults;

use common::generations::{KIB, write_generation};
use common::hostile::{Fx, assert_clean_failure, dir, entries, file, noise, symlink};
use common::*;
use faults::*;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use strata::format::tree::Extent;

/// Mixed into every seed, so the seeds printed before this file was split out of
/// `tests/integrity.rs` keep replaying the same faults.
const RNG_SALT: u64 = 0x05ee_d0f5_7a7a;

// ---------------------------------------------------------------------------------------
// index.sqlite deleted, emptied, cut, overwritten or stale
// ---------------------------------------------------------------------------------------

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

/// One way of losing or damaging `index.sqlite`: (archive dir, index length, rng, stale
/// copy of the index).
type Damage = fn(&Path, u64, &mut Rng, &Path);

const STALE: &str = "replaced by a stale copy";

/// The six damages, in the order that fixes which random bytes each one writes (the
/// seeded `Rng` is drawn from by the garbage and first-100-bytes cases only).
fn index_damages() -> [(&'static str, Damage); 6] {
    [
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
        (STALE, |a, _, _, stale| {
            for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
                let _ = fs::remove_file(a.join(f));
                if stale.join(f).exists() {
                    fs::copy(stale.join(f), a.join(f)).unwrap();
                }
            }
        }),
    ]
}

/// The pristine archive of `archive_with_four_snapshots` and what it answers before any
/// damage: the catalogue, `ls -R --json` of each snapshot and the index's length.
struct IndexFixture {
    wd: Workdir,
    pristine: Archive,
    expected: Vec<Expected>,
    stale: PathBuf,
    catalog: String,
    lists: Vec<String>,
    index_len: u64,
}

/// One damaged copy of the pristine archive, after the five commands every case runs
/// on it (`snapshots`, `ls`, `restore`, `cat`, `check`), whose outputs are `runs`.
struct DamagedIndex {
    n: usize,
    what: &'static str,
    archive: Archive,
    target: PathBuf,
    runs: [Out; 5],
}

impl IndexFixture {
    fn new() -> IndexFixture {
        let wd = Workdir::new();
        let (pristine, expected, stale) = archive_with_four_snapshots(&wd);
        let catalog = pristine.cmd("snapshots").arg("--json").ok().stdout_str();
        let lists = listings(&pristine, &expected);
        let index_len = fs::metadata(pristine.path.join("index.sqlite"))
            .unwrap()
            .len();
        IndexFixture {
            wd,
            pristine,
            expected,
            stale,
            catalog,
            lists,
            index_len,
        }
    }

    /// Each damage in turn on a fresh copy of the archive (same seed, same order, so the
    /// same bytes in every test), then the five commands; `each` judges the case and the
    /// copy is removed afterwards.
    fn each_damage(&self, mut each: impl FnMut(&DamagedIndex)) {
        let mut rng = Rng::new(seed(0x1dec5) ^ RNG_SALT);
        for (n, (what, damage)) in index_damages().into_iter().enumerate() {
            let archive = Archive {
                path: self.wd.join(format!("case-{n}")),
            };
            copy_tree(&self.pristine.path, &archive.path);
            damage(&archive.path, self.index_len, &mut rng, &self.stale);
            let expected = &self.expected;
            let last = &expected[expected.len() - 1];
            let target = self.wd.join(format!("target-{n}"));
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
            let case = DamagedIndex {
                n,
                what,
                archive,
                target,
                runs,
            };
            each(&case);
            let _ = fs::remove_dir_all(&case.target);
            fs::remove_dir_all(&case.archive.path).unwrap();
        }
    }
}

impl DamagedIndex {
    /// `strata repair`, which must exit 0.
    fn repair(&self) {
        let rep = self.archive.cmd("repair").run();
        assert_eq!(
            rep.code(),
            Some(0),
            "repair after the index was {}\n{rep}",
            self.what
        );
    }
}

#[test]
fn a_lost_or_damaged_index_makes_every_command_fail_with_one_line_naming_it_and_a_repair_hint() {
    let fx = IndexFixture::new();
    let mut refused = 0;
    fx.each_damage(|case| {
        let what = case.what;
        if what == STALE {
            return;
        }
        for out in &case.runs {
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
            !case.target.exists() || fs::read_dir(&case.target).unwrap().next().is_none(),
            "index {what}: a refused restore wrote into its target"
        );
    });
    eprintln!("index: {refused} commands refused with a one-line error and a `strata repair` hint");
}

#[test]
fn a_stale_index_serves_the_snapshots_it_knows_and_check_names_strata_repair() {
    let fx = IndexFixture::new();
    let expected = &fx.expected;
    fx.each_damage(|case| {
        let (what, archive, runs) = (case.what, &case.archive, &case.runs);
        if what != STALE {
            return;
        }
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
    });
}

#[test]
fn repair_rebuilds_a_lost_or_damaged_index_with_the_same_catalogue_listings_and_bytes() {
    let fx = IndexFixture::new();
    let (wd, expected) = (&fx.wd, &fx.expected);
    let (mut repaired, mut restored) = (0, 0);
    fx.each_damage(|case| {
        let (n, what, archive) = (case.n, case.what, &case.archive);
        let last = &expected[expected.len() - 1];
        case.repair();
        repaired += 1;
        let after = archive.cmd("snapshots").arg("--json").ok().stdout_str();
        assert_eq!(
            Json::parse(&after).unwrap(),
            Json::parse(&fx.catalog).unwrap(),
            "index {what}: after repair the catalogue (ids, times, labels, tags, sources, counts) must be as before"
        );
        assert_eq!(
            listings(archive, expected),
            fx.lists,
            "index {what}: ls -R after repair"
        );
        for (i, e) in expected.iter().enumerate() {
            assert_restores_identically(wd, archive, e, &format!("{n}-{i}"));
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
    });
    eprintln!(
        "index: {} kinds of index damage; {repaired} repairs, each recovering all {} snapshots with the same ids, \
         times, labels and tags; {restored} restores byte-identical",
        index_damages().len(),
        expected.len()
    );
}

#[test]
fn after_repair_of_a_lost_or_damaged_index_the_archive_takes_new_snapshots() {
    let fx = IndexFixture::new();
    fx.each_damage(|case| {
        case.repair();
        let archive = &case.archive;
        let s = archive.ingest([fx.wd.join("p1")]);
        assert_eq!(
            archive.snapshot_ids().last().unwrap(),
            s["snapshot"].as_str()
        );
    });
}

// ---------------------------------------------------------------------------------------
// Bytes flipped in packs
// ---------------------------------------------------------------------------------------

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

/// The pristine two-snapshot archive of `flip_sources` (64 KiB chunks), what each
/// snapshot reaches, the source files, and every chunk record with its pack's file name.
struct FlipFixture {
    wd: Workdir,
    pristine: Archive,
    contents: Vec<SnapContent>,
    originals: Vec<BTreeMap<String, Vec<u8>>>,
    chunks: Vec<(std::ffi::OsString, PackRecord)>,
}

/// One seeded copy of the archive with three chunk records damaged, and what that must
/// damage: `expected` as `check` names it (`short:/path`), `per_snapshot` as paths.
struct Flipped {
    seed: u64,
    archive: Archive,
    hit: HashSet<strata::format::BlobId>,
    flipped_bytes: usize,
    expected: BTreeSet<String>,
    per_snapshot: Vec<BTreeSet<String>>,
}

impl FlipFixture {
    fn new() -> FlipFixture {
        let wd = Workdir::new();
        let sources = flip_sources(&wd);
        let pristine = wd.archive(&["--chunk-size", "64K"]);
        for s in &sources {
            pristine.ingest([format!("{}:data", s.display())]);
        }
        let contents = snapshot_contents(&pristine.path);
        assert_eq!(contents.len(), 2);
        let originals: Vec<BTreeMap<String, Vec<u8>>> =
            sources.iter().map(|s| read_files(s)).collect();
        let chunks = pack_paths(&pristine.path)
            .into_iter()
            .flat_map(|p| {
                let name = p.file_name().unwrap().to_owned();
                pack_records(&fs::read(&p).unwrap())
                    .into_iter()
                    .filter(|r| r.kind == 1)
                    .map(move |r| (name.clone(), r))
            })
            .collect();
        FlipFixture {
            wd,
            pristine,
            contents,
            originals,
            chunks,
        }
    }

    /// Five seeds in turn (`STRATA_SEED` moves them), each on a fresh copy removed
    /// afterwards; the seeds pick the same records and bytes in every test.
    fn each_seed(&self, mut each: impl FnMut(&Flipped)) {
        let seed0 = seed(0xf11b);
        for seed in seed0..seed0 + 5 {
            let mut rng = Rng::new(seed ^ RNG_SALT);
            let archive = Archive {
                path: self.wd.join(format!("flipped-{seed}")),
            };
            copy_tree(&self.pristine.path, &archive.path);
            // Three records, each with one to three flipped bytes; in odd seeds one of the
            // flips lands in a record header instead of the stored bytes.
            let mut hit: HashSet<strata::format::BlobId> = HashSet::new();
            let mut flipped_bytes = 0;
            while hit.len() < 3 {
                let (name, rec) = &self.chunks[rng.below(self.chunks.len() as u64) as usize];
                if !hit.insert(rec.id) {
                    continue;
                }
                let pack = archive.path.join("packs").join(name);
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
            let mut expected: BTreeSet<String> = BTreeSet::new();
            let mut per_snapshot: Vec<BTreeSet<String>> = Vec::new();
            for c in &self.contents {
                let bad: BTreeSet<String> = c
                    .files
                    .iter()
                    .filter(|(_, ids)| ids.iter().any(|id| hit.contains(id)))
                    .map(|(p, _)| p.clone())
                    .collect();
                expected.extend(bad.iter().map(|p| format!("{}:/{p}", c.short)));
                per_snapshot.push(bad);
            }
            let case = Flipped {
                seed,
                archive,
                hit,
                flipped_bytes,
                expected,
                per_snapshot,
            };
            each(&case);
            fs::remove_dir_all(&case.archive.path).unwrap();
        }
    }
}

#[test]
fn flipped_pack_bytes_are_named_file_by_file_by_check_read_data() {
    let fx = FlipFixture::new();
    let (mut flipped_bytes, mut damaged_records) = (0, 0);
    fx.each_seed(|case| {
        let (seed, archive, hit) = (case.seed, &case.archive, &case.hit);
        flipped_bytes += case.flipped_bytes;
        damaged_records += hit.len();
        // check --read-data names exactly those files, one error per damaged record.
        let (out, report) = archive.check_json(&["--read-data"]);
        assert_eq!(
            out.code(),
            Some(5),
            "seed {seed}: check must find the damage\n{out}"
        );
        assert_eq!(
            damaged_paths(&report),
            case.expected,
            "seed {seed}: check --read-data must name exactly the files whose chunks were flipped\n{out}"
        );
        assert_eq!(
            report["errors"].as_u64(),
            hit.len() as u64,
            "seed {seed}: one error per damaged record\n{}",
            finding_lines(&report)
        );
    });
    eprintln!(
        "flip: 5 seeds, {flipped_bytes} bytes flipped in {damaged_records} records; check --read-data named exactly \
         the damaged files"
    );
}

#[test]
fn flipped_pack_bytes_make_restore_refuse_the_damaged_files_and_restore_the_rest_exactly() {
    let fx = FlipFixture::new();
    let (mut damaged_files, mut intact_files) = (0, 0);
    fx.each_seed(|case| {
        let (seed, archive, per_snapshot) = (case.seed, &case.archive, &case.per_snapshot);
        // restore: every other file byte for byte, the damaged ones named and absent, exit 3.
        for (k, c) in fx.contents.iter().enumerate() {
            let target = fx.wd.join(format!("restore-{seed}-{k}"));
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
            for (path, bytes) in &fx.originals[k] {
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
    });
    eprintln!(
        "flip: restore refused the {damaged_files} damaged files and restored {intact_files} others byte for byte"
    );
}

#[test]
fn flipped_pack_bytes_give_eio_through_the_mount_for_exactly_the_damaged_files() {
    require_fuse();
    let fx = FlipFixture::new();
    let (mut eio_reads, mut good_reads) = (0, 0);
    fx.each_seed(|case| {
        let (seed, archive, per_snapshot) = (case.seed, &case.archive, &case.per_snapshot);
        // Through a real mount: EIO for exactly the damaged files, the right bytes for all
        // the others.
        let mnt = fx.wd.join(format!("mnt-{seed}"));
        let mount = DaemonMount::start(
            &archive.path,
            &mnt,
            &[],
            &fx.wd.join(format!("mount-{seed}.log")),
        );
        for (k, c) in fx.contents.iter().enumerate() {
            let root = mount.dir.join("by-id").join(c.id.hex());
            for (path, bytes) in &fx.originals[k] {
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
    });
    eprintln!(
        "flip: the mount gave EIO {eio_reads} times and the right bytes {good_reads} times; no wrong byte returned"
    );
}

// ---------------------------------------------------------------------------------------
// A pack cut at every record boundary and inside every record
// ---------------------------------------------------------------------------------------

/// Three snapshots, one data pack and one metadata pack each (a small file, a 150 kB one
/// in a subdirectory, three trees, the snapshot record); the second and third share a
/// chunk with the first. Every pack is then cut at every record boundary, inside every
/// header, at every data start and mid-data, each cut on a fresh copy.
struct PackCutFixture {
    wd: Workdir,
    pristine: Archive,
    expected: Vec<Expected>,
    contents: Vec<SnapContent>,
    packs: Vec<(PathBuf, Vec<u8>)>,
    all_ids: Vec<String>,
}

/// One copy of the archive with pack `p` cut at `cut`, and what must survive it.
struct Cut {
    p: usize,
    cut: u64,
    ctx: String,
    archive: Archive,
    /// Per snapshot: all its blobs survive.
    survives: Vec<bool>,
    /// Per snapshot: its snapshot record survives.
    record_survives: Vec<bool>,
    /// Per snapshot: its trees and chunks survive (what a restore through the index needs).
    data_survives: Vec<bool>,
}

impl PackCutFixture {
    fn new() -> PackCutFixture {
        let wd = Workdir::new();
        let pristine = wd.archive(&[]);
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
        PackCutFixture {
            wd,
            pristine,
            expected,
            contents,
            packs,
            all_ids,
        }
    }

    /// Every cut of every pack in turn; the copy is removed after `each`.
    fn each_cut(&self, mut each: impl FnMut(&Cut)) {
        let (wd, packs, contents) = (&self.wd, &self.packs, &self.contents);
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
                let ctx = format!(
                    "packs/{} cut at {cut} of {}",
                    name.to_string_lossy(),
                    bytes.len()
                );
                let archive = Archive {
                    path: wd.join(format!("cut-{p}-{cut}")),
                };
                copy_tree(&self.pristine.path, &archive.path);
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
                let case = Cut {
                    p,
                    cut,
                    ctx,
                    archive,
                    survives,
                    record_survives,
                    data_survives,
                };
                each(&case);
                fs::remove_dir_all(&case.archive.path).unwrap();
            }
        }
    }
}

#[test]
fn a_pack_cut_anywhere_is_reported_by_check_and_never_restored_as_wrong_bytes() {
    let fx = PackCutFixture::new();
    let (wd, expected) = (&fx.wd, &fx.expected);
    let (mut cuts, mut runs) = (0, 0);
    fx.each_cut(|case| {
        let (p, cut, ctx, archive) = (case.p, case.cut, &case.ctx, &case.archive);
        let data_survives = &case.data_survives;
        cuts += 1;
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
    });
    eprintln!(
        "truncate: {cuts} truncations of 3 packs (every record boundary, inside every header, at every data start \
         and mid-data); {runs} runs of check, ls and restore without a panic"
    );
}

#[test]
fn repair_of_a_cut_pack_recovers_every_snapshot_whose_data_survived_and_names_the_lost_ones() {
    let fx = PackCutFixture::new();
    let contents = &fx.contents;
    let (mut recovered_total, mut named_lost) = (0, 0);
    let mut problems = Problems::default();
    fx.each_cut(|case| {
        let (ctx, archive) = (&case.ctx, &case.archive);
        let (survives, record_survives) = (&case.survives, &case.record_survives);
        // repair: exit 0 when everything survived, else 3 naming what was not recovered.
        let rep = archive.cmd("repair").run();
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
                recovered_total += 1;
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
    });
    eprintln!(
        "truncate: repair recovered {recovered_total} snapshots; {named_lost} that lost data were named NOT recovered \
         (the others lost their snapshot record too)"
    );
    problems.assert_none();
}

#[test]
fn after_repair_of_a_cut_pack_exactly_the_survivors_are_listed_checked_clean_and_restored() {
    let fx = PackCutFixture::new();
    let (wd, expected) = (&fx.wd, &fx.expected);
    let (mut lost_total, mut restores) = (0, 0);
    fx.each_cut(|case| {
        let (p, cut, ctx, archive) = (case.p, case.cut, &case.ctx, &case.archive);
        let survives = &case.survives;
        // Its exit code and messages are judged by the test above.
        let rep = archive.cmd("repair").run();
        let ids = archive.snapshot_ids();
        let want: Vec<String> = fx
            .all_ids
            .iter()
            .zip(survives)
            .filter(|(_, s)| **s)
            .map(|(i, _)| i.clone())
            .collect();
        assert_eq!(ids, want, "{ctx}: the snapshots listed after repair\n{rep}");
        lost_total += fx.all_ids.len() - want.len();
        let (out, report) = archive.check_json(&[]);
        assert!(
            report["findings"].as_array().is_empty(),
            "{ctx}: check after repair must be clean\n{out}"
        );
        for (k, e) in expected.iter().enumerate() {
            if survives[k] {
                assert_restores(wd, archive, e, &format!("cut-{p}-{cut}-{k}"), false);
                restores += 1;
            }
        }
    });
    eprintln!(
        "truncate: {lost_total} snapshots lost data to a cut; {restores} restores of survivors byte-identical"
    );
}

// ---------------------------------------------------------------------------------------
// A stray directory among the packs (moved from tests/prune_check.rs)
// ---------------------------------------------------------------------------------------

#[test]
fn repair_skips_a_directory_named_like_a_pack_and_check_names_it() {
    let wd = Workdir::new();
    let archive = wd.archive(&[]);
    let src = wd.join("src");
    write_generation(&src, 0, 64 * KIB);
    archive.ingest([src.as_os_str()]);
    let before = archive.snapshot_ids();
    let stray = archive.path.join("packs").join("00000000000000ff.pack");
    std::fs::create_dir(&stray).unwrap();
    std::fs::write(stray.join("inside"), b"not a pack").unwrap();

    let out = archive.cmd("check").ok();
    let err = out.stderr_str();
    assert!(
        err.contains("stray entry") && err.contains("00000000000000ff.pack"),
        "check must name the stray entry\n{out}"
    );
    assert!(err.contains("no errors"), "{out}");

    let out = archive.cmd("repair").ok();
    let err = out.stderr_str();
    assert!(
        err.contains("strata: warning: packs/00000000000000ff.pack is not a regular file"),
        "repair must skip the directory with a warning\n{out}"
    );
    assert!(stray.join("inside").exists(), "repair must leave it alone");
    assert_eq!(archive.snapshot_ids(), before);
    // Writers and prune still work beside it.
    write_generation(&src, 1, 64 * KIB);
    archive.ingest([src.as_os_str()]);
    archive.cmd("forget").arg(&before[0]).ok();
    archive.cmd("prune").ok();
    archive.cmd("check").arg("--read-data").ok();
}

// ---------------------------------------------------------------------------------------
// A damaged directory tree during restore (moved from tests/restore_security.rs)
// ---------------------------------------------------------------------------------------

#[test]
fn a_damaged_directory_is_skipped_and_listed_and_the_rest_is_restored() {
    let wd = Workdir::new();
    let src = wd.join("src");
    write_file(&src.join("a/one"), b"one\n");
    write_file(&src.join("b/two"), b"two\n");
    write_file(&src.join("b/deeper/three"), b"three\n");
    write_file(&src.join("c/four"), b"four\n");
    write_file(&src.join("z"), b"last\n");
    let archive = wd.archive(&[]);
    archive.ingest([format!("{}:data", src.display())]);

    // The tree blob of data/b, found through the library, then damaged in its pack.
    let tree_b = {
        let a = crate::common::open_archive(&archive.path);
        let row = a.snapshots().unwrap().pop().unwrap();
        let find = |tree, name: &[u8]| {
            a.read_tree(&tree)
                .unwrap()
                .into_iter()
                .find(|n| n.name == name)
                .and_then(|n| n.subtree())
                .unwrap()
        };
        find(find(row.root, b"data"), b"b")
    };
    let mut damaged = false;
    for pack in pack_paths(&archive.path) {
        let bytes = fs::read(&pack).unwrap();
        for r in pack_records(&bytes) {
            if r.id == tree_b {
                flip_byte(&pack, r.data_start() + r.stored_len / 2, 0x5a);
                damaged = true;
            }
        }
    }
    assert!(damaged, "the tree of data/b is in a pack");

    let target = wd.join("target");
    let out = archive.cmd("restore").arg("latest").arg(&target).code(3);
    let err = out.stderr_str();
    assert!(
        err.lines().any(|l| l.trim_start().starts_with("data/b")),
        "the damaged directory is listed\n{out}"
    );
    for (p, want) in [
        ("data/a/one", "one\n"),
        ("data/c/four", "four\n"),
        ("data/z", "last\n"),
    ] {
        assert_eq!(
            fs::read_to_string(target.join(p)).unwrap_or_default(),
            want,
            "{p} is restored\n{out}"
        );
    }
    assert!(
        !target.join("data/b/two").exists(),
        "nothing is invented under the damaged directory\n{out}"
    );
}

// ---------------------------------------------------------------------------------------
// A pack truncated anywhere, in a crafted archive (moved from tests/hostile.rs)
// ---------------------------------------------------------------------------------------

#[test]
fn a_pack_truncated_anywhere_gives_clean_errors_or_correct_bytes() {
    let fx = Fx::new();
    let a1 = noise(1, 3000);
    let a2 = noise(2, 3000);
    let b = noise(3, 5000);
    let tail = b"the end of a sparse file\n".to_vec();
    let mut expected: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    expected.insert("data/a.txt", [a1.clone(), a2.clone()].concat());
    expected.insert("data/b.bin", b.clone());
    let mut sparse = vec![0u8; 1 << 20];
    sparse.extend_from_slice(&tail);
    expected.insert("data/sparse", sparse);
    expected.insert("top", a1.clone());
    let snap = fx.snapshot(|w| {
        let (x1, x2, xb, xt) = (w.chunk(&a1), w.chunk(&a2), w.chunk(&b), w.chunk(&tail));
        let data = w.tree(&[
            file("a.txt", vec![x1, x2]),
            file("b.bin", vec![xb]),
            symlink("link", "a.txt"),
            file("sparse", vec![Extent::Hole { len: 1 << 20 }, xt]),
        ]);
        w.tree(&[dir("data", data), file("top", vec![x1])])
    });
    let packs = fx.archive.join("packs");
    let names = entries(&packs);
    // A data pack (the chunks) and a metadata pack (the trees and the snapshot record):
    // cut each in turn.
    assert_eq!(names.len(), 2, "a data pack and a metadata pack: {names:?}");
    for name in &names {
        let pack_path = packs.join(name);
        let pack_id = strata::format::PackId::from_file_name(name).unwrap();
        let full = std::fs::read(&pack_path).unwrap();
        let scan = strata::packs::scan_pack(&full, pack_id).unwrap();
        assert!(scan.stop.is_none());

        // Cut points: inside the pack header, every record boundary and one byte before it
        // (a record's end is the next one's start), inside each record header and inside
        // each record's data.
        let mut cuts = vec![0usize, 10, full.len() - 1, full.len()];
        for e in &scan.entries {
            let start = e.offset as usize;
            let end = start + 64 + e.header.stored_len as usize;
            cuts.extend([start - 1, start, start + 32, (start + 64 + end) / 2]);
        }
        cuts.sort();
        cuts.dedup();
        assert_eq!(*cuts.last().unwrap(), full.len());

        for (n, &cut) in cuts.iter().enumerate() {
            std::fs::write(&pack_path, &full[..cut]).unwrap();
            let ctx = format!("pack cut at {cut} of {}", full.len());

            let r = fx.ls(&snap, &["-R"]);
            if r.code == Some(0) {
                let out = String::from_utf8_lossy(&r.stdout);
                for p in expected.keys().chain(&["data/link"]) {
                    assert!(out.lines().any(|l| l == *p), "{ctx}: ls lost {p}\n{r}");
                }
            } else {
                assert_clean_failure(&r);
            }

            let target = fx.target(&format!("cut-{name}-{n}"));
            let r = fx.restore(&snap, &target, false);
            if r.code != Some(0) {
                assert_clean_failure(&r);
            }
            // Whatever exists holds exactly the right bytes; on success, everything exists.
            for (p, want) in &expected {
                match std::fs::read(target.join(p)) {
                    Ok(got) => assert!(got == *want, "{ctx}: {p} restored with wrong bytes\n{r}"),
                    Err(_) => assert!(r.code != Some(0), "{ctx}: {p} missing after success\n{r}"),
                }
            }
            if r.code == Some(0) {
                assert_eq!(
                    std::fs::read_link(target.join("data/link")).unwrap(),
                    Path::new("a.txt")
                );
            }

            // cat: a file of two chunks, and one that starts with a hole.
            for p in ["data/a.txt", "data/sparse"] {
                let want = &expected[p];
                let r = fx.cat(&format!("{snap}:{p}"));
                if r.code == Some(0) {
                    assert!(r.stdout == *want, "{ctx}: cat {p} gave wrong bytes");
                } else {
                    assert_clean_failure(&r);
                    assert!(
                        want.starts_with(&r.stdout),
                        "{ctx}: cat {p} wrote wrong bytes before failing"
                    );
                }
            }
        }
        std::fs::write(&pack_path, &full).unwrap();
        let r = fx.restore(&snap, &fx.target(&format!("whole-again-{name}")), false);
        assert_eq!(r.code, Some(0), "{r}");
    }
}
