//! p2c_ewma: the power of two choices over a peak-sensitive moving average of call latency, as
//! Finagle's and tower's peak-EWMA balancers do.
//!
//! Each READY endpoint has a cost: its latency estimate times one more than its calls in flight.
//! A pick draws two distinct READY endpoints at random and takes the cheaper. The estimate is
//! *peak-sensitive*: a call slower than the estimate raises it to that call's latency at once;
//! faster calls pull it down gradually, by an exponential moving average whose weight follows the
//! time since the last update (`decay`, 10 s by default). While calls flow, every estimate also
//! decays toward zero over the same window, so an endpoint that was avoided for being slow is
//! tried again, and keeps its calls if it has recovered.
//!
//! A retry ([`PickRequest::tried`]) takes whichever of the two its call has not tried; if it
//! tried both, the next untried endpoint after the first (looking no further than it tried).
//!
//! All of this runs on the core's clock: outcomes update estimates at the time they are reported,
//! and a timer decays them every `decay / 8` (at most once a second) while calls are ending. An
//! endpoint starts at `default_rtt` (30 ms). Picks read two atomics per candidate and add one;
//! they take no lock and allocate nothing. Endpoints are connected and aggregated by
//! [`EndpointPolicy`], as for round_robin.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::call::CallOutcome;
use crate::picker::{Pick, PickRequest, Picker};
use crate::policy::endpoints::{EndpointKey, EndpointPolicy, ReadyEndpoints, ReadyValues, Spread};
use crate::policy::{
    parse_millis, Controller, Policy, PolicyBuilder, PolicyConfig, PolicyDetails, PolicyParamError,
};
use crate::rng::AtomicRng;
use crate::subchannel::SubchannelId;

/// Settings of p2c_ewma.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeakEwmaConfig {
    /// How quickly old latencies are forgotten: an observation this old weighs 1/e (10 s; at
    /// least 1 ms).
    pub decay: Duration,
    /// The estimate of an endpoint no call has finished on yet (30 ms).
    pub default_rtt: Duration,
}

impl Default for PeakEwmaConfig {
    fn default() -> Self {
        PeakEwmaConfig {
            decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
        }
    }
}

impl PeakEwmaConfig {
    /// Sets [`PeakEwmaConfig::decay`].
    pub fn decay(mut self, decay: Duration) -> Self {
        self.decay = decay;
        self
    }

    /// Sets [`PeakEwmaConfig::default_rtt`].
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.default_rtt = rtt;
        self
    }
}

impl PolicyBuilder for PeakEwmaConfig {
    fn name(&self) -> &str {
        "p2c_ewma"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(EndpointPolicy::new(Ewma::new(self.clone())))
    }

    /// Takes `decay_ms` and `default_rtt_ms`.
    fn with_params(&self, params: &[(String, String)]) -> Result<PolicyConfig, PolicyParamError> {
        let mut config = self.clone();
        for (key, value) in params {
            match key.as_str() {
                "decay_ms" => config.decay = parse_millis(self.name(), key, value)?,
                "default_rtt_ms" => config.default_rtt = parse_millis(self.name(), key, value)?,
                other => {
                    return Err(PolicyParamError::unknown_parameter(
                        self.name(),
                        other,
                        "decay_ms, default_rtt_ms",
                    ))
                }
            }
        }
        Ok(PolicyConfig::new(config))
    }
}

/// What the picker and the policy share about one READY subchannel.
#[derive(Debug)]
pub(crate) struct Meter {
    /// Calls picked and not yet ended.
    in_flight: AtomicUsize,
    /// The latency estimate in nanoseconds, as `f64` bits.
    estimate: AtomicU64,
}

impl Meter {
    fn new(estimate: f64) -> Self {
        Meter {
            in_flight: AtomicUsize::new(0),
            estimate: AtomicU64::new(estimate.to_bits()),
        }
    }

    fn estimate(&self) -> f64 {
        f64::from_bits(self.estimate.load(Ordering::Relaxed))
    }

    #[inline]
    fn cost(&self) -> f64 {
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        self.estimate() * (in_flight as f64 + 1.0)
    }
}

/// A meter and when its estimate was last brought up to date.
#[derive(Debug)]
struct Tracked {
    meter: Arc<Meter>,
    updated: Instant,
}

/// p2c_ewma's spread: settings and a meter per READY subchannel (kept across pickers).
#[derive(Debug)]
pub(crate) struct Ewma {
    config: PeakEwmaConfig,
    meters: ReadyValues<Tracked>,
    /// A call ended since the last decay tick.
    traffic: bool,
}

impl Ewma {
    fn new(config: PeakEwmaConfig) -> Self {
        Ewma {
            config,
            meters: ReadyValues::default(),
            traffic: false,
        }
    }

    fn decay_nanos(&self) -> f64 {
        self.config.decay.max(Duration::from_millis(1)).as_nanos() as f64
    }

