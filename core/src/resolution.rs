//! When to ask the resolver again: on request (rate-limited), after errors (with backoff), and
//! periodically, so that new backends are found even when nothing fails.
//!
//! gRPC-Go's DNS resolver re-resolves only when asked and at most every 30 s, and its users' most
//! common complaint is that new backends get no traffic after a scale-up (grpc/grpc #12295). The
//! core therefore also refreshes on a jittered period; a resolver that pushes updates (or a static
//! list) may ignore those requests.

use std::time::{Duration, Instant};

use crate::backoff::{later, Backoff, BackoffConfig};
use crate::rng::Rng;

/// When the balancer asks for re-resolution.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ResolutionConfig {
    /// Requests closer together than this are merged into one, sent when the interval is over.
    pub min_interval: Duration,
    /// Ask again this long (jittered by +-10%) after each answer; `None` turns refreshing off.
    pub refresh_interval: Option<Duration>,
    /// The waits between retries after a resolver error or an empty answer.
    pub retry_backoff: BackoffConfig,
}

impl Default for ResolutionConfig {
    fn default() -> Self {
        ResolutionConfig {
            min_interval: Duration::from_secs(5),
            refresh_interval: Some(Duration::from_secs(30)),
            retry_backoff: BackoffConfig::default(),
        }
    }
}

impl ResolutionConfig {
    /// Sets [`ResolutionConfig::min_interval`].
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// Sets [`ResolutionConfig::refresh_interval`].
    pub fn refresh_interval(mut self, interval: Option<Duration>) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// Sets [`ResolutionConfig::retry_backoff`].
    pub fn retry_backoff(mut self, backoff: BackoffConfig) -> Self {
        self.retry_backoff = backoff;
        self
    }
}

/// The re-resolution schedule.
#[derive(Debug)]
pub(crate) struct Resolution {
    config: ResolutionConfig,
    retry: Backoff,
    last_sent: Option<Instant>,
    /// When the next request goes out, if one is planned.
    due: Option<Instant>,
}

impl Resolution {
    pub(crate) fn new(config: ResolutionConfig) -> Self {
        Resolution {
            config,
            retry: Backoff::new(),
            last_sent: None,
            due: None,
        }
    }

    /// When [`Resolution::on_timeout`] should next run.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }

    fn plan(&mut self, at: Instant) {
        self.due = Some(self.due.map_or(at, |due| due.min(at)));
    }

    /// Someone wants fresh results. Returns whether to send a request now; otherwise one is
    /// planned for when the rate limit allows (see [`Resolution::due`]).
    pub(crate) fn request(&mut self, now: Instant) -> bool {
        let allowed = self
            .last_sent
            .map_or(now, |sent| later(sent, self.config.min_interval));
        if allowed <= now {
            self.sent(now);
            true
        } else {
            self.plan(allowed);
            false
        }
    }

    fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        self.due = None;
    }

    fn refresh_at(&self, now: Instant, rng: &mut Rng) -> Option<Instant> {
        let period = self.config.refresh_interval?;
        let factor = 0.9 + 0.2 * rng.unit();
        let jittered = Duration::try_from_secs_f64(period.as_secs_f64() * factor).unwrap_or(period);
        Some(later(now, jittered))
    }

    /// A good answer arrived: forget the retry backoff and plan the next refresh.
    pub(crate) fn on_success(&mut self, now: Instant, rng: &mut Rng) {
        self.retry.reset();
        self.due = self.refresh_at(now, rng);
    }

    /// An error (or an empty answer) arrived: plan a retry after the next backoff wait.
    pub(crate) fn on_failure(&mut self, now: Instant, rng: &mut Rng) {
        let wait = self.retry.next_delay(&self.config.retry_backoff, rng);
        self.due = Some(later(now, wait));
    }

    /// Returns whether a planned request is due now (it is then counted as sent, and the next
    /// refresh is planned in case no answer comes).
    pub(crate) fn on_timeout(&mut self, now: Instant, rng: &mut Rng) -> bool {
        if self.due.is_some_and(|due| due <= now) {
            self.sent(now);
            self.due = self.refresh_at(now, rng);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn requests_within_min_interval_are_merged_not_lost() {
        let t0 = Instant::now();
        let mut r = Resolution::new(ResolutionConfig::default());
        assert!(r.request(t0));
        assert!(!r.request(t0 + secs(1)));
        assert!(!r.request(t0 + secs(2)));
        assert_eq!(r.due(), Some(t0 + secs(5)));
        let mut rng = Rng::new(1);
        assert!(!r.on_timeout(t0 + secs(4), &mut rng));
        assert!(r.on_timeout(t0 + secs(5), &mut rng));
        assert!(!r.request(t0 + secs(6)));
    }

    #[test]
    fn refresh_is_jittered_around_the_period() {
        let t0 = Instant::now();
        let mut rng = Rng::new(3);
        let mut r = Resolution::new(ResolutionConfig::default());
        r.on_success(t0, &mut rng);
        let due = r.due().unwrap() - t0;
        assert!(due >= secs(27) && due <= secs(33), "{due:?}");
        let mut off = Resolution::new(ResolutionConfig::default().refresh_interval(None));
        off.on_success(t0, &mut rng);
        assert_eq!(off.due(), None);
    }

    #[test]
    fn failures_retry_with_growing_backoff_reset_by_success() {
        let t0 = Instant::now();
        let mut rng = Rng::new(4);
        let mut r = Resolution::new(ResolutionConfig::default());
        r.on_failure(t0, &mut rng);
        assert_eq!(r.due(), Some(t0 + secs(1)));
        r.on_failure(t0, &mut rng);
        let second = r.due().unwrap() - t0;
        assert!(second >= Duration::from_millis(1280) && second <= Duration::from_millis(1920));
        r.on_success(t0, &mut rng);
        r.on_failure(t0, &mut rng);
        assert_eq!(r.due(), Some(t0 + secs(1)));
    }
}
