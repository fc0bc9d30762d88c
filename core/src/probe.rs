//! What a backend answers to a probe: its load as it sees it, for policies that ask
//! ([`Action::Probe`](crate::Action::Probe)), such as [`prequal`](crate::policy::prequal);
//! and [`ServerLoad`], the server's side that makes the answer.

use std::time::{Duration, Instant};

/// A backend's answer to a probe: the calls it has in flight and the latency it expects.
///
/// Both are the server's own view, across every client, which a client-side count cannot see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeResult {
    /// Requests in flight at the server when it answered, every client's together.
    pub requests_in_flight: u32,
    /// The server's estimate of a call's latency, `None` when it has none it trusts (no call
    /// ended recently). A policy then ranks the backend by its requests in flight alone.
    pub latency: Option<Duration>,
}

impl ProbeResult {
    /// An answer of `requests_in_flight` calls in flight and a latency estimate, if any.
    pub fn new(requests_in_flight: u32, latency: Option<Duration>) -> Self {
        ProbeResult {
            requests_in_flight,
            latency,
        }
    }
}

/// A server's side of probing: it counts its requests in flight, keeps an estimate of their
/// latency, and answers probes with both. Sans-IO like the rest of the core (time is passed in),
/// so a server library wraps it (croupier-tokio's tower layer does, behind a lock) and the
/// simulator runs the same code.
///
/// The latency a new call can expect depends on how busy the server is, so the estimate is kept
/// per load, as Prequal's servers do: each call's latency goes to the bucket of the requests in
/// flight when it arrived (an exponential moving average per bucket, each call weighing `1/32`
/// so that the noise of single calls averages out, and more after a gap, as the old estimate
/// says less of the server now: a sample 250 ms after the bucket's last weighs 63%), and a
/// probe is answered from the bucket of the requests in flight now.
///
/// **Without a recent sample at that load** (every call that arrived at this load finished
/// more than `stale_after` ago, 1 s by default) the answer is not an old figure or zero, either
/// of which could send every client to a busy server at once: it is the nearest fresh bucket
/// below, scaled by the ratio of the loads (`latency(b) x (n + 1) / (b + 1)`: as if each call
/// in flight added its share), or else the nearest fresh bucket above as it is. With no fresh
/// sample at all, the answer carries no latency ([`ProbeResult::latency`] is `None`).
#[derive(Clone, Debug)]
pub struct ServerLoad {
    in_flight: u32,
    /// Per bucket of requests in flight at arrival: the estimate in seconds and when it was
    /// last fed.
    buckets: [Option<(f64, Instant)>; BUCKETS],
    stale_after: Duration,
}

/// How many loads [`ServerLoad`] keeps an estimate for; calls that arrived with more in flight
/// share the last bucket.
const BUCKETS: usize = 64;

/// How much one finished call moves its bucket's estimate, at least.
const SAMPLE_WEIGHT: f64 = 1.0 / 32.0;

/// How quickly an estimate not fed ages: a sample this long after the last one weighs
/// `1 - 1/e` of the new estimate (more than [`SAMPLE_WEIGHT`]).
const SAMPLE_AGE: Duration = Duration::from_millis(250);

impl Default for ServerLoad {
    fn default() -> Self {
        ServerLoad::new()
    }
}

/// What [`ServerLoad::call_started`] hands back, for [`ServerLoad::call_finished`]: the load
/// the call arrived at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrivedAt(u32);

impl ServerLoad {
    /// Nothing in flight, no estimate yet.
    pub fn new() -> Self {
        ServerLoad {
            in_flight: 0,
            buckets: [None; BUCKETS],
            stale_after: Duration::from_secs(1),
        }
    }

    /// How long a sample counts after its call finished (1 s).
    pub fn stale_after(mut self, after: Duration) -> Self {
        self.stale_after = after;
        self
    }

    /// A request arrived; hand what this returns to [`ServerLoad::call_finished`] or
    /// [`ServerLoad::call_abandoned`] when it ends.
    pub fn call_started(&mut self) -> ArrivedAt {
        let arrived = ArrivedAt(self.in_flight);
        self.in_flight = self.in_flight.saturating_add(1);
        arrived
    }

