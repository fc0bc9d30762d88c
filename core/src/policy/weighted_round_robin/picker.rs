//! weighted_round_robin's picker: weights scaled for gRPC's static stride scheduler, and the
//! scheduler itself.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::picker::{fast_quotient, fast_remainder, Pick, PickRequest, Picker};
use crate::subchannel::SubchannelId;

/// The largest scaled weight.
pub(super) const MAX_WEIGHT: u16 = u16::MAX;
/// Weights are clamped to this many times their mean at most...
const MAX_RATIO: f64 = 10.0;
/// ...and this fraction of it at least.
const MIN_RATIO: f64 = 0.1;
/// A pick gives up searching after this many tries (it cannot need more than the number of
/// endpoints without other threads' picks in between; the clamp makes even that unlikely).
const MAX_TRIES: usize = 1000;

/// Scales `weights` (0 for unknown) for the stride scheduler: unknown weights get the mean of
/// the known, all are clamped to `MIN_RATIO..=MAX_RATIO` times that mean, the largest becomes
/// 65,535. Empty when a plain round robin would do the same: fewer than two endpoints, fewer
/// than two known weights, or all weights equal.
pub(super) fn scale(weights: &[f64]) -> Vec<u16> {
    let known: Vec<f64> = weights
        .iter()
        .copied()
        .filter(|weight| weight.is_finite() && *weight > 0.0)
        .collect();
    if weights.len() < 2 || known.len() < 2 {
        return Vec::new();
    }
    let mean = known.iter().sum::<f64>() / known.len() as f64;
    if !(mean.is_finite() && mean > 0.0) {
        return Vec::new();
    }
    let clamped: Vec<f64> = weights
        .iter()
        .map(|weight| {
            let weight = if weight.is_finite() && *weight > 0.0 {
                *weight
            } else {
                mean
            };
            weight.clamp(mean * MIN_RATIO, mean * MAX_RATIO)
        })
        .collect();
    let max = clamped.iter().copied().fold(0.0_f64, f64::max);
    let scaled: Vec<u16> = clamped
        .iter()
        .map(|weight| {
            let scaled = (weight / max * f64::from(MAX_WEIGHT)).round();
            scaled.clamp(1.0, f64::from(MAX_WEIGHT)) as u16
        })
        .collect();
    if scaled.iter().all(|weight| *weight == scaled[0]) {
        return Vec::new();
    }
    scaled
}

/// The static stride scheduler over READY subchannels and their scaled weights.
///
/// The counter is 32 bits, so the visit number and the index come from two multiplications
/// rather than a division; when it wraps (every 2^32 tries) the pattern restarts, harmlessly.
#[derive(Debug)]
pub(super) struct WeightedPicker {
    pub(super) ready: Box<[(SubchannelId, u16)]>,
    next: AtomicU32,
    /// `u64::MAX / len + 1`, for the quotient and remainder by `len`.
    reciprocal: u64,
}

impl WeightedPicker {
    pub(super) fn new(mut ready: Vec<(SubchannelId, u16)>, start: u32) -> Self {
        ready.truncate(u32::MAX as usize);
        let len = ready.len() as u64;
        let reciprocal = u64::MAX.checked_div(len).map_or(0, |q| q.wrapping_add(1));
        WeightedPicker {
            ready: ready.into_boxed_slice(),
            next: AtomicU32::new(start),
            reciprocal,
        }
    }
}

impl Picker for WeightedPicker {
    fn pick(&self, _: &PickRequest<'_>) -> Pick {
        let len = self.ready.len() as u32;
        match len {
            0 => return Pick::Queue,
            1 => return Pick::Ready(self.ready[0].0),
            _ => {}
        }
        let modulus = u64::from(MAX_WEIGHT);
        let mut last = self.ready[0].0;
        for _ in 0..MAX_TRIES {
            let step = self.next.fetch_add(1, Ordering::Relaxed);
            let generation = fast_quotient(step, self.reciprocal);
            let index = fast_remainder(step, len, self.reciprocal);
            let Some(&(subchannel, weight)) = self.ready.get(index as usize) else {
                break;
            };
            let weight = u64::from(weight);
            // Both terms are reduced first: nothing overflows.
            let offset = (u64::from(index) % modulus) * (modulus / 2);
            if (weight * (u64::from(generation) % modulus) + offset) % modulus >= modulus - weight {
                return Pick::Ready(subchannel);
            }
            last = subchannel;
        }
        Pick::Ready(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_makes_the_largest_weight_the_maximum() {
        assert_eq!(scale(&[1.0, 2.0, 3.0]), vec![21845, 43690, 65535]);
    }

    #[test]
    fn equal_or_missing_weights_mean_plain_round_robin() {
        assert!(scale(&[5.0, 5.0, 5.0]).is_empty());
        assert!(
            scale(&[0.0, 7.0, 0.0]).is_empty(),
            "one known weight is not enough"
        );
        assert!(scale(&[3.0]).is_empty());
        assert!(scale(&[]).is_empty());
    }

    #[test]
    fn unknown_weights_get_the_mean_and_outliers_are_clamped() {
        // Known 2 and 4: mean 3; the unknown one counts as 3.
        assert_eq!(scale(&[2.0, 4.0, 0.0]), vec![32768, 65535, 49151]);
        // The mean of (1, 1, 1000) is 334: 1000 is under ten times that and stands, while 1 is
        // raised to a tenth of it, 33.4.
        let scaled = scale(&[1.0, 1.0, 1000.0]);
        assert_eq!(scaled[2], 65535);
        assert_eq!(scaled[0], (33.4_f64 / 1000.0 * 65535.0).round() as u16);
        // Many light endpoints and one heavy: the heavy one is capped at ten times the mean.
        let mut weights = vec![1.0; 99];
        weights.push(10_000.0);
        let scaled = scale(&weights);
        let mean = (99.0 + 10_000.0) / 100.0;
        assert_eq!(
            scaled[0],
            (mean * MIN_RATIO / (mean * MAX_RATIO) * 65535.0).round() as u16
        );
    }

    #[test]
    fn picks_follow_the_weights_exactly_over_a_cycle() {
        let ids: Vec<SubchannelId> = (1..=3).map(SubchannelId::from_u64).collect();
        let picker = WeightedPicker::new(
            ids.iter().copied().zip(scale(&[1.0, 2.0, 3.0])).collect(),
            0,
        );
        let mut counts = [0usize; 3];
        for _ in 0..60_000 {
            match picker.pick(&PickRequest::new()) {
                Pick::Ready(id) => counts[ids.iter().position(|x| *x == id).unwrap()] += 1,
                other => panic!("{other:?}"),
            }
        }
        for (count, share) in counts.iter().zip([1.0, 2.0, 3.0]) {
            let expected = 60_000.0 * share / 6.0;
            assert!((*count as f64 - expected).abs() < 60.0, "{counts:?}");
        }
    }
}
