//! Pack file layout: a fixed header, then blob records back to back, each a 64-byte
//! header followed by its stored bytes. Nothing follows the last record; a pack ends
//! where its last complete record ends, and anything after that is a torn tail.
//!
//! ```text
//! pack header (24 bytes)
//!   0  magic        [8]  "STRATAPK"
//!   8  version      u32  1
//!  12  pack id      u64  the number in the file name
//!  20  header crc   u32  crc32 of bytes 0..20
//! blob record (64-byte header + stored bytes)
//!   0  magic        [4]  "BLOB"
//!   4  kind         u8   1 chunk, 2 tree, 3 snapshot, 4 forget
//!   5  compression  u8   0 none, 1 zstd
//!   6  flags        u16  0 (reserved: encryption key id)
//!   8  id           [32] BLAKE3 of the plain bytes
//!  40  raw len      u64  plain length
//!  48  stored len   u64  length of the bytes that follow
//!  56  data crc     u32  crc32 of the stored bytes
//!  60  header crc   u32  crc32 of bytes 0..60
//!  64  stored bytes
//! ```

use super::{BlobId, Decoder, Encoder, FormatError, MAX_BLOB_LEN, PackId};

pub const PACK_MAGIC: [u8; 8] = *b"STRATAPK";
pub const PACK_VERSION: u32 = 1;
const PACK_MAGIC_OFFSET: usize = 0;
const PACK_VERSION_OFFSET: usize = PACK_MAGIC_OFFSET + 8;
const PACK_ID_OFFSET: usize = PACK_VERSION_OFFSET + 4;
const PACK_CRC_OFFSET: usize = PACK_ID_OFFSET + 8;
pub const PACK_HEADER_LEN: usize = PACK_CRC_OFFSET + 4;

pub const BLOB_MAGIC: [u8; 4] = *b"BLOB";
const BLOB_KIND_OFFSET: usize = 4;
const BLOB_ID_OFFSET: usize = BLOB_KIND_OFFSET + 4;
const BLOB_RAW_OFFSET: usize = BLOB_ID_OFFSET + 32;
const BLOB_STORED_OFFSET: usize = BLOB_RAW_OFFSET + 8;
const BLOB_DATA_CRC_OFFSET: usize = BLOB_STORED_OFFSET + 8;
const BLOB_HEADER_CRC_OFFSET: usize = BLOB_DATA_CRC_OFFSET + 4;
pub const BLOB_HEADER_LEN: usize = BLOB_HEADER_CRC_OFFSET + 4;

/// What sealing adds to a blob's stored bytes in an encrypted archive (nonce and tag;
/// see `packs::codec`).
pub const SEALED_OVERHEAD: u64 = 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlobKind {
    Chunk = 1,
    Tree = 2,
    Snapshot = 3,
    /// A record that snapshots were forgotten (retention); kept so that rebuilding the
    /// index from packs never brings a forgotten snapshot back.
    Forget = 4,
}

/// Where a blob's record starts in a pack (the offset of its 64-byte header), with the
/// kind and lengths its header must show: what the index stores for each blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: super::PackId,
    pub offset: u64,
    pub kind: BlobKind,
    pub raw_len: u64,
    pub stored_len: u64,
}

