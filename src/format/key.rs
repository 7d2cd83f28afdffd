//! Key record: one key slot of an encrypted archive, `ARCHIVE/keys/<16 hex digits>.key`.
//! It holds the archive's master key wrapped (AEAD-sealed) under a key derived from one
//! password, and the KDF parameters that derivation used, so they can be raised later
//! slot by slot. Pure bytes here; the wrapping itself is done by `packs::codec`.
//!
//! ```text
//! magic "STRATAKY" [8], version u8 = 1
//! kdf u8 (1 = Argon2id v1.3), aead u8 (1 = AES-256-GCM), reserved u8 = 0
//! memory KiB u32, iterations u32, parallelism u32
//! salt [16], nonce [12]
//! wrapped master key [64 + 16]   (ciphertext || tag)
//! crc32 u32 of every byte before it
//! ```
//!
//! All integers little-endian; 136 bytes in all. The associated data of the wrapping is
//! every byte before the wrapped key followed by the slot id (u64): a record copied to
//! another slot's name, or with its parameters edited, does not open. The crc32 tells a
//! damaged record ("key file … is damaged") from a wrong password (the tag fails on an
//! intact record).

use super::{Decoder, Encoder, FormatError};

pub const KEY_MAGIC: [u8; 8] = *b"STRATAKY";
pub const KEY_VERSION: u8 = 1;
/// The KDF byte: Argon2id, version 1.3 (RFC 9106).
pub const KDF_ARGON2ID: u8 = 1;
/// The AEAD byte of key records and of the config's `encryption` name.
pub const AEAD_AES_256_GCM: u8 = 1;
pub const SALT_LEN: usize = 16;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// A master key: 32 bytes of data key (the AEAD) then 32 bytes of id key (keyed BLAKE3).
pub const MASTER_KEY_LEN: usize = 64;
pub const WRAPPED_LEN: usize = MASTER_KEY_LEN + TAG_LEN;
/// Bytes before the wrapped key (the associated data, before the slot id).
pub const KEY_HEADER_LEN: usize = 8 + 4 + 12 + SALT_LEN + NONCE_LEN;
pub const KEY_RECORD_LEN: usize = KEY_HEADER_LEN + WRAPPED_LEN + 4;

/// Argon2id cost parameters as stored beside each wrapped key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    /// The defaults for new key slots: 64 MiB, 3 passes, 1 lane (about a quarter of a
    /// second on one core here; OWASP's 2023 minimum for Argon2id is 19 MiB / 2 passes).
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 << 10,
        iterations: 3,
        parallelism: 1,
    };

    /// Bounds a record's parameters before any memory is spent on them: a hostile or
    /// damaged record must not make `open` allocate gigabytes or spin for hours.
    pub fn check(&self) -> Result<(), FormatError> {
        let bad = |what, value: u32| {
            Err(FormatError::Invalid {
                what,
                value: value.to_string(),
            })
        };
        if !(8..=(4 << 20)).contains(&self.memory_kib) {
            return bad("key record Argon2id memory KiB", self.memory_kib);
        }
        if !(1..=64).contains(&self.iterations) {
            return bad("key record Argon2id iterations", self.iterations);
        }
        if !(1..=64).contains(&self.parallelism) || self.memory_kib < 8 * self.parallelism {
            return bad("key record Argon2id parallelism", self.parallelism);
        }
        Ok(())
    }
}

/// One key slot's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub kdf: KdfParams,
    pub salt: [u8; SALT_LEN],
    pub nonce: [u8; NONCE_LEN],
    pub wrapped: [u8; WRAPPED_LEN],
}

impl KeyRecord {
    /// The record's bytes before the wrapped key.
    pub fn header(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.bytes(&KEY_MAGIC);
        e.u8(KEY_VERSION);
        e.u8(KDF_ARGON2ID);
        e.u8(AEAD_AES_256_GCM);
        e.u8(0);
        e.u32(self.kdf.memory_kib);
        e.u32(self.kdf.iterations);
        e.u32(self.kdf.parallelism);
        e.bytes(&self.salt);
        e.bytes(&self.nonce);
        e.buf
    }

