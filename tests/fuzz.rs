//! Decoder fuzzing: a proptest over every record decoder (pack header, blob header,
//! tree, snapshot, config, `scan_pack`, `survey_pack`) with random and mutated valid input,
//! under an allocation watch: no panic, and no allocation larger than 32 times the input
//! plus 64 KiB. Moved from the `fuzz` module of `tests/integrity.rs`.
//!
//! `PROPTEST_CASES=N` sets the cases per property; `the_fuzz_figures` prints them.

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
            |((time, host, label, tags), (parent, root), sources, argv, commands, errors, s)| {
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
            .prop_map(
                |(k, raw, data, id)| blob_header(k, &data, raw % (1 << 31), id).encode().to_vec()
            ),
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
