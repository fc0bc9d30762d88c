//! A small seeded pseudo-random generator.
//!
//! The core never asks the operating system for randomness: every random choice (backoff jitter, the
//! start index of a round-robin picker, address shuffling) is drawn from an [`Rng`] seeded by the
//! caller, so the same seed and the same inputs give the same outputs.

/// A deterministic pseudo-random generator (the wyrand construction: 64 bits of state, one multiply per
/// draw). It is fast and statistically good enough for load balancing; it is not cryptographic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

const INCREMENT: u64 = 0xa076_1d64_78bd_642f;
const MIX: u64 = 0xe703_7ed1_a0b4_28db;

impl Rng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(INCREMENT);
        let wide = u128::from(self.state) * u128::from(self.state ^ MIX);
        ((wide >> 64) as u64) ^ (wide as u64)
    }

    /// A uniform number in `0..bound`; `0` when `bound` is `0`.
    ///
    /// Uses Lemire's multiply-and-reject method, so there is no modulo bias.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let wide = u128::from(self.next_u64()) * u128::from(bound);
            if (wide as u64) >= threshold {
                return (wide >> 64) as u64;
            }
        }
    }

    /// A uniform index into a collection of `len` items; `0` when `len` is `0`.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// An index below `len` by one multiply and shift, without `below`'s rejection step: its
    /// bias is below `len / 2^64`, nothing at the sizes of an endpoint list. `len` must not be 0.
    #[inline]
    pub(crate) fn quick_index(&mut self, len: usize) -> usize {
        ((u128::from(self.next_u64()) * len as u128) >> 64) as usize
    }

    /// A uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }

    /// A new generator seeded from this one, for a component that needs a stream of its own.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_sequence() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(1);
        let mut seen = [0u32; 5];
        for _ in 0..5_000 {
            let v = rng.below(5);
            assert!(v < 5);
            seen[v as usize] += 1;
        }
        for count in seen {
            assert!((800..1200).contains(&count), "skewed: {seen:?}");
        }
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn unit_is_in_half_open_range() {
        let mut rng = Rng::new(3);
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut rng = Rng::new(11);
        let mut items: Vec<u32> = (0..50).collect();
        rng.shuffle(&mut items);
        assert_ne!(items, (0..50).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>());
    }
}

/// A lock-free stream of random numbers for pickers shared by many threads: an atomic counter
/// advanced by a constant per draw, each value mixed (SplitMix64). Seeded from an [`Rng`], so it
/// is as deterministic as the order of the draws.
#[derive(Debug)]
pub(crate) struct AtomicRng {
    state: std::sync::atomic::AtomicU64,
}

impl AtomicRng {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    pub(crate) fn new(seed: u64) -> Self {
        AtomicRng {
            state: std::sync::atomic::AtomicU64::new(seed),
        }
    }

    /// The next 64 random bits.
    #[inline]
    pub(crate) fn next_u64(&self) -> u64 {
        let step = self
            .state
            .fetch_add(Self::GAMMA, std::sync::atomic::Ordering::Relaxed);
        let mut z = step.wrapping_add(Self::GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform-enough index below `len` (multiply-shift; `len` must be non-zero).
    #[inline]
    pub(crate) fn index(&self, len: usize) -> usize {
        ((u128::from(self.next_u64()) * len as u128) >> 64) as usize
    }
}
