//! Archives with generations of one source tree, and the readers of `forget`, `prune`
//! and `check` output that the retention, crash and concurrency tests share (moved from
//! `tests/retention.rs`). Every generation holds the same shared files plus 2-4 MiB that
//! only it holds, so forgetting one frees a known amount. `write_generation` (moved from
//! `tests/prune_check.rs`) overlaps each generation with the next, so prune rewrites packs.

use super::cmd::{Archive, Cmd};
use super::compare::assert_diff_clean;
use super::json::Json;
use super::rng::{Rng, seed};
use super::workdir::{Workdir, copy_tree, random_bytes, write_file, write_random_file};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;
/// Mixed into every seed of `seeded_rng`, so the seeds `tests/retention.rs` printed keep
/// replaying the same runs.
const RETENTION_RNG_SALT: u64 = 0x007e_7e5e_ed0f_4e7a;

/// The generator of a seeded test (`STRATA_SEED`, else `default`); prints the seed.
pub fn seeded_rng(default: u64) -> Rng {
    let seed = seed(default);
    eprintln!("seed {seed} (STRATA_SEED={seed} replays)");
    Rng::new(seed ^ RETENTION_RNG_SALT)
}

/// `du -sb ARCHIVE/packs`: the bytes the packs take.
pub fn du_packs(a: &Archive) -> u64 {
    let out = Cmd::new("du").arg("-sb").arg(a.path.join("packs")).ok();
    out.stdout_str()
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read du's output\n{out}"))
}

/// Every pack file's name and the BLAKE3 of its bytes.
pub fn pack_digests(a: &Archive) -> BTreeMap<String, String> {
    let dir = a.path.join("packs");
    fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            let bytes = fs::read(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                blake3::hash(&bytes).to_hex().to_string(),
            )
        })
        .collect()
}

pub fn pack_names(a: &Archive) -> BTreeSet<String> {
    pack_digests(a).into_keys().collect()
}

/// `strata ingest ARCHIVE SRC:NAME --label LABEL [--tag T]...`; the new snapshot's id.
pub fn ingest_as(a: &Archive, src: &Path, name: &str, label: &str, tags: &[&str]) -> String {
    let mut args: Vec<String> = vec![
        format!("{}:{name}", src.display()),
        "--label".into(),
        label.into(),
    ];
    for t in tags {
        args.push("--tag".into());
        args.push((*t).into());
    }
    let s = a.ingest(&args);
    s["snapshot"].as_str().to_string()
}

/// `check` exits 0 with no errors and no warnings.
pub fn assert_check_clean(a: &Archive, read_data: bool, when: &str) {
    let (out, r) = a.check_json(if read_data { &["--read-data"] } else { &[] });
    let code = out.code().unwrap_or(-1);
    assert!(
        code == 0 && r["errors"].as_u64() == 0 && r["warnings"].as_u64() == 0,
        "{when}: `strata check{}` is not clean (exit {code}):\n{r}",
        if read_data { " --read-data" } else { "" }
    );
}

/// Restores snapshot `id` into a fresh `target` and compares its `data/` with `expected`.
pub fn assert_generation_restores(a: &Archive, id: &str, expected: &Path, target: &Path) {
    a.restore(id, target);
    assert_diff_clean(expected, &target.join("data"));
    fs::remove_dir_all(target).unwrap();
}

/// `strata snapshots ARCHIVE --json` as text: the whole catalogue, to compare.
pub fn listing(a: &Archive) -> String {
    a.cmd("snapshots").arg("--json").ok().stdout_str()
}

/// The ids of `strata snapshots --json`, oldest first.
pub fn ids(a: &Archive) -> Vec<String> {
    a.snapshot_ids()
}

pub fn short(id: &str) -> &str {
    &id[..8]
}

/// One generation of a source tree: its snapshot, a copy of the tree as it was, and how
/// many bytes only it holds.
pub struct Generation {
    pub id: String,
    pub copy: PathBuf,
    pub unique_len: u64,
}

/// Ingests `n` generations of one source tree as `data` with `label`. Every generation
/// holds the same shared files (`shared_len` bytes, stored once) and one incompressible
/// file of 2-4 MiB that no other generation has, plus a small text file that changes.
/// A copy of the tree is kept for each generation (`cp -a`).
pub fn build_generations(
    w: &Workdir,
    a: &Archive,
    label: &str,
    n: usize,
    rng: &mut Rng,
) -> (Vec<Generation>, u64) {
    let src = w.join(format!("src-{label}"));
    let shared = [
        ("shared/app.jar", 1200 * KIB + 77),
        ("shared/lib/native.so", 700 * KIB + 5),
        ("shared/conf/big.xml", 150 * KIB),
    ];
    let mut shared_len = 0;
    for (i, (rel, len)) in shared.iter().enumerate() {
        write_random_file(&src.join(rel), rng.next_u64() ^ i as u64, *len);
        shared_len += len;
    }
    w.write(
        format!("src-{label}/shared/conf/app.properties"),
        b"db.url=jdbc:postgresql://localhost/app\n",
    );
    let mut gens = Vec::new();
    for g in 0..n {
        for e in fs::read_dir(&src).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("unique-")
            {
                fs::remove_file(p).unwrap();
            }
        }
        let unique_len = rng.range(2 * MIB, 4 * MIB);
        write_random_file(
            &src.join(format!("unique-{g}.bin")),
            rng.next_u64(),
            unique_len,
        );
        w.write(
            format!("src-{label}/version.txt"),
            format!("{label} generation {g} of {n}\n"),
        );
        let id = ingest_as(a, &src, "data", label, &[]);
        let copy = w.join(format!("copies/{label}-{g}"));
        fs::create_dir_all(copy.parent().unwrap()).unwrap();
        copy_tree(&src, &copy);
        gens.push(Generation {
            id,
            copy,
            unique_len,
        });
    }
    (gens, shared_len)
}

/// `strata forget ARCHIVE ARGS... --json`, expected to succeed.
pub fn forget_json(a: &Archive, args: &[&str]) -> Json {
    a.cmd("forget").args(args).arg("--json").ok().json()
}

/// The decisions of a `forget --json`, by id: (keep, reasons, label).
pub fn decisions(j: &Json) -> BTreeMap<String, (bool, Vec<String>, String)> {
    j["decisions"]
        .as_array()
        .iter()
        .map(|d| {
            let keep = match d["keep"] {
                Json::Bool(b) => b,
                ref other => panic!("`keep` is not a boolean: {other}"),
            };
            let reasons = d["reasons"]
                .as_array()
                .iter()
                .map(|r| r.as_str().to_string())
                .collect();
            (
                d["id"].as_str().to_string(),
                (keep, reasons, d["label"].as_str().to_string()),
            )
        })
        .collect()
}

pub fn forget_list(j: &Json) -> BTreeSet<String> {
    j["forget"]
        .as_array()
        .iter()
        .map(|s| s.as_str().to_string())
        .collect()
}

pub fn set<'a>(ids: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    ids.into_iter().cloned().collect()
}

/// Generation `i` of the source: `s{i-1}` (shared with the generation before), `u{i}`
/// (its own) and `s{i}` (shared with the next). Forgetting the oldest generation leaves
/// its pack half used, so prune rewrites it and moves the shared half.
pub fn write_generation(dir: &Path, i: u64, size: u64) {
    let size = size as usize;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    if i > 0 {
        write_file(&dir.join("shared-old"), &random_bytes(1000 + i - 1, size));
    }
    write_file(&dir.join("own"), &random_bytes(2000 + i, size));
    write_file(&dir.join("shared-new"), &random_bytes(1000 + i, size));
}
