//! Small system helpers with no archive knowledge: fd-relative file calls (`fsops`),
//! JSON text, glob matching, time and size formatting, user/group name lookup, an LRU.

pub mod fsops;

use std::collections::HashMap;
use std::fmt::Write as _;

/// A minimal JSON value writer (strata prints JSON, never parses it).
pub enum Json {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn obj<K: Into<String>>(fields: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Obj(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }
    pub fn int(v: impl Into<i128>) -> Json {
        Json::Int(v.into())
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::Float(f) if f.is_finite() => {
                let _ = write!(out, "{f:.3}");
            }
            Json::Float(_) => out.push_str("null"),
            Json::Str(s) => write_str(out, s),
            Json::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Obj(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Shell-style glob: `*` any run of bytes except '/', `**` any run including '/',
/// `?` one byte except '/', `[abc]`/`[a-z]`/`[!a]` classes, `\x` a literal x.
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    // Iterative matcher with backtracking over the last star (and double star).
    fn class(p: &[u8], c: u8) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, bytes consumed incl. ']').
        let mut i = 0;
        let neg = matches!(p.first(), Some(b'!') | Some(b'^'));
        if neg {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        while i < p.len() {
            if p[i] == b']' && !first {
                return Some((matched != neg, i + 1));
            }
            first = false;
            let lo = p[i];
            if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
                if lo <= c && c <= p[i + 2] {
                    matched = true;
                }
                i += 3;
            } else {
                if lo == c {
                    matched = true;
                }
                i += 1;
            }
        }
        None
    }
    fn rec(p: &[u8], s: &[u8], depth: u32) -> bool {
        if depth > 64 {
            return false;
        }
        let (mut pi, mut si) = (0, 0);
        while pi < p.len() {
            match p[pi] {
                b'*' => {
                    let double = p.get(pi + 1) == Some(&b'*');
                    let rest = if double { &p[pi + 2..] } else { &p[pi + 1..] };
                    // `**/` also matches zero directories.
                    if double && rest.first() == Some(&b'/') && rec(&rest[1..], &s[si..], depth + 1)
                    {
                        return true;
                    }
                    let mut k = si;
                    loop {
                        if rec(rest, &s[k..], depth + 1) {
                            return true;
                        }
                        if k >= s.len() || (!double && s[k] == b'/') {
                            return false;
                        }
                        k += 1;
                    }
                }
                b'?' => {
                    if si >= s.len() || s[si] == b'/' {
                        return false;
                    }
                    pi += 1;
                    si += 1;
                }
                b'[' => {
                    if si >= s.len() {
                        return false;
                    }
                    match class(&p[pi + 1..], s[si]) {
                        Some((true, used)) => {
                            pi += 1 + used;
                            si += 1;
                        }
                        Some((false, _)) => return false,
                        None => {
                            if s[si] != b'[' {
                                return false;
                            }
                            pi += 1;
                            si += 1;
                        }
                    }
                }
                b'\\' if pi + 1 < p.len() => {
                    if si >= s.len() || s[si] != p[pi + 1] {
                        return false;
                    }
                    pi += 2;
                    si += 1;
                }
                c => {
                    if si >= s.len() || s[si] != c {
                        return false;
                    }
                    pi += 1;
                    si += 1;
                }
            }
        }
        si == s.len()
    }
    rec(pat, s, 0)
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2026-11-21T02:00:00Z` (UTC); with `nanos`, `2026-11-21T02:00:00.123456789Z`.
pub fn rfc3339(secs: i64, nsec: u32, nanos: bool) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    if nanos {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{nsec:09}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

/// `2026-11-21 02:00` for tables.
pub fn short_time(secs: i64) -> String {
    let t = rfc3339(secs, 0, false);
    format!("{} {}", &t[..10], &t[11..16])
}

/// `1.5 GiB`, `340 KiB`, `12 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Parses `1048576`, `64K`, `1M`, `2G` (binary units; optional `iB`/`B`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let t = s.trim_end_matches("iB").trim_end_matches('B');
    let (num, mul) = match t.char_indices().last()? {
        (i, 'k' | 'K') => (&t[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&t[..i], 1 << 20),
        (i, 'g' | 'G') => (&t[..i], 1 << 30),
        (i, 't' | 'T') => (&t[..i], 1 << 40),
        _ => (t, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mul)
}

/// Caches uid → user name and gid → group name lookups.
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, Vec<u8>>,
    groups: HashMap<u32, Vec<u8>>,
}

impl Names {
    pub fn user(&mut self, uid: u32) -> Vec<u8> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                let mut buf = vec![0u8; 4096];
                // SAFETY: passwd is plain data that getpwuid_r fills; buf outlives the call
                // and the returned pointers into it are copied out before buf is dropped.
                unsafe {
                    let mut pwd: libc::passwd = std::mem::zeroed();
                    let mut res: *mut libc::passwd = std::ptr::null_mut();
                    let rc = libc::getpwuid_r(
                        uid,
                        &mut pwd,
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        &mut res,
                    );
                    if rc == 0 && !res.is_null() && !pwd.pw_name.is_null() {
                        std::ffi::CStr::from_ptr(pwd.pw_name).to_bytes().to_vec()
                    } else {
                        Vec::new()
                    }
                }
            })
            .clone()
    }