    /// A request that arrived at `arrived` finished after `latency`, at `now`: one fewer in
    /// flight, and a sample of the latency at that load.
    pub fn call_finished(&mut self, arrived: ArrivedAt, latency: Duration, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let sample = latency.as_secs_f64();
        let bucket = &mut self.buckets[bucket(arrived.0)];
        *bucket = Some(match *bucket {
            Some((estimate, at)) => {
                // An estimate that has not been fed for a while says less of the server now: a
                // sample after a gap weighs more, up to all of it.
                let gap = now.saturating_duration_since(at).as_secs_f64();
                let aged = 1.0 - (-gap / SAMPLE_AGE.as_secs_f64()).exp();
                let weight = SAMPLE_WEIGHT + (1.0 - SAMPLE_WEIGHT) * aged;
                (estimate + (sample - estimate) * weight, at.max(now))
            }
            None => (sample, now),
        });
    }

    /// A request ended without a sample worth keeping (cancelled, dropped): one fewer in flight.
    pub fn call_abandoned(&mut self, arrived: ArrivedAt) {
        let _ = arrived;
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Requests in flight now.
    pub fn requests_in_flight(&self) -> u32 {
        self.in_flight
    }

    /// The answer to a probe at `now`.
    pub fn answer(&self, now: Instant) -> ProbeResult {
        let fresh = |index: usize| {
            self.buckets[index]
                .filter(|(_, at)| now.saturating_duration_since(*at) < self.stale_after)
                .map(|(estimate, _)| estimate)
        };
        let load = bucket(self.in_flight);
        let below = (0..=load)
            .rev()
            .find_map(|b| fresh(b).map(|l| l * (load + 1) as f64 / (b + 1) as f64));
        let latency = below.or_else(|| (load + 1..BUCKETS).find_map(fresh));
        let latency = latency.map(|seconds| Duration::from_secs_f64(seconds.clamp(0.0, 1e6)));
        ProbeResult::new(self.in_flight, latency)
    }
}

/// The bucket of a load.
fn bucket(in_flight: u32) -> usize {
    (in_flight as usize).min(BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_server_answers_with_its_requests_in_flight_and_the_latency_at_that_load() {
        let now = Instant::now();
        let mut load = ServerLoad::new();
        let first = load.call_started();
        let second = load.call_started();
        assert_eq!(load.answer(now), ProbeResult::new(2, None));
        load.call_finished(second, ms(30), now);
        load.call_finished(first, ms(10), now);
        // Idle now: calls that arrived at an idle server took 10 ms.
        assert_eq!(load.answer(now), ProbeResult::new(0, Some(ms(10))));
        // A later sample at the same load moves the estimate by a 32nd; after a gap, by more
        // (a sample 250 ms later weighs 1 - 1/e of it, plus its 32nd).
        let third = load.call_started();
        load.call_finished(third, ms(330), now);
        assert_eq!(load.answer(now).latency, Some(ms(20)));
        let fourth = load.call_started();
        let later = now + ms(250);
        load.call_finished(fourth, ms(120), later);
        let estimate = load.answer(later).latency.unwrap().as_secs_f64() * 1e3;
        assert!((estimate - 84.36).abs() < 0.01, "{estimate}");
    }

    #[test]
    fn a_load_without_a_fresh_sample_is_scaled_from_the_nearest_below() {
        let now = Instant::now();
        let mut load = ServerLoad::new();
        let first = load.call_started();
        load.call_finished(first, ms(10), now);
        for _ in 0..3 {
            let _ = load.call_started();
        }
        // Three in flight, samples only at zero: 10 ms x 4 / 1.
        assert_eq!(load.answer(now), ProbeResult::new(3, Some(ms(40))));
    }

    #[test]
    fn a_server_with_no_recent_sample_reports_no_latency() {
        let now = Instant::now();
        let mut load = ServerLoad::new().stale_after(ms(500));
        let arrived = load.call_started();
        load.call_finished(arrived, ms(10), now);
        assert!(load.answer(now + ms(499)).latency.is_some());
        assert_eq!(load.answer(now + ms(500)).latency, None);
    }

    #[test]
    fn more_ends_than_starts_leave_nothing_in_flight() {
        let mut load = ServerLoad::new();
        let arrived = load.call_started();
        load.call_abandoned(arrived);
        load.call_abandoned(arrived);
        assert_eq!(load.requests_in_flight(), 0);
    }
}