    /// The associated data that binds the wrapping to this record and slot.
    pub fn associated_data(header: &[u8], slot: u64) -> Vec<u8> {
        let mut ad = header.to_vec();
        ad.extend_from_slice(&slot.to_le_bytes());
        ad
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.header();
        b.extend_from_slice(&self.wrapped);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<KeyRecord, FormatError> {
        let mut d = Decoder::new(b);
        let magic = d.bytes(8)?;
        if magic != KEY_MAGIC {
            return Err(FormatError::BadMagic {
                what: "key record",
                expected: KEY_MAGIC.to_vec(),
                found: magic.to_vec(),
            });
        }
        let version = d.u8()?;
        if version != KEY_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: "key record",
                found: version as u32,
                supported: KEY_VERSION as u32,
            });
        }
        if b.len() != KEY_RECORD_LEN {
            return Err(FormatError::Invalid {
                what: "key record length",
                value: b.len().to_string(),
            });
        }
        let body = &b[..KEY_RECORD_LEN - 4];
        let stored = u32::from_le_bytes(b[KEY_RECORD_LEN - 4..].try_into().expect("4 bytes"));
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(FormatError::BadChecksum {
                what: "key record",
                stored,
                computed,
            });
        }
        let (kdf, aead, reserved) = (d.u8()?, d.u8()?, d.u8()?);
        if kdf != KDF_ARGON2ID || aead != AEAD_AES_256_GCM || reserved != 0 {
            return Err(FormatError::Invalid {
                what: "key record algorithms (kdf, aead, reserved)",
                value: format!("{kdf}, {aead}, {reserved}"),
            });
        }
        let kdf = KdfParams {
            memory_kib: d.u32()?,
            iterations: d.u32()?,
            parallelism: d.u32()?,
        };
        kdf.check()?;
        let salt = d.array()?;
        let nonce = d.array()?;
        let wrapped = d.array()?;
        let _crc = d.u32()?;
        d.finish()?;
        Ok(KeyRecord {
            kdf,
            salt,
            nonce,
            wrapped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KeyRecord {
        KeyRecord {
            kdf: KdfParams::DEFAULT,
            salt: [0x11; SALT_LEN],
            nonce: [0x22; NONCE_LEN],
            wrapped: [0x33; WRAPPED_LEN],
        }
    }

    #[test]
    fn key_record_golden_bytes() {
        let b = sample().encode();
        assert_eq!(b.len(), KEY_RECORD_LEN);
        let hex = crate::format::to_hex(&b);
        assert_eq!(
            &hex[..KEY_HEADER_LEN * 2],
            "5354524154414b59\
             01010100\
             00000100\
             03000000\
             01000000\
             11111111111111111111111111111111\
             222222222222222222222222",
            "format changed, version bump required"
        );
        assert_eq!(
            &hex[KEY_HEADER_LEN * 2..][..WRAPPED_LEN * 2],
            "33".repeat(80)
        );
        assert_eq!(KeyRecord::decode(&b), Ok(sample()));
    }

    #[test]
    fn damaged_records_are_errors_never_panics() {
        let good = sample().encode();
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x01;
            assert!(KeyRecord::decode(&b).is_err(), "byte {i}");
        }
        for n in 0..good.len() {
            assert!(KeyRecord::decode(&good[..n]).is_err(), "length {n}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(KeyRecord::decode(&long).is_err());
        // Hostile parameters with a correct checksum are refused before use.
        let mut r = sample();
        r.kdf.memory_kib = u32::MAX;
        assert!(KeyRecord::decode(&r.encode()).is_err());
        r.kdf = KdfParams {
            iterations: 0,
            ..KdfParams::DEFAULT
        };
        assert!(KeyRecord::decode(&r.encode()).is_err());
    }
}
