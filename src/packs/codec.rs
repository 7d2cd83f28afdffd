//! The codec: the one place where a blob's plain bytes become stored bytes and back, and
//! where blob ids are computed. Writing: id = hash(plain); stored = zstd(plain), or plain
//! when it will not compress. Reading: check the plain length, and the id when asked.
//!
//! The archive owns one [`Codec`] (made from its config) and hands it to the pack reader
//! and to writers; nothing else compresses, decompresses or hashes blob contents. That
//! is where encryption (seal after compress, open before decompress, a keyed id hash)
//! plugs in.

use super::PackError;
use crate::format::pack::{BlobHeader, BlobKind, Compression};
use crate::format::{BlobId, PackId};
use std::cell::RefCell;

/// A blob ready to be appended: its plain id and length, and the stored bytes.
pub struct StoredBlob {
    pub kind: BlobKind,
    pub id: BlobId,
    pub raw_len: u64,
    pub compression: Compression,
    pub data: Vec<u8>,
}

/// Turns plain bytes into stored bytes and back, for one archive.
#[derive(Clone, Debug)]
pub struct Codec {
    level: i32,
}

thread_local! {
    /// One compression context per thread and level, reused for every blob.
    static CCTX: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    /// A level-1 context for probing whether a chunk compresses at all.
    static PROBE: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    /// One decompression context per thread, reused for every blob: creating one per
    /// blob showed up as 15% of a mount's time in `find`.
    static DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

impl Codec {
    /// A codec compressing at zstd `level` (the archive's config).
    pub fn new(level: i32) -> Codec {
        Codec { level }
    }

    /// The id of a blob with these plain bytes.
    pub fn id_of(&self, plain: &[u8]) -> BlobId {
        BlobId(*blake3::hash(plain).as_bytes())
    }

    /// The stored form of `plain`, whose id the caller computed with [`Codec::id_of`].
    pub fn encode(&self, kind: BlobKind, id: BlobId, plain: &[u8]) -> StoredBlob {
        let (compression, data) = self.compress(plain);
        StoredBlob {
            kind,
            id,
            raw_len: plain.len() as u64,
            compression,
            data,
        }
    }

    /// Compresses `raw` with zstd at the archive's level; keeps it raw when a quick
    /// probe says it will not compress, or when compression saves less than 1/64 of the
    /// size (incompressible data such as images and zips).
    fn compress(&self, raw: &[u8]) -> (Compression, Vec<u8>) {
        if raw.len() < 64 || looks_incompressible(raw) {
            return (Compression::None, raw.to_vec());
        }
        let level = self.level;
        let out = CCTX.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|(l, _)| *l != level) {
                *slot = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
            }
            slot.as_mut().map(|(_, c)| c.compress(raw))
        });
        match out {
            Some(Ok(c)) if c.len() + raw.len() / 64 < raw.len() => (Compression::Zstd, c),
            _ => (Compression::None, raw.to_vec()),
        }
    }

    /// A record's plain bytes from its stored bytes (taken by value: an uncompressed blob
    /// is returned without a copy), checking the plain length and, with `verify_id`, that
    /// the bytes hash to the record's id. `pack` and `offset` name the record in errors.
    pub fn decode(
        &self,
        header: &BlobHeader,
        stored: Vec<u8>,
        pack: PackId,
        offset: u64,
        verify_id: bool,
    ) -> Result<Vec<u8>, PackError> {
        let plain = match header.compression {
            Compression::None => stored,
            Compression::Zstd => {
                let mut out = Vec::with_capacity(header.raw_len as usize);
                let fail = |message: String| PackError::Decompress {
                    pack,
                    offset,
                    message,
                };
                DCTX.with(|cell| -> Result<(), PackError> {
                    let mut slot = cell.borrow_mut();
                    if slot.is_none() {
                        *slot =
                            Some(zstd::bulk::Decompressor::new().map_err(|e| fail(e.to_string()))?);
                    }
                    let dec = slot.as_mut().expect("just set");
                    dec.decompress_to_buffer(&stored, &mut out)
                        .map_err(|e| fail(e.to_string()))?;
                    Ok(())
                })?;
                out
            }
        };
        if plain.len() as u64 != header.raw_len {
            return Err(PackError::Mismatch {
                pack,
                offset,
                what: format!("plain length {} != {}", plain.len(), header.raw_len),
            });
        }
        if verify_id && self.id_of(&plain) != header.id {
            return Err(PackError::HashMismatch {
                pack,
                offset,
                id: header.id,
            });
        }
        Ok(plain)
    }
}

/// True when four 8 KiB samples spread over `raw` compress (at zstd level 1) by less
/// than 4%: zips, images and encrypted data. Such a chunk is stored raw without spending
/// a full compression on it, which halves ingest CPU for a Jira export directory.
fn looks_incompressible(raw: &[u8]) -> bool {
    const SAMPLE: usize = 8 << 10;
    if raw.len() < 32 * SAMPLE {
        return false;
    }
    let mut probe = Vec::with_capacity(4 * SAMPLE);
    for i in 0..4 {
        let at = (raw.len() - SAMPLE) / 3 * i;
        probe.extend_from_slice(&raw[at..at + SAMPLE]);
    }
    PROBE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::new(1).ok();
        }
        match slot.as_mut().map(|c| c.compress(&probe)) {
            Some(Ok(c)) => c.len() * 100 > probe.len() * 96,
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(b: &StoredBlob) -> BlobHeader {
        BlobHeader {
            kind: b.kind,
            compression: b.compression,
            id: b.id,
            raw_len: b.raw_len,
            stored_len: b.data.len() as u64,
            data_crc: crc32fast::hash(&b.data),
        }
    }

    #[test]
    fn incompressible_chunks_are_stored_raw_and_text_is_compressed() {
        let c = Codec::new(3);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let random: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(looks_incompressible(&random));
        assert_eq!(c.compress(&random).0, Compression::None);
        let text: Vec<u8> = (0..1 << 20)
            .map(|i| b"<Issue key=\"PRJ-1\"/>\n"[i % 21])
            .collect();
        assert!(!looks_incompressible(&text));
        let (kind, stored) = c.compress(&text);
        assert_eq!(kind, Compression::Zstd);
        assert!(stored.len() < text.len() / 10);
        // Small chunks are never probed, only tried.
        assert!(!looks_incompressible(&random[..100_000]));
    }

    #[test]
    fn encode_then_decode_gives_the_plain_bytes_and_checks_the_id() {
        let c = Codec::new(3);
        let text = b"<Issue key=\"PRJ-1\"/>\n".repeat(1000);
        let b = c.encode(BlobKind::Chunk, c.id_of(&text), &text);
        let h = header(&b);
        assert_eq!(
            c.decode(&h, b.data.clone(), PackId(1), 8, true).unwrap(),
            text
        );
        let mut wrong = h;
        wrong.id = c.id_of(b"something else");
        assert!(matches!(
            c.decode(&wrong, b.data.clone(), PackId(1), 8, true),
            Err(PackError::HashMismatch { .. })
        ));
        let mut long = h;
        long.raw_len += 1;
        assert!(matches!(
            c.decode(&long, b.data, PackId(1), 8, false),
            Err(PackError::Mismatch { .. })
        ));
    }
}