    /// How often estimates decay while calls flow.
    fn period(&self) -> Duration {
        (self.config.decay / 8).clamp(Duration::from_millis(1), Duration::from_secs(1))
    }

    /// A call on `subchannel` ended: one fewer in flight, and its latency enters the estimate.
    fn record(&mut self, subchannel: SubchannelId, outcome: &CallOutcome, now: Instant) {
        let decay = self.decay_nanos();
        let Some(tracked) = self.meters.get_mut(&subchannel) else {
            return;
        };
        let _ = tracked
            .meter
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if !outcome.sent {
            return; // a pick never used: no latency to learn
        }
        let rtt = outcome.latency.as_nanos() as f64;
        let estimate = tracked.meter.estimate();
        let next = if rtt > estimate {
            rtt // peak: a slow call counts in full, at once
        } else {
            let elapsed = now.saturating_duration_since(tracked.updated).as_nanos() as f64;
            let kept = (-elapsed / decay).exp();
            estimate * kept + rtt * (1.0 - kept)
        };
        tracked
            .meter
            .estimate
            .store(next.to_bits(), Ordering::Relaxed);
        tracked.updated = now;
        self.traffic = true;
    }

    /// The decay tick: every estimate moves toward zero by the time since its last update.
    fn decay(&mut self, now: Instant) {
        let decay = self.decay_nanos();
        for tracked in self.meters.values_mut() {
            let elapsed = now.saturating_duration_since(tracked.updated).as_nanos() as f64;
            let kept = (-elapsed / decay).exp();
            let next = tracked.meter.estimate() * kept;
            tracked
                .meter
                .estimate
                .store(next.to_bits(), Ordering::Relaxed);
            tracked.updated = now;
        }
        self.traffic = false;
    }

    /// The picker over the `len` subchannels `ready`; meters of subchannels no longer READY
    /// are dropped.
    fn metered_picker(
        &mut self,
        ready: impl Iterator<Item = SubchannelId>,
        len: usize,
        now: Instant,
        seed: u64,
    ) -> EwmaPicker {
        let default = self.config.default_rtt.as_nanos() as f64;
        let metered = self.meters.refresh(
            ready,
            len,
            || Tracked {
                meter: Arc::new(Meter::new(default)),
                updated: now,
            },
            |id, tracked| (id, Arc::clone(&tracked.meter)),
        );
        EwmaPicker {
            ready: metered.into_boxed_slice(),
            rng: AtomicRng::new(seed),
        }
    }
}

impl Spread for Ewma {
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
        Arc::new(self.metered_picker(ready.subchannels(), ready.len(), ctl.now(), seed))
    }

    fn wants_call_outcomes(&self) -> bool {
        true
    }

    fn call_finished(
        &mut self,
        subchannel: SubchannelId,
        _: Option<(EndpointKey, &mut ())>,
        outcome: &CallOutcome,
        now: Instant,
    ) -> bool {
        self.record(subchannel, outcome, now);
        true
    }

    /// While calls end (since the last tick), estimates keep decaying.
    fn tick_period(&self, _: Instant) -> Option<Duration> {
        self.traffic.then(|| self.period())
    }

    fn tick(&mut self, _: Option<&ReadyEndpoints<'_, ()>>, now: Instant) -> bool {
        self.decay(now);
        false
    }

    fn describe_subchannel(
        &self,
        subchannel: SubchannelId,
        _: Option<(EndpointKey, &())>,
        details: &mut PolicyDetails,
    ) {
        if let Some(tracked) = self.meters.get(&subchannel) {
            let nanos = tracked.meter.estimate().clamp(0.0, u64::MAX as f64);
            details.latency_estimate = Some(Duration::from_nanos(nanos as u64));
            details.in_flight = Some(tracked.meter.in_flight.load(Ordering::Relaxed));
        }
    }
}

/// Picks the cheaper of two distinct random READY subchannels.
#[derive(Debug)]
pub(crate) struct EwmaPicker {
    ready: Box<[(SubchannelId, Arc<Meter>)]>,
    rng: AtomicRng,
}

impl EwmaPicker {
    /// For a retry: of the two drawn (`a` and `b`), the one its call has not tried; if it tried
    /// both, the next untried endpoint after `a`, looking at most as far as it tried, so the
    /// work stays bounded whatever the list's length.
    fn untried(&self, request: &PickRequest<'_>, a: usize, b: usize) -> Option<usize> {
        let tried = |i: usize| request.has_tried(self.ready[i].0);
        let len = self.ready.len();
        match (tried(a), tried(b)) {
            (false, false) => None,
            (true, false) => Some(b),
            (false, true) => Some(a),
            (true, true) => (1..=request.tried().len().min(len - 1))
                .map(|offset| (a + offset) % len)
                .find(|&i| !tried(i)),
        }
    }
}

