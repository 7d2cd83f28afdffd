//! File contents: text documents, fake images and documents with real magic numbers, and the
//! in-place edits that turn one version of a file into the next.
//!
//! Images are random bytes behind a JPEG or PNG header (incompressible, like real ones) and are
//! replaced whole when they change; text, PDF and DOCX files are edited in place (one region
//! rewritten, sometimes something appended), so most of their bytes survive a change.

use crate::clock::push_num;
use crate::rng::Rng;
use crate::text;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Html,
    Json,
    Csv,
    Text,
    Jpeg,
    Png,
    Pdf,
    Docx,
}

impl Kind {
    /// A kind drawn with the mix of an upload directory (weights in per cent).
    pub fn draw(rng: &mut Rng) -> Kind {
        match rng.below(100) {
            0..10 => Kind::Html,
            10..18 => Kind::Json,
            18..28 => Kind::Csv,
            28..43 => Kind::Text,
            43..73 => Kind::Jpeg,
            73..88 => Kind::Png,
            88..96 => Kind::Pdf,
            _ => Kind::Docx,
        }
    }

    pub fn is_image(self) -> bool {
        matches!(self, Kind::Jpeg | Kind::Png)
    }

    pub fn is_text(self) -> bool {
        matches!(self, Kind::Html | Kind::Json | Kind::Csv | Kind::Text)
    }
}

/// A file size: log-normal around `median`, with 1.5% of files from a heavy tail around
/// `big_median`, clamped to 1 KiB ..= 8 MiB (text to 1 MiB).
pub fn draw_size(rng: &mut Rng, kind: Kind, median: f64, big_median: f64) -> usize {
    let raw = if rng.chance(0.015) {
        rng.log_normal(big_median, 1.3)
    } else {
        rng.log_normal(median, 1.3)
    };
    let max = if kind.is_text() { 1 << 20 } else { 8 << 20 };
    raw.clamp(1024.0, max as f64) as usize
}

