//! Id newtypes: a blob id (BLAKE3 of the plain bytes) and a pack id, so one cannot be
//! mistaken for the other.

use std::fmt;

/// BLAKE3-256 of a blob's plain (uncompressed) bytes, keyed with the archive's id key in
/// an encrypted archive (`Codec::id_of` computes it; [`BlobId::of`] is the unkeyed hash of
/// an unencrypted one). A snapshot's id is the id of its snapshot record blob.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    pub fn of(data: &[u8]) -> BlobId {
        BlobId(*blake3::hash(data).as_bytes())
    }

    pub fn hex(&self) -> String {
        super::to_hex(&self.0)
    }

    /// First 8 hex digits, as shown in tables.
    pub fn short(&self) -> String {
        super::to_hex(&self.0[..4])
    }

    pub fn from_hex(s: &str) -> Option<BlobId> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(BlobId(out))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.short())
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// Sequence number of a pack file: `packs/<16 hex digits>.pack`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PackId(pub u64);

impl PackId {
    pub fn file_name(&self) -> String {
        format!("{:016x}.pack", self.0)
    }

    pub fn from_file_name(name: &str) -> Option<PackId> {
        let hex = name.strip_suffix(".pack")?;
        // Exactly the names `file_name` makes: 16 lowercase hex digits.
        if hex.len() != 16
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        u64::from_str_radix(hex, 16).ok().map(PackId)
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}.pack", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_id_hex_round_trips() {
        let id = BlobId::of(b"hello");
        assert_eq!(BlobId::from_hex(&id.hex()), Some(id));
        assert_eq!(
            id.hex(),
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
        assert_eq!(BlobId::from_hex("zz"), None);
    }

    #[test]
    fn pack_file_names_round_trip() {
        assert_eq!(PackId(26).file_name(), "000000000000001a.pack");
        assert_eq!(
            PackId::from_file_name("000000000000001a.pack"),
            Some(PackId(26))
        );
        assert_eq!(PackId::from_file_name("1a.pack"), None);
    }
}
