//! Judging a restore with real tools: `diff -r`, `find -printf` metadata listings,
//! `rsync -aHXn --checksum --itemize-changes` and `getfattr`.

use super::cmd::{Cmd, require_tool};
use std::path::Path;

/// `find -printf` fields compared between two trees: path, type, mode, uid, gid, size
/// (not for directories, whose size depends on the filesystem), mtime with nanoseconds,
/// link count and symlink target. Records are NUL-terminated so names may hold newlines.
pub fn metadata_listing(dir: &Path) -> Vec<String> {
    let non_dirs = Cmd::new("find")
        .args([".", "!", "-type", "d", "-printf"])
        .arg("%P\\t%y\\t%m\\t%U\\t%G\\t%s\\t%T@\\t%n\\t%l\\0")
        .dir(dir)
        .ok()
        .stdout;
    let dirs = Cmd::new("find")
        .args([".", "-type", "d", "-printf"])
        .arg("%P\\t%y\\t%m\\t%U\\t%G\\t-\\t%T@\\t%n\\t\\0")
        .dir(dir)
        .ok()
        .stdout;
    let mut records: Vec<String> = non_dirs
        .split(|b| *b == 0)
        .chain(dirs.split(|b| *b == 0))
        .filter(|r| !r.is_empty())
        .map(|r| r.escape_ascii().to_string())
        .collect();
    records.sort();
    records
}

/// The two trees have the same paths with the same metadata (see `metadata_listing`).
pub fn assert_same_metadata(expected: &Path, actual: &Path) {
    let a = metadata_listing(expected);
    let b = metadata_listing(actual);
    if a != b {
        let only_a: Vec<&String> = a.iter().filter(|r| !b.contains(r)).collect();
        let only_b: Vec<&String> = b.iter().filter(|r| !a.contains(r)).collect();
        panic!(
            "metadata differs between {} and {}\n(fields: path type mode uid gid size mtime nlink target)\n\
             only in the source:\n  {}\nonly in the restore:\n  {}",
            expected.display(),
            actual.display(),
            only_a
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  "),
            only_b
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  "),
        );
    }
}

/// `diff -r --no-dereference` finds no difference. GNU diff reports every pair of special
/// files ("File a is a fifo while file b is a fifo") even when they match; such lines
/// with the same kind on both sides are not differences (their metadata is compared by
/// `assert_same_metadata`).
pub fn assert_diff_clean(expected: &Path, actual: &Path) {
    let out = Cmd::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(expected)
        .arg(actual)
        .run();
    assert!(
        matches!(out.code(), Some(0 | 1)),
        "diff could not compare the trees\n{out}"
    );
    let text = out.stdout_str();
    let real: Vec<&str> = text
        .lines()
        .filter(|l| !is_same_kind_special_file_line(l))
        .collect();
    assert!(
        real.is_empty(),
        "diff -r finds differences between {} and {}:\n{}",
        expected.display(),
        actual.display(),
        real.join("\n")
    );
}

fn is_same_kind_special_file_line(line: &str) -> bool {
    // "File A is a fifo while file B is a fifo"
    let Some(rest) = line.strip_prefix("File ") else {
        return false;
    };
    let Some((left, right)) = rest.split_once(" while file ") else {
        return false;
    };
    let kind = |s: &str| s.rsplit_once(" is a ").map(|(_, k)| k.to_string());
    let (kl, kr) = (kind(left), kind(right));
    kl.is_some()
        && kl == kr
        && kl.as_deref() != Some("directory")
        && kl.as_deref() != Some("regular file")
}

/// `rsync -aHXn --checksum --itemize-changes SRC/ DST/` would change nothing: the judge of
/// exactness for content, modes, owners, mtimes, hard links, symlinks, devices and xattrs.
pub fn assert_rsync_clean(expected: &Path, actual: &Path) {
    require_tool("rsync", "rsync");
    let mut src = expected.as_os_str().to_owned();
    src.push("/");
    let mut dst = actual.as_os_str().to_owned();
    dst.push("/");
    let out = Cmd::new("rsync")
        .args(["-aHXn", "--checksum", "--itemize-changes"])
        .arg(src)
        .arg(dst)
        .ok();
    assert!(
        out.stdout.is_empty(),
        "rsync finds differences between {} and {} (itemized):\n{}",
        expected.display(),
        actual.display(),
        out.stdout_str()
    );
}

/// All extended attributes of one node (not following symlinks), hex-encoded.
pub fn xattrs(path: &Path) -> String {
    require_tool("getfattr", "attr");
    let out = Cmd::new("getfattr")
        .args(["-h", "-d", "-m", "-", "-e", "hex", "--absolute-names"])
        .arg(path)
        .ok();
    // Drop the "# file: ..." header, which names the path.
    out.stdout_str()
        .lines()
        .filter(|l| !l.starts_with("# file:") && !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Allocated bytes of a file (`st_blocks * 512`), as `du` sees it.
pub fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .blocks()
        * 512
}
