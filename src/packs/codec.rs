//! The codec: the one place where a blob's plain bytes become stored bytes and back, and
//! where blob ids are computed. Writing: id = hash(plain); stored = zstd(plain), or plain
//! when it will not compress. Reading: check the plain length, and the id when asked.
//!
//! An encrypted archive's codec (format version 2) holds the master key: ids are a keyed
//! BLAKE3 under the id key (equal content in two archives gets different ids), and stored
//! bytes are sealed after compression with AES-256-GCM under the data key:
//! `nonce [12] || ciphertext || tag [16]`, a fresh random nonce per blob, associated data
//! the blob's kind byte and its 32-byte id, so a record moved under another id or kind
//! fails authentication. Reading opens before decompressing. The key slots' wrapping
//! (Argon2id, then the same AEAD) is here too: nothing else in strata does cryptography.
//!
//! The archive owns one [`Codec`] (made from its config and, when encrypted, its master
//! key) and hands it to the pack reader and to writers; nothing else compresses,
//! decompresses, seals, opens or hashes blob contents.

use super::PackError;
use crate::format::key::{
    KdfParams, KeyRecord, MASTER_KEY_LEN, NONCE_LEN, SALT_LEN, TAG_LEN, WRAPPED_LEN,
};
use crate::format::pack::{BlobHeader, BlobKind, Compression};
use crate::format::{BlobId, PackId};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::cell::RefCell;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The name of the AEAD in the config's `encryption` line.
pub const AEAD_NAME: &str = "aes-256-gcm";

/// Bytes a sealed blob adds to its compressed form: the nonce and the tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
const _: () = assert!(SEAL_OVERHEAD as u64 == crate::format::pack::SEALED_OVERHEAD);

/// The associated-data domain of a sealed index row (a snapshot catalogue entry): not a
/// blob kind, so a row can never be opened as a blob or the reverse.
const ROW_DOMAIN: u8 = 0xC0;

/// The operating system's randomness was unavailable.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomError;

/// Fills `buf` from the operating system's random number generator.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), RandomError> {
    SystemRandom::new().fill(buf).map_err(|_| RandomError)
}

/// An archive's master key: 32 bytes of data key then 32 bytes of id key. Zeroed when
/// dropped; never printed (its `Debug` says nothing).
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> Result<MasterKey, RandomError> {
        let mut k = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        random_bytes(&mut k[..])?;
        Ok(MasterKey(k))
    }

    #[cfg(test)]
    pub(crate) fn from_bytes(b: [u8; MASTER_KEY_LEN]) -> MasterKey {
        MasterKey(Zeroizing::new(b))
    }

    fn data_key(&self) -> &[u8] {
        &self.0[..32]
    }

    fn id_key(&self) -> [u8; 32] {
        self.0[32..].try_into().expect("32 bytes")
    }
}

/// Derives a 32-byte wrapping key from a password with Argon2id v1.3.
pub fn derive_key(
    password: &[u8],
    salt: &[u8; SALT_LEN],
    p: &KdfParams,
) -> Result<Zeroizing<[u8; 32]>, String> {
    use argon2::{Algorithm, Argon2, Params, Version};
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| e.to_string())?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, salt, &mut out[..])
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn aead_key(key: &[u8]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("AES-256 key is 32 bytes"))
}

/// AES-256-GCM: appends the ciphertext and tag of `plain` to `out`.
fn aead_seal(
    key: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    ad: &[u8],
    plain: &[u8],
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(plain);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(ad),
            &mut out[start..],
        )
        .expect("AES-GCM seals any blob below 64 GiB");
    out.extend_from_slice(tag.as_ref());
}

/// AES-256-GCM: the plain bytes of `sealed[from..]` (ciphertext || tag), moved to the
/// front of `sealed`; `None` when the tag does not verify.
fn aead_open(
    key: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    ad: &[u8],
    mut sealed: Vec<u8>,
    from: usize,
) -> Option<Vec<u8>> {
    let n = key
        .open_within(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(ad),
            &mut sealed,
            from..,
        )
        .ok()?
        .len();
    sealed.truncate(n);
    Some(sealed)
}

/// Wraps `master` under `password` for key slot `slot`, with a fresh random salt and
/// nonce.
pub fn wrap_master_key(
    master: &MasterKey,
    password: &[u8],
    kdf: KdfParams,
    slot: u64,
) -> Result<KeyRecord, String> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut salt).map_err(|e| e.to_string())?;
    random_bytes(&mut nonce).map_err(|e| e.to_string())?;
    wrap_master_key_with(master, password, kdf, slot, salt, nonce)
}

