//! prequal: calls go where the backends' own answers to probes say they will be served
//! soonest, after Prequal ("Load is not what you should balance", NSDI '24).
//!
//! The policy asks its adapter to probe backends ([`Action::Probe`](crate::Action::Probe)) at a
//! rate proportional to its calls: each call that ends earns `probes_per_call` probes, sent to
//! READY endpoints drawn at random. A backend answers with its requests in flight (RIF, every
//! client's) and its latency estimate ([`ProbeResult`]). The answers form a small pool (at most
//! `pool_size`, 16 by default); a probe leaves it when it is older than `max_age`, when a newer
//! answer from the same backend replaces it, when the pool is full and it is the oldest, or once
//! `max_uses` picks have used it (in a fleet no larger than half the pool, where every backend
//! has its probe in the pool, a probe is used until a newer answer replaces it: each use counts
//! one more request in flight on it, which spreads the picks).
//!
//! A pick applies the hot-cold rule: a probe is *cold* if its RIF is at most the
//! `cold_quantile` of the RIFs recently reported; of the cold probes the one with the lowest
//! latency wins, and if none is cold, the one with the lowest RIF. Each pick that uses a probe
//! counts one more request in flight on it, so picks between two answers do not all pile onto
//! one backend. While the pool is empty (all used or aged out, or probes unsupported by the
//! adapter) a pick takes the better of two random endpoints by their latest answers (the lower
//! latency, which the server estimates at its load), or either one when neither has answered.
//!
//! **What a backend reports without recent samples.** A server that has finished no call lately
//! has no latency it can measure. Reading zero as a promise sends every client there at once
//! (at 90% load that ran away), and reading its old estimate keeps a backend that was slow
//! avoided for good. So a server answers `None` ([`ProbeResult::latency`];
//! [`ServerLoad`](crate::ServerLoad) does), and the policy takes such a probe at the median
//! latency of the recent answers: a typical backend, tried again when it is cold, which is how
//! one that was slow comes back once it has recovered.
//!
//! The pool the picker reads is a fixed array of atomic words (one probe in 64 bits), shared with
//! the policy: a probe answer reaches the pickers without a new picker, and a pick reads the
//! pool and uses its probe with one compare-and-swap. It takes no lock and allocates nothing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::call::CallOutcome;
use crate::picker::{Picker, RoundRobinPicker};
use crate::policy::endpoints::{EndpointKey, EndpointPolicy, ReadyEndpoints, Spread};
use crate::policy::{
    parse_millis, parse_whole, Controller, Policy, PolicyBuilder, PolicyConfig, PolicyParamError,
};
use crate::probe::ProbeResult;
use crate::rng::Rng;
use crate::subchannel::{IdMap, SubchannelId};

mod pool;

use pool::{Pool, PrequalPicker, Probe, MAX_INDEX, POOL_CAPACITY};

/// Settings of prequal.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PrequalConfig {
    /// Probes sent per call that ends (2.0; at most 16). Fractions accumulate.
    pub probes_per_call: f64,
    /// The most probes kept (16; 1 to 16).
    pub pool_size: usize,
    /// How long a probe's answer stays in the pool (1 s).
    pub max_age: Duration,
    /// How many picks may use one probe before it leaves the pool (1 to 15), or 0, the default:
    /// 2, but unlimited (until a newer answer replaces it) in a fleet no larger than half the
    /// pool.
    pub max_uses: u32,
    /// The quantile of recent RIFs at or below which a probe is cold (0.9; 0 to 1).
    pub cold_quantile: f64,
}

impl Default for PrequalConfig {
    fn default() -> Self {
        PrequalConfig {
            probes_per_call: 2.0,
            pool_size: POOL_CAPACITY,
            max_age: Duration::from_secs(1),
            max_uses: 0,
            cold_quantile: 0.9,
        }
    }
}

impl PrequalConfig {
    /// Sets [`PrequalConfig::probes_per_call`].
    pub fn probes_per_call(mut self, probes: f64) -> Self {
        self.probes_per_call = probes;
        self
    }

    /// Sets [`PrequalConfig::pool_size`].
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Sets [`PrequalConfig::max_age`].
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Sets [`PrequalConfig::max_uses`].
    pub fn max_uses(mut self, uses: u32) -> Self {
        self.max_uses = uses;
        self
    }

    /// Sets [`PrequalConfig::cold_quantile`].
    pub fn cold_quantile(mut self, quantile: f64) -> Self {
        self.cold_quantile = quantile;
        self
    }

    /// The settings brought within their bounds (a value that is not a number takes the
    /// default).
    fn bounded(&self) -> PrequalConfig {
        let default = PrequalConfig::default();
        let rate = if self.probes_per_call.is_finite() {
            self.probes_per_call.clamp(0.0, POOL_CAPACITY as f64)
        } else {
            default.probes_per_call
        };
        let quantile = if self.cold_quantile.is_finite() {
            self.cold_quantile.clamp(0.0, 1.0)
        } else {
            default.cold_quantile
        };
        PrequalConfig {
            probes_per_call: rate,
            pool_size: self.pool_size.clamp(1, POOL_CAPACITY),
            max_age: self.max_age.max(Duration::from_millis(1)),
            max_uses: self.max_uses.min(15),
            cold_quantile: quantile,
        }
    }
}