/// Content of the given kind, about `size` bytes (text ends at a line break past `size`).
pub fn make(kind: Kind, rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(size + 512);
    match kind {
        Kind::Html => {
            b.extend_from_slice(
                b"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>",
            );
            text::title(rng, &mut b);
            b.extend_from_slice(b"</title>\n</head>\n<body>\n");
            while b.len() < size {
                b.extend_from_slice(b"<h2>");
                text::title(rng, &mut b);
                b.extend_from_slice(b"</h2>\n<p>");
                text::paragraph(rng, &mut b);
                b.extend_from_slice(b"</p>\n");
            }
            b.extend_from_slice(b"</body>\n</html>\n");
        }
        Kind::Json => {
            b.extend_from_slice(b"[\n");
            let mut id = rng.below(100_000);
            while b.len() < size {
                id += 1 + rng.below(5);
                b.extend_from_slice(b"  {\"id\": ");
                push_num(&mut b, id, 0);
                b.extend_from_slice(b", \"name\": \"");
                text::title(rng, &mut b);
                b.extend_from_slice(b"\", \"active\": ");
                b.extend_from_slice(if rng.chance(0.8) { b"true" } else { b"false" });
                b.extend_from_slice(b", \"note\": \"");
                text::sentence(rng, &mut b);
                b.extend_from_slice(b"\"},\n");
            }
            b.extend_from_slice(b"  {}\n]\n");
        }
        Kind::Csv => {
            b.extend_from_slice(b"id;name;email;amount;comment\n");
            let mut id = rng.below(10_000);
            while b.len() < size {
                id += 1;
                let who = text::person(rng.below(4096));
                push_num(&mut b, id, 0);
                b.push(b';');
                b.extend_from_slice(who.first.as_bytes());
                b.push(b' ');
                b.extend_from_slice(who.last.as_bytes());
                b.push(b';');
                b.extend_from_slice(who.login.as_bytes());
                b.extend_from_slice(b"@example.com;");
                push_num(&mut b, rng.below(100_000), 0);
                b.push(b'.');
                push_num(&mut b, rng.below(100), 2);
                b.push(b';');
                text::words(rng, &mut b, 4);
                b.push(b'\n');
            }
        }
        Kind::Text => text::prose(rng, &mut b, size),
        Kind::Jpeg => {
            b.extend_from_slice(b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x48\x00\x48\x00\x00\xFF\xDB\x00\x43\x00");
            random_tail(rng, &mut b, size.saturating_sub(2));
            b.extend_from_slice(b"\xFF\xD9");
        }
        Kind::Png => {
            b.extend_from_slice(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR");
            b.extend_from_slice(&(rng.range(64, 4000) as u32).to_be_bytes());
            b.extend_from_slice(&(rng.range(64, 3000) as u32).to_be_bytes());
            b.extend_from_slice(b"\x08\x06\x00\x00\x00");
            random_more(rng, &mut b, 4);
            let idat = size.saturating_sub(b.len() + 24).max(16);
            b.extend_from_slice(&(idat as u32).to_be_bytes());
            b.extend_from_slice(b"IDAT");
            random_more(rng, &mut b, idat + 4);
            b.extend_from_slice(b"\x00\x00\x00\x00IEND\xAE\x42\x60\x82");
        }
        Kind::Pdf => {
            b.extend_from_slice(b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n");
            let mut obj = 1;
            while b.len() < size {
                push_num(&mut b, obj, 0);
                obj += 1;
                if rng.chance(0.5) {
                    let len = rng.range(512, 16_384) as usize;
                    b.extend_from_slice(b" 0 obj\n<< /Length ");
                    push_num(&mut b, len as u64, 0);
                    b.extend_from_slice(b" /Filter /FlateDecode >>\nstream\n");
                    random_more(rng, &mut b, len);
                    b.extend_from_slice(b"\nendstream\nendobj\n");
                } else {
                    b.extend_from_slice(b" 0 obj\n<< /Type /Page /Contents (");
                    text::paragraph(rng, &mut b);
                    b.extend_from_slice(b") >>\nendobj\n");
                }
            }
            b.extend_from_slice(b"trailer\n<< /Root 1 0 R >>\n%%EOF\n");
        }
        Kind::Docx => {
            b.extend_from_slice(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00");
            random_tail(rng, &mut b, size);
        }
    }
    b
}

/// Appends random bytes until `b` is `len` long.
fn random_tail(rng: &mut Rng, b: &mut Vec<u8>, len: usize) {
    let start = b.len();
    if len > start {
        b.resize(len, 0);
        rng.fill(&mut b[start..]);
    }
}

/// Appends `n` random bytes.
fn random_more(rng: &mut Rng, b: &mut Vec<u8>, n: usize) {
    let len = b.len() + n;
    random_tail(rng, b, len);
}

/// Turns one version into the next: images are replaced, others get one region rewritten
/// (2–10% of the file, at least 64 bytes) and sometimes a tail appended.
pub fn edit(kind: Kind, bytes: &mut Vec<u8>, rng: &mut Rng, new_size: usize) {
    if kind.is_image() {
        *bytes = make(kind, rng, new_size);
        return;
    }
    let len = bytes.len();
    let span = ((len as f64 * (0.02 + 0.08 * rng.unit())) as usize).clamp(64.min(len), len);
    let at = rng.below((len - span + 1) as u64) as usize;
    let mut fresh = Vec::with_capacity(span + 256);
    if kind.is_text() {
        while fresh.len() < span {
            text::sentence(rng, &mut fresh);
            fresh.push(b'\n');
        }
    } else {
        random_tail(rng, &mut fresh, span);
    }
    bytes.splice(at..at + span, fresh);
    if rng.chance(0.3) {
        let extra = (len / 20).max(64);
        if kind.is_text() {
            text::prose(rng, bytes, extra);
        } else {
            random_more(rng, bytes, extra);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_carry_their_magic_numbers() {
        let mut rng = Rng::new(5);
        let jpeg = make(Kind::Jpeg, &mut rng, 5000);
        assert_eq!(&jpeg[..3], b"\xFF\xD8\xFF");
        assert_eq!(jpeg.len(), 5000);
        assert!(make(Kind::Png, &mut rng, 5000).starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(make(Kind::Pdf, &mut rng, 5000).starts_with(b"%PDF-1.7"));
        assert!(make(Kind::Html, &mut rng, 5000).ends_with(b"</html>\n"));
    }

    #[test]
    fn an_edit_keeps_most_of_a_document() {
        let mut rng = Rng::new(6);
        let before = make(Kind::Text, &mut rng, 50_000);
        let mut after = before.clone();
        edit(Kind::Text, &mut after, &mut rng, 0);
        assert_ne!(before, after);
        let windows: std::collections::HashSet<&[u8]> = after.windows(64).collect();
        let kept = before
            .chunks_exact(64)
            .filter(|c| windows.contains(c))
            .count();
        assert!(kept * 64 > before.len() * 8 / 10, "{kept}");
    }
}