/// [`wrap_master_key`] with a given salt and nonce (golden-bytes tests).
fn wrap_master_key_with(
    master: &MasterKey,
    password: &[u8],
    kdf: KdfParams,
    slot: u64,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
) -> Result<KeyRecord, String> {
    kdf.check().map_err(|e| e.to_string())?;
    let kek = derive_key(password, &salt, &kdf)?;
    let mut rec = KeyRecord {
        kdf,
        salt,
        nonce,
        wrapped: [0; WRAPPED_LEN],
    };
    let ad = KeyRecord::associated_data(&rec.header(), slot);
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    aead_seal(&aead_key(&kek[..]), nonce, &ad, &master.0[..], &mut out);
    rec.wrapped.copy_from_slice(&out);
    Ok(rec)
}

/// The master key in `record` (slot `slot`) when `password` opens it; `None` when it
/// does not (a wrong password: the record's crc32 was checked when it was decoded).
pub fn unwrap_master_key(record: &KeyRecord, password: &[u8], slot: u64) -> Option<MasterKey> {
    let kek = derive_key(password, &record.salt, &record.kdf).ok()?;
    let ad = KeyRecord::associated_data(&record.header(), slot);
    let plain = Zeroizing::new(aead_open(
        &aead_key(&kek[..]),
        record.nonce,
        &ad,
        record.wrapped.to_vec(),
        0,
    )?);
    let mut k = Zeroizing::new([0u8; MASTER_KEY_LEN]);
    k.copy_from_slice(plain.get(..MASTER_KEY_LEN)?);
    Some(MasterKey(k))
}

/// The keys of an encrypted archive, ready to use.
struct Keys {
    master: MasterKey,
    aead: LessSafeKey,
    id_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// The associated data of a sealed blob: its kind byte and its id.
fn blob_ad(domain: u8, id: &BlobId) -> [u8; 33] {
    let mut ad = [0u8; 33];
    ad[0] = domain;
    ad[1..].copy_from_slice(&id.0);
    ad
}

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
    /// The master key, for an encrypted archive.
    keys: Option<Arc<Keys>>,
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
        Codec { level, keys: None }
    }

    /// A codec for an encrypted archive: keyed ids, sealed blobs.
    pub fn encrypted(level: i32, master: &MasterKey) -> Codec {
        Codec {
            level,
            keys: Some(Arc::new(Keys {
                aead: aead_key(master.data_key()),
                id_key: Zeroizing::new(master.id_key()),
                master: master.clone(),
            })),
        }
    }

    /// True when blobs are sealed.
    pub fn is_encrypted(&self) -> bool {
        self.keys.is_some()
    }

    /// The master key of an encrypted archive (to wrap it for a new key slot).
    pub fn master_key(&self) -> Option<&MasterKey> {
        self.keys.as_ref().map(|k| &k.master)
    }

    /// The id of a blob with these plain bytes: BLAKE3, keyed with the id key when the
    /// archive is encrypted.
    pub fn id_of(&self, plain: &[u8]) -> BlobId {
        match &self.keys {
            None => BlobId::of(plain),
            Some(k) => BlobId(*blake3::keyed_hash(&k.id_key, plain).as_bytes()),
        }
    }

    /// The stored form of `plain`, whose id the caller computed with [`Codec::id_of`]:
    /// compressed, then sealed when the archive is encrypted.
    pub fn encode(&self, kind: BlobKind, id: BlobId, plain: &[u8]) -> StoredBlob {
        let (compression, data) = self.compress(plain);
        let data = match &self.keys {
            None => data,
            Some(k) => {
                let mut nonce = [0u8; NONCE_LEN];
                // Without the OS's randomness no nonce can be trusted: stop rather than
                // risk a repeat.
                random_bytes(&mut nonce).expect("the OS random number generator failed");
                seal_with_nonce(k, kind as u8, &id, &data, nonce)
            }
        };
        StoredBlob {
            kind,
            id,
            raw_len: plain.len() as u64,
            compression,
            data,
        }
    }

    /// Seals a snapshot catalogue row for the index (`None` when not encrypted: the
    /// row is then kept in clear columns).
    pub fn seal_row(&self, id: &BlobId, plain: &[u8]) -> Option<Vec<u8>> {
        let k = self.keys.as_ref()?;
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce).expect("the OS random number generator failed");
        Some(seal_with_nonce(k, ROW_DOMAIN, id, plain, nonce))
    }

    /// Opens a sealed catalogue row; `None` when it does not authenticate (or the codec
    /// has no keys).
    pub fn open_row(&self, id: &BlobId, sealed: &[u8]) -> Option<Vec<u8>> {
        let k = self.keys.as_ref()?;
        open_sealed(k, ROW_DOMAIN, id, sealed.to_vec())
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
        let stored = match &self.keys {
            None => stored,
            Some(k) => {
                open_sealed(k, header.kind as u8, &header.id, stored).ok_or(PackError::Auth {
                    pack,
                    offset,
                    id: header.id,
                })?
            }
        };
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

/// `nonce || AES-256-GCM(plain) || tag` with associated data `domain || id`.
fn seal_with_nonce(
    k: &Keys,
    domain: u8,
    id: &BlobId,
    plain: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEAL_OVERHEAD + plain.len());
    out.extend_from_slice(&nonce);
    aead_seal(&k.aead, nonce, &blob_ad(domain, id), plain, &mut out);
    out
}