impl PolicyBuilder for PrequalConfig {
    fn name(&self) -> &str {
        "prequal"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(EndpointPolicy::new(Prequal::new(self.bounded())))
    }

    /// Takes `probes_per_call_percent`, `pool_size`, `max_age_ms`, `max_uses` and
    /// `cold_quantile_percent`.
    fn with_params(&self, params: &[(String, String)]) -> Result<PolicyConfig, PolicyParamError> {
        let mut config = self.clone();
        let name = self.name();
        for (key, value) in params {
            match key.as_str() {
                "probes_per_call_percent" => {
                    let percent: u32 = parse_whole(name, key, value)?;
                    config.probes_per_call = f64::from(percent) / 100.0;
                }
                "pool_size" => config.pool_size = parse_whole(name, key, value)?,
                "max_age_ms" => config.max_age = parse_millis(name, key, value)?,
                "max_uses" => config.max_uses = parse_whole(name, key, value)?,
                "cold_quantile_percent" => {
                    let percent: u32 = parse_whole(name, key, value)?;
                    config.cold_quantile = f64::from(percent) / 100.0;
                }
                other => {
                    return Err(PolicyParamError::unknown_parameter(
                        name,
                        other,
                        "probes_per_call_percent, pool_size, max_age_ms, max_uses, \
                         cold_quantile_percent",
                    ))
                }
            }
        }
        Ok(PolicyConfig::new(config))
    }
}

/// How many recent RIFs the cold threshold is the quantile of.
const RECENT: usize = 32;

/// The last [`RECENT`] values of a figure, oldest overwritten first.
#[derive(Debug, Default)]
struct Recent {
    values: [u32; RECENT],
    len: usize,
    next: usize,
}

impl Recent {
    fn push(&mut self, value: u32) {
        self.values[self.next] = value;
        self.next = (self.next + 1) % RECENT;
        self.len = (self.len + 1).min(RECENT);
    }

    /// The `q` quantile (the value of rank `q x len`, rounded down), if there is any value.
    fn quantile(&self, q: f64) -> Option<u32> {
        let mut sorted = self.values;
        let values = &mut sorted[..self.len];
        let rank = ((values.len() as f64 * q) as usize).min(values.len().checked_sub(1)?);
        let (_, value, _) = values.select_nth_unstable(rank);
        Some(*value)
    }
}

/// prequal's spread: the pool and what the policy knows beside it.
#[derive(Debug)]
pub(crate) struct Prequal {
    config: PrequalConfig,
    /// The pool the newest picker reads.
    pool: Arc<Pool>,
    /// Per slot: whose answer it holds and when it came (a slot a pick used up reads empty).
    slots: [Option<(SubchannelId, Instant)>; POOL_CAPACITY],
    /// The newest picker's READY subchannels, and each one's place among them.
    ready: Vec<SubchannelId>,
    places: IdMap<u32>,
    /// The RIFs of the last [`RECENT`] answers, oldest overwritten first.
    recent: Recent,
    /// The latencies (in microseconds) of the last [`RECENT`] answers that had one.
    latencies: Recent,
    /// Probes earned and not yet asked for.
    credit: f64,
    /// Probes to ask for.
    wanted: VecDeque<SubchannelId>,
    rng: Rng,
}

impl Prequal {
    fn new(config: PrequalConfig) -> Self {
        Prequal {
            config,
            pool: Arc::new(Pool::new(0)),
            slots: [None; POOL_CAPACITY],
            ready: Vec::new(),
            places: IdMap::default(),
            recent: Recent::default(),
            latencies: Recent::default(),
            credit: 0.0,
            wanted: VecDeque::new(),
            rng: Rng::new(0),
        }
    }

    /// Empties the slots whose answer is older than `max_age`.
    fn age(&mut self, now: Instant) {
        for (slot, held) in self.slots.iter_mut().enumerate() {
            if let Some((_, at)) = *held {
                if now.saturating_duration_since(at) >= self.config.max_age {
                    *held = None;
                    self.pool.set(slot, None);
                }
            }
        }
    }

    /// The slot a new answer from `subchannel` goes to: the one holding its last answer, else
    /// an empty one, else the oldest.
    fn slot_for(&self, subchannel: SubchannelId) -> usize {
        let size = self.config.pool_size;
        let held = |slot: usize| self.slots[slot].filter(|_| self.pool.get(slot).is_some());
        (0..size)
            .find(|&slot| held(slot).is_some_and(|(id, _)| id == subchannel))
            .or_else(|| (0..size).find(|&slot| held(slot).is_none()))
            .unwrap_or_else(|| {
                (0..size)
                    .min_by_key(|&slot| held(slot).map(|(_, at)| at))
                    .unwrap_or(0)
            })
    }

