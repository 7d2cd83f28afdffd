//! A seeded PRNG (SplitMix64, no rand crate): the same seed gives the same sizes, faults
//! and kill moments on every machine; `STRATA_SEED` replays a printed seed.

pub struct Rng(u64);

impl Rng {
    /// The generator whose sequence `state` fixes. Test files that print their seeds
    /// mix in a salt of their own (`seed ^ SALT`), so those seeds keep replaying.
    pub fn new(state: u64) -> Rng {
        Rng(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }

    /// Uniform in `lo..hi` (hi > lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(hi > lo);
        lo + self.below(hi - lo)
    }

    /// Uniform in `[lo, hi)`.
    pub fn float(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }

    /// A byte that is not zero (so an XOR with it always changes the byte).
    pub fn nonzero_byte(&mut self) -> u8 {
        1 + self.below(255) as u8
    }
}

/// The seed of a test: `STRATA_SEED` when set (to replay a failure), else `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("STRATA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