impl Picker for EwmaPicker {
    fn pick(&self, request: &PickRequest<'_>) -> Pick {
        let len = self.ready.len();
        let chosen = match len {
            0 => return Pick::Queue,
            1 => &self.ready[0],
            _ => {
                let a = self.rng.index(len);
                let mut b = self.rng.index(len - 1);
                if b >= a {
                    b += 1;
                }
                let retry = (!request.tried().is_empty())
                    .then(|| self.untried(request, a, b))
                    .flatten();
                let (first, second) = (&self.ready[a], &self.ready[b]);
                if let Some(untried) = retry {
                    &self.ready[untried]
                } else if second.1.cost() < first.1.cost() {
                    second
                } else {
                    first
                }
            }
        };
        chosen.1.in_flight.fetch_add(1, Ordering::Relaxed);
        Pick::Ready(chosen.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ewma_with(ids: &[SubchannelId], now: Instant) -> (Ewma, EwmaPicker) {
        let mut ewma = Ewma::new(PeakEwmaConfig::default());
        let picker = ewma.metered_picker(ids.iter().copied(), ids.len(), now, 7);
        (ewma, picker)
    }

    fn estimate_ms(ewma: &Ewma, id: SubchannelId) -> f64 {
        ewma.meters.get(&id).expect("a meter").meter.estimate() / 1e6
    }

    #[test]
    fn a_slow_call_raises_the_estimate_at_once_and_fast_ones_lower_it_slowly() {
        let t0 = Instant::now();
        let id = SubchannelId::from_u64(1);
        let (mut ewma, _picker) = ewma_with(&[id], t0);
        assert_eq!(estimate_ms(&ewma, id), 30.0);
        ewma.record(id, &CallOutcome::ok(Duration::from_millis(100)), t0);
        assert_eq!(estimate_ms(&ewma, id), 100.0);
        // One second later a 10 ms call: the estimate keeps e^-0.1 of its old value.
        let t1 = t0 + Duration::from_secs(1);
        ewma.record(id, &CallOutcome::ok(Duration::from_millis(10)), t1);
        let kept = (-0.1_f64).exp();
        assert!((estimate_ms(&ewma, id) - (100.0 * kept + 10.0 * (1.0 - kept))).abs() < 1e-6);
    }

    #[test]
    fn ticks_decay_estimates_toward_zero() {
        let t0 = Instant::now();
        let id = SubchannelId::from_u64(1);
        let (mut ewma, _picker) = ewma_with(&[id], t0);
        ewma.decay(t0 + Duration::from_secs(10));
        assert!((estimate_ms(&ewma, id) - 30.0 / std::f64::consts::E).abs() < 1e-6);
    }

    #[test]
    fn the_cheaper_of_two_wins_and_counts_a_call_in_flight() {
        let t0 = Instant::now();
        let (fast, slow) = (SubchannelId::from_u64(1), SubchannelId::from_u64(2));
        let (mut ewma, picker) = ewma_with(&[fast, slow], t0);
        ewma.record(slow, &CallOutcome::ok(Duration::from_millis(500)), t0);
        // Two endpoints: both are always drawn, so the cheaper always wins until the fast one's
        // calls in flight make it dearer: 30 ms x (k + 1) > 500 ms from k = 16 on.
        for expected_in_flight in 1..=16 {
            assert_eq!(picker.pick(&PickRequest::new()), Pick::Ready(fast));
            assert_eq!(
                ewma.meters
                    .get(&fast)
                    .expect("a meter")
                    .meter
                    .in_flight
                    .load(Ordering::Relaxed),
                expected_in_flight
            );
        }
        assert_eq!(picker.pick(&PickRequest::new()), Pick::Ready(slow));
    }

    #[test]
    fn a_retry_prefers_an_endpoint_its_call_has_not_tried() {
        let t0 = Instant::now();
        let ids: Vec<SubchannelId> = (1..=8).map(SubchannelId::from_u64).collect();
        let (mut ewma, picker) = ewma_with(&ids, t0);
        // The first is by far the cheapest, and already tried: the retry goes elsewhere.
        for &id in &ids[1..] {
            ewma.record(id, &CallOutcome::ok(Duration::from_millis(500)), t0);
        }
        let tried = [ids[0]];
        for _ in 0..50 {
            let pick = picker.pick(&PickRequest::new().with_tried(&tried));
            assert!(matches!(pick, Pick::Ready(id) if id != ids[0]), "{pick:?}");
        }
        // Seven of eight tried: the one left is found whatever the draws.
        let seven = &ids[..7];
        for _ in 0..50 {
            assert_eq!(
                picker.pick(&PickRequest::new().with_tried(seven)),
                Pick::Ready(ids[7])
            );
        }
        // All tried: the cheaper of the two drawn, as for a first attempt.
        assert!(matches!(
            picker.pick(&PickRequest::new().with_tried(&ids)),
            Pick::Ready(_)
        ));
    }
}
