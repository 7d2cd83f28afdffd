//! The bucket store (`strata::store::s3`) against a real three-node Garage cluster on
//! loopback (`tests/common/garage.rs`): objects written whole (one PUT, or a multipart
//! upload past 16 MiB) and read back by range, the archive's small files, the errors a
//! user must tell apart (no bucket, refused key, wrong region, nothing listening), and
//! what a replicated store promises: one node killed changes nothing, a hung node gives
//! an error in bounded time instead of a hang.
//!
//! Needs Garage 2.x (`cargo install --locked garage --version 2.5.0`); the tests fail,
//! never skip, without it.

#[path = "common/garage.rs"]
mod garage;

use garage::{Garage, REGION};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata::store::s3::{Bucket, PART_SIZE, S3Config};
use strata::store::url::BucketUrl;
use strata::store::{MetaStore, ObjectMeta, Store, StoreError};
use zeroize::Zeroizing;

const PACK: &str = "0000000000000001.pack";
const PACK2: &str = "0000000000000002.pack";

fn config(g: &Garage) -> S3Config {
    S3Config {
        access_key_id: g.key_id.clone(),
        secret_access_key: Zeroizing::new(g.secret.clone()),
        session_token: None,
        region: REGION.to_string(),
        timeout: Duration::from_secs(30),
        retries: 4,
    }
}

