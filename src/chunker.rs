//! FastCDC (2020, normalization level 1, the crate's default gear table) with the
//! archive's fixed parameters: cuts a byte stream into content-defined chunks so an
//! insertion only changes the chunks around it. One reusable buffer of `max` bytes per
//! chunker bounds memory whatever the stream length.

use fastcdc::v2020::{Normalization, cut, select_masks};
use std::io::{self, Read};

pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    /// Twice `max` bytes: unconsumed bytes are `buf[start..end]`; they are moved to the
    /// front only when fewer than `max` bytes of room remain, so each byte is copied
    /// about once (not once per chunk).
    buf: Vec<u8>,
    start: usize,
    end: usize,
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
            buf: vec![0; 2 * max],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// Starts a new stream (a new file).
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.eof = false;
    }

    /// The next chunk of the stream, or `None` at its end. Cut points depend only on
    /// the bytes (at least `max` of them are in view unless the stream ends first), so
    /// they equal those of fastcdc's own `StreamCDC`.
    pub fn next_chunk<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<Option<Vec<u8>>> {
        if !self.eof && self.end - self.start < self.max {
            if self.buf.len() - self.start < self.max {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            while !self.eof && self.end - self.start < self.max {
                match r.read(&mut self.buf[self.end..]) {
                    Ok(0) => self.eof = true,
                    Ok(n) => self.end += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let avail = self.end - self.start;
        if avail == 0 {
            return Ok(None);
        }
        let window = &self.buf[self.start..self.start + avail.min(self.max)];
        let (_, count) = cut(
            window,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        let count = if count == 0 { window.len() } else { count };
        let chunk = self.buf[self.start..self.start + count].to_vec();
        self.start += count;
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

    /// A reader that hands out at most 1000 bytes per call, like a pipe.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1000).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn boundaries_do_not_depend_on_how_the_bytes_arrive() {
        let data = pseudo_random(2 << 20, 11);
        let mut c = Chunker::new(16 << 10, 64 << 10, 256 << 10);
        let whole = lengths(&data, &mut c);
        c.reset();
        let mut r = Trickle(&data);
        let mut trickled = Vec::new();
        while let Some(ch) = c.next_chunk(&mut r).unwrap() {
            trickled.push(ch.len());
        }
        assert_eq!(whole, trickled);
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
