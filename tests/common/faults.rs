//! Fault injection for the crash, corruption and full-disk tests: damage to files, what each snapshot reaches
//! (read through the library on an undamaged archive), a size-limited tmpfs that is
//! always unmounted in `Drop`, and problems collected across a run. The seeded PRNG, the
//! independent pack parser and the FUSE mounts are in `common` (`rng`, `pack`, `fuse`).
//!
//! Included (`#[path]`) only by the test files that inject faults, so other test binaries never
//! compile it.
#![allow(dead_code)]

use crate::common::cmd::Cmd;
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use strata::format::BlobId;
use strata::format::tree::{Extent, NodeKind};

// ---------------------------------------------------------------------------------------
// Damage
// ---------------------------------------------------------------------------------------

/// XORs one byte of a file with a non-zero mask.
pub fn flip_byte(path: &Path, offset: u64, mask: u8) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= mask;
    f.write_all_at(&b, offset).unwrap();
}

pub fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// What every snapshot reaches, read through the library from an undamaged archive.
// ---------------------------------------------------------------------------------------

pub struct SnapContent {
    pub id: BlobId,
    pub short: String,
    /// Regular files: path inside the snapshot (`data/sub/f`) → its chunk ids.
    pub files: BTreeMap<String, Vec<BlobId>>,
    /// Every blob the snapshot needs: its record, every tree, every chunk.
    pub blobs: HashSet<BlobId>,
}

/// Walks every snapshot of an (undamaged) archive.
pub fn snapshot_contents(archive: &Path) -> Vec<SnapContent> {
    let a = crate::common::open_archive(archive);
    let mut out = Vec::new();
    for row in a.snapshots().expect("listing snapshots") {
        let mut c = SnapContent {
            id: row.id,
            short: row.id.short(),
            files: BTreeMap::new(),
            blobs: HashSet::new(),
        };
        c.blobs.insert(row.id);
        let mut stack = vec![(row.root, String::new())];
        while let Some((tree, prefix)) = stack.pop() {
            c.blobs.insert(tree);
            for n in a.read_tree(&tree).expect("reading a tree") {
                let name = String::from_utf8_lossy(&n.name).into_owned();
                let path = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                match n.kind {
                    NodeKind::Dir => stack.push((n.subtree().unwrap(), path)),
                    NodeKind::File => {
                        let chunks: Vec<BlobId> = n
                            .extents()
                            .iter()
                            .filter_map(|x| match x {
                                Extent::Data { id, .. } => Some(*id),
                                Extent::Hole { .. } => None,
                            })
                            .collect();
                        c.blobs.extend(chunks.iter().copied());
                        c.files.insert(path, chunks);
                    }
                    _ => {}
                }
            }
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------

/// Regular files under `root`: relative path → bytes.
pub fn read_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            let p = e.path();
            if t.is_dir() {
                walk(base, &p, out);
            } else if t.is_file() {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs is plain data; zeroed is a valid value for it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs {}", path.display());
    st.f_bavail * st.f_frsize
}

// ---------------------------------------------------------------------------------------
// A size-limited tmpfs, unmounted in Drop (also when the test fails).
// ---------------------------------------------------------------------------------------

pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// `mount -t tmpfs -o size=SIZE,mode=0700 tmpfs DIR` (needs root).
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let out = Cmd::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0700"))
            .arg("tmpfs")
            .arg(dir)
            .run();
        assert!(
            out.status.success(),
            "the disk-full test mounts a tmpfs and needs root\n{out}"
        );
        Tmpfs {
            dir: dir.to_owned(),
        }
    }

    /// `mount -o remount,size=SIZE DIR`.
    pub fn resize(&self, size: &str) {
        Cmd::new("mount")
            .arg("-o")
            .arg(format!("remount,size={size}"))
            .arg(&self.dir)
            .ok();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Problems that do not stop a run: counted by kind, reported together at the end.
// ---------------------------------------------------------------------------------------

#[derive(Default)]
pub struct Problems(BTreeMap<String, (usize, String)>);

impl Problems {
    pub fn add(&mut self, kind: &str, example: String) {
        let e = self.0.entry(kind.to_owned()).or_insert((0, example));
        e.0 += 1;
    }

    /// Panics with one paragraph per kind: how often, and the first example.
    pub fn assert_none(&self) {
        if self.0.is_empty() {
            return;
        }
        let text: Vec<String> = self
            .0
            .iter()
            .map(|(kind, (n, example))| format!("{kind} ({n} times); first:\n  {example}"))
            .collect();
        panic!("{} kind(s) of problem:\n{}", self.0.len(), text.join("\n"));
    }
}