fn url(s: &str) -> BucketUrl {
    BucketUrl::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn connect(g: &Garage, prefix: &str) -> Arc<Bucket> {
    Bucket::connect_with(&url(&g.url(prefix)), config(g))
        .unwrap_or_else(|e| panic!("connecting to {}: {e}\n{}", g.url(prefix), g.logs()))
}

/// Bytes that differ at every offset within a long stretch (so a misplaced range shows).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `data` as a new object in pieces of `piece` bytes, and seals it.
fn write(store: &dyn Store, name: &str, data: &[u8], piece: usize) {
    let mut o = store
        .create(name)
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    for c in data.chunks(piece.max(1)) {
        o.write_all(c)
            .unwrap_or_else(|e| panic!("write {name}: {e}"));
    }
    assert_eq!(
        o.seal().unwrap(),
        data.len() as u64,
        "seal returns the size"
    );
}

fn read(store: &dyn Store, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
    let mut buf = vec![0u8; len];
    store.read_at(name, offset, &mut buf).map(|()| buf)
}

fn names(objects: &[ObjectMeta]) -> Vec<&str> {
    objects.iter().map(|o| o.name.as_str()).collect()
}

/// Runs `f`, and fails if it took longer than `limit`.
fn within<T>(limit: Duration, what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let v = f();
    let took = start.elapsed();
    assert!(took <= limit, "{what} took {took:?}, more than {limit:?}");
    v
}

#[test]
fn a_small_object_reads_back_whole_and_by_any_range() {
    let g = Garage::start();
    let packs = connect(&g, "arch").packs();
    let data = pattern(100_000, 1);
    write(&*packs, PACK, &data, 777);
    assert_eq!(packs.size(PACK).unwrap(), data.len() as u64);
    assert_eq!(packs.read_all(PACK).unwrap(), data);
    for (off, len) in [
        (0, 1),
        (1, 10),
        (4095, 4097),
        (99_000, 1000),
        (99_999, 1),
        (5, 0),
    ] {
        assert_eq!(
            read(&*packs, PACK, off as u64, len).unwrap(),
            &data[off..off + len],
            "range {off}+{len}"
        );
    }
    let (objects, strays) = packs.list().unwrap();
    assert_eq!(
        objects,
        vec![ObjectMeta {
            name: PACK.into(),
            size: data.len() as u64
        }]
    );
    assert!(strays.is_empty());
    assert_eq!(packs.total_size().unwrap(), data.len() as u64);
}

#[test]
fn reads_past_the_end_are_short_and_missing_objects_are_not_found() {
    let g = Garage::start();
    let packs = connect(&g, "").packs();
    write(&*packs, PACK, b"0123456789", 3);
    for (off, len) in [(5u64, 6usize), (10, 1), (11, 4), (1 << 40, 8)] {
        match read(&*packs, PACK, off, len) {
            Err(StoreError::Short {
                offset, want, size, ..
            }) => assert_eq!((offset, want, size), (off, len as u64, 10), "{off}+{len}"),
            other => panic!("{off}+{len}: expected Short, got {other:?}"),
        }
    }
    let e = read(&*packs, PACK2, 0, 4).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(packs.size(PACK2).unwrap_err().is_not_found());
    let e = read(&*packs, PACK2, 0, 0).unwrap_err();
    assert!(e.is_not_found(), "an empty read of a missing object: {e}");
}

#[test]
fn a_40_mib_object_goes_up_in_parts_and_reads_back_byte_exact() {
    let g = Garage::start();
    let packs = connect(&g, "big").packs();
    let data = pattern(40 << 20, 2);
    // Odd pieces, so part boundaries fall inside writes.
    within(Duration::from_secs(120), "uploading 40 MiB", || {
        write(&*packs, PACK, &data, (1 << 20) + 7)
    });
    assert_eq!(packs.size(PACK).unwrap(), data.len() as u64);
    let back = within(Duration::from_secs(60), "reading 40 MiB", || {
        packs.read_all(PACK).unwrap()
    });
    assert!(
        back == data,
        "the object read back differs from what was written"
    );
    // Across the first part boundary, and the tail.
    let at = PART_SIZE - 100;
    assert_eq!(
        read(&*packs, PACK, at as u64, 200).unwrap(),
        &data[at..at + 200]
    );
    let at = data.len() - 1000;
    assert_eq!(read(&*packs, PACK, at as u64, 1000).unwrap(), &data[at..]);
    // One write bigger than several parts at once.
    write(&*packs, PACK2, &data[..(PART_SIZE * 2 + 5)], usize::MAX);
    assert_eq!(packs.read_all(PACK2).unwrap(), &data[..(PART_SIZE * 2 + 5)]);
}

#[test]
fn aborted_and_dropped_uploads_leave_nothing_listed() {
    let g = Garage::start();
    let bucket = connect(&g, "ab");
    let packs = bucket.packs();
    let big = pattern(PART_SIZE + 1234, 3);
    let mut small = packs.create(PACK).unwrap();
    small.write_all(b"not for keeps").unwrap();
    small.abort();
    // Past one part: a multipart upload has started and is aborted.
    let mut large = packs.create(PACK2).unwrap();
    large.write_all(&big).unwrap();
    large.abort();
    // Dropped without seal or abort (a writer that panicked).
    let mut dropped = packs.create("0000000000000003.pack").unwrap();
    dropped.write_all(&big).unwrap();
    drop(dropped);
    let (objects, strays) = packs.list().unwrap();
    assert!(
        objects.is_empty() && strays.is_empty(),
        "{objects:?} {strays:?}"
    );
    for name in [PACK, PACK2, "0000000000000003.pack"] {
        assert!(packs.size(name).unwrap_err().is_not_found(), "{name}");
    }
    assert!(bucket.list("").unwrap().is_empty());
}

#[test]
fn create_refuses_a_name_that_exists_and_delete_is_idempotent() {
    let g = Garage::start();
    let packs = connect(&g, "x").packs();
    write(&*packs, PACK, b"abc", 10);
    let e = packs.create(PACK).map(|_| ()).unwrap_err();
    assert!(
        matches!(&e, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{e}"
    );
    packs.delete(PACK).unwrap();
    packs.delete(PACK).unwrap();
    assert!(packs.size(PACK).unwrap_err().is_not_found());
    packs.sync().unwrap();
}

#[test]
fn set_aside_moves_an_object_to_quarantine_with_its_bytes() {
    let g = Garage::start();
    let bucket = connect(&g, "q/r");
    let packs = bucket.packs();
    write(&*packs, PACK, b"damaged bytes", 100);
    let to = packs.set_aside(PACK).unwrap();
    assert_eq!(to, format!("{}/quarantine/{PACK}", g.url("q/r")));
    assert!(packs.size(PACK).unwrap_err().is_not_found());
    assert_eq!(
        bucket
            .get(&format!("quarantine/{PACK}"))
            .unwrap()
            .as_deref(),
        Some(&b"damaged bytes"[..])
    );
    let e = packs.cut_tail(PACK2, 1).unwrap_err();
    assert!(matches!(e, StoreError::Unsupported { .. }), "{e}");
}

#[test]
fn list_sorts_objects_and_reports_keys_below_packs_as_strays() {
    let g = Garage::start();
    let bucket = connect(&g, "l");
    let packs = bucket.packs();
    write(&*packs, PACK2, b"2", 1);
    write(&*packs, PACK, b"11", 1);
    // Written by something else: a leftover beside the packs, and a nested key.
    bucket.put("packs/leftover.tmp", b"xyz").unwrap();
    bucket.put("packs/sub/0000000000000009.pack", b"n").unwrap();
    let (objects, strays) = packs.list().unwrap();
    assert_eq!(names(&objects), [PACK, PACK2, "leftover.tmp"]);
    assert_eq!(objects[0].size, 2);
    assert_eq!(strays.len(), 1, "{strays:?}");
    assert_eq!(strays[0].name, "sub/0000000000000009.pack");
}

#[test]
fn small_files_are_put_got_listed_replaced_and_deleted() {
    let g = Garage::start();
    let b = connect(&g, "meta");
    assert_eq!(b.get("config").unwrap(), None);
    b.put("config", b"v1").unwrap();
    b.put("keys/00000000000000bb.key", b"b").unwrap();
    b.put("keys/00000000000000aa.key", b"a").unwrap();
    b.put("locks/writer", b"pid 1").unwrap();
    b.put("keysake", b"not under keys/").unwrap();
    assert_eq!(b.get("config").unwrap().as_deref(), Some(&b"v1"[..]));
    let keys = b.list("keys/").unwrap();
    assert_eq!(
        keys,
        vec![
            ObjectMeta {
                name: "keys/00000000000000aa.key".into(),
                size: 1
            },
            ObjectMeta {
                name: "keys/00000000000000bb.key".into(),
                size: 1
            },
        ]
    );
    assert_eq!(
        names(&b.list("keys/00000000000000a").unwrap()),
        ["keys/00000000000000aa.key"]
    );
    assert_eq!(names(&b.list("locks/").unwrap()), ["locks/writer"]);
    assert_eq!(
        names(&b.list("key").unwrap()),
        [
            "keys/00000000000000aa.key",
            "keys/00000000000000bb.key",
            "keysake"
        ]
    );
    b.put("config", b"version two").unwrap();
    assert_eq!(
        b.get("config").unwrap().as_deref(),
        Some(&b"version two"[..])
    );
    b.delete("locks/writer").unwrap();
    b.delete("locks/writer").unwrap();
    assert!(b.list("locks/").unwrap().is_empty());
    assert_eq!(
        MetaStore::location(&*b, "config"),
        format!("{}/config", g.url("meta"))
    );
}

#[test]
fn archives_under_two_prefixes_of_one_bucket_do_not_see_each_other() {
    let g = Garage::start();
    let a = connect(&g, "site/a");
    let b = connect(&g, "site/ab");
    write(&*a.packs(), PACK, b"from a", 10);
    a.put("config", b"a").unwrap();
    assert!(b.packs().list().unwrap().0.is_empty());
    assert_eq!(b.get("config").unwrap(), None);
    assert!(b.list("").unwrap().is_empty());
    assert_eq!(
        names(&a.list("").unwrap()),
        ["config", "packs/0000000000000001.pack"]
    );
}

#[test]
fn a_missing_bucket_is_named_as_such_within_seconds() {
    let g = Garage::start();
    let u = url(&format!("s3:{}/no-such-bucket", g.endpoint()));
    let e = within(Duration::from_secs(10), "connecting", || {
        Bucket::connect_with(&u, config(&g)).unwrap_err()
    });
    assert!(matches!(e, StoreError::NoSuchBucket { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("no-such-bucket") && msg.contains("no such bucket"),
        "{msg}"
    );
}

#[test]
fn a_wrong_secret_or_unknown_key_is_access_denied_within_seconds() {
    let g = Garage::start();
    let mut bad = config(&g);
    bad.secret_access_key = Zeroizing::new("0".repeat(64));
    let e = within(Duration::from_secs(10), "connecting", || {
        Bucket::connect_with(&url(&g.url("")), bad).unwrap_err()
    });
    assert!(matches!(e, StoreError::AccessDenied { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("AWS_SECRET_ACCESS_KEY"), "{msg}");
    assert!(!msg.contains(&g.secret), "the secret is never shown");
    let mut unknown = config(&g);
    unknown.access_key_id = "GK000000000000000000000000".into();
    let e = Bucket::connect_with(&url(&g.url("")), unknown).unwrap_err();
    assert!(matches!(e, StoreError::AccessDenied { .. }), "{e}");
}

#[test]
fn a_wrong_region_names_the_region_the_store_expects() {
    let g = Garage::start();
    let mut c = config(&g);
    c.region = "us-east-1".into();
    let e = Bucket::connect_with(&url(&g.url("")), c).unwrap_err();
    match &e {
        StoreError::WrongRegion {
            region, expected, ..
        } => assert_eq!((region.as_str(), expected.as_str()), ("us-east-1", REGION)),
        _ => panic!("expected WrongRegion, got {e}"),
    }
    assert!(e.to_string().contains("AWS_DEFAULT_REGION=garage"), "{e}");
}

#[test]
fn an_endpoint_where_nothing_listens_is_unreachable_within_seconds() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = S3Config {
        access_key_id: "GK0".into(),
        secret_access_key: Zeroizing::new("x".repeat(64)),
        session_token: None,
        region: REGION.into(),
        timeout: Duration::from_secs(30),
        retries: 10,
    };
    let u = url(&format!("s3:http://127.0.0.1:{port}/strata-test"));
    let e = within(Duration::from_secs(10), "connecting", || {
        Bucket::connect_with(&u, c).unwrap_err()
    });
    assert!(matches!(e, StoreError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[test]
fn with_one_node_killed_reads_and_writes_still_work() {
    let mut g = Garage::start();
    let b = connect(&g, "quorum");
    let packs = b.packs();
    let big = pattern(PART_SIZE + 4096, 4);
    write(&*packs, PACK, &big, 1 << 20);
    b.put("config", b"before").unwrap();
    g.kill_node(2);
    assert_eq!(packs.read_all(PACK).unwrap(), big, "read with a node down");
    assert_eq!(b.get("config").unwrap().as_deref(), Some(&b"before"[..]));
    write(&*packs, PACK2, &big, 3 << 20);
    b.put("config", b"after").unwrap();
    assert_eq!(names(&packs.list().unwrap().0), [PACK, PACK2]);
    assert_eq!(packs.read_all(PACK2).unwrap(), big);
    g.start_node(2);
    assert_eq!(b.get("config").unwrap().as_deref(), Some(&b"after"[..]));
    assert_eq!(read(&*packs, PACK2, 10, 10).unwrap(), &big[10..20]);
}

#[test]
fn a_paused_endpoint_node_gives_a_timeout_error_instead_of_a_hang() {
    let mut g = Garage::start();
    let mut c = config(&g);
    c.timeout = Duration::from_secs(2);
    c.retries = 1;
    let b = Bucket::connect_with(&url(&g.url("hang")), c).unwrap();
    let packs = b.packs();
    write(&*packs, PACK, b"before the pause", 100);
    g.pause_node(0);
    // Two tries of 2 s each and a short backoff, well under a minute.
    let e = within(Duration::from_secs(20), "a read from a paused node", || {
        read(&*packs, PACK, 0, 4).unwrap_err()
    });
    assert!(matches!(e, StoreError::TimedOut { .. }), "{e}");
    assert!(e.to_string().contains("STRATA_S3_TIMEOUT"), "{e}");
    let e = within(Duration::from_secs(20), "a write to a paused node", || {
        b.put("config", b"x").unwrap_err()
    });
    assert!(matches!(e, StoreError::TimedOut { .. }), "{e}");
    g.resume_node(0);
    // A new connection with the usual patience: the cluster may take a moment to count
    // node 0 in again.
    let packs = connect(&g, "hang").packs();
    assert_eq!(read(&*packs, PACK, 0, 6).unwrap(), b"before");
}

#[test]
fn objects_survive_a_stop_and_start_of_the_whole_cluster() {
    let mut g = Garage::start();
    let data = pattern(300_000, 5);
    write(&*connect(&g, "restart").packs(), PACK, &data, 65536);
    g.stop_all();
    g.start_all();
    let packs = connect(&g, "restart").packs();
    assert_eq!(packs.read_all(PACK).unwrap(), data);
}