    pub fn group(&mut self, gid: u32) -> Vec<u8> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                let mut buf = vec![0u8; 4096];
                // SAFETY: as in `user`, for getgrgid_r.
                unsafe {
                    let mut grp: libc::group = std::mem::zeroed();
                    let mut res: *mut libc::group = std::ptr::null_mut();
                    let rc = libc::getgrgid_r(
                        gid,
                        &mut grp,
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        &mut res,
                    );
                    if rc == 0 && !res.is_null() && !grp.gr_name.is_null() {
                        std::ffi::CStr::from_ptr(grp.gr_name).to_bytes().to_vec()
                    } else {
                        Vec::new()
                    }
                }
            })
            .clone()
    }
}

/// A least-recently-used map bounded by a total weight, safe to share between threads.
/// Operations are O(log n): recency is kept in a BTreeMap keyed by a use counter.
pub struct Lru<K, V> {
    budget: usize,
    inner: std::sync::Mutex<LruInner<K, V>>,
}

struct LruInner<K, V> {
    map: HashMap<K, (V, usize, u64)>,
    order: std::collections::BTreeMap<u64, K>,
    weight: usize,
    tick: u64,
}

impl<K: std::hash::Hash + Eq + Copy, V: Clone> Lru<K, V> {
    pub fn new(budget: usize) -> Lru<K, V> {
        Lru {
            budget,
            inner: std::sync::Mutex::new(LruInner {
                map: HashMap::new(),
                order: std::collections::BTreeMap::new(),
                weight: 0,
                tick: 0,
            }),
        }
    }

    pub fn get(&self, k: &K) -> Option<V> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.tick += 1;
        let tick = g.tick;
        let (v, old) = {
            let e = g.map.get_mut(k)?;
            let old = e.2;
            e.2 = tick;
            (e.0.clone(), old)
        };
        g.order.remove(&old);
        g.order.insert(tick, *k);
        Some(v)
    }

    /// Inserts `v` with weight `w`, evicting the least recently used entries beyond the
    /// budget. An entry heavier than the whole budget is not kept.
    pub fn insert(&self, k: K, v: V, w: usize) {
        if w > self.budget {
            return;
        }
        self.insert_evicting(k, v, w);
    }

    /// Like `insert`, but an entry heavier than the budget is kept too, alone: memory
    /// stays within the larger of the budget and the heaviest single entry.
    pub fn insert_always(&self, k: K, v: V, w: usize) {
        self.insert_evicting(k, v, w);
    }

    fn insert_evicting(&self, k: K, v: V, w: usize) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.tick += 1;
        let tick = g.tick;
        if let Some((_, ow, ot)) = g.map.insert(k, (v, w, tick)) {
            g.weight -= ow;
            g.order.remove(&ot);
        }
        g.order.insert(tick, k);
        g.weight += w;
        while g.weight > self.budget && g.map.len() > 1 {
            let Some((_, victim)) = g.order.pop_first() else {
                break;
            };
            if let Some((_, vw, _)) = g.map.remove(&victim) {
                g.weight -= vw;
            }
        }
    }

    pub fn weight(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).weight
    }
}

/// The wall-clock time now, as (seconds, nanoseconds) since the Unix epoch.
/// This machine's host name (empty when the kernel does not say).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn now() -> (i64, u32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match(b"*.tmp", b"a.tmp"));
        assert!(!glob_match(b"*.tmp", b"dir/a.tmp"));
        assert!(glob_match(b"src/**", b"src/a/b/c"));
        assert!(glob_match(b"**/temp", b"temp"));
        assert!(glob_match(b"**/temp", b"a/b/temp"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"a?c", b"a/c"));
        assert!(glob_match(b"[a-c]x", b"bx"));
        assert!(!glob_match(b"[!a-c]x", b"bx"));
        assert!(glob_match(b"\\*", b"*"));
        assert!(!glob_match(b"abc", b"abcd"));
        assert!(glob_match(b"*", b""));
    }

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(rfc3339(0, 0, false), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_763_690_400, 5, true),
            "2025-11-21T02:00:00.000000005Z"
        );
        assert_eq!(rfc3339(-1, 0, false), "1969-12-31T23:59:59Z");
        assert_eq!(short_time(951_782_400), "2000-02-29 00:00");
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("64K"), Some(65536));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 B");
    }

    #[test]
    fn lru_keeps_within_budget_and_evicts_least_recent() {
        let l: Lru<u32, u32> = Lru::new(100);
        for i in 0..10 {
            l.insert(i, i, 30);
            assert!(l.weight() <= 100);
        }
        assert_eq!(l.get(&9), Some(9));
        assert_eq!(l.get(&0), None);
        l.get(&7);
        l.insert(10, 10, 30);
        assert_eq!(l.get(&7), Some(7), "recently used entry survives");
        assert_eq!(l.get(&8), None, "least recently used entry goes first");
        l.insert(11, 11, 101);
        assert_eq!(l.get(&11), None, "heavier than the budget is not kept");
        l.insert_always(12, 12, 150);
        assert_eq!(l.get(&12), Some(12), "insert_always keeps it");
        assert_eq!(l.weight(), 150, "and alone");
        l.insert(13, 13, 30);
        assert_eq!(
            l.get(&12),
            None,
            "the oversized entry goes first when others come"
        );
        assert_eq!(l.get(&13), Some(13));
    }

    #[test]
    fn json_escapes_strings() {
        let j = Json::obj([("a\"", Json::str("x\ny\u{1}")), ("n", Json::int(3))]);
        assert_eq!(j.render(), r#"{"a\"":"x\ny\u0001","n":3}"#);
    }
}