impl BlobKind {
    pub fn from_u8(v: u8) -> Result<BlobKind, FormatError> {
        match v {
            1 => Ok(BlobKind::Chunk),
            2 => Ok(BlobKind::Tree),
            3 => Ok(BlobKind::Snapshot),
            4 => Ok(BlobKind::Forget),
            _ => Err(FormatError::Invalid {
                what: "blob kind",
                value: v.to_string(),
            }),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            BlobKind::Chunk => "chunk",
            BlobKind::Tree => "tree",
            BlobKind::Snapshot => "snapshot",
            BlobKind::Forget => "forget",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None = 0,
    Zstd = 1,
}

impl Compression {
    pub fn from_u8(v: u8) -> Result<Compression, FormatError> {
        match v {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Zstd),
            _ => Err(FormatError::Invalid {
                what: "blob compression",
                value: v.to_string(),
            }),
        }
    }
}

pub fn encode_pack_header(id: PackId) -> [u8; PACK_HEADER_LEN] {
    let mut h = [0u8; PACK_HEADER_LEN];
    h[PACK_MAGIC_OFFSET..PACK_VERSION_OFFSET].copy_from_slice(&PACK_MAGIC);
    h[PACK_VERSION_OFFSET..PACK_ID_OFFSET].copy_from_slice(&PACK_VERSION.to_le_bytes());
    h[PACK_ID_OFFSET..PACK_CRC_OFFSET].copy_from_slice(&id.0.to_le_bytes());
    let crc = crc32fast::hash(&h[..PACK_CRC_OFFSET]);
    h[PACK_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    h
}

pub fn decode_pack_header(b: &[u8]) -> Result<PackId, FormatError> {
    let mut d = Decoder::new(b);
    let magic = d.bytes(8)?;
    if magic != PACK_MAGIC {
        return Err(FormatError::BadMagic {
            what: "pack header",
            expected: PACK_MAGIC.to_vec(),
            found: magic.to_vec(),
        });
    }
    let version = d.u32()?;
    let id = d.u64()?;
    let stored = d.u32()?;
    let computed = crc32fast::hash(&b[..PACK_CRC_OFFSET]);
    if stored != computed {
        return Err(FormatError::BadChecksum {
            what: "pack header",
            stored,
            computed,
        });
    }
    if version != PACK_VERSION {
        return Err(FormatError::UnsupportedVersion {
            what: "pack",
            found: version,
            supported: PACK_VERSION,
        });
    }
    Ok(PackId(id))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobHeader {
    pub kind: BlobKind,
    pub compression: Compression,
    pub id: BlobId,
    pub raw_len: u64,
    pub stored_len: u64,
    pub data_crc: u32,
}

impl BlobHeader {
    pub fn encode(&self) -> [u8; BLOB_HEADER_LEN] {
        let mut e = Encoder::new();
        e.bytes(&BLOB_MAGIC);
        e.u8(self.kind as u8);
        e.u8(self.compression as u8);
        e.u16(0);
        e.bytes(&self.id.0);
        e.u64(self.raw_len);
        e.u64(self.stored_len);
        e.u32(self.data_crc);
        let crc = crc32fast::hash(&e.buf);
        e.u32(crc);
        let mut h = [0u8; BLOB_HEADER_LEN];
        h.copy_from_slice(&e.buf);
        h
    }

    /// Decodes and validates a header: magic, header crc, kind, compression, and lengths
    /// within [`MAX_BLOB_LEN`]. The data crc is checked by the reader over the stored bytes.
    pub fn decode(b: &[u8]) -> Result<BlobHeader, FormatError> {
        let mut d = Decoder::new(b);
        let magic = d.bytes(4)?;
        if magic != BLOB_MAGIC {
            return Err(FormatError::BadMagic {
                what: "blob header",
                expected: BLOB_MAGIC.to_vec(),
                found: magic.to_vec(),
            });
        }
        let kind = d.u8()?;
        let compression = d.u8()?;
        let flags = d.u16()?;
        let id = BlobId(d.array()?);
        let raw_len = d.u64()?;
        let stored_len = d.u64()?;
        let data_crc = d.u32()?;
        let stored_crc = d.u32()?;
        let computed = crc32fast::hash(&b[..BLOB_HEADER_CRC_OFFSET]);
        if stored_crc != computed {
            return Err(FormatError::BadChecksum {
                what: "blob header",
                stored: stored_crc,
                computed,
            });
        }
        if flags != 0 {
            return Err(FormatError::Invalid {
                what: "blob flags",
                value: flags.to_string(),
            });
        }
        for (what, len) in [
            ("blob raw length", raw_len),
            ("blob stored length", stored_len),
        ] {
            if len > MAX_BLOB_LEN {
                return Err(FormatError::TooLong {
                    what,
                    len,
                    limit: MAX_BLOB_LEN,
                });
            }
        }
        let compression = Compression::from_u8(compression)?;
        // Uncompressed: the stored bytes are the plain bytes, or in an encrypted archive
        // the plain bytes sealed (a 12-byte nonce and a 16-byte tag around them).
        if compression == Compression::None
            && raw_len != stored_len
            && raw_len + SEALED_OVERHEAD != stored_len
        {
            return Err(FormatError::Invalid {
                what: "uncompressed blob lengths",
                value: format!("raw {raw_len} != stored {stored_len}"),
            });
        }
        Ok(BlobHeader {
            kind: BlobKind::from_u8(kind)?,
            compression,
            id,
            raw_len,
            stored_len,
            data_crc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BlobHeader {
        BlobHeader {
            kind: BlobKind::Chunk,
            compression: Compression::Zstd,
            id: BlobId([0xab; 32]),
            raw_len: 1000,
            stored_len: 300,
            data_crc: 0x1234_5678,
        }
    }

    #[test]
    fn pack_header_golden_bytes() {
        let h = encode_pack_header(PackId(1));
        let expected: [u8; 24] = [
            b'S', b'T', b'R', b'A', b'T', b'A', b'P', b'K', 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
            0xea, 0x63, 0x52, 0xcc,
        ];
        assert_eq!(h, expected, "format changed, version bump required");
        assert_eq!(
            h[20..],
            crc32fast::hash(&h[..20]).to_le_bytes(),
            "pack header crc covers bytes 0..20"
        );
        assert_eq!(decode_pack_header(&h), Ok(PackId(1)));
    }

    #[test]
    fn blob_header_golden_bytes() {
        let h = sample().encode();
        let mut expected = Vec::new();
        expected.extend_from_slice(b"BLOB");
        expected.extend_from_slice(&[1, 1, 0, 0]);
        expected.extend_from_slice(&[0xab; 32]);
        expected.extend_from_slice(&[0xe8, 0x03, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0x2c, 0x01, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0x78, 0x56, 0x34, 0x12]);
        assert_eq!(
            h[..60],
            expected[..],
            "format changed, version bump required"
        );
        assert_eq!(h[60..], HEADER_CRC, "format changed, version bump required");
        assert_eq!(
            h[60..],
            crc32fast::hash(&expected).to_le_bytes(),
            "crc covers bytes 0..60"
        );
        assert_eq!(BlobHeader::decode(&h), Ok(sample()));
    }

    const HEADER_CRC: [u8; 4] = [100, 5, 214, 139];

    #[test]
    fn every_flipped_header_byte_is_rejected() {
        let h = sample().encode();
        for i in 0..BLOB_HEADER_LEN {
            let mut bad = h;
            bad[i] ^= 0x01;
            assert!(
                BlobHeader::decode(&bad).is_err(),
                "flip at byte {i} accepted"
            );
        }
        let p = encode_pack_header(PackId(7));
        for i in 0..PACK_HEADER_LEN {
            let mut bad = p;
            bad[i] ^= 0x80;
            assert!(
                decode_pack_header(&bad).is_err(),
                "flip at byte {i} accepted"
            );
        }
    }

    #[test]
    fn truncated_headers_are_typed_errors() {
        let h = sample().encode();
        for n in 0..BLOB_HEADER_LEN {
            assert!(matches!(
                BlobHeader::decode(&h[..n]),
                Err(FormatError::Truncated { .. })
            ));
        }
    }

    #[test]
    fn huge_lengths_are_rejected_even_with_a_valid_crc() {
        let mut hdr = sample();
        hdr.raw_len = MAX_BLOB_LEN + 1;
        assert!(matches!(
            BlobHeader::decode(&hdr.encode()),
            Err(FormatError::TooLong { .. })
        ));
    }

    #[test]
    fn newer_pack_version_is_a_typed_error() {
        let mut h = encode_pack_header(PackId(1));
        h[8] = 2;
        let crc = crc32fast::hash(&h[..20]);
        h[20..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_pack_header(&h),
            Err(FormatError::UnsupportedVersion {
                what: "pack",
                found: 2,
                supported: 1
            })
        );
    }
}
