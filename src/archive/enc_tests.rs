//! Encrypted archives through the archive's API: unlocking (wrong, missing, damaged
//! keys write nothing), key slots, sealed records that fail loudly when touched, a
//! catalogue that shows nothing in clear, keyed ids, and repair with the key.

use super::testkit::file_node;
use super::*;
use crate::format::snapshot::{Source, Stats};

const MARKER: &str = "ZQXMARKERQZX";

fn pw(s: &str) -> Password {
    Password::from(s)
}

fn init(dir: &Path, password: &str) -> PathBuf {
    let root = dir.join("a");
    Archive::init_with(&root, &Config::new(64 << 10, 3, false), Some(&pw(password))).unwrap();
    root
}

/// Commits a snapshot of one file named and labelled with the marker; returns (snapshot,
/// tree, chunk).
fn commit(archive: &Archive, content: &[u8]) -> (BlobId, BlobId, BlobId) {
    let mut s = archive.begin_write().unwrap();
    let chunk = s.put(BlobKind::Chunk, content).unwrap();
    let name = format!("{MARKER}.txt");
    let root = s
        .put_tree(&[file_node(&name, chunk, content.len() as u64)])
        .unwrap();
    let mut snap = Snapshot {
        time: (1_700_000_000, 0),
        host: format!("host-{MARKER}"),
        label: format!("label-{MARKER}"),
        tags: vec![format!("tag-{MARKER}")],
        parent: None,
        root,
        sources: vec![Source {
            name: format!("src-{MARKER}"),
            origin: format!("/home/{MARKER}"),
            parents: None,
        }],
        argv: Vec::new(),
        commands: Vec::new(),
        errors: Vec::new(),
        stats: Stats::default(),
    };
    (s.commit(&mut snap).unwrap(), root, chunk)
}

fn content() -> Vec<u8> {
    format!("{MARKER} in the content\n")
        .repeat(500)
        .into_bytes()
}

/// Every file under `root` with its bytes (to prove nothing was written).
fn everything(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_wrong_or_missing_password_is_typed_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = init(dir.path(), "right");
    commit(
        &Archive::open_with(&root, Some(&pw("right"))).unwrap(),
        &content(),
    );
    assert!(Archive::is_encrypted(&root).unwrap());
    let before = everything(&root);
    assert!(matches!(
        Archive::open_with(&root, Some(&pw("wrong"))),
        Err(ArchiveError::WrongPassword { .. })
    ));
    assert!(matches!(
        Archive::open(&root),
        Err(ArchiveError::PasswordNeeded { .. })
    ));
    assert!(matches!(
        crate::ops::repair::repair(&root, Some(&pw("wrong"))),
        Err(ArchiveError::WrongPassword { .. })
    ));
    assert!(matches!(
        crate::ops::repair::repair(&root, None),
        Err(ArchiveError::PasswordNeeded { .. })
    ));
    assert_eq!(everything(&root), before, "nothing written");
    // Modes: keys/ 0700, its files 0600.
    use std::os::unix::fs::PermissionsExt;
    let keys = root.join(keys::KEYS_DIR);
    assert_eq!(
        fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for e in fs::read_dir(&keys).unwrap() {
        let m = e.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600);
    }
}

#[test]
fn a_damaged_key_record_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let root = init(dir.path(), "right");
    let key = fs::read_dir(root.join(keys::KEYS_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "key"))
        .unwrap();
    let good = fs::read(&key).unwrap();
    for (i, bytes) in [
        (0, good[..40].to_vec()),
        (1, {
            let mut b = good.clone();
            b[100] ^= 1;
            b
        }),
        (2, Vec::new()),
    ] {
        fs::write(&key, &bytes).unwrap();
        match Archive::open_with(&root, Some(&pw("right"))) {
            Err(e @ ArchiveError::KeyDamaged { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("is damaged") && msg.contains(".key"), "{msg}");
            }
            Err(e) => panic!("case {i}: {e}"),
            Ok(_) => panic!("case {i}: opened"),
        }
    }
    fs::write(&key, &good).unwrap();
    Archive::open_with(&root, Some(&pw("right"))).unwrap();
}

