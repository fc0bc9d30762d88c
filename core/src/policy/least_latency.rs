//! least_latency: each call goes to the endpoint, of several drawn at random, where it should
//! end soonest by what this client has seen: its calls in flight there, plus one, times the
//! endpoint's service time per call.
//!
//! **Service time per call.** A call's latency beyond the endpoint's estimate is divided by the
//! calls this client had in flight there when it was sent, itself included (the picker notes
//! the count, and the outcome brings it back: [`CallOutcome::note`]), so an endpoint that is
//! merely busy with this client's calls is not taken for a slow one. Latency up to the estimate
//! counts in full: dividing it too would make a backend that serves many calls at once look
//! faster the busier it is, and draw every call to it. The estimate rises quickly (a sample above
//! it moves it by `rise`, 0.3 of the way) and falls slowly (`fall`, 0.02), since a slow
//! endpoint costs far more than a fast one avoided a little too long. A failed call never
//! lowers it: failing fast is not serving fast.
//!
//! **Drift.** An endpoint that gets no answers (because it looked slow and is avoided, or is
//! new) drifts toward the fleet's typical service time (the average over every call's sample):
//! its distance from it shrinks by `e` every `drift` (3 s) without an answer. So an avoided
//! endpoint is tried again now and then, and keeps its calls if it has recovered.
//!
//! **Pick.** `choice_count` distinct READY endpoints (6 by default, at most 16; all of them if
//! there are fewer) are drawn uniformly, without allocating (Floyd's algorithm), and the one
//! with the least `(in flight + 1) x estimate` wins; the first drawn wins a tie. A pick reads two
//! atomics per candidate and adds one to the winner's calls in flight: no lock, no allocation,
//! and its cost does not grow with the number of endpoints. A retry ([`PickRequest::tried`])
//! takes the cheapest candidate its call has not tried; if it tried them all, the next untried
//! endpoint after the first, looking no further than it tried.
//!
//! An adapter must report outcomes with the note of their pick; one that reports none leaves
//! the count at the call's end in its place. In croupier-sim this comes within 5% of the
//! full-information shortest-expected-delay reference where one backend is slow (see the
//! README's "Choosing a policy"). Endpoints are connected and aggregated by [`EndpointPolicy`].

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::call::CallOutcome;
use crate::picker::{Pick, PickNote, PickRequest, Picker};
use crate::policy::candidates::{Candidates, MAX_CANDIDATES};
use crate::policy::endpoints::{EndpointKey, EndpointPolicy, ReadyEndpoints, ReadyValues, Spread};
use crate::policy::{
    parse_millis, parse_whole, Controller, Policy, PolicyBuilder, PolicyConfig, PolicyDetails,
    PolicyParamError,
};
use crate::rng::AtomicRng;
use crate::subchannel::SubchannelId;

/// Settings of least_latency.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LeastLatencyConfig {
    /// How many endpoints each pick compares (6; 2 to 16). More compare better and cost more:
    /// in croupier-sim 8 did a little better in S3, 4 worse, and each adds about 5 ns to a pick.
    pub choice_count: u32,
    /// How far a sample above the estimate moves it (0.3; 0 to 1).
    pub rise: f64,
    /// How far a sample below the estimate moves it (0.02; 0 to 1).
    pub fall: f64,
    /// How soon an endpoint with no answers drifts toward the fleet's typical service time: its
    /// distance shrinks by `e` in this time (3 s; at least 1 ms).
    pub drift: Duration,
    /// The service time assumed before any call has ended (10 ms).
    pub default_service_time: Duration,
}

impl Default for LeastLatencyConfig {
    fn default() -> Self {
        LeastLatencyConfig {
            choice_count: 6,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            drift: Duration::from_secs(3),
            default_service_time: Duration::from_millis(10),
        }
    }
}

impl LeastLatencyConfig {
    /// Sets [`LeastLatencyConfig::choice_count`] (clamped to 2..=16 when used).
    pub fn choice_count(mut self, count: u32) -> Self {
        self.choice_count = count;
        self
    }

