//! Connection backoff, as gRPC specifies it (grpc/grpc `doc/connection-backoff.md`).
//!
//! ```text
//! backoff = INITIAL; deadline = now + INITIAL
//! while try_connect(timeout = max(deadline, now + MIN_CONNECT_TIMEOUT)) fails:
//!     sleep_until(deadline)
//!     backoff = min(backoff * MULTIPLIER, MAX)
//!     deadline = now + backoff +- JITTER * backoff
//! ```
//!
//! One difference on purpose: a jittered delay is clamped to `max_delay`, so no wait ever exceeds the
//! configured maximum (gRPC lets it reach `1.2 * MAX`).

use std::time::{Duration, Instant};

use crate::rng::Rng;

/// The parameters of connection backoff. `Default` gives gRPC's values.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BackoffConfig {
    /// The wait after the first failed attempt (gRPC: 1 s).
    pub initial_delay: Duration,
    /// The growth factor from one wait to the next (gRPC: 1.6).
    pub multiplier: f64,
    /// The spread of each wait, as a fraction of it: a wait `d` becomes uniform in
    /// `d * (1 - jitter) ..= d * (1 + jitter)` (gRPC: 0.2).
    pub jitter: f64,
    /// The longest wait (gRPC: 120 s).
    pub max_delay: Duration,
    /// The least time a connection attempt is given before it counts as failed (gRPC: 20 s).
    pub min_connect_timeout: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial_delay: Duration::from_secs(1),
            multiplier: 1.6,
            jitter: 0.2,
            max_delay: Duration::from_secs(120),
            min_connect_timeout: Duration::from_secs(20),
        }
    }
}

impl BackoffConfig {
    /// Sets the first wait.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the growth factor (values below 1 are treated as 1).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets the jitter fraction (clamped to `0.0..=1.0`).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the longest wait.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets the least time an attempt is given.
    pub fn min_connect_timeout(mut self, timeout: Duration) -> Self {
        self.min_connect_timeout = timeout;
        self
    }

    fn sane_multiplier(&self) -> f64 {
        if self.multiplier.is_finite() && self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        }
    }

    fn sane_jitter(&self) -> f64 {
        if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// The backoff state of one subchannel (or of one resolver's retries).
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    /// The un-jittered wait that the next failure will use, in nanoseconds (saturating);
    /// [`Backoff::NONE`] before the first attempt. (8 bytes where an `Option<Duration>` takes
    /// 16: every subchannel has one.)
    current: u64,
}

/// When an attempt that starts now may be given up, and when the next one may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AttemptTimes {
    /// The attempt counts as failed if it has not connected by then.
    pub(crate) connect_deadline: Instant,
    /// The earliest start of the next attempt, should this one fail.
    pub(crate) retry_at: Instant,
}

impl Backoff {
    const NONE: u64 = u64::MAX;

    pub(crate) fn new() -> Self {
        Backoff {
            current: Self::NONE,
        }
    }

    /// Forgets earlier failures (after a successful connection).
    pub(crate) fn reset(&mut self) {
        self.current = Self::NONE;
    }

    fn set_current(&mut self, delay: Duration) {
        self.current =
            u64::try_from(delay.as_nanos()).map_or(Self::NONE - 1, |n| n.min(Self::NONE - 1));
    }

    /// The delays for an attempt that starts at `now`, advancing the sequence.
    pub(crate) fn start_attempt(
        &mut self,
        config: &BackoffConfig,
        now: Instant,
        rng: &mut Rng,
    ) -> AttemptTimes {
        let delay = self.next_delay(config, rng);
        let retry_at = later(now, delay);
        let connect_deadline = retry_at.max(later(now, config.min_connect_timeout));
        AttemptTimes {
            connect_deadline,
            retry_at,
        }
    }

