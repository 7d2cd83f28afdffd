//! Names in output meant for people, and raw bytes in JSON.
//!
//! A stored name is any bytes but '/' and NUL: it may hold newlines (which would forge
//! extra lines in `ls` or `diff`), terminal escape sequences, or bytes that are not
//! UTF-8. [`name`] writes it the way GNU `ls -b` (quoting style `escape`) does, so every
//! entry is one line and two different names never print the same:
//! - `\` becomes `\\`;
//! - BEL BS TAB LF VT FF CR become `\a \b \t \n \v \f \r`;
//! - every other control character (C0, DEL, C1), the bidirectional and line-separator
//!   format characters (U+200E U+200F U+2028 U+2029 U+202A–U+202E U+2066–U+2069), and
//!   every byte that is not part of valid UTF-8, become `\ooo` (three octal digits per
//!   byte);
//! - everything else, spaces and printable Unicode included, is written as it is.
//!
//! [`text`] does the same to a message that is already a `String` but leaves backslashes
//! alone (messages quote with `{:?}`, whose escapes must stay readable): it keeps a
//! message on one line and control sequences away from the terminal.
//!
//! [`base64`] (RFC 4648, standard alphabet, padded) carries the exact bytes of a name in
//! JSON beside its lossy UTF-8 rendering.

use std::borrow::Cow;
use std::fmt::Write as _;
use strata::sys::Json;

/// Whether a character is written as escaped bytes.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

fn push_char(out: &mut String, c: char, backslash: bool) {
    match c {
        '\\' if backslash => out.push_str("\\\\"),
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\x0b' => out.push_str("\\v"),
        '\x0c' => out.push_str("\\f"),
        '\r' => out.push_str("\\r"),
        c if unsafe_char(c) => {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                push_byte(out, b);
            }
        }
        c => out.push(c),
    }
}

fn push_byte(out: &mut String, b: u8) {
    let _ = write!(out, "\\{b:03o}");
}

fn needs_escape(s: &str, backslash: bool) -> bool {
    s.chars()
        .any(|c| (backslash && c == '\\') || unsafe_char(c))
}

/// A stored name or path (any bytes) as one unambiguous, printable line.
pub fn name(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes)
        && !needs_escape(s, true)
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c, true);
        }
        for &b in chunk.invalid() {
            push_byte(&mut out, b);
        }
    }
    Cow::Owned(out)
}

/// A message for a terminal: control and format characters escaped as in [`name`],
/// backslashes left as they are.
pub fn text(s: &str) -> Cow<'_, str> {
    if !needs_escape(s, false) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_char(&mut out, c, false);
    }
    Cow::Owned(out)
}

/// Adds `key` (the bytes as UTF-8, invalid sequences replaced by U+FFFD) to a JSON
/// object's fields and, when the bytes are not valid UTF-8, `bytes_key` with their
/// [`base64`], from which the exact bytes can be recovered.
pub fn json_bytes(
    fields: &mut Vec<(&'static str, Json)>,
    key: &'static str,
    bytes_key: &'static str,
    bytes: &[u8],
) {
    fields.push((key, Json::str(String::from_utf8_lossy(bytes))));
    if std::str::from_utf8(bytes).is_err() {
        fields.push((bytes_key, Json::str(base64(bytes))));
    }
}

/// RFC 4648 base64, standard alphabet, with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc, "{raw:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00, 0xfb, 0xef]), "//4A++8=");
    }

    #[test]
    fn plain_names_are_borrowed_unchanged() {
        for s in ["a.txt", "with space", "überweisung €.pdf", "日本語"] {
            assert!(matches!(name(s.as_bytes()), Cow::Borrowed(x) if x == s));
        }
    }

    #[test]
    fn control_bytes_backslashes_and_invalid_utf8_are_escaped() {
        assert_eq!(name(b"a\nM src/x"), "a\\nM src/x");
        assert_eq!(name(b"\x1b[31mred"), "\\033[31mred");
        assert_eq!(name(b"tab\there"), "tab\\there");
        assert_eq!(name(b"back\\slash"), "back\\\\slash");
        assert_eq!(name(b"bad\xff\xfe"), "bad\\377\\376");
        assert_eq!(name(b"del\x7f"), "del\\177");
        assert_eq!(name("c1\u{9b}".as_bytes()), "c1\\302\\233");
        assert_eq!(name("rtl\u{202e}".as_bytes()), "rtl\\342\\200\\256");
        // A name that looks like an escape cannot pass for the byte it spells.
        assert_ne!(name(b"\\377"), name(b"\xff"));
        assert_eq!(text("line\nnext \\ \x1b"), "line\\nnext \\ \\033");
    }

    #[test]
    fn escaped_names_are_one_printable_line_and_distinct() {
        let names: Vec<Vec<u8>> = (0u8..=255)
            .map(|b| vec![b'x', b])
            .chain([b"x\\n".to_vec(), b"x\\\\".to_vec(), b"x\\012".to_vec()])
            .collect();
        let mut seen = std::collections::HashSet::new();
        for n in &names {
            let e = name(n);
            assert!(e.chars().all(|c| !unsafe_char(c)), "{n:?} escaped to {e:?}");
            assert!(
                seen.insert(e.into_owned()),
                "two names print the same: {n:?}"
            );
        }
    }
}