    /// Sets [`LeastLatencyConfig::rise`] (clamped to 0..=1 when used; not a number is 0.3).
    pub fn rise(mut self, weight: f64) -> Self {
        self.rise = weight;
        self
    }

    /// Sets [`LeastLatencyConfig::fall`] (clamped to 0..=1 when used; not a number is 0.02).
    pub fn fall(mut self, weight: f64) -> Self {
        self.fall = weight;
        self
    }

    /// Sets [`LeastLatencyConfig::drift`].
    pub fn drift(mut self, drift: Duration) -> Self {
        self.drift = drift;
        self
    }

    /// Sets [`LeastLatencyConfig::default_service_time`].
    pub fn default_service_time(mut self, time: Duration) -> Self {
        self.default_service_time = time;
        self
    }

    fn choices(&self) -> usize {
        (self.choice_count as usize).clamp(2, MAX_CANDIDATES)
    }
}

/// [`LeastLatencyConfig::rise`] by default.
const DEFAULT_RISE: f64 = 0.3;
/// [`LeastLatencyConfig::fall`] by default.
const DEFAULT_FALL: f64 = 0.02;

/// `weight` in 0..=1, or `otherwise` if it is not a number.
fn unit_weight(weight: f64, otherwise: f64) -> f64 {
    if weight.is_nan() {
        otherwise
    } else {
        weight.clamp(0.0, 1.0)
    }
}

impl PolicyBuilder for LeastLatencyConfig {
    fn name(&self) -> &str {
        "least_latency"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(EndpointPolicy::new(LeastLatency::new(self.clone())))
    }

    /// Takes `choice_count`, `rise` and `fall` (fractions), `drift_ms` and
    /// `default_service_time_ms`.
    fn with_params(&self, params: &[(String, String)]) -> Result<PolicyConfig, PolicyParamError> {
        let mut config = self.clone();
        for (key, value) in params {
            match key.as_str() {
                "choice_count" => config.choice_count = parse_whole(self.name(), key, value)?,
                "rise" => config.rise = parse_fraction(self.name(), key, value)?,
                "fall" => config.fall = parse_fraction(self.name(), key, value)?,
                "drift_ms" => config.drift = parse_millis(self.name(), key, value)?,
                "default_service_time_ms" => {
                    config.default_service_time = parse_millis(self.name(), key, value)?;
                }
                other => {
                    return Err(PolicyParamError::unknown_parameter(
                        self.name(),
                        other,
                        "choice_count, rise, fall, drift_ms, default_service_time_ms",
                    ))
                }
            }
        }
        Ok(PolicyConfig::new(config))
    }
}

/// A number in 0..=1.
fn parse_fraction(policy: &str, key: &str, value: &str) -> Result<f64, PolicyParamError> {
    match value.trim().parse::<f64>() {
        Ok(weight) if (0.0..=1.0).contains(&weight) => Ok(weight),
        _ => Err(PolicyParamError::invalid_value(
            policy,
            key,
            value,
            "a number from 0 to 1",
        )),
    }
}

/// The service time per call a latency shows, for a call sent with `sent_with` calls in flight
/// (itself included), against the current `estimate`. Up to the estimate, latency is service:
/// it counts in full. Beyond it, the call may have queued behind this client's own calls, so
/// only its share per call counts, and never less than the estimate. So a backend that serves
/// calls one at a time (latency `n x s`) shows `s`, as dividing every latency by `n` would; and
/// one that serves many at once (latency `s` whatever `n`) shows `s` too, where dividing would
/// show `s / n` and make the busiest backend look the fastest, drawing ever more calls to it.
fn service_sample(latency: f64, sent_with: u64, estimate: f64) -> f64 {
    let per_call = latency / sent_with.max(1) as f64;
    per_call.max(latency.min(estimate))
}

