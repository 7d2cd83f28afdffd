//! Forget record: which snapshots a `forget` removed, when, and why. Appended to the
//! packs like every other record (the archive stays append-only); `repair` applies it
//! so a rebuilt index never brings a forgotten snapshot back.
//!
//! ```text
//! magic "FRGT" [4], version u8 = 1
//! time sec i64, time nsec u32
//! reason str16
//! count u32, ids [32] each
//! ```

use super::{BlobId, Decoder, Encoder, FormatError};

pub const FORGET_MAGIC: [u8; 4] = *b"FRGT";
pub const FORGET_VERSION: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgetRecord {
    pub time: (i64, u32),
    pub reason: String,
    pub snapshots: Vec<BlobId>,
}

impl ForgetRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.bytes(&FORGET_MAGIC);
        e.u8(FORGET_VERSION);
        e.i64(self.time.0);
        e.u32(self.time.1);
        let mut end = self.reason.len().min(u16::MAX as usize);
        while !self.reason.is_char_boundary(end) {
            end -= 1;
        }
        e.bytes16(&self.reason.as_bytes()[..end]);
        e.u32(self.snapshots.len() as u32);
        for id in &self.snapshots {
            e.bytes(&id.0);
        }
        e.buf
    }

    pub fn decode(b: &[u8]) -> Result<ForgetRecord, FormatError> {
        let mut d = Decoder::new(b);
        let magic = d.bytes(4)?;
        if magic != FORGET_MAGIC {
            return Err(FormatError::BadMagic {
                what: "forget record",
                expected: FORGET_MAGIC.to_vec(),
                found: magic.to_vec(),
            });
        }
        let version = d.u8()?;
        if version != FORGET_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: "forget record",
                found: version as u32,
                supported: FORGET_VERSION as u32,
            });
        }
        let time = (d.i64()?, d.u32()?);
        if time.1 >= 1_000_000_000 {
            return Err(FormatError::Invalid {
                what: "forget time nanoseconds",
                value: time.1.to_string(),
            });
        }
        let reason = d.str16("forget reason")?;
        let n = d.u32()? as u64;
        let n = d.count("forgotten snapshot count", n, 32)?;
        let mut snapshots = Vec::with_capacity(n);
        for _ in 0..n {
            snapshots.push(BlobId(d.array()?));
        }
        d.finish()?;
        Ok(ForgetRecord {
            time,
            reason,
            snapshots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forget_golden_bytes() {
        let r = ForgetRecord {
            time: (1, 2),
            reason: "r".into(),
            snapshots: vec![BlobId([3; 32])],
        };
        let hex = crate::format::to_hex(&r.encode());
        assert_eq!(
            hex,
            concat!(
                "4652475401",
                "0100000000000000",
                "02000000",
                "010072",
                "01000000",
                "0303030303030303030303030303030303030303030303030303030303030303"
            ),
            "format changed, version bump required"
        );
        assert_eq!(ForgetRecord::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn truncations_and_huge_counts_are_typed_errors() {
        let r = ForgetRecord {
            time: (1, 2),
            reason: "keep-daily 7".into(),
            snapshots: vec![BlobId([3; 32]), BlobId([4; 32])],
        };
        let b = r.encode();
        for n in 0..b.len() {
            assert!(ForgetRecord::decode(&b[..n]).is_err());
        }
        let mut huge = b.clone();
        let at = 4 + 1 + 12 + 2 + r.reason.len();
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            ForgetRecord::decode(&huge),
            Err(FormatError::TooLong { .. })
        ));
    }
}