    /// Records a RIF among the recent ones and publishes the new cold threshold.
    fn learn_rif(&mut self, rif: u32) {
        self.recent.push(rif);
        if let Some(threshold) = self.recent.quantile(self.config.cold_quantile) {
            self.pool.set_threshold(threshold);
        }
    }

    /// The probe an answer makes: a latency the server did not give is taken as the median of
    /// the recent ones (an idle backend with no recent sample is as good as a typical one, so
    /// it is tried again; not zero, which would send every call there).
    fn probe(&mut self, place: u32, result: &ProbeResult) -> Probe {
        let probe = Probe::new(place, result.requests_in_flight, result.latency);
        match result.latency {
            Some(_) => {
                self.latencies.push(probe.latency);
                probe
            }
            None => Probe {
                latency: self.latencies.quantile(0.5).unwrap_or(probe.latency),
                ..probe
            },
        }
    }

    /// Earns `probes_per_call` probes and turns whole ones into probes of random READY
    /// endpoints (at most a pool's worth waits).
    fn earn(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        self.credit = (self.credit + self.config.probes_per_call).min(POOL_CAPACITY as f64);
        while self.credit >= 1.0 && self.wanted.len() < POOL_CAPACITY {
            self.credit -= 1.0;
            let target = self.ready[self.rng.index(self.ready.len())];
            self.wanted.push_back(target);
        }
    }
}

impl Spread for Prequal {
    type Endpoint = ();

    fn reconfigure(&mut self, config: &PolicyConfig) -> bool {
        match config.downcast_ref::<PrequalConfig>() {
            Some(config) => {
                self.config = config.bounded();
                for slot in self.config.pool_size..POOL_CAPACITY {
                    self.slots[slot] = None;
                    self.pool.set(slot, None);
                }
                true
            }
            None => false,
        }
    }

    /// A new picker gets a pool of its own, holding the answers of the endpoints still READY
    /// under their new places; older pickers keep reading theirs, which no longer changes.
    fn picker(
        &mut self,
        ready: &ReadyEndpoints<'_, ()>,
        ctl: &mut dyn Controller,
    ) -> Arc<dyn Picker> {
        self.rng = Rng::new(ctl.rng().next_u64());
        let previous = std::mem::take(&mut self.ready);
        self.ready.extend(ready.subchannels());
        self.places.clear();
        for (place, &id) in self.ready.iter().enumerate().take(MAX_INDEX as usize + 1) {
            self.places.insert(id, place as u32);
        }
        let pool = Arc::new(Pool::new(self.ready.len()));
        pool.set_threshold(self.pool.threshold());
        for (old, id) in previous.iter().enumerate() {
            if let (Some(probe), Some(&place)) = (self.pool.latest(old), self.places.get(id)) {
                pool.set_latest(
                    place as usize,
                    Probe {
                        index: place,
                        ..probe
                    },
                );
            }
        }
        for (slot, held) in self.slots.iter_mut().enumerate() {
            let kept = held.and_then(|(id, _)| {
                let probe = self.pool.get(slot)?;
                let place = *self.places.get(&id)?;
                Some(Probe {
                    index: place,
                    ..probe
                })
            });
            if kept.is_none() {
                *held = None;
            }
            pool.set(slot, kept);
        }
        self.pool = Arc::clone(&pool);
        let start = self.rng.index(self.ready.len().max(1));
        let list = RoundRobinPicker::new(self.ready.clone(), start);
        let seed = self.rng.next_u64();
        let max_uses = match self.config.max_uses {
            0 if self.ready.len() * 2 <= self.config.pool_size => 15,
            0 => 2,
            set => set,
        };
        Arc::new(PrequalPicker::new(pool, list, seed, max_uses))
    }

    fn wants_call_outcomes(&self) -> bool {
        true
    }

    fn call_finished(
        &mut self,
        _: SubchannelId,
        _: Option<(EndpointKey, &mut ())>,
        _: &CallOutcome,
        now: Instant,
    ) -> bool {
        self.age(now);
        self.earn();
        true
    }

    fn probe_result(
        &mut self,
        subchannel: SubchannelId,
        _: Option<(EndpointKey, &mut ())>,
        result: &ProbeResult,
        now: Instant,
    ) -> bool {
        self.age(now);
        let Some(&place) = self.places.get(&subchannel) else {
            return false; // not READY in the newest picker: nothing a pick could use
        };
        self.learn_rif(result.requests_in_flight);
        let probe = self.probe(place, result);
        let slot = self.slot_for(subchannel);
        self.slots[slot] = Some((subchannel, now));
        self.pool.set(slot, Some(probe));
        self.pool.set_latest(place as usize, probe);
        true
    }

    fn poll_probe(&mut self) -> Option<SubchannelId> {
        self.wanted.pop_front()
    }

    fn tick_period(&self, _: Instant) -> Option<Duration> {
        self.slots
            .iter()
            .any(Option::is_some)
            .then_some(self.config.max_age)
    }

    fn tick(&mut self, _: Option<&ReadyEndpoints<'_, ()>>, now: Instant) -> bool {
        self.age(now);
        false
    }
}