/// What the picker and the policy share about one READY subchannel.
#[derive(Debug)]
struct Meter {
    /// Calls picked and not yet ended.
    in_flight: AtomicU32,
    /// The service time per call in nanoseconds, as `f64` bits.
    estimate: AtomicU64,
}

impl Meter {
    fn new(estimate: f64) -> Self {
        Meter {
            in_flight: AtomicU32::new(0),
            estimate: AtomicU64::new(estimate.to_bits()),
        }
    }

    #[inline]
    fn estimate(&self) -> f64 {
        f64::from_bits(self.estimate.load(Ordering::Relaxed))
    }

    fn set_estimate(&self, estimate: f64) {
        self.estimate.store(estimate.to_bits(), Ordering::Relaxed);
    }

    /// How long a call sent now should take: the calls ahead of it, and itself, at the estimate.
    #[inline]
    fn cost(&self) -> f64 {
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        self.estimate() * (f64::from(in_flight) + 1.0)
    }
}

/// A meter, and whether an answer came since the last drift.
#[derive(Debug)]
struct Tracked {
    meter: Arc<Meter>,
    answered: bool,
}

/// least_latency's spread: the settings, a meter per READY subchannel (kept across pickers) and
/// the fleet's typical service time.
#[derive(Debug)]
struct LeastLatency {
    config: LeastLatencyConfig,
    meters: ReadyValues<Tracked>,
    /// The average of every call's service-time sample, in nanoseconds.
    typical: f64,
    /// A call ended since the last drift.
    traffic: bool,
    /// When estimates last drifted.
    drifted: Option<Instant>,
}

/// How much one sample moves the fleet's typical service time.
const TYPICAL_WEIGHT: f64 = 0.01;

impl LeastLatency {
    fn new(config: LeastLatencyConfig) -> Self {
        let typical = config.default_service_time.as_nanos() as f64;
        LeastLatency {
            config,
            meters: ReadyValues::default(),
            typical,
            traffic: false,
            drifted: None,
        }
    }

    /// How often estimates drift while calls end.
    fn period(&self) -> Duration {
        (self.config.drift / 8).clamp(Duration::from_millis(1), Duration::from_secs(1))
    }

    /// A call on `subchannel` ended: one fewer in flight, and its service time enters the
    /// estimate.
    fn record(&mut self, subchannel: SubchannelId, outcome: &CallOutcome) {
        let Some(tracked) = self.meters.get_mut(&subchannel) else {
            return;
        };
        let meter = &tracked.meter;
        let left = meter
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .map_or(0, |before| before - 1);
        if !outcome.sent {
            return; // a pick never used: no service time to learn
        }
        // The calls in flight when this one was sent, itself included; without a note, those
        // left at its end and itself.
        let sent_with = match outcome.note.get() {
            0 => u64::from(left) + 1,
            noted => noted,
        };
        let estimate = meter.estimate();
        let sample = service_sample(outcome.latency.as_nanos() as f64, sent_with, estimate);
        let next = if sample > estimate {
            estimate + unit_weight(self.config.rise, DEFAULT_RISE) * (sample - estimate)
        } else if outcome.is_ok() {
            estimate + unit_weight(self.config.fall, DEFAULT_FALL) * (sample - estimate)
        } else {
            estimate
        };
        meter.set_estimate(next);
        tracked.answered = true;
        if outcome.is_ok() {
            self.typical += TYPICAL_WEIGHT * (sample - self.typical);
        }
        self.traffic = true;
    }

    /// Estimates of endpoints that had no answer since the last drift move toward the typical
    /// service time, by the time since then.
    fn drift(&mut self, now: Instant) {
        let since = self
            .drifted
            .map_or(self.period(), |then| now.saturating_duration_since(then));
        let drift = self.config.drift.max(Duration::from_millis(1));
        let kept = (-since.as_secs_f64() / drift.as_secs_f64()).exp();
        let typical = self.typical;
        for tracked in self.meters.values_mut() {
            if !std::mem::take(&mut tracked.answered) {
                let estimate = tracked.meter.estimate();
                tracked
                    .meter
                    .set_estimate(typical + (estimate - typical) * kept);
            }
        }
        self.drifted = Some(now);
        self.traffic = false;
    }

