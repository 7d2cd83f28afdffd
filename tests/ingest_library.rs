//! `strata::ingest::ingest` called as a library: it chooses the parent snapshot itself
//! (as `strata ingest` does), so a library caller gets change detection too.

use std::path::Path;
use strata::archive::{Archive, Config};
use strata::ingest::{IngestOptions, Parent, Progress, SourceSpec, ingest};

fn options(src: &Path, label: &str, parent: Parent) -> IngestOptions {
    IngestOptions {
        sources: vec![SourceSpec::Path {
            path: src.to_path_buf(),
            name: b"src".to_vec(),
        }],
        label: label.into(),
        tags: vec![],
        excludes: vec![],
        one_file_system: false,
        parent,
        strict: false,
        argv: vec![],
        before: None,
        after: None,
    }
}

fn setup(dir: &Path) -> (Archive, std::path::PathBuf) {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"hello\n").unwrap();
    std::fs::write(src.join("sub/b.txt"), vec![7u8; 100_000]).unwrap();
    let a = dir.join("archive");
    Archive::init(&a, &Config::new(64 << 10, 3, false)).unwrap();
    (Archive::open(&a).unwrap(), src)
}

#[test]
fn by_default_the_parent_is_the_latest_snapshot_with_the_same_label() {
    let tmp = tempfile::tempdir().unwrap();
    let (archive, src) = setup(tmp.path());
    let p = Progress::default();
    let first = ingest(&archive, &options(&src, "web", Parent::default()), &p).unwrap();
    assert_eq!(first.snapshot.parent, None, "no earlier snapshot");
    assert_eq!(first.snapshot.stats.files_new, 2);
    // Another label is not a parent.
    let other = ingest(&archive, &options(&src, "db", Parent::Latest), &p).unwrap();
    assert_eq!(other.snapshot.parent, None);
    let second = ingest(&archive, &options(&src, "web", Parent::Latest), &p).unwrap();
    assert_eq!(second.snapshot.parent, Some(first.id));
    assert_eq!(second.snapshot.stats.files_unchanged, 2);
    assert_eq!(second.snapshot.stats.bytes_read, 0);
}

#[test]
fn a_parent_can_be_named_or_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (archive, src) = setup(tmp.path());
    let p = Progress::default();
    let first = ingest(&archive, &options(&src, "", Parent::None), &p).unwrap();
    let none = ingest(&archive, &options(&src, "", Parent::None), &p).unwrap();
    assert_eq!(none.snapshot.parent, None);
    assert_eq!(
        none.snapshot.stats.files_unchanged, 0,
        "every file read again"
    );
    let named = ingest(
        &archive,
        &options(&src, "", Parent::Spec(first.id.short())),
        &p,
    )
    .unwrap();
    assert_eq!(named.snapshot.parent, Some(first.id));
    assert_eq!(named.snapshot.stats.files_unchanged, 2);
    let Err(e) = ingest(
        &archive,
        &options(&src, "", Parent::Spec("nope".into())),
        &p,
    ) else {
        panic!("an unknown parent is an error")
    };
    assert!(e.to_string().contains("nope"), "{e}");
}
