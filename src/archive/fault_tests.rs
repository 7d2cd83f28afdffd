//! The engine's fault tests through the storage seam: a store that fails or shortens
//! reads, fails seals, or loses objects, under a real archive, unencrypted and
//! encrypted (each test runs on both: `NAME::plain`, `NAME::encrypted`).

use super::testkit::{file_node, snapshot};
use super::*;
use crate::store::faulty::FaultyStore;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Arc<FaultyStore>,
    archive: Archive,
}

fn fixture(encrypted: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a");
    let password = encrypted.then(|| Password::from("fault test"));
    Archive::init_with(&root, &Config::new(1 << 20, 3, false), password.as_ref()).unwrap();
    let store = Arc::new(FaultyStore::new(local_store(&root)));
    let archive = Archive::open_with_store(&root, store.clone(), password.as_ref()).unwrap();
    assert_eq!(archive.encrypted(), encrypted);
    Fixture {
        _dir: dir,
        root,
        store,
        archive,
    }
}

/// Commits one snapshot holding one file of `content`; returns (snapshot, chunk) ids.
fn commit(archive: &Archive, content: &[u8]) -> Result<(BlobId, BlobId), ArchiveError> {
    let mut s = archive.begin_write()?;
    let chunk = s.put(BlobKind::Chunk, content)?;
    let root = s.put_tree(&[file_node("f", chunk, content.len() as u64)])?;
    let mut snap = snapshot(root);
    Ok((s.commit(&mut snap)?, chunk))
}

fn text(n: usize) -> Vec<u8> {
    (0..n).map(|i| b"strata fault test\n"[i % 18]).collect()
}

fn a_failed_seal_commits_nothing_and_leaves_no_pack(f: Fixture) {
    commit(&f.archive, &text(10_000)).unwrap();
    let packs_before = f.archive.pack_objects().unwrap().0;
    f.store.faults.lock().unwrap().failing_seals = 1;
    let err = commit(&f.archive, &text(20_000)).unwrap_err();
    assert!(err.to_string().contains("injected seal failure"), "{err}");
    assert_eq!(f.archive.snapshots().unwrap().len(), 1);
    assert_eq!(
        f.archive.pack_objects().unwrap().0,
        packs_before,
        "the failed session's packs are removed"
    );
    // The earlier snapshot still reads, and the next commit succeeds.
    let row = f.archive.resolve("latest", None).unwrap();
    let snap = f.archive.load_snapshot(&row.id).unwrap();
    assert_eq!(f.archive.read_tree(&snap.root).unwrap().len(), 1);
    commit(&f.archive, &text(30_000)).unwrap();
    assert_eq!(f.archive.snapshots().unwrap().len(), 2);
}

fn a_failed_read_is_an_io_error_not_damage(f: Fixture) {
    let (_, chunk) = commit(&f.archive, &text(50_000)).unwrap();
    let loc = f.archive.location(&chunk).unwrap();
    f.store
        .faults
        .lock()
        .unwrap()
        .fail_reads
        .insert(loc.pack.file_name());
    let err = f.archive.read_blob(&chunk).unwrap_err();
    assert!(!err.is_corruption(), "{err}");
    assert!(err.to_string().contains("injected read failure"), "{err}");
    f.store.faults.lock().unwrap().fail_reads.clear();
    assert_eq!(f.archive.read_blob(&chunk).unwrap(), text(50_000));
}

fn a_short_read_is_damage_naming_the_pack_and_offset(f: Fixture) {
    let (_, chunk) = commit(&f.archive, &text(50_000)).unwrap();
    let loc = f.archive.location(&chunk).unwrap();
    f.store
        .faults
        .lock()
        .unwrap()
        .short_reads
        .insert(loc.pack.file_name());
    let err = f.archive.read_blob(&chunk).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&loc.pack.file_name()) && msg.contains(&format!("offset {}", loc.offset)),
        "{msg}"
    );
}

fn a_vanished_pack_is_missing_not_damaged(f: Fixture) {
    let (_, chunk) = commit(&f.archive, &text(50_000)).unwrap();
    let loc = f.archive.location(&chunk).unwrap();
    f.store
        .faults
        .lock()
        .unwrap()
        .vanished
        .insert(loc.pack.file_name());
    let err = f.archive.read_blob(&chunk).unwrap_err();
    assert!(!err.is_corruption(), "{err}");
    assert!(err.to_string().contains("no such object"), "{err}");
    assert!(f.root.join("packs").join(loc.pack.file_name()).exists());
}

fn prunes_copy_switch_and_delete_keep_every_blob_readable(f: Fixture) {
    let (_, chunk) = commit(&f.archive, &text(50_000)).unwrap();
    let old = f.archive.location(&chunk).unwrap();
    // What prune does: copy the record to a new pack, switch the index, delete the old.
    let mut s = f.archive.begin_write().unwrap();
    let new = s.copy_blob(&chunk, &old).unwrap();
    let blobs = f.archive.blobs().unwrap();
    let others: Vec<(BlobId, Location)> = blobs
        .iter()
        .filter(|(i, l)| l.pack == old.pack && *i != chunk)
        .map(|(i, l)| (*i, s.copy_blob(i, l).unwrap()))
        .collect();
    let mut moved = vec![(chunk, new)];
    moved.extend(others);
    s.commit_switch(&moved, &[], &[old.pack]).unwrap();
    assert!(!f.root.join("packs").join(old.pack.file_name()).exists());
    assert_ne!(f.archive.location(&chunk).unwrap().pack, old.pack);
    assert_eq!(f.archive.read_blob(&chunk).unwrap(), text(50_000));
}

/// Runs a fault test on an unencrypted and on an encrypted archive.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn plain() {
                super::$name(super::fixture(false))
            }
            #[test]
            fn encrypted() {
                super::$name(super::fixture(true))
            }
        }
    )*};
}

on_both!(
    a_failed_seal_commits_nothing_and_leaves_no_pack,
    a_failed_read_is_an_io_error_not_damage,
    a_short_read_is_damage_naming_the_pack_and_offset,
    a_vanished_pack_is_missing_not_damaged,
    prunes_copy_switch_and_delete_keep_every_blob_readable
);