    /// The picker over the `len` subchannels `ready`; meters of subchannels no longer READY are
    /// dropped, new ones start at the typical service time.
    fn metered_picker(
        &mut self,
        ready: impl Iterator<Item = SubchannelId>,
        len: usize,
        seed: u64,
    ) -> LeastLatencyPicker {
        let typical = self.typical;
        let len = len.min(u32::MAX as usize);
        let metered = self.meters.refresh(
            ready.take(len),
            len,
            || Tracked {
                meter: Arc::new(Meter::new(typical)),
                answered: false,
            },
            |id, tracked| (id, Arc::clone(&tracked.meter)),
        );
        LeastLatencyPicker {
            ready: metered.into_boxed_slice(),
            choices: self.config.choices(),
            rng: AtomicRng::new(seed),
        }
    }
}

impl Spread for LeastLatency {
    type Endpoint = ();

    fn reconfigure(&mut self, config: &PolicyConfig) -> bool {
        config.replace(&mut self.config)
    }

    fn picker(
        &mut self,
        ready: &ReadyEndpoints<'_, ()>,
        ctl: &mut dyn Controller,
    ) -> Arc<dyn Picker> {
        let seed = ctl.rng().next_u64();
        Arc::new(self.metered_picker(ready.subchannels(), ready.len(), seed))
    }

    fn wants_call_outcomes(&self) -> bool {
        true
    }

    fn call_finished(
        &mut self,
        subchannel: SubchannelId,
        _: Option<(EndpointKey, &mut ())>,
        outcome: &CallOutcome,
        _: Instant,
    ) -> bool {
        self.record(subchannel, outcome);
        true
    }

    /// A snapshot shows the service time per call it learned and the calls in flight.
    fn describe_subchannel(
        &self,
        subchannel: SubchannelId,
        _: Option<(EndpointKey, &())>,
        details: &mut PolicyDetails,
    ) {
        if let Some(tracked) = self.meters.get(&subchannel) {
            let nanos = tracked.meter.estimate().clamp(0.0, u64::MAX as f64);
            details.latency_estimate = Some(Duration::from_nanos(nanos as u64));
            details.in_flight = Some(tracked.meter.in_flight.load(Ordering::Relaxed) as usize);
        }
    }

    /// While calls end (since the last tick), estimates without answers keep drifting.
    fn tick_period(&self, _: Instant) -> Option<Duration> {
        self.traffic.then(|| self.period())
    }

    fn tick(&mut self, _: Option<&ReadyEndpoints<'_, ()>>, now: Instant) -> bool {
        self.drift(now);
        false
    }
}

/// A READY subchannel and its meter.
type Metered = (SubchannelId, Arc<Meter>);

/// Picks the cheapest of a few distinct random READY subchannels.
#[derive(Debug)]
struct LeastLatencyPicker {
    ready: Box<[Metered]>,
    choices: usize,
    rng: AtomicRng,
}

impl LeastLatencyPicker {
    /// The cheapest of `drawn`, or for a retry the cheapest its call has not tried, else the
    /// next untried endpoint after the first drawn (looking no further than it tried), else the
    /// cheapest.
    #[inline]
    fn choose(&self, drawn: &[u32], request: &PickRequest<'_>) -> &Metered {
        let (&first, rest) = drawn.split_first().unwrap_or((&0, &[]));
        let mut best = &self.ready[first as usize];
        let mut least = best.1.cost();
        for &index in rest {
            let candidate = &self.ready[index as usize];
            let cost = candidate.1.cost();
            if cost < least {
                best = candidate;
                least = cost;
            }
        }
        if request.tried().is_empty() || !request.has_tried(best.0) {
            return best;
        }
        self.untried(drawn, request).unwrap_or(best)
    }

