//! FastCDC (2020, normalization level 1, the crate's default gear table) with the
//! archive's fixed parameters: cuts a byte stream into content-defined chunks so an
//! insertion only changes the chunks around it. One reusable buffer of `max` bytes per
//! chunker bounds memory whatever the stream length.

use crate::archive::Config;
use fastcdc::v2020::{Normalization, cut, select_masks};
use std::io::{self, Read};

pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    buf: Vec<u8>,
    len: usize,
    eof: bool,
}

impl Chunker {
    pub fn new(min: usize, avg: usize, max: usize) -> Chunker {
        let (mask_s, mask_l) = select_masks(avg, Normalization::Level1);
        Chunker {
            min,
            avg,
            max,
            mask_s,
            mask_l,
            buf: vec![0; max],
            len: 0,
            eof: false,
        }
    }

    pub fn from_config(c: &Config) -> Chunker {
        Chunker::new(
            c.chunk_min as usize,
            c.chunk_avg as usize,
            c.chunk_max as usize,
        )
    }

    /// Starts a new stream (a new file).
    pub fn reset(&mut self) {
        self.len = 0;
        self.eof = false;
    }

    /// The next chunk of the stream, or `None` at its end.
    pub fn next_chunk<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<Option<Vec<u8>>> {
        while !self.eof && self.len < self.max {
            match r.read(&mut self.buf[self.len..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.len == 0 {
            return Ok(None);
        }
        let (_, count) = cut(
            &self.buf[..self.len],
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        let count = if count == 0 { self.len } else { count };
        let chunk = self.buf[..count].to_vec();
        self.buf.copy_within(count..self.len, 0);
        self.len -= count;
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn lengths(data: &[u8], c: &mut Chunker) -> Vec<usize> {
        c.reset();
        let mut r = data;
        let mut out = Vec::new();
        while let Some(ch) = c.next_chunk(&mut r).unwrap() {
            out.push(ch.len());
        }
        out
    }

    #[test]
    fn chunk_boundaries_are_pinned_for_a_fixed_input() {
        let data = pseudo_random(1 << 20, 42);
        let mut c = Chunker::new(16 << 10, 64 << 10, 256 << 10);
        let lens = lengths(&data, &mut c);
        assert_eq!(lens.iter().sum::<usize>(), data.len());
        assert_eq!(
            lens, PINNED,
            "chunk boundaries changed: dedup against existing archives would break"
        );
    }
    const PINNED: &[usize] = &[
        40186, 174507, 43098, 47806, 69210, 70077, 20351, 65828, 18356, 18515, 79741, 72494,
        174193, 32974, 74593, 46647,
    ];

    #[test]
    fn boundaries_equal_the_crates_stream_chunker() {
        let data = pseudo_random(3 << 20, 5);
        let mut c = Chunker::new(16 << 10, 64 << 10, 256 << 10);
        let ours = lengths(&data, &mut c);
        let theirs: Vec<usize> =
            fastcdc::v2020::StreamCDC::new(&data[..], 16 << 10, 64 << 10, 256 << 10)
                .map(|c| c.unwrap().length)
                .collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn an_insertion_changes_only_nearby_chunks() {
        let data = pseudo_random(4 << 20, 7);
        let mut edited = data[..2 << 20].to_vec();
        edited.extend_from_slice(&pseudo_random(100_000, 9));
        edited.extend_from_slice(&data[2 << 20..]);
        let mut c = Chunker::new(16 << 10, 64 << 10, 256 << 10);
        let mut ids = |d: &[u8]| -> std::collections::HashSet<blake3::Hash> {
            c.reset();
            let mut r = d;
            let mut set = std::collections::HashSet::new();
            while let Some(ch) = c.next_chunk(&mut r).unwrap() {
                set.insert(blake3::hash(&ch));
            }
            set
        };
        let a = ids(&data);
        let b = ids(&edited);
        let new = b.difference(&a).count();
        assert!(new <= 6, "{new} new chunks of {}", b.len());
    }

    #[test]
    fn empty_and_tiny_streams() {
        let mut c = Chunker::new(64, 256, 1024);
        assert_eq!(lengths(b"", &mut c), Vec::<usize>::new());
        assert_eq!(lengths(b"abc", &mut c), vec![3]);
    }
}