#[test]
fn key_slots_add_change_and_remove_but_never_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let root = init(dir.path(), "one");
    let a = Archive::open_with(&root, Some(&pw("one"))).unwrap();
    let first = a.unlocked_slot().unwrap();
    assert_eq!(a.list_keys().unwrap().len(), 1);
    let second = a.add_key(&pw("two")).unwrap();
    let b = Archive::open_with(&root, Some(&pw("two"))).unwrap();
    assert_eq!(b.unlocked_slot(), Some(second));
    assert_eq!(b.list_keys().unwrap().len(), 2);
    b.change_password(second, &pw("three")).unwrap();
    assert!(matches!(
        Archive::open_with(&root, Some(&pw("two"))),
        Err(ArchiveError::WrongPassword { .. })
    ));
    Archive::open_with(&root, Some(&pw("three"))).unwrap();
    a.remove_key(first).unwrap();
    assert!(matches!(
        Archive::open_with(&root, Some(&pw("one"))),
        Err(ArchiveError::WrongPassword { .. })
    ));
    assert!(matches!(
        a.remove_key(second),
        Err(ArchiveError::LastKey { .. })
    ));
    assert!(matches!(
        a.remove_key(first),
        Err(ArchiveError::KeyNotFound { .. })
    ));
    // Data written under one password reads under another: one master key.
    let (snap, _, _) = commit(&a, &content());
    let c = Archive::open_with(&root, Some(&pw("three"))).unwrap();
    assert_eq!(
        c.load_snapshot(&snap).unwrap().label,
        format!("label-{MARKER}")
    );
    // An unencrypted archive has no keys.
    let plain = dir.path().join("plain");
    Archive::init(&plain, &Config::new(64 << 10, 3, false)).unwrap();
    let p = Archive::open_with(&plain, Some(&pw("x"))).unwrap();
    assert!(!p.encrypted());
    assert!(matches!(
        p.add_key(&pw("y")),
        Err(ArchiveError::NotEncrypted { .. })
    ));
}

#[test]
fn nothing_in_the_archive_directory_shows_a_name_label_host_tag_source_or_content() {
    let dir = tempfile::tempdir().unwrap();
    let root = init(dir.path(), "pw");
    let a = Archive::open_with(&root, Some(&pw("pw"))).unwrap();
    commit(&a, &content());
    commit(&a, &content());
    // The catalogue opens its sealed rows.
    let rows = a.snapshots().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].label, format!("label-{MARKER}"));
    assert_eq!(rows[1].host, format!("host-{MARKER}"));
    assert_eq!(rows[1].tags, vec![format!("tag-{MARKER}")]);
    assert_eq!(rows[1].sources, vec![format!("src-{MARKER}")]);
    assert_eq!(
        a.resolve("latest", Some(&format!("label-{MARKER}")))
            .unwrap()
            .id,
        rows[1].id
    );
    drop(a);
    for (path, bytes) in everything(&root) {
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
            "{} shows the marker",
            path.display()
        );
    }
}

#[test]
fn equal_content_gets_different_ids_in_two_archives_and_dedups_within_one() {
    let dir = tempfile::tempdir().unwrap();
    let one = init(dir.path(), "pw");
    let two = dir.path().join("b");
    Archive::init_with(&two, &Config::new(64 << 10, 3, false), Some(&pw("pw"))).unwrap();
    let (a, b) = (
        Archive::open_with(&one, Some(&pw("pw"))).unwrap(),
        Archive::open_with(&two, Some(&pw("pw"))).unwrap(),
    );
    let (_, _, ca) = commit(&a, &content());
    let (_, _, cb) = commit(&b, &content());
    assert_ne!(ca, cb);
    let before = a.stored_bytes().unwrap();
    let (_, _, again) = commit(&a, &content());
    assert_eq!(again, ca, "dedup across snapshots");
    assert!(
        a.stored_bytes().unwrap() - before < 4096,
        "only a snapshot record added"
    );
}

#[test]
fn every_flipped_byte_of_a_sealed_chunk_tree_or_snapshot_record_is_a_corruption_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = init(dir.path(), "pw");
    let a = Archive::open_with(&root, Some(&pw("pw"))).unwrap();
    let plain = content();
    let (snap, tree, chunk) = commit(&a, &plain);
    for (what, id) in [("chunk", chunk), ("tree", tree), ("snapshot", snap)] {
        let loc = a.location(&id).unwrap();
        let pack = root.join(PACKS_DIR).join(loc.pack.file_name());
        let good = fs::read(&pack).unwrap();
        let start = loc.offset as usize;
        let end = start + crate::format::pack::BLOB_HEADER_LEN + loc.stored_len as usize;
        for i in start..end {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            fs::write(&pack, &bad).unwrap();
            let got = match what {
                "chunk" => a.read_blob(&id).map(|b| assert_ne!(b, plain)),
                "tree" => a.read_tree(&id).map(drop),
                _ => a.load_snapshot(&id).map(drop),
            };
            let err = got.expect_err(&format!("{what}: byte {i} flipped and read"));
            assert!(err.is_corruption(), "{what} byte {i}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(&loc.pack.file_name()), "{msg}");
        }
        fs::write(&pack, &good).unwrap();
    }
    assert_eq!(a.read_blob(&chunk).unwrap(), plain);
}