    #[cold]
    fn untried(&self, drawn: &[u32], request: &PickRequest<'_>) -> Option<&Metered> {
        let cheapest = drawn
            .iter()
            .map(|&index| &self.ready[index as usize])
            .filter(|metered| !request.has_tried(metered.0))
            .min_by(|a, b| a.1.cost().total_cmp(&b.1.cost()));
        let len = self.ready.len();
        let first = drawn.first().map_or(0, |&index| index as usize);
        cheapest.or_else(|| {
            (1..=request.tried().len().min(len - 1))
                .map(|offset| &self.ready[(first + offset) % len])
                .find(|metered| !request.has_tried(metered.0))
        })
    }
}

impl Picker for LeastLatencyPicker {
    fn pick(&self, request: &PickRequest<'_>) -> Pick {
        self.pick_with_note(request).0
    }

    fn pick_with_note(&self, request: &PickRequest<'_>) -> (Pick, PickNote) {
        let len = self.ready.len();
        if len == 0 {
            return (Pick::Queue, PickNote::NONE);
        }
        let drawn = Candidates::distinct(&self.rng, len, self.choices);
        let chosen = self.choose(drawn.as_slice(), request);
        let sent_with = chosen
            .1
            .in_flight
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        (Pick::Ready(chosen.0), PickNote::new(u64::from(sent_with)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u64) -> Vec<SubchannelId> {
        (1..=n).map(SubchannelId::from_u64).collect()
    }

    fn estimate_ms(spread: &LeastLatency, id: SubchannelId) -> f64 {
        spread.meters.get(&id).expect("a meter").meter.estimate() / 1e6
    }

    fn ended(latency_ms: u64, sent_with: u64) -> CallOutcome {
        CallOutcome::ok(Duration::from_millis(latency_ms)).with_note(PickNote::new(sent_with))
    }

    #[test]
    fn a_latency_is_divided_by_the_calls_in_flight_it_was_sent_with() {
        let id = SubchannelId::from_u64(1);
        let mut spread = LeastLatency::new(LeastLatencyConfig::default().rise(1.0));
        let _picker = spread.metered_picker([id].into_iter(), 1, 1);
        assert_eq!(estimate_ms(&spread, id), 10.0);
        // 80 ms with three others ahead of it: 20 ms each.
        spread.record(id, &ended(80, 4));
        assert_eq!(estimate_ms(&spread, id), 20.0);
    }

    #[test]
    fn a_backend_that_serves_calls_at_once_does_not_look_faster_for_being_busy() {
        let ms = 1e6;
        // Serial, 10 ms a call: the fourth in line takes 40 ms, 10 ms per call.
        assert_eq!(service_sample(40.0 * ms, 4, 10.0 * ms), 10.0 * ms);
        // Parallel: 10 ms with three others in flight is still 10 ms per call.
        assert_eq!(service_sample(10.0 * ms, 4, 10.0 * ms), 10.0 * ms);
        // Faster than the estimate counts in full; a slowdown beyond n calls' worth counts per
        // call.
        assert_eq!(service_sample(6.0 * ms, 4, 10.0 * ms), 6.0 * ms);
        assert_eq!(service_sample(100.0 * ms, 2, 10.0 * ms), 50.0 * ms);
        // A little slower than the estimate, with others in flight: it may be their queue.
        assert_eq!(service_sample(15.0 * ms, 4, 10.0 * ms), 10.0 * ms);
    }

    #[test]
    fn the_estimate_rises_quickly_and_falls_slowly() {
        let id = SubchannelId::from_u64(1);
        let config = LeastLatencyConfig::default().rise(0.5).fall(0.05);
        let mut spread = LeastLatency::new(config);
        let _picker = spread.metered_picker([id].into_iter(), 1, 1);
        spread.record(id, &ended(30, 1));
        assert!((estimate_ms(&spread, id) - 20.0).abs() < 1e-9); // half way up
        spread.record(id, &ended(0, 1));
        assert!((estimate_ms(&spread, id) - 19.0).abs() < 1e-9); // a twentieth down
                                                                 // A failure, however quick, does not make it look faster.
        let failed = CallOutcome::new(crate::Code::Unavailable, Duration::ZERO);
        spread.record(id, &failed);
        assert!((estimate_ms(&spread, id) - 19.0).abs() < 1e-9);
    }

    #[test]
    fn an_endpoint_without_answers_drifts_to_the_typical_service_time() {
        let t0 = Instant::now();
        let (slow, fast) = (SubchannelId::from_u64(1), SubchannelId::from_u64(2));
        let config = LeastLatencyConfig::default()
            .rise(1.0)
            .drift(Duration::from_secs(1));
        let mut spread = LeastLatency::new(config);
        let _picker = spread.metered_picker([slow, fast].into_iter(), 2, 1);
        spread.record(slow, &ended(1000, 1));
        spread.record(fast, &ended(10, 1));
        spread.drift(t0);
        let typical = spread.typical / 1e6;
        // One drift time without an answer: the distance to typical shrinks by e.
        for tenth in 1..=10 {
            spread.record(fast, &ended(10, 1));
            spread.drift(t0 + Duration::from_millis(100 * tenth));
        }
        let expected = typical + (1000.0 - typical) / std::f64::consts::E;
        assert!(
            (estimate_ms(&spread, slow) - expected).abs() < 5.0,
            "{} vs {expected}",
            estimate_ms(&spread, slow)
        );
        // The one that answered kept its own.
        assert!((estimate_ms(&spread, fast) - 10.0).abs() < 1e-6);
    }

    #[test]
    fn the_cheapest_candidate_wins_and_its_note_counts_the_calls_in_flight() {
        let ready = ids(2);
        let mut spread = LeastLatency::new(LeastLatencyConfig::default().rise(1.0));
        let picker = spread.metered_picker(ready.iter().copied(), ready.len(), 5);
        spread.record(ready[1], &ended(50, 1));
        // 10 ms x (k + 1) stays at or below 50 ms up to k = 4 calls in flight; the fifth call
        // costs the same on both and goes to the first drawn.
        for k in 1..=4 {
            assert_eq!(
                picker.pick_with_note(&PickRequest::new()),
                (Pick::Ready(ready[0]), PickNote::new(k))
            );
        }
        for _ in 0..20 {
            picker.pick(&PickRequest::new());
        }
        let fast = spread
            .meters
            .get(&ready[0])
            .expect("a meter")
            .meter
            .in_flight
            .load(Ordering::Relaxed);
        let slow = spread
            .meters
            .get(&ready[1])
            .expect("a meter")
            .meter
            .in_flight
            .load(Ordering::Relaxed);
        // Costs stay level: 10 x (fast + 1) against 50 x (slow + 1).
        assert!(fast > 3 * slow && slow > 0, "{fast} {slow}");
    }

    #[test]
    fn a_retry_takes_a_candidate_its_call_has_not_tried() {
        let ready = ids(12);
        let mut spread = LeastLatency::new(LeastLatencyConfig::default().rise(1.0));
        let picker = spread.metered_picker(ready.iter().copied(), ready.len(), 9);
        for &id in &ready[1..] {
            spread.record(id, &ended(500, 1));
        }
        let tried = [ready[0]];
        for _ in 0..50 {
            let pick = picker.pick(&PickRequest::new().with_tried(&tried));
            assert!(
                matches!(pick, Pick::Ready(id) if id != ready[0]),
                "{pick:?}"
            );
        }
        let eleven = &ready[..11];
        for _ in 0..50 {
            assert_eq!(
                picker.pick(&PickRequest::new().with_tried(eleven)),
                Pick::Ready(ready[11])
            );
        }
        assert!(matches!(
            picker.pick(&PickRequest::new().with_tried(&ready)),
            Pick::Ready(_)
        ));
    }
}
