//! Hostile archives: trees, blobs and index rows crafted through the library API (and
//! patched by hand where the encoder refuses), then read by the real `strata` binary
//! (`restore`, `ls`, `cat`). Whatever the archive holds, strata must not panic, must
//! fail with one `strata: error:` line (exit 1, or 3 for damaged files), and must write
//! nothing outside TARGET: every TARGET sits in a temp dir next to a sibling `outside/`,
//! and each run compares a listing of the whole temp dir (TARGET excepted) before and
//! after. Symlinks in these archives point at `outside/`, at `/etc/passwd`, and at a
//! "ghost" absolute path next to the temp dir that must never come to exist.
//!
//! The fixture (`Fx`), the node builders and the runner are in `tests/common/hostile.rs`;
//! strata runs through the shared runner `tests/common/cmd.rs`. A pack truncated anywhere
//! is tested in `tests/corruption.rs`.

mod common;

use common::cmd::{Cmd, strata_bin};
use common::hostile::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use strata::format::BlobId;
use strata::format::pack::BlobKind;
use strata::format::tree::{Extent, Node, NodeKind, Payload, encode_tree};

// ---------------------------------------------------------------------------------------
// Hostile names, orders and duplicates
// ---------------------------------------------------------------------------------------

#[test]
fn hostile_names_at_the_root_or_one_level_down_are_refused() {
    let fx = Fx::new();
    // (case, forged name). Placeholders are unique marker names, patched afterwards.
    let long = vec![b'n'; 256];
    let bad: Vec<(&str, &[u8])> = vec![
        ("dotdot", b".."),
        ("dot", b"."),
        ("slash", b"a/b"),
        ("abs", b"/etc"),
        ("abs-outside", fx.outside_abs().leak().as_bytes()),
        ("dotdot-outside", b"../outside"),
        ("empty", b""),
        ("nul", b"a\0b"),
        ("long", &long),
    ];
    for (case, name) in bad {
        for level in ["root", "sub"] {
            let case = format!("{case}-{level}");
            let snap = fx.snapshot(|w| {
                let data = w.chunk(b"pwned\n");
                // A directory with the forged name holding a file, so that a restore
                // that accepted the name would write `<name>/pwned`.
                let inner = w.tree(&[file("pwned", vec![data])]);
                let bytes =
                    encode_tree(&[dir("PLACEHOLDER-DIR", inner), file("zz-after", vec![data])])
                        .unwrap();
                let hostile = w.raw_tree(&rename(&bytes, b"PLACEHOLDER-DIR", name));
                if level == "root" {
                    hostile
                } else {
                    // A good sibling first, so restore makes progress before the refusal.
                    let good = w.tree(&[file("ok", vec![data])]);
                    w.tree(&[dir("a-good", good), dir("b-hostile", hostile)])
                }
            });
            let cat = if level == "root" {
                "zz-after"
            } else {
                "b-hostile/zz-after"
            };
            let msg = fx.expect_refused(&case, &snap, cat);
            assert!(msg.contains("node name"), "{case}: {msg}");
            if level == "sub" {
                // What was restored before the refusal is inside TARGET and correct.
                let ok = fx.target(&case).join("a-good/ok");
                assert_eq!(std::fs::read(&ok).unwrap(), b"pwned\n", "{case}");
            }
        }
    }
}

#[test]
fn a_symlink_and_a_directory_sharing_a_name_are_refused() {
    // `evil -> outside`, then `evil/` holding a file: a restore that took both would
    // write the file through the symlink. The order check must refuse the tree.
    let fx = Fx::new();
    for (case, link_target) in [
        ("abs", fx.outside_abs()),
        ("rel", "../outside".to_string()),
        ("ghost", fx.ghost_abs()),
    ] {
        for (second, level) in [("dir", "root"), ("dir", "sub"), ("file", "root")] {
            let case = format!("dup-{case}-{second}-{level}");
            let snap = fx.snapshot(|w| {
                let data = w.chunk(b"pwned\n");
                let inner = w.tree(&[file("pwned", vec![data])]);
                let second_node = if second == "dir" {
                    dir("evim", inner)
                } else {
                    file("evim", vec![data])
                };
                let bytes = encode_tree(&[symlink("evil", &link_target), second_node]).unwrap();
                let hostile = w.raw_tree(&rename(&bytes, b"evim", b"evil"));
                if level == "root" {
                    hostile
                } else {
                    w.tree(&[dir("d", hostile)])
                }
            });
            let cat = if level == "root" { "evil" } else { "d/evil" };
            let msg = fx.expect_refused(&case, &snap, cat);
            assert!(msg.contains("duplicate or unsorted"), "{case}: {msg}");
        }
    }
}

