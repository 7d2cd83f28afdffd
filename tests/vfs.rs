//! The vfs layer's semantics without the kernel: archives are built by the real ingest
//! code from real files, then `Vfs` is called directly the way the FUSE adapter does.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use strata::archive::{Archive, Config};
use strata::ingest::{IngestOptions, Progress, SourceSpec, ingest};
use strata::vfs::{Kind, Options, ROOT_INO, ToErrno, Vfs, VfsError};

fn archive_with(src: &Path, dir: &Path, label: &str) -> Arc<Archive> {
    let a = dir.join("archive");
    if !a.exists() {
        Archive::init(&a, &Config::new(64 << 10, 3, false)).unwrap();
    }
    let archive = Archive::open(&a).unwrap();
    let opts = IngestOptions {
        sources: vec![SourceSpec::Path {
            path: src.to_path_buf(),
            name: b"src".to_vec(),
        }],
        label: label.into(),
        tags: vec!["nightly".into()],
        excludes: vec![],
        one_file_system: false,
        parent: strata::ingest::Parent::None,
        strict: false,
        argv: vec![],
        before: None,
        after: None,
    };
    ingest(&archive, &opts, &Progress::default()).unwrap();
    Arc::new(archive)
}

fn source(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("a.txt"), b"hello world\n").unwrap();
    let big: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    std::fs::write(src.join("sub/big.bin"), &big).unwrap();
    std::fs::hard_link(src.join("a.txt"), src.join("sub/hard.txt")).unwrap();
    std::os::unix::fs::symlink("../a.txt", src.join("sub/link")).unwrap();
    let f = std::fs::File::create(src.join("sparse")).unwrap();
    f.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"tail", (8 << 20) - 4).unwrap();
    src
}

fn vfs(archive: Arc<Archive>, snapshot: Option<strata::format::BlobId>) -> Vfs {
    Vfs::new(
        archive,
        Options {
            cache_size: 16 << 20,
            snapshot,
            uid: 0,
            gid: 0,
        },
    )
    .unwrap()
}

fn walk(v: &Vfs, path: &[&str]) -> strata::vfs::Attr {
    let mut ino = ROOT_INO;
    let mut attr = v.getattr(ino).unwrap();
    for c in path {
        attr = v
            .lookup(ino, c.as_bytes())
            .unwrap_or_else(|e| panic!("lookup {c}: {e}"));
        ino = attr.ino;
    }
    attr
}

#[test]
fn the_top_level_lists_snapshots_latest_and_the_id_and_tag_directories() {
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let archive = archive_with(&src, t.path(), "jira");
    let v = vfs(archive.clone(), None);
    let names: Vec<String> = v
        .readdir(ROOT_INO, 0, false)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect();
    let snap = &archive.snapshots().unwrap()[0];
    let dir = strata::vfs::snapshot_dir_name(snap);
    assert!(
        dir.ends_with(&format!("-jira-{}", snap.id.short())),
        "{dir}"
    );
    assert!(
        !dir.contains(':'),
        "no colons: rsync would take it for a host"
    );
    assert_eq!(
        names,
        vec![
            dir.clone(),
            "latest".into(),
            "latest-jira".into(),
            "by-id".into(),
            "by-tag".into()
        ]
    );
    let latest = v.lookup(ROOT_INO, b"latest").unwrap();
    assert_eq!(latest.kind, Kind::Symlink);
    assert_eq!(v.readlink(latest.ino).unwrap(), dir.as_bytes());
    let by_tag = v.lookup(ROOT_INO, b"by-tag").unwrap();
    let nightly = v.lookup(by_tag.ino, b"nightly").unwrap();
    let entry = v.lookup(nightly.ino, dir.as_bytes()).unwrap();
    assert_eq!(
        v.readlink(entry.ino).unwrap(),
        format!("../../{dir}").as_bytes()
    );
    let by_id = v.lookup(ROOT_INO, b"by-id").unwrap();
    let short = v.lookup(by_id.ino, snap.id.short().as_bytes()).unwrap();
    assert_eq!(
        v.readlink(short.ino).unwrap(),
        format!("../{dir}").as_bytes()
    );
}

#[test]
fn metadata_is_exactly_as_stored() {
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let archive = archive_with(&src, t.path(), "");
    let v = vfs(archive, None);
    let dir = v.readdir(ROOT_INO, 0, false).unwrap()[0].name.clone();
    let dir = String::from_utf8(dir).unwrap();
    for rel in ["a.txt", "sub/big.bin", "sub/link", "sparse", "sub"] {
        let mut path = vec![dir.as_str(), "src"];
        path.extend(rel.split('/'));
        let a = walk(&v, &path);
        let m = std::fs::symlink_metadata(src.join(rel)).unwrap();
        assert_eq!(a.perm as u32, m.mode() & 0o7777, "{rel}");
        assert_eq!((a.uid, a.gid), (m.uid(), m.gid()), "{rel}");
        assert_eq!(a.mtime, (m.mtime(), m.mtime_nsec() as u32), "{rel}");
        assert_eq!(a.ctime, (m.ctime(), m.ctime_nsec() as u32), "{rel}");
        assert_eq!(a.nlink as u64, m.nlink(), "{rel}");
        if !m.is_dir() {
            assert_eq!(a.size, m.size(), "{rel}");
        }
        assert!(a.immutable);
    }
    let sparse = walk(&v, &[&dir, "src", "sparse"]);
    assert!(
        sparse.blocks < 64,
        "holes are not counted: {} blocks",
        sparse.blocks
    );
    let a = walk(&v, &[&dir, "src", "a.txt"]);
    let h = walk(&v, &[&dir, "src", "sub", "hard.txt"]);
    assert_eq!(a.ino, h.ino, "hard links share one inode number");
}

