//! Drawing the few endpoints a pick compares: distinct ones, uniformly, without allocating.
//!
//! Robert Floyd's algorithm draws `k` distinct indices below `len` with exactly `k` random
//! numbers: for each `j` from `len - k` to `len - 1` it draws `t` in `0..=j` and keeps `t`, or `j`
//! if `t` is already kept. Every set of `k` is equally likely. The kept indices are then rotated
//! by one more random offset, so the first one drawn (which wins ties in the pickers) is uniform
//! too and no endpoint is favoured by its place in the list. With `k` at least `len`, every
//! index is drawn, from a random start. The indices live in a fixed array on the stack.
//!
//! A pick takes one number from the picker's shared [`AtomicRng`] (one atomic add) and draws
//! the rest from a local generator seeded with it, so many candidates cost no more atomics
//! than two.

use crate::rng::{AtomicRng, Rng};

/// The most candidates a pick compares.
pub(crate) const MAX_CANDIDATES: usize = 16;

/// Indices drawn for one pick.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidates {
    drawn: [u32; MAX_CANDIDATES],
    len: usize,
}

impl Candidates {
    /// `k` (at most [`MAX_CANDIDATES`]) distinct indices below `len`, uniformly; all of them if
    /// `k >= len`. `len` must be above 0 and at most `u32::MAX`.
    #[inline]
    pub(crate) fn distinct(rng: &AtomicRng, len: usize, k: usize) -> Self {
        let k = k.min(MAX_CANDIDATES);
        let mut candidates = Candidates {
            drawn: [0; MAX_CANDIDATES],
            len: 0,
        };
        let mut local = Rng::new(rng.next_u64());
        let offset = local.quick_index(len);
        if k >= len {
            for i in 0..len {
                candidates.push(wrap(i + offset, len));
            }
            return candidates;
        }
        // Kept indices are stored rotated; rotation is one-to-one, so asking whether a rotated
        // index is kept is asking whether the index is.
        for j in len - k..len {
            let t = wrap(local.quick_index(j + 1) + offset, len);
            let kept = if candidates.contains(t) {
                wrap(j + offset, len)
            } else {
                t
            };
            candidates.push(kept);
        }
        candidates
    }

    /// `k` (at most [`MAX_CANDIDATES`]) indices below `len`, each drawn uniformly on its own, so
    /// one may come twice (gRFC A48's sampling). `len` must be above 0.
    #[inline]
    pub(crate) fn with_replacement(rng: &AtomicRng, len: usize, k: usize) -> Self {
        let mut candidates = Candidates {
            drawn: [0; MAX_CANDIDATES],
            len: 0,
        };
        let mut local = Rng::new(rng.next_u64());
        for _ in 0..k.min(MAX_CANDIDATES) {
            candidates.push(local.quick_index(len) as u32);
        }
        candidates
    }

    /// Two distinct indices below `len` (the same one twice only when `len` is 1): what
    /// [`Candidates::distinct`] draws for `k` = 2, number for number, without building the array
    /// or searching it, for the two-choice picks that are most policies' default.
    #[inline]
    pub(crate) fn distinct_pair(rng: &AtomicRng, len: usize) -> (u32, u32) {
        let mut local = Rng::new(rng.next_u64());
        let offset = local.quick_index(len);
        if len <= 2 {
            return (offset as u32, wrap(offset + len - 1, len));
        }
        // Floyd's two steps: j = len - 2, then j = len - 1 (see the module documentation).
        let first = wrap(local.quick_index(len - 1) + offset, len);
        let drawn = wrap(local.quick_index(len) + offset, len);
        let second = if drawn == first {
            wrap(len - 1 + offset, len)
        } else {
            drawn
        };
        (first, second)
    }

    /// Two indices below `len`, each drawn on its own: what [`Candidates::with_replacement`]
    /// draws for `k` = 2, number for number.
    #[inline]
    pub(crate) fn pair_with_replacement(rng: &AtomicRng, len: usize) -> (u32, u32) {
        let mut local = Rng::new(rng.next_u64());
        let first = local.quick_index(len) as u32;
        (first, local.quick_index(len) as u32)
    }

    /// The indices, in the order drawn.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[u32] {
        &self.drawn[..self.len]
    }

    #[inline]
    fn push(&mut self, index: u32) {
        self.drawn[self.len] = index;
        self.len += 1;
    }

    #[inline]
    fn contains(&self, index: u32) -> bool {
        self.as_slice().contains(&index)
    }
}

/// `i % len` for `i < 2 * len`.
#[inline]
fn wrap(i: usize, len: usize) -> u32 {
    (if i >= len { i - len } else { i }) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_candidates_never_repeat_and_cover_every_index_evenly() {
        let rng = AtomicRng::new(3);
        for (len, k) in [(10, 2), (10, 8), (10, 10), (3, 8), (1, 2), (1000, 16)] {
            let mut seen = vec![0u32; len];
            let mut first = vec![0u32; len];
            let rounds = 20_000;
            for _ in 0..rounds {
                let drawn = Candidates::distinct(&rng, len, k);
                let indices = drawn.as_slice();
                assert_eq!(indices.len(), k.min(len));
                for (n, &i) in indices.iter().enumerate() {
                    assert!((i as usize) < len);
                    assert!(!indices[..n].contains(&i), "{indices:?} repeats {i}");
                    seen[i as usize] += 1;
                }
                first[indices[0] as usize] += 1;
            }
            // Each index is drawn k/len of the time, and comes first 1/len of the time.
            let expected = f64::from(rounds) * k.min(len) as f64 / len as f64;
            let first_expected = f64::from(rounds) / len as f64;
            if len <= 10 {
                for i in 0..len {
                    let share = f64::from(seen[i]) / expected;
                    assert!((0.93..1.07).contains(&share), "{len}/{k}: {seen:?}");
                    let share = f64::from(first[i]) / first_expected;
                    assert!((0.9..1.1).contains(&share), "{len}/{k}: first {first:?}");
                }
            }
        }
    }

    #[test]
    fn the_two_choice_draws_match_the_general_ones_number_for_number() {
        for len in [1, 2, 3, 4, 7, 100, 1000, 200_000] {
            let (general, pair) = (AtomicRng::new(len as u64), AtomicRng::new(len as u64));
            for _ in 0..2_000 {
                let drawn = Candidates::distinct(&general, len, 2);
                let (a, b) = Candidates::distinct_pair(&pair, len);
                let expected = match drawn.as_slice() {
                    [a] => (*a, *a),
                    [a, b] => (*a, *b),
                    other => panic!("{other:?}"),
                };
                assert_eq!((a, b), expected, "len {len}");
            }
            let (general, pair) = (AtomicRng::new(9), AtomicRng::new(9));
            for _ in 0..2_000 {
                let drawn = Candidates::with_replacement(&general, len, 2);
                let (a, b) = Candidates::pair_with_replacement(&pair, len);
                assert_eq!([a, b], drawn.as_slice(), "len {len}");
            }
        }
    }

    #[test]
    fn candidates_with_replacement_may_repeat() {
        let rng = AtomicRng::new(5);
        let repeats = (0..1000)
            .filter(|_| {
                let drawn = Candidates::with_replacement(&rng, 3, 2);
                drawn.as_slice()[0] == drawn.as_slice()[1]
            })
            .count();
        // One draw in three repeats.
        assert!((250..420).contains(&repeats), "{repeats}");
    }
}