    /// The next wait: the initial delay, unjittered, the first time; then grown, capped and jittered.
    pub(crate) fn next_delay(&mut self, config: &BackoffConfig, rng: &mut Rng) -> Duration {
        match self.current {
            Self::NONE => {
                let first = config.initial_delay.min(config.max_delay);
                self.set_current(first);
                first
            }
            previous => {
                let previous = Duration::from_nanos(previous);
                let grown =
                    secs(previous.as_secs_f64() * config.sane_multiplier()).min(config.max_delay);
                self.set_current(grown);
                let jitter = config.sane_jitter();
                let factor = 1.0 + jitter * (rng.unit() * 2.0 - 1.0);
                secs(grown.as_secs_f64() * factor).min(config.max_delay)
            }
        }
    }
}

/// A duration of `value` seconds, saturating instead of panicking on NaN, negative or huge values.
fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::MAX)
}

/// `now + delay`, saturating at a far future instead of panicking on overflow.
pub(crate) fn later(now: Instant, delay: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(delay.min(FAR))
        .or_else(|| now.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_sequence(n: usize) -> Vec<f64> {
        let mut out = vec![1.0];
        let mut b: f64 = 1.0;
        while out.len() < n {
            b = (b * 1.6).min(120.0);
            out.push(b);
        }
        out
    }

    #[test]
    fn backoff_follows_grpc_sequence_within_jitter_and_never_exceeds_max() {
        let config = BackoffConfig::default();
        for seed in 0..50 {
            let mut rng = Rng::new(seed);
            let mut backoff = Backoff::new();
            for (i, spec) in spec_sequence(30).into_iter().enumerate() {
                let got = backoff.next_delay(&config, &mut rng).as_secs_f64();
                if i == 0 {
                    assert_eq!(got, 1.0, "the first wait is the initial delay, unjittered");
                }
                assert!(got >= spec * 0.8 - 1e-9, "step {i}: {got} < 0.8 * {spec}");
                assert!(got <= spec * 1.2 + 1e-9, "step {i}: {got} > 1.2 * {spec}");
                assert!(got <= 120.0, "step {i}: {got} exceeds the max");
            }
        }
    }

    #[test]
    fn jitter_actually_spreads_waits() {
        let config = BackoffConfig::default();
        let mut rng = Rng::new(5);
        let mut seen = Vec::new();
        for _ in 0..20 {
            let mut backoff = Backoff::new();
            backoff.next_delay(&config, &mut rng);
            seen.push(backoff.next_delay(&config, &mut rng));
        }
        seen.sort();
        seen.dedup();
        assert!(seen.len() > 10, "second waits should differ: {seen:?}");
    }

    #[test]
    fn connect_deadline_is_at_least_min_connect_timeout() {
        let config = BackoffConfig::default();
        let now = Instant::now();
        let mut backoff = Backoff::new();
        let times = backoff.start_attempt(&config, now, &mut Rng::new(1));
        assert_eq!(times.retry_at, now + Duration::from_secs(1));
        assert_eq!(times.connect_deadline, now + Duration::from_secs(20));

        let long = BackoffConfig::default().initial_delay(Duration::from_secs(60));
        let times = Backoff::new().start_attempt(&long, now, &mut Rng::new(1));
        assert_eq!(times.connect_deadline, now + Duration::from_secs(60));
    }

    #[test]
    fn reset_starts_over_at_the_initial_delay() {
        let config = BackoffConfig::default();
        let mut rng = Rng::new(2);
        let mut backoff = Backoff::new();
        for _ in 0..5 {
            backoff.next_delay(&config, &mut rng);
        }
        backoff.reset();
        assert_eq!(
            backoff.next_delay(&config, &mut rng),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn nonsense_config_does_not_panic() {
        let config = BackoffConfig::default()
            .multiplier(f64::NAN)
            .jitter(f64::INFINITY)
            .max_delay(Duration::ZERO);
        let mut backoff = Backoff::new();
        let mut rng = Rng::new(0);
        for _ in 0..10 {
            assert_eq!(backoff.next_delay(&config, &mut rng), Duration::ZERO);
        }
    }
}