#[test]
fn unsorted_entries_are_refused() {
    let fx = Fx::new();
    let snap = fx.snapshot(|w| {
        let data = w.chunk(b"x");
        let bytes = encode_tree(&[file("aa", vec![data]), file("bb", vec![data])]).unwrap();
        // Swap the names: "bb" now comes first.
        let bytes = rename(&bytes, b"aa", b"cc");
        let bytes = rename(&bytes, b"bb", b"aa");
        let bytes = rename(&bytes, b"cc", b"bb");
        w.raw_tree(&bytes)
    });
    let msg = fx.expect_refused("unsorted", &snap, "aa");
    assert!(msg.contains("duplicate or unsorted"), "{msg}");
}

// ---------------------------------------------------------------------------------------
// Symlinks pointing outside are restored as symlinks, never followed
// ---------------------------------------------------------------------------------------

#[test]
fn symlinks_pointing_outside_are_restored_as_symlinks_and_never_written_through() {
    let fx = Fx::new();
    let passwd_before = std::fs::read("/etc/passwd").ok();
    let links = [
        ("abs-outside", fx.outside_abs()),
        ("etc-passwd", "/etc/passwd".to_string()),
        ("ghost", fx.ghost_abs()),
        ("rel-outside", "../../outside".to_string()),
        (
            "rel-passwd",
            "../../../../../../../../etc/passwd".to_string(),
        ),
    ];
    let snap = fx.snapshot(|w| {
        let data = w.chunk(b"written in b\n");
        let a: Vec<Node> = links.iter().map(|(n, t)| symlink(n, t)).collect();
        let a = w.tree(&a);
        // Directory `b` holds regular files with the symlinks' names: each must land in
        // b/, not through a/<name>.
        let b: Vec<Node> = links.iter().map(|(n, _)| file(n, vec![data])).collect();
        let b = w.tree(&b);
        w.tree(&[dir("a", a), dir("b", b)])
    });
    let target = fx.target("links");
    let r = fx.restore(&snap, &target, false);
    assert_eq!(r.code, Some(0), "{r}");
    for (name, t) in &links {
        let p = target.join("a").join(name);
        let md = std::fs::symlink_metadata(&p).unwrap();
        assert!(md.file_type().is_symlink(), "{name} is not a symlink");
        assert_eq!(std::fs::read_link(&p).unwrap(), Path::new(t), "{name}");
        let f = target.join("b").join(name);
        let md = std::fs::symlink_metadata(&f).unwrap();
        assert!(md.file_type().is_file(), "b/{name} is not a regular file");
        assert_eq!(std::fs::read(&f).unwrap(), b"written in b\n");
    }
    assert!(entries(&fx.outside).is_empty());
    assert_eq!(std::fs::read("/etc/passwd").ok(), passwd_before);

    // ls shows them as symlinks; cat refuses a symlink instead of following it; a path
    // through a symlink does not exist in the snapshot.
    let r = fx.ls(&format!("{snap}:a"), &["-l"]);
    assert_eq!(r.code, Some(0), "{r}");
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains("etc-passwd -> /etc/passwd"), "{r}");
    let msg = assert_clean_failure(&fx.cat(&format!("{snap}:a/etc-passwd"))).to_string();
    assert!(msg.contains("symlink"), "{msg}");
    for p in ["a/abs-outside/x", "a/rel-outside/x", "a/etc-passwd/x"] {
        let spec = format!("{snap}:{p}");
        assert_clean_failure(&fx.cat(&spec));
        let t = fx.target(&format!("through-{}", p.replace('/', "-")));
        assert_clean_failure(&fx.restore(&spec, &t, false));
    }
    // Restoring just the symlink makes a symlink.
    let t = fx.target("just-link");
    let r = fx.restore(&format!("{snap}:a/abs-outside"), &t, false);
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        std::fs::symlink_metadata(t.join("abs-outside"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Snapshot paths with `..` are refused.
    assert_clean_failure(&fx.cat(&format!("{snap}:a/../b/ghost")));
    assert_clean_failure(&fx.restore(&format!("{snap}:../outside"), &fx.target("dd"), false));
    assert!(entries(&fx.outside).is_empty());
}

#[test]
fn a_later_entry_named_through_an_earlier_symlink_is_refused_after_the_symlink_is_made() {
    // a/evil -> outside is restored first (a < b); b's tree then names
    // `../a/evil/pwned`. The symlink exists on disk when the hostile name is read.
    let fx = Fx::new();
    for (case, forged) in [
        ("up", &b"../a/evil/pwned"[..]),
        ("slash", b"a/evil/pwned"),
        ("dotdot", b".."),
    ] {
        let outside = fx.outside_abs();
        let snap = fx.snapshot(|w| {
            let data = w.chunk(b"pwned\n");
            let a = w.tree(&[symlink("evil", &outside)]);
            let bytes = encode_tree(&[file("PLACEHOLDER", vec![data])]).unwrap();
            let b = w.raw_tree(&rename(&bytes, b"PLACEHOLDER", forged));
            w.tree(&[dir("a", a), dir("b", b)])
        });
        let target = fx.target(&format!("later-{case}"));
        let r = fx.restore(&snap, &target, false);
        assert_clean_failure(&r);
        let link = target.join("a/evil");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(entries(&fx.outside).is_empty(), "{case}");
        assert!(!target.join("a/evil/pwned").exists());
        assert!(!target.join("pwned").exists());
    }
}

// ---------------------------------------------------------------------------------------
// Restore --overwrite into a TARGET holding symlinks and hard links to outside
// ---------------------------------------------------------------------------------------

#[test]
fn overwrite_replaces_preexisting_symlinks_and_never_writes_through_them() {
    let fx = Fx::new();
    let victim = fx.outside.join("victim");
    std::fs::write(&victim, b"victim\n").unwrap();
    let snap = fx.snapshot(|w| {
        let f1 = w.chunk(b"f1 from the snapshot\n");
        let f2 = w.chunk(b"f2 from the snapshot\n");
        let sub = w.tree(&[file("f2", vec![f2])]);
        let src = w.tree(&[
            file("f1", vec![f1]),
            file("hard", vec![f1]),
            dir("sub", sub),
        ]);
        w.tree(&[dir("src", src)])
    });
    let check_restored = |target: &Path| {
        let src = target.join("src");
        assert!(
            std::fs::symlink_metadata(&src)
                .unwrap()
                .file_type()
                .is_dir()
        );
        assert_eq!(
            std::fs::read(src.join("f1")).unwrap(),
            b"f1 from the snapshot\n"
        );
        assert_eq!(
            std::fs::read(src.join("sub/f2")).unwrap(),
            b"f2 from the snapshot\n"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"victim\n");
        assert_eq!(entries(&fx.outside), vec!["victim".to_string()]);
    };

    // 1. TARGET/src -> ../outside.
    let t = fx.target("src-link");
    std::fs::create_dir(&t).unwrap();
    std::os::unix::fs::symlink("../outside", t.join("src")).unwrap();
    // Without --overwrite: refused.
    let r = fx.restore(&snap, &t, false);
    let msg = assert_clean_failure(&r).to_string();
    assert!(msg.contains("already exists"), "{msg}");
    assert!(
        std::fs::symlink_metadata(t.join("src"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // With --overwrite: the symlink is replaced by a directory.
    let r = fx.restore(&snap, &t, true);
    assert_eq!(r.code, Some(0), "{r}");
    check_restored(&t);

    // 2. TARGET/src/ is a real directory whose entries point outside: a dangling
    //    symlink to outside/f1, a symlink dir to outside/, a hard link to outside/victim.
    let t = fx.target("inner-links");
    std::fs::create_dir_all(t.join("src")).unwrap();
    std::os::unix::fs::symlink(fx.outside.join("f1"), t.join("src/f1")).unwrap();
    std::os::unix::fs::symlink("../../outside", t.join("src/sub")).unwrap();
    std::fs::hard_link(&victim, t.join("src/hard")).unwrap();
    let r = fx.restore(&snap, &t, true);
    assert_eq!(r.code, Some(0), "{r}");
    check_restored(&t);
    assert!(!fx.outside.join("f1").exists());
    assert!(!fx.outside.join("f2").exists());
    assert_eq!(
        std::fs::read(t.join("src/hard")).unwrap(),
        b"f1 from the snapshot\n"
    );

    // 3. Restoring a sub-path onto a TARGET whose entry of that name is a symlink.
    let t = fx.target("subpath");
    std::fs::create_dir(&t).unwrap();
    std::os::unix::fs::symlink(&fx.outside, t.join("sub")).unwrap();
    let r = fx.restore(&format!("{snap}:src/sub"), &t, true);
    assert_eq!(r.code, Some(0), "{r}");
    assert_eq!(
        std::fs::read(t.join("sub/f2")).unwrap(),
        b"f2 from the snapshot\n"
    );
    assert_eq!(entries(&fx.outside), vec!["victim".to_string()]);
}

// ---------------------------------------------------------------------------------------
// Ids of the wrong kind, missing ids, lying ids
// ---------------------------------------------------------------------------------------

// Blobs are content-addressed and deduplicated by id alone (a file may hold exactly the
// bytes of a tree), so the kind recorded for an id never decides: the bytes do. A
// directory naming a non-tree blob fails to decode; a file naming a tree blob gets
// exactly the bytes that hash to that id.

#[test]
fn a_directory_pointing_at_a_chunk_a_snapshot_or_a_missing_id_is_refused() {
    let fx = Fx::new();
    let good = fx.snapshot(|w| {
        let data = w.chunk(b"good\n");
        w.tree(&[file("good", vec![data])])
    });
    let good_id = BlobId::from_hex(&good).unwrap();
    type Pick = Box<dyn Fn(&mut W<'_>) -> BlobId>;
    let picks: Vec<(&str, Pick)> = vec![
        (
            "chunk",
            Box::new(|w: &mut W<'_>| w.chunk(b"just a chunk\n").id()),
        ),
        ("snapshot", Box::new(move |_: &mut W<'_>| good_id)),
        ("missing", Box::new(|_: &mut W<'_>| BlobId([0xab; 32]))),
    ];
    for (case, pick) in &picks {
        // As a directory one level down, and as the snapshot root itself.
        let snap = fx.snapshot(|w| {
            let id = pick(w);
            w.tree(&[dir("d", id)])
        });
        let msg = fx.expect_refused(&format!("dir-{case}"), &snap, "d/inner");
        assert!(
            msg.contains("bad magic") || msg.contains("not in the index"),
            "{case}: {msg}"
        );
        let snap = fx.snapshot(pick);
        let msg = fx.expect_refused(&format!("root-{case}"), &snap, "inner");
        assert!(
            msg.contains("bad magic") || msg.contains("not in the index"),
            "{case}: {msg}"
        );
    }
}

#[test]
fn a_tree_first_stored_as_a_chunk_is_read_by_its_bytes() {
    let fx = Fx::new();
    let snap = fx.snapshot(|w| {
        let data = w.chunk(b"x\n");
        let bytes = encode_tree(&[file("inner", vec![data])]).unwrap();
        let as_chunk = w.blob(BlobKind::Chunk, &bytes);
        w.tree(&[dir("d", as_chunk)])
    });
    let target = fx.target("tree-as-chunk");
    let r = fx.restore(&snap, &target, false);
    assert_eq!(r.code, Some(0), "{r}");
    assert_eq!(std::fs::read(target.join("d/inner")).unwrap(), b"x\n");
    let r = fx.cat(&format!("{snap}:d/inner"));
    assert_eq!((r.code, r.stdout.as_slice()), (Some(0), &b"x\n"[..]), "{r}");
}

trait ExtentId {
    fn id(&self) -> BlobId;
}
impl ExtentId for Extent {
    fn id(&self) -> BlobId {
        match self {
            Extent::Data { id, .. } => *id,
            Extent::Hole { .. } => panic!("hole"),
        }
    }
}

#[test]
fn a_file_whose_extents_name_a_tree_or_snapshot_gets_exactly_those_bytes() {
    let fx = Fx::new();
    let good = fx.snapshot(|w| {
        let data = w.chunk(b"good\n");
        w.tree(&[file("good", vec![data])])
    });
    let good_id = BlobId::from_hex(&good).unwrap();
    let archive = crate::common::open_archive(&fx.archive);
    let good_root = archive.snapshots().unwrap()[0].root;
    let blobs = [
        ("tree", good_root, archive.read_blob(&good_root).unwrap()),
        ("snapshot", good_id, archive.read_blob(&good_id).unwrap()),
    ];
    drop(archive);
    for (case, id, bytes) in blobs {
        assert_eq!(BlobId::of(&bytes), id);
        let snap = fx.snapshot(|w| {
            let ok = w.chunk(b"fine\n");
            w.tree(&[
                file("a-fine", vec![ok]),
                file(
                    "b-names-a-blob",
                    vec![Extent::Data {
                        id,
                        len: bytes.len() as u64,
                    }],
                ),
            ])
        });
        let target = fx.target(&format!("extent-{case}"));
        let r = fx.restore(&snap, &target, false);
        assert_eq!(r.code, Some(0), "{case}\n{r}");
        assert_eq!(std::fs::read(target.join("a-fine")).unwrap(), b"fine\n");
        let got = std::fs::read(target.join("b-names-a-blob")).unwrap();
        assert!(got == bytes, "{case}: restored bytes are not the blob's");
        let r = fx.cat(&format!("{snap}:b-names-a-blob"));
        assert_eq!(r.code, Some(0), "{case}\n{r}");
        assert!(r.stdout == bytes, "{case}: cat bytes are not the blob's");
    }
}

#[test]
fn a_file_whose_chunk_is_missing_is_reported_damaged_and_not_restored() {
    let fx = Fx::new();
    let snap = fx.snapshot(|w| {
        let ok = w.chunk(b"fine\n");
        let missing = Extent::Data {
            id: BlobId([0xcd; 32]),
            len: 10,
        };
        let holey = vec![Extent::Hole { len: 4096 }, missing];
        w.tree(&[
            file("a-fine", vec![ok]),
            file("b-missing", vec![missing]),
            file("c-after-hole", holey),
        ])
    });
    let target = fx.target("missing");
    let r = fx.restore(&snap, &target, false);
    assert_eq!(r.code, Some(3), "{r}");
    assert_clean_failure(&r);
    assert_eq!(std::fs::read(target.join("a-fine")).unwrap(), b"fine\n");
    assert!(!target.join("b-missing").exists(), "{r}");
    assert!(!target.join("c-after-hole").exists(), "{r}");
    for p in ["b-missing", "c-after-hole"] {
        let msg = assert_clean_failure(&fx.cat(&format!("{snap}:{p}"))).to_string();
        assert!(msg.contains("not in the index"), "{msg}");
    }
}

#[test]
fn chunks_that_lie_about_their_id_or_length_are_not_restored() {
    let fx = Fx::new();
    let snap = fx.snapshot(|w| {
        let fake = BlobId::of(b"what the id promises\n");
        w.lying_blob(BlobKind::Chunk, fake, b"something else entirely\n");
        let short = w.chunk(b"short\n");
        let ok = w.chunk(b"fine\n");
        w.tree(&[
            file("a-fine", vec![ok]),
            file(
                "b-lying-id",
                vec![Extent::Data {
                    id: fake,
                    len: b"something else entirely\n".len() as u64,
                }],
            ),
            file(
                "c-wrong-length",
                vec![Extent::Data {
                    id: short.id(),
                    len: 4096,
                }],
            ),
        ])
    });
    let target = fx.target("lying");
    let r = fx.restore(&snap, &target, false);
    assert_eq!(r.code, Some(3), "damaged files make a partial restore\n{r}");
    assert_clean_failure(&r);
    assert!(!target.join("b-lying-id").exists(), "{r}");
    assert!(!target.join("c-wrong-length").exists(), "{r}");
    assert_eq!(std::fs::read(target.join("a-fine")).unwrap(), b"fine\n");
    assert_clean_failure(&fx.cat(&format!("{snap}:c-wrong-length")));
    // `cat` checks crc32 only (BLAKE3 is for restore and check --read-data), so the lying
    // chunk is not judged here beyond "no panic".
    fx.cat(&format!("{snap}:b-lying-id"));
}

#[test]
fn a_tree_whose_bytes_do_not_hash_to_its_id_is_refused() {
    let fx = Fx::new();
    let snap = fx.snapshot(|w| {
        let data = w.chunk(b"pwned\n");
        let real = encode_tree(&[file("innocent", vec![data])]).unwrap();
        let fake = BlobId::of(b"some other tree");
        w.lying_blob(BlobKind::Tree, fake, &real);
        w.tree(&[dir("d", fake)])
    });
    let msg = fx.expect_refused("tree-hash", &snap, "d/innocent");
    assert!(msg.contains("BLAKE3"), "{msg}");
}

// ---------------------------------------------------------------------------------------
// Huge sizes and counts
// ---------------------------------------------------------------------------------------

#[test]
fn huge_sparse_files_are_sparse_or_refused_never_allocated() {
    let fx = Fx::new();
    let snap = fx.snapshot(|w| {
        let tail = w.chunk(b"tail");
        w.tree(&[
            file("a-1tib", vec![Extent::Hole { len: 1 << 40 }]),
            file("b-2pow60", vec![Extent::Hole { len: 1 << 60 }]),
            file(
                "c-2pow60-then-data",
                vec![Extent::Hole { len: (1 << 60) - 4 }, tail],
            ),
        ])
    });
    // Each on its own, so one refusal does not hide the others.
    for name in ["a-1tib", "b-2pow60", "c-2pow60-then-data"] {
        let target = fx.target(name);
        let r = fx.restore(&format!("{snap}:{name}"), &target, false);
        let p = target.join(name);
        if r.code == Some(0) {
            let md = std::fs::metadata(&p).unwrap();
            assert!(
                md.blocks() * 512 < 1 << 20,
                "{name}: {} bytes allocated for a hole",
                md.blocks() * 512
            );
        } else {
            assert_clean_failure(&r);
        }
        if let Ok(md) = std::fs::metadata(&p) {
            assert!(md.blocks() * 512 < 1 << 20, "{name}: allocated");
        }
    }
    // The 1 TiB hole is within what ext4/xfs/tmpfs accept: it must restore, sparse.
    let r = fx.restore(&format!("{snap}:a-1tib"), &fx.target("a-1tib-again"), false);
    assert_eq!(r.code, Some(0), "{r}");
    let md = std::fs::metadata(fx.target("a-1tib-again").join("a-1tib")).unwrap();
    assert_eq!(md.len(), 1 << 40);

    // cat streams zeros with bounded memory; a reader that stops early ends it quietly.
    // `head` reads the first 4 MiB and exits; pipefail gives strata's exit status.
    let script = format!(
        "set -o pipefail; '{}' cat '{}' '{snap}:b-2pow60' | head -c {}",
        strata_bin(),
        Fx::s(&fx.archive),
        4 << 20
    );
    let out = Cmd::new("bash")
        .arg("-c")
        .arg(&script)
        .timeout(TIMEOUT)
        .run();
    let buf = &out.stdout;
    assert_eq!(buf.len(), 4 << 20, "head got 4 MiB\n{out}");
    assert!(buf.iter().all(|&b| b == 0));
    let err = out.stderr_str();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.code(), Some(0), "closed pipe is not an error: {err}");

    assert!(entries(&fx.outside).is_empty());
}

#[test]
fn huge_counts_and_lengths_in_a_tree_are_refused() {
    let fx = Fx::new();
    // A file node with a marker rdev, so fields after it can be found in the bytes.
    const RDEV: u64 = 0x1122_3344_5566_7788;
    let base = |w: &mut W<'_>, with_xattr: bool| {
        let data = w.chunk(b"x");
        let mut n = file("f", vec![data]);
        n.rdev = RDEV;
        if with_xattr {
            n.xattrs = vec![(b"user.k".to_vec(), b"VALUE".to_vec())];
        }
        encode_tree(&[n]).unwrap()
    };
    type Patch = fn(&mut Vec<u8>);
    let patches: Vec<(&str, bool, Patch)> = vec![
        ("node-count", false, |b| {
            b[5..9].copy_from_slice(&u32::MAX.to_le_bytes())
        }),
        ("node-count-plus-one", false, |b| {
            b[5..9].copy_from_slice(&2u32.to_le_bytes())
        }),
        ("xattr-count", false, |b| {
            let at = find(b, &RDEV.to_le_bytes()) + 8;
            b[at..at + 2].copy_from_slice(&u16::MAX.to_le_bytes());
        }),
        ("xattr-value-len", true, |b| {
            let at = find(b, b"VALUE") - 4;
            b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        }),
        ("extent-count", false, |b| {
            // rdev, xattr count u16, content kind u8, then the extent count.
            let at = find(b, &RDEV.to_le_bytes()) + 8 + 2 + 1;
            b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        }),
        ("name-len", false, |b| {
            b[9..11].copy_from_slice(&u16::MAX.to_le_bytes())
        }),
        ("size-overflow", false, |b| {
            // Extent length of the only (data) extent: > 1 GiB blob limit.
            let at = find(b, &RDEV.to_le_bytes()) + 8 + 2 + 1 + 4 + 1;
            b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        }),
        ("truncated", false, |b| {
            b.truncate(b.len() - 1);
        }),
        ("trailing", false, |b| b.push(0)),
        ("kind", false, |b| b[12] = 99),
        ("version", false, |b| b[4] = 2),
        ("magic", false, |b| b[0] = b'X'),
    ];
    for (case, xattr, patch) in patches {
        let snap = fx.snapshot(|w| {
            let mut bytes = base(w, xattr);
            patch(&mut bytes);
            let hostile = w.raw_tree(&bytes);
            w.tree(&[dir("d", hostile)])
        });
        fx.expect_refused(&format!("count-{case}"), &snap, "d/f");
    }
    // Two holes whose lengths overflow u64 when added.
    let snap = fx.snapshot(|w| {
        let mut n = file("f", vec![Extent::Hole { len: 1 }, Extent::Hole { len: 1 }]);
        n.size = 2;
        let bytes = encode_tree(&[n]).unwrap();
        let mut bytes = bytes;
        let one = 1u64.to_le_bytes();
        // Patch both hole lengths (tag 1, len 1) to u64::MAX / 2 + 1.
        let mut pat = vec![1u8];
        pat.extend_from_slice(&one);
        for _ in 0..2 {
            let at = bytes
                .windows(pat.len())
                .rposition(|w| w == pat.as_slice())
                .unwrap();
            bytes[at + 1..at + 9].copy_from_slice(&(u64::MAX / 2 + 1).to_le_bytes());
        }
        let hostile = w.raw_tree(&bytes);
        w.tree(&[dir("d", hostile)])
    });
    fx.expect_refused("hole-overflow", &snap, "d/f");
}

#[test]
fn hostile_metadata_is_applied_or_refused_cleanly() {
    // Extreme times, set-id modes, odd xattrs, a device node: restore may warn or
    // refuse, but never panics and never leaves TARGET.
    let fx = Fx::new();
    let snap = fx.snapshot(|w| {
        let data = w.chunk(b"meta\n");
        let mut t_min = file("a-time-min", vec![data]);
        t_min.mtime = (i64::MIN, 999_999_999);
        let mut t_max = file("b-time-max", vec![data]);
        t_max.mtime = (i64::MAX, 999_999_999);
        let mut xattrs = file("c-xattrs", vec![data]);
        // Names the encoder refuses are patched in below: empty, and with a NUL.
        xattrs.xattrs = vec![
            (b"XATTR-EMPTY".to_vec(), b"empty name".to_vec()),
            (b"XATTR-NUL".to_vec(), b"nul in name".to_vec()),
            (b"nonamespace".to_vec(), b"v".to_vec()),
            (b"user.ok".to_vec(), vec![0; 65536]),
        ];
        let mut dev = node(b"d-dev", NodeKind::CharDev, 0, Payload::Other);
        dev.rdev = u64::MAX;
        let mut fifo = node(b"e-fifo", NodeKind::Fifo, 0, Payload::Other);
        fifo.xattrs = vec![(b"user.x".to_vec(), b"y".to_vec())];
        let mut huge_ids = file("f-ids", vec![data]);
        huge_ids.uid = u32::MAX;
        huge_ids.gid = u32::MAX;
        huge_ids.nlink = u64::MAX;
        huge_ids.user = vec![0xff; 300];
        let bytes = encode_tree(&[t_min, t_max, xattrs, dev, fifo, huge_ids]).unwrap();
        let bytes = rename(&bytes, b"XATTR-EMPTY", b"");
        let bytes = rename(&bytes, b"XATTR-NUL", b"user.\0nul");
        w.raw_tree(&bytes)
    });
    for flags in [&[][..], &["-l"], &["-R", "--json"]] {
        let r = fx.ls(&snap, flags);
        if r.code != Some(0) {
            assert_clean_failure(&r);
        }
    }
    let r = fx.restore(&snap, &fx.target("meta"), false);
    if r.code != Some(0) {
        assert_clean_failure(&r);
    }
    // Each file on its own too.
    for n in [
        "a-time-min",
        "b-time-max",
        "c-xattrs",
        "d-dev",
        "e-fifo",
        "f-ids",
    ] {
        let r = fx.restore(
            &format!("{snap}:{n}"),
            &fx.target(&format!("meta-{n}")),
            false,
        );
        if r.code != Some(0) {
            assert_clean_failure(&r);
        }
    }
    assert!(entries(&fx.outside).is_empty());
}

#[test]
fn trees_nest_up_to_the_depth_limit_and_deeper_chains_are_refused_without_a_stack_overflow() {
    // Content addressing rules out true cycles; a long chain is what a hostile archive
    // can do instead. MAX_DEPTH levels must work (a legitimate 4096-byte path), one more
    // must be an error, and neither may overflow the stack (debug builds included).
    let fx = Fx::new();
    let chain = |depth: usize| {
        fx.snapshot(|w| {
            let data = w.chunk(b"bottom\n");
            let mut id = w.tree(&[file("bottom", vec![data])]);
            for _ in 0..depth {
                id = w.tree(&[dir("d", id)]);
            }
            id
        })
    };
    // The restored chains are longer than PATH_MAX: remove them before the next run's
    // listing walks the temp dir (GNU rm works through directory descriptors).
    let rm = |t: &Path| {
        let st = Command::new("rm").arg("-rf").arg(t).status().unwrap();
        assert!(st.success());
    };

    let limit = strata::tree::MAX_DEPTH;
    let snap = chain(limit);
    let target = fx.target("at-limit");
    let r = fx.restore(&snap, &target, false);
    assert_eq!(r.code, Some(0), "{r}");
    assert!(r.stderr.contains(&format!("1 files, {limit} dirs")), "{r}");
    rm(&target);
    let r = fx.ls(&snap, &["-R"]);
    assert_eq!(r.code, Some(0), "{r}");
    assert_eq!(r.stdout.iter().filter(|&&b| b == b'\n').count(), limit + 1);

    let snap = chain(limit + 5);
    let target = fx.target("too-deep");
    let r = fx.restore(&snap, &target, false);
    let msg = assert_clean_failure(&r).to_string();
    assert!(msg.contains("deep"), "{msg}");
    rm(&target);
    let r = fx.ls(&snap, &["-R"]);
    let msg = assert_clean_failure(&r).to_string();
    assert!(msg.contains("deep"), "{msg}");
}

// ---------------------------------------------------------------------------------------
// Hostile index rows
// ---------------------------------------------------------------------------------------

#[test]
fn index_rows_with_absurd_lengths_or_offsets_are_errors_not_crashes() {
    // index.sqlite is part of the archive directory, so it can be damaged or forged too.
    let fx = Fx::new();
    let snap = fx.snapshot(|w| {
        let data = w.chunk(b"content\n");
        let d = w.tree(&[file("f", vec![data])]);
        w.tree(&[dir("d", d)])
    });
    let archive = crate::common::open_archive(&fx.archive);
    let row = archive.resolve(&snap, None).unwrap();
    let d_id = archive.read_tree(&row.root).unwrap()[0].subtree().unwrap();
    let f_id = archive.read_tree(&d_id).unwrap()[0].extents()[0].id();
    drop(archive);
    let db = fx.archive.join("index.sqlite");
    let saved = std::fs::read(&db).unwrap();
    let set = |id: &BlobId, column: &str, value: i64| {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute(
            &format!("UPDATE blobs SET {column} = ?1 WHERE id = ?2"),
            rusqlite::params![value, &id.0[..]],
        )
        .unwrap();
        // Fold the WAL into the file so a byte copy restores the original later.
        c.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
    };
    let cases: &[(&str, &str, i64)] = &[
        ("stored-len-huge", "stored_len", 1 << 40),
        ("stored-len-max", "stored_len", -1),
        ("stored-len-negative", "stored_len", i64::MIN),
        ("raw-len-huge", "raw_len", 1 << 40),
        ("offset-huge", "offset", i64::MAX),
        ("offset-negative", "offset", -1),
        ("pack-missing", "pack", 999),
        ("pack-negative", "pack", -5),
        ("kind-bad", "kind", 9),
    ];
    for &(case, column, value) in cases {
        for (which, id) in [("tree", d_id), ("chunk", f_id)] {
            reset_index(&db, &saved);
            set(&id, column, value);
            let case = format!("index-{case}-{which}");
            let target = fx.target(&case);
            let r = fx.restore(&snap, &target, false);
            assert_clean_failure(&r);
            assert_clean_failure(&fx.cat(&format!("{snap}:d/f")));
            if which == "tree" {
                assert_clean_failure(&fx.ls(&snap, &["-R"]));
            }
        }
    }
    reset_index(&db, &saved);
}

/// Puts back the saved index bytes, with no WAL left to replay over them.
fn reset_index(db: &Path, saved: &[u8]) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
    drop(c);
    for side in ["index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(db.with_file_name(side));
    }
    std::fs::write(db, saved).unwrap();
}