#[test]
fn reads_return_the_stored_bytes_at_any_offset() {
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let archive = archive_with(&src, t.path(), "");
    let v = vfs(archive, None);
    let dir = String::from_utf8(v.readdir(ROOT_INO, 0, false).unwrap()[0].name.clone()).unwrap();
    let big = std::fs::read(src.join("sub/big.bin")).unwrap();
    let a = walk(&v, &[&dir, "src", "sub", "big.bin"]);
    let fh = v.open(a.ino).unwrap();
    for (off, len) in [
        (0usize, 4096usize),
        (65_530, 20),
        (999_990, 100),
        (300_000, 200_000),
        (1_000_000, 10),
    ] {
        let got = v.read(fh, off as u64, len).unwrap();
        let end = (off + len).min(big.len());
        assert_eq!(got, &big[off.min(end)..end], "offset {off} len {len}");
    }
    // Sequential reads (which trigger prefetch) still return the right bytes.
    let mut all = Vec::new();
    while all.len() < big.len() {
        all.extend(v.read(fh, all.len() as u64, 131_072).unwrap());
    }
    assert_eq!(all, big);
    v.release(fh);
    let s = walk(&v, &[&dir, "src", "sparse"]);
    let fh = v.open(s.ino).unwrap();
    assert_eq!(
        v.read(fh, 0, 16).unwrap(),
        vec![0u8; 16],
        "a hole reads as zeros"
    );
    assert_eq!(v.read(fh, (8 << 20) - 4, 100).unwrap(), b"tail");
}

#[test]
fn inode_numbers_are_the_same_on_every_mount() {
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let archive = archive_with(&src, t.path(), "");
    let one = vfs(archive.clone(), None);
    let two = vfs(archive, None);
    let dir = String::from_utf8(one.readdir(ROOT_INO, 0, false).unwrap()[0].name.clone()).unwrap();
    for path in [
        vec![dir.as_str(), "src"],
        vec![dir.as_str(), "src", "sub", "big.bin"],
    ] {
        assert_eq!(walk(&one, &path).ino, walk(&two, &path).ino);
    }
}

#[test]
fn a_single_snapshot_mount_has_the_snapshot_tree_at_its_root() {
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let archive = archive_with(&src, t.path(), "");
    let id = archive.snapshots().unwrap()[0].id;
    let v = vfs(archive, Some(id));
    let names: Vec<Vec<u8>> = v
        .readdir(ROOT_INO, 0, false)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![b"src".to_vec()]);
    assert_eq!(walk(&v, &["src", "a.txt"]).size, 12);
}

#[test]
fn xattrs_list_and_get_and_missing_ones_are_enodata() {
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let c = std::ffi::CString::new(src.join("a.txt").to_str().unwrap()).unwrap();
    // SAFETY: valid C strings and a value buffer of the stated length.
    let rc = unsafe {
        libc::setxattr(
            c.as_ptr(),
            c"user.origin".as_ptr(),
            b"jira".as_ptr().cast(),
            4,
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr on the temp dir's filesystem");
    let archive = archive_with(&src, t.path(), "");
    let v = vfs(archive, None);
    let dir = String::from_utf8(v.readdir(ROOT_INO, 0, false).unwrap()[0].name.clone()).unwrap();
    let a = walk(&v, &[&dir, "src", "a.txt"]);
    assert_eq!(v.listxattr(a.ino).unwrap(), b"user.origin\0");
    assert_eq!(v.getxattr(a.ino, b"user.origin").unwrap(), b"jira");
    let e = v.getxattr(a.ino, b"user.nope").unwrap_err();
    assert_eq!(e.to_errno(), libc::ENODATA);
}

#[test]
fn missing_names_are_enoent_and_corruption_is_eio() {
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let archive = archive_with(&src, t.path(), "");
    let v = vfs(archive.clone(), None);
    let dir = String::from_utf8(v.readdir(ROOT_INO, 0, false).unwrap()[0].name.clone()).unwrap();
    let s = walk(&v, &[&dir, "src"]);
    let e = v.lookup(s.ino, b"nope").unwrap_err();
    assert!(matches!(e, VfsError::NotFound));
    assert_eq!(e.to_errno(), libc::ENOENT);
    // Damage the stored bytes of big.bin's chunks: every pack byte after the headers of
    // its records is data; flip one byte in the middle of each pack.
    let a = walk(&v, &[&dir, "src", "sub", "big.bin"]);
    let packs = archive.root().join("packs");
    // Only data packs (first record a chunk: kind byte 4 bytes into the record after
    // the 24-byte pack header); trees live in packs of their own.
    let mut flipped = 0;
    for e in std::fs::read_dir(&packs).unwrap() {
        let p = e.unwrap().path();
        let mut bytes = std::fs::read(&p).unwrap();
        if bytes.get(24 + 4) != Some(&1) {
            continue;
        }
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(&p, bytes).unwrap();
        flipped += 1;
    }
    assert!(flipped > 0, "found a data pack to damage");
    let fresh = vfs(archive, None);
    let fh = fresh
        .open(walk(&fresh, &[&dir, "src", "sub", "big.bin"]).ino)
        .unwrap();
    let mut errors = 0;
    let mut off = 0u64;
    while off < a.size {
        match fresh.read(fh, off, 65536) {
            Ok(d) => assert_eq!(
                &d[..],
                &std::fs::read(src.join("sub/big.bin")).unwrap()
                    [off as usize..off as usize + d.len()]
            ),
            Err(e) => {
                assert_eq!(e.to_errno(), libc::EIO, "{e}");
                assert!(e.to_string().contains("sub/big.bin"), "names the path: {e}");
                errors += 1;
            }
        }
        off += 65536;
    }
    assert!(errors > 0, "the flipped byte was detected");
}
