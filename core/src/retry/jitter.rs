//! The randomised wait before a retry (gRFC A6 "Exponential Backoff").
//!
//! Retry `n` (the first is 1) waits `random(0, min(initialBackoff * multiplier^(n-1),
//! maxBackoff))`: uniform over the whole range, up to a ceiling that grows by the multiplier.
//! Unlike connection backoff, the wait may be anything from zero, so calls that failed together
//! spread out.

use std::time::Duration;

use super::policy::RetryPolicy;
use crate::rng::Rng;

/// The ceiling of a retry's wait, and how it grows from one retry to the next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BackoffCeiling {
    current: Duration,
}

impl BackoffCeiling {
    /// The ceiling of the first retry: `initialBackoff` (capped by `maxBackoff`).
    pub(crate) fn first(policy: &RetryPolicy) -> Self {
        BackoffCeiling {
            current: policy.initial_backoff().min(policy.max_backoff()),
        }
    }

    /// The wait of the next retry, drawn from `rng`; the ceiling then grows by the multiplier,
    /// up to `maxBackoff`.
    pub(crate) fn next_wait(&mut self, policy: &RetryPolicy, rng: &mut Rng) -> Duration {
        let wait = uniform_up_to(self.current, rng);
        let grown = self.current.as_secs_f64() * policy.backoff_multiplier();
        let max = policy.max_backoff();
        self.current = if grown.is_finite() && grown < max.as_secs_f64() {
            Duration::from_secs_f64(grown)
        } else {
            max
        };
        wait
    }
}

/// A wait uniform in `0..=ceiling`, to the nanosecond.
fn uniform_up_to(ceiling: Duration, rng: &mut Rng) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.below(nanos.saturating_add(1)))
}
