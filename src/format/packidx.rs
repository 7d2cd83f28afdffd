//! Pack index record: the list of a pack's blob records, kept beside the pack in a
//! bucket archive (`index/<16 hex>.idx`), so a host with an empty cache learns what a pack
//! holds from a few kilobytes instead of downloading the pack. It repeats only what the
//! pack's own record headers say in the clear (id, kind, lengths, offset), never data; a
//! reader checks every header against it before using a blob, so a wrong or stale entry
//! gives an error, never wrong bytes. A pack without one (its writer died between the two
//! uploads, or a directory archive) is read whole instead.
//!
//! ```text
//! magic "STRATAIX" [8], version u8 = 1, pack id u64
//! count u32, then per record: id [32], offset u64, kind u8, raw len u64, stored len u64
//! crc32 u32 of everything before it
//! ```

use super::pack::{BlobKind, Location};
use super::{BlobId, Decoder, Encoder, FormatError, PackId};

pub const PACKIDX_MAGIC: [u8; 8] = *b"STRATAIX";
pub const PACKIDX_VERSION: u8 = 1;
const ENTRY_LEN: usize = 32 + 8 + 1 + 8 + 8;

/// The name of pack `id`'s index record, relative to the archive.
pub fn packidx_name(id: PackId) -> String {
    format!("index/{:016x}.idx", id.0)
}

/// The pack id an index record name stands for.
pub fn packidx_id(name: &str) -> Option<PackId> {
    let hex = name.strip_prefix("index/")?.strip_suffix(".idx")?;
    PackId::from_file_name(&format!("{hex}.pack"))
}

pub fn encode_packidx(pack: PackId, records: &[(BlobId, Location)]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.bytes(&PACKIDX_MAGIC);
    e.u8(PACKIDX_VERSION);
    e.u64(pack.0);
    e.u32(records.len() as u32);
    for (id, l) in records {
        e.bytes(&id.0);
        e.u64(l.offset);
        e.u8(l.kind as u8);
        e.u64(l.raw_len);
        e.u64(l.stored_len);
    }
    let crc = crc32fast::hash(&e.buf);
    e.u32(crc);
    e.buf
}

/// Decodes pack `pack`'s index record; a record naming another pack is an error.
pub fn decode_packidx(pack: PackId, b: &[u8]) -> Result<Vec<(BlobId, Location)>, FormatError> {
    if b.len() < 4 {
        return Err(FormatError::Truncated {
            offset: 0,
            needed: 4,
            available: b.len(),
        });
    }
    let (body, crc) = b.split_at(b.len() - 4);
    let mut d = Decoder::new(body);
    let magic = d.bytes(8)?;
    if magic != PACKIDX_MAGIC {
        return Err(FormatError::BadMagic {
            what: "pack index",
            expected: PACKIDX_MAGIC.to_vec(),
            found: magic.to_vec(),
        });
    }
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(FormatError::BadChecksum {
            what: "pack index",
            stored,
            computed,
        });
    }
    let version = d.u8()?;
    if version != PACKIDX_VERSION {
        return Err(FormatError::UnsupportedVersion {
            what: "pack index",
            found: version as u32,
            supported: PACKIDX_VERSION as u32,
        });
    }
    let named = d.u64()?;
    if named != pack.0 {
        return Err(FormatError::Invalid {
            what: "pack index",
            value: format!("names pack {named:016x}, not {:016x}", pack.0),
        });
    }
    let n = d.u32()?;
    let n = d.count("pack index", n as u64, ENTRY_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let id = BlobId(d.array()?);
        let offset = d.u64()?;
        let kind = BlobKind::from_u8(d.u8()?)?;
        let raw_len = d.u64()?;
        let stored_len = d.u64()?;
        out.push((
            id,
            Location {
                pack,
                offset,
                kind,
                raw_len,
                stored_len,
            },
        ));
    }
    d.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(BlobId, Location)> {
        vec![(
            BlobId([7; 32]),
            Location {
                pack: PackId(0x1122),
                offset: 24,
                kind: BlobKind::Tree,
                raw_len: 100,
                stored_len: 60,
            },
        )]
    }

    #[test]
    fn packidx_golden_bytes() {
        let b = encode_packidx(PackId(0x1122), &sample());
        let mut want = b"STRATAIX".to_vec();
        want.push(1);
        want.extend(0x1122u64.to_le_bytes());
        want.extend(1u32.to_le_bytes());
        want.extend([7u8; 32]);
        want.extend(24u64.to_le_bytes());
        want.push(2);
        want.extend(100u64.to_le_bytes());
        want.extend(60u64.to_le_bytes());
        let crc = crc32fast::hash(&want);
        want.extend(crc.to_le_bytes());
        assert_eq!(b, want);
        assert_eq!(decode_packidx(PackId(0x1122), &b).unwrap(), sample());
        assert_eq!(packidx_name(PackId(0x1122)), "index/0000000000001122.idx");
        assert_eq!(
            packidx_id("index/0000000000001122.idx"),
            Some(PackId(0x1122))
        );
        assert_eq!(packidx_id("index/x.idx"), None);
    }

    #[test]
    fn damaged_or_misplaced_pack_indexes_are_refused() {
        let b = encode_packidx(PackId(9), &sample());
        assert!(decode_packidx(PackId(8), &b).is_err());
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(decode_packidx(PackId(9), &c).is_err(), "byte {i}");
        }
        for n in 0..b.len() {
            assert!(decode_packidx(PackId(9), &b[..n]).is_err());
        }
    }
}
