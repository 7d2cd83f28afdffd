//! On-disk records and their byte encoding: pack header, blob header, tree, snapshot, forget
//! and key records, id newtypes. Pure: works on byte slices only, never touches the filesystem.
//!
//! Every record is versioned; `docs/FORMAT.md` describes every byte, and the golden-bytes
//! tests in each submodule pin the encodings ("format changed, version bump required").

pub mod forget;
pub mod ids;
pub mod key;
pub mod pack;
pub mod packidx;
pub mod snapshot;
pub mod tree;

pub use ids::{BlobId, PackId};

use thiserror::Error;

/// Largest plain length of any blob: bounds every allocation a decoder makes.
pub const MAX_BLOB_LEN: u64 = 1 << 30;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("record truncated: needed {needed} bytes at offset {offset}, {available} available")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("bad magic in {what}: expected {expected:02x?}, found {found:02x?}")]
    BadMagic {
        what: &'static str,
        expected: Vec<u8>,
        found: Vec<u8>,
    },
    #[error(
        "{what} version {found} is not supported (this strata reads up to {supported}); upgrade strata"
    )]
    UnsupportedVersion {
        what: &'static str,
        found: u32,
        supported: u32,
    },
    #[error("{what}: checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    BadChecksum {
        what: &'static str,
        stored: u32,
        computed: u32,
    },
    #[error("{what}: invalid value {value}")]
    Invalid { what: &'static str, value: String },
    #[error("{what}: length {len} exceeds limit {limit}")]
    TooLong {
        what: &'static str,
        len: u64,
        limit: u64,
    },
    #[error("{0} trailing bytes after record")]
    TrailingBytes(usize),
}

/// Bounds-checked little-endian reader over a byte slice.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.remaining() < n {
            return Err(FormatError::Truncated {
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.bytes(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32, FormatError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// Bytes prefixed by a u16 length.
    pub fn bytes16(&mut self) -> Result<&'a [u8], FormatError> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }

    /// Bytes prefixed by a u32 length, at most `limit` long.
    pub fn bytes32(&mut self, what: &'static str, limit: u64) -> Result<&'a [u8], FormatError> {
        let n = self.u32()? as u64;
        if n > limit {
            return Err(FormatError::TooLong {
                what,
                len: n,
                limit,
            });
        }
        self.bytes(n as usize)
    }

    /// UTF-8 string prefixed by a u16 length.
    pub fn str16(&mut self, what: &'static str) -> Result<String, FormatError> {
        let b = self.bytes16()?;
        String::from_utf8(b.to_vec()).map_err(|_| FormatError::Invalid {
            what,
            value: format!("{:?}", String::from_utf8_lossy(b)),
        })
    }

    /// A count that the remaining bytes could possibly hold (each item at least `min_item`
    /// bytes), so a hostile count cannot make us allocate without bound.
    pub fn count(
        &mut self,
        what: &'static str,
        n: u64,
        min_item: usize,
    ) -> Result<usize, FormatError> {
        let possible = (self.remaining() / min_item.max(1)) as u64;
        if n > possible {
            return Err(FormatError::TooLong {
                what,
                len: n,
                limit: possible,
            });
        }
        Ok(n as usize)
    }

    pub fn finish(self) -> Result<(), FormatError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(FormatError::TrailingBytes(n)),
        }
    }
}

/// Little-endian writer into a growing buffer.
#[derive(Default)]
pub struct Encoder {
    pub buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Encoder { buf: Vec::new() }
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.bytes(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.bytes(&v.to_le_bytes());
    }
    /// u16 length prefix; callers validate lengths before encoding (names ≤ 255,
    /// link targets ≤ 4095, strings ≤ 65535).
    pub fn bytes16(&mut self, b: &[u8]) {
        let n = u16::try_from(b.len()).unwrap_or(u16::MAX);
        self.u16(n);
        self.bytes(&b[..n as usize]);
    }
    pub fn bytes32(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.bytes(b);
    }
}

/// Hex encoding used for ids in file names, the CLI and JSON.
pub fn to_hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}