#[test]
fn a_sealed_record_moved_to_another_blobs_place_fails_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let root = init(dir.path(), "pw");
    let a = Archive::open_with(&root, Some(&pw("pw"))).unwrap();
    let x = b"first  content".repeat(10);
    let y = b"second content".repeat(10);
    let mut s = a.begin_write().unwrap();
    let ix = s.put(BlobKind::Chunk, &x).unwrap();
    let iy = s.put(BlobKind::Chunk, &y).unwrap();
    let root_tree = s
        .put_tree(&[
            file_node("x", ix, x.len() as u64),
            file_node("y", iy, y.len() as u64),
        ])
        .unwrap();
    let mut snap = Snapshot {
        time: (1_700_000_000, 0),
        host: "h".into(),
        label: "l".into(),
        tags: Vec::new(),
        parent: None,
        root: root_tree,
        sources: Vec::new(),
        argv: Vec::new(),
        commands: Vec::new(),
        errors: Vec::new(),
        stats: Stats::default(),
    };
    s.commit(&mut snap).unwrap();
    let (lx, ly) = (a.location(&ix).unwrap(), a.location(&iy).unwrap());
    assert_eq!(lx.stored_len, ly.stored_len);
    let pack = root.join(PACKS_DIR).join(lx.pack.file_name());
    let mut bytes = fs::read(&pack).unwrap();
    // y's sealed bytes (and their crc32) under x's header: the crc32 passes, the tag not.
    let h = crate::format::pack::BLOB_HEADER_LEN;
    let (dx, dy) = (lx.offset as usize + h, ly.offset as usize + h);
    let n = lx.stored_len as usize;
    let ydata = bytes[dy..dy + n].to_vec();
    bytes.copy_within(dy..dy + n, dx);
    bytes[dx..dx + n].copy_from_slice(&ydata);
    let mut hx = crate::format::pack::BlobHeader::decode(&bytes[dx - h..dx]).unwrap();
    hx.data_crc = crc32fast::hash(&ydata);
    bytes[dx - h..dx].copy_from_slice(&hx.encode());
    fs::write(&pack, &bytes).unwrap();
    let err = a.read_blob(&ix).unwrap_err();
    assert!(
        matches!(err, ArchiveError::Pack(PackError::Auth { .. })),
        "{err}"
    );
    assert_eq!(a.read_blob(&iy).unwrap(), y);
}

#[test]
fn repair_rebuilds_the_sealed_catalogue_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = init(dir.path(), "pw");
    let a = Archive::open_with(&root, Some(&pw("pw"))).unwrap();
    let (snap, _, chunk) = commit(&a, &content());
    drop(a);
    fs::remove_file(root.join(INDEX_FILE)).unwrap();
    let r = crate::ops::repair::repair(&root, Some(&pw("pw"))).unwrap();
    assert!(!r.lost_something());
    let a = Archive::open_with(&root, Some(&pw("pw"))).unwrap();
    let rows = a.snapshots().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, snap);
    assert_eq!(rows[0].label, format!("label-{MARKER}"));
    assert_eq!(a.read_blob(&chunk).unwrap(), content());
    let idx = fs::read(root.join(INDEX_FILE)).unwrap();
    assert!(!idx.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()));
}

#[test]
fn tiny_and_incompressible_blobs_are_sealed_raw_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = init(dir.path(), "pw");
    let a = Archive::open_with(&root, Some(&pw("pw"))).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for plain in [b"tiny".to_vec(), random] {
        let (_, _, chunk) = commit(&a, &plain);
        let loc = a.location(&chunk).unwrap();
        assert_eq!(loc.stored_len, loc.raw_len + 28, "stored raw, sealed");
        assert_eq!(a.read_blob(&chunk).unwrap(), plain);
        a.check_header(&chunk, &loc).unwrap();
        a.read_at(&chunk, &loc, true).unwrap();
    }
}