/// The plain bytes of `nonce || ciphertext || tag`; `None` when too short or the tag
/// does not verify (damage, or a record moved under another id or kind).
fn open_sealed(k: &Keys, domain: u8, id: &BlobId, sealed: Vec<u8>) -> Option<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return None;
    }
    let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().expect("12 bytes");
    aead_open(&k.aead, nonce, &blob_ad(domain, id), sealed, NONCE_LEN)
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

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn master(fill: u8) -> MasterKey {
        MasterKey::from_bytes([fill; MASTER_KEY_LEN])
    }

    #[test]
    fn aes_256_gcm_known_answer() {
        // The GCM specification (McGrew & Viega), test case 16: AES-256, 96-bit IV,
        // associated data.
        let key = aead_key(&hex(
            "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        ));
        let plain = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let ad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let nonce: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let expected = hex(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
             76fc6ece0f4e1768cddf8853bb2d551b",
        );
        let mut out = Vec::new();
        aead_seal(&key, nonce, &ad, &plain, &mut out);
        assert_eq!(out, expected);
        assert_eq!(aead_open(&key, nonce, &ad, out, 0).unwrap(), plain);
    }

    #[test]
    fn argon2id_known_answer() {
        // The reference implementation's test vector (phc-winner-argon2, test.c):
        // Argon2id v1.3, t = 2, m = 64 MiB, p = 1, "password", "somesalt".
        let p = KdfParams {
            memory_kib: 1 << 16,
            iterations: 2,
            parallelism: 1,
        };
        let mut salt = [0u8; SALT_LEN];
        salt[..8].copy_from_slice(b"somesalt");
        // derive_key takes a 16-byte salt; the vector's salt is 8 bytes, so check the
        // crate with it directly and derive_key against a second, cross-checked value.
        use argon2::{Algorithm, Argon2, Params, Version};
        let mut out = [0u8; 32];
        Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32)).unwrap(),
        )
        .hash_password_into(b"password", b"somesalt", &mut out)
        .unwrap();
        assert_eq!(
            out.to_vec(),
            hex("09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7")
        );
        // derive_key as used (16-byte salt, 32-byte output), cross-checked against
        // Python's `cryptography` 48 (OpenSSL's Argon2id).
        let got = derive_key(b"password", &[0x02; SALT_LEN], &p).unwrap();
        assert_eq!(
            got.to_vec(),
            hex(ARGON2ID_SALT02_VECTOR),
            "derive_key is Argon2id v1.3 with the stored parameters"
        );
    }

    /// Argon2id v1.3, t = 2, m = 65536 KiB, p = 1, password "password", salt 16 × 0x02,
    /// 32 bytes (computed with Python `cryptography`'s Argon2id).
    const ARGON2ID_SALT02_VECTOR: &str =
        "ca204cd4f6bba829cee63631a633c55db0abbafe42f6dd284b3a8cefc89c0ba9";

    #[test]
    fn a_sealed_blob_has_fixed_golden_bytes() {
        let c = Codec::encrypted(3, &master(0x42));
        let k = c.keys.as_ref().unwrap();
        let id = c.id_of(b"hello");
        assert_eq!(
            id.hex(),
            crate::format::to_hex(blake3::keyed_hash(&[0x42; 32], b"hello").as_bytes()),
            "ids are BLAKE3 keyed with the id key (the master key's second half)"
        );
        let sealed = seal_with_nonce(k, BlobKind::Chunk as u8, &id, b"hello", [0x07; 12]);
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(
            crate::format::to_hex(&sealed),
            SEALED_HELLO,
            "format changed, version bump required"
        );
        assert_eq!(
            open_sealed(k, BlobKind::Chunk as u8, &id, sealed).unwrap(),
            b"hello"
        );
    }

    #[test]
    fn a_key_record_wraps_with_fixed_golden_bytes_and_opens_only_with_its_password() {
        let p = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let m = master(0x42);
        let rec = wrap_master_key_with(&m, b"correct horse", p, 7, [0x11; 16], [0x22; 12]).unwrap();
        assert_eq!(
            crate::format::to_hex(&rec.encode()),
            KEY_RECORD_GOLDEN,
            "format changed, version bump required"
        );
        let got = unwrap_master_key(&rec, b"correct horse", 7).unwrap();
        assert_eq!(&got.0[..], &m.0[..]);
        assert!(unwrap_master_key(&rec, b"correct horsf", 7).is_none());
        // Bound to its slot: the same record under another slot's name does not open.
        assert!(unwrap_master_key(&rec, b"correct horse", 8).is_none());
        assert!(
            format!("{got:?}").find("42").is_none(),
            "keys are never printed"
        );
    }

    #[test]
    fn every_flipped_byte_of_a_sealed_blob_fails_to_open() {
        let c = Codec::encrypted(3, &master(9));
        for (kind, plain) in [
            (BlobKind::Chunk, b"<Issue key=\"PRJ-1\"/>\n".repeat(50)),
            (BlobKind::Tree, b"tree bytes, small".to_vec()),
            (BlobKind::Snapshot, vec![0u8; 300]),
        ] {
            let b = c.encode(kind, c.id_of(&plain), &plain);
            let h = header(&b);
            assert_eq!(
                c.decode(&h, b.data.clone(), PackId(1), 8, true).unwrap(),
                plain
            );
            for i in 0..b.data.len() {
                let mut d = b.data.clone();
                d[i] ^= 0x10;
                let err = c.decode(&h, d, PackId(1), 8, true).unwrap_err();
                assert!(matches!(err, PackError::Auth { .. }), "byte {i}: {err}");
                assert!(err.is_corruption());
                assert!(
                    err.to_string()
                        .contains("pack 0000000000000001.pack offset 8"),
                    "{err}"
                );
            }
            for n in 0..b.data.len() {
                assert!(
                    c.decode(&h, b.data[..n].to_vec(), PackId(1), 8, false)
                        .is_err()
                );
            }
        }
    }

    #[test]
    fn a_blob_swapped_with_another_of_the_same_length_fails_authentication() {
        let c = Codec::encrypted(3, &master(9));
        let (a, b) = (b"first  content".to_vec(), b"second content".to_vec());
        let ba = c.encode(BlobKind::Chunk, c.id_of(&a), &a);
        let bb = c.encode(BlobKind::Chunk, c.id_of(&b), &b);
        assert_eq!(ba.data.len(), bb.data.len());
        // b's bytes under a's header (crc32 made to match): the tag binds the id.
        let mut h = header(&ba);
        h.data_crc = crc32fast::hash(&bb.data);
        assert!(matches!(
            c.decode(&h, bb.data.clone(), PackId(1), 8, false),
            Err(PackError::Auth { .. })
        ));
        // The same bytes under the same id but another kind: the tag binds the kind.
        let mut h = header(&ba);
        h.kind = BlobKind::Tree;
        assert!(matches!(
            c.decode(&h, ba.data.clone(), PackId(1), 8, false),
            Err(PackError::Auth { .. })
        ));
        // A row sealed for one snapshot does not open as another's.
        let row = c.seal_row(&ba.id, b"row").unwrap();
        assert_eq!(c.open_row(&ba.id, &row).unwrap(), b"row");
        assert!(c.open_row(&bb.id, &row).is_none());
    }

    #[test]
    fn keyed_ids_differ_between_archives_and_nonces_never_repeat() {
        let (one, two) = (
            Codec::encrypted(3, &MasterKey::generate().unwrap()),
            Codec::encrypted(3, &MasterKey::generate().unwrap()),
        );
        let plain = b"equal content in two archives";
        assert_ne!(one.id_of(plain), two.id_of(plain));
        assert_ne!(one.id_of(plain), Codec::new(3).id_of(plain));
        assert_eq!(one.id_of(plain), one.id_of(plain));
        // The same blob sealed twice gets two nonces.
        let id = one.id_of(plain);
        let x = one.encode(BlobKind::Chunk, id, plain);
        let y = one.encode(BlobKind::Chunk, id, plain);
        assert_ne!(x.data[..12], y.data[..12]);
        assert!(!x.data.windows(plain.len()).any(|w| w == plain));
    }

    const SEALED_HELLO: &str = "070707070707070707070707108731c0da2cbeb1c0d7e97d2c8dd47c24f407522d";
    const KEY_RECORD_GOLDEN: &str = "5354524154414b590101010040000000010000000100000011111111111111111111111111111111222222222222222222222222b075aa288db73c64d12a67f0cea6350b9b40d83cebbc15972bccd3b251f5539ebf8517d19932a5cc1cbe5b56b2e57cc1750e04cdae104c3b101e0badcebf526f61dccaa53632259c849a8776aba17b928e3b0cbd";
}
