//! Helpers shared by the integration tests, which drive the real `strata` binary.
//!
//! - `cmd`: running strata and shell tools; failures panic with the whole story.
//! - `workdir`: temporary directories and the source-tree generator.
//! - `compare`: `diff -r`, `find -printf`, `rsync -n` and `getfattr` judges of a restore.
//! - `expect`: what a committed snapshot must restore to, and the one-line error contract.
//! - `generations`: archives with generations of one tree, and readers of forget/prune output
//!   (not glob re-exported: `use common::generations::*`).
//! - `hostile`: archives crafted through the library, read by strata under a containment
//!   check (not glob re-exported: `use common::hostile::*`).
//! - `json`: a small reader for the `--json` outputs.
//! - `fuse`: foreground and `--daemon` FUSE mounts, unmounted and checked in `Drop`.
//! - `pack`: an independent parser of pack files (docs/FORMAT.md).
//! - `rng`: a seeded PRNG and `STRATA_SEED`.
//!
//! Each test file uses only part of these helpers.
#![allow(dead_code, unused_imports)]

pub mod cmd;
pub mod compare;
pub mod expect;
pub mod fuse;
pub mod generations;
pub mod hostile;
pub mod json;
pub mod pack;
pub mod rng;
pub mod workdir;

pub use cmd::{
    Archive, Cmd, Out, Running, TEST_PASSWORD, open_archive, require_tool, sh, strata, strata_as,
    strata_bin,
};
pub use compare::{
    allocated_bytes, assert_diff_clean, assert_rsync_clean, assert_same_metadata, metadata_listing,
    xattrs,
};
pub use expect::*;
pub use fuse::{DaemonMount, Mount, fuse_available, fuse_mount_at, require_fuse};
pub use json::Json;
pub use pack::{BLOB_HEADER_LEN, PACK_HEADER_LEN, PackRecord, pack_paths, pack_records};
pub use rng::{Rng, seed};
pub use workdir::*;

/// Whether `s` is `n` lowercase hex digits.
pub fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `s` looks like an RFC 3339 UTC timestamp: `YYYY-MM-DDTHH:MM:SS[.frac]Z`
/// (or with a `+00:00` offset).
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(|c| c.is_ascii_digit());
    let head = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !head {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z" || rest == "z" || rest == "+00:00"
}

/// Seconds since the epoch and nanoseconds of an RFC 3339 UTC timestamp.
pub fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    if !is_rfc3339(s) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let nanos = match s[19..].strip_prefix('.') {
        Some(frac) => {
            let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
            if digits.len() > 9 {
                return None;
            }
            format!("{digits:0<9}").parse::<u32>().ok()?
        }
        None => 0,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3_600 + mi * 60 + sec, nanos))
}
