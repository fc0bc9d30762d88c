//! weighted_round_robin (gRFC A58): round robin in which each READY endpoint gets calls in
//! proportion to its weight.
//!
//! Weights come from two places:
//!
//! - **Load reports** that backends send with their responses ([`LoadReport`], carried by a
//!   [`CallOutcome`]): an endpoint's weight is `qps / (utilization + eps / qps * penalty)`, so a
//!   backend that serves more per unit of load gets more. A reported weight counts only after the
//!   endpoint has reported continuously for `blackout_period` (from its first report, and again
//!   after it reconnects or its weight expired), and stops counting `weight_expiration_period`
//!   after its last report. Weights are recomputed every `weight_update_period`, on the core's
//!   clock. Endpoints without a usable report get the mean of those with one. At least two
//!   endpoints must have usable reports for reports to be used at all.
//! - **Static weights** a resolver gives ([`Attributes::weight`](crate::Attributes::weight)),
//!   used while fewer than two endpoints have usable load reports.
//!
//! When every weight is equal, it is plain round robin. Weights are clamped to between a tenth
//! and ten times their mean (as gRPC's implementations do), so no endpoint starves and a pick
//! never loops for long.
//!
//! The picker is gRPC's static stride scheduler: weights are scaled so the largest is 65,535; a
//! shared counter walks the endpoints as round robin does, and endpoint `i` on its `g`-th visit
//! is taken when `(w_i * g + 32767 * i) mod 65535 >= 65535 - w_i`, that is on `w_i` of every
//! 65,535 visits, evenly spread. The heaviest endpoint is taken on every visit, so a pick tries
//! at most as many entries as there are endpoints; with the clamp it averages at most ten tries,
//! each one relaxed atomic add. Endpoints are connected and aggregated by [`EndpointPolicy`],
//! as for round_robin.
//!
//! With `enable_oob_load_report`, weights come from out-of-band reports instead (ORCA's stream
//! per backend, gRFC A51, which the adapter opens and passes on with
//! [`Balancer::handle_load_report`](crate::Balancer::handle_load_report)), and reports that ride
//! on calls are ignored, as A58 says; the weight math, blackout and expiry are the same.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::address::Endpoint;
use crate::call::{CallOutcome, LoadReport};
use crate::hasher::FastMap;
use crate::notice::{EndpointLoad, LoadWeight, Notice, SubchannelWeight};
use crate::picker::Picker;
use crate::policy::endpoints::{EndpointKey, EndpointPolicy, ReadyEndpoints, Spread};
use crate::policy::{
    parse_bool, parse_millis, Controller, Policy, PolicyBuilder, PolicyConfig, PolicyDetails,
    PolicyParamError,
};
use crate::subchannel::SubchannelId;

mod picker;

use picker::{scale, WeightedPicker, MAX_WEIGHT};

/// The shortest weight update period (A58): shorter settings are raised to it.
pub const MIN_WEIGHT_UPDATE_PERIOD: Duration = Duration::from_millis(100);

/// Settings of weighted_round_robin, with A58's defaults.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WeightedRoundRobinConfig {
    /// How long an endpoint must have been reporting before its reported weight counts (10 s).
    pub blackout_period: Duration,
    /// How long a reported weight lasts without a fresh report (3 min).
    pub weight_expiration_period: Duration,
    /// How often weights are recomputed (1 s; at least 100 ms).
    pub weight_update_period: Duration,
    /// How much utilization an error ratio of 1 costs (1.0; negative or not finite counts as 0).
    pub error_utilization_penalty: f64,
    /// Weigh by out-of-band load reports instead of those that come with calls (false).
    pub enable_oob_load_report: bool,
    /// How often backends should send out-of-band reports (10 s). The core does not open the
    /// streams: the adapter asks its backends at the period it is given (for the gRPC channel,
    /// `GrpcChannelBuilder::orca_oob`).
    pub oob_reporting_period: Duration,
}

impl Default for WeightedRoundRobinConfig {
    fn default() -> Self {
        WeightedRoundRobinConfig {
            blackout_period: Duration::from_secs(10),
            weight_expiration_period: Duration::from_secs(180),
            weight_update_period: Duration::from_secs(1),
            error_utilization_penalty: 1.0,
            enable_oob_load_report: false,
            oob_reporting_period: Duration::from_secs(10),
        }
    }
}

impl WeightedRoundRobinConfig {
    /// Sets [`WeightedRoundRobinConfig::blackout_period`].
    pub fn blackout_period(mut self, period: Duration) -> Self {
        self.blackout_period = period;
        self
    }

    /// Sets [`WeightedRoundRobinConfig::weight_expiration_period`].
    pub fn weight_expiration_period(mut self, period: Duration) -> Self {
        self.weight_expiration_period = period;
        self
    }

    /// Sets [`WeightedRoundRobinConfig::weight_update_period`].
    pub fn weight_update_period(mut self, period: Duration) -> Self {
        self.weight_update_period = period;
        self
    }

    /// Sets [`WeightedRoundRobinConfig::error_utilization_penalty`].
    pub fn error_utilization_penalty(mut self, penalty: f64) -> Self {
        self.error_utilization_penalty = penalty;
        self
    }

    /// Sets [`WeightedRoundRobinConfig::enable_oob_load_report`].
    pub fn enable_oob_load_report(mut self, enable: bool) -> Self {
        self.enable_oob_load_report = enable;
        self
    }

    /// Sets [`WeightedRoundRobinConfig::oob_reporting_period`].
    pub fn oob_reporting_period(mut self, period: Duration) -> Self {
        self.oob_reporting_period = period;
        self
    }

    fn update_period(&self) -> Duration {
        self.weight_update_period.max(MIN_WEIGHT_UPDATE_PERIOD)
    }
}

impl PolicyBuilder for WeightedRoundRobinConfig {
    fn name(&self) -> &str {
        "weighted_round_robin"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(EndpointPolicy::new(Weights::new(self.clone())))
    }

    /// Takes `blackout_period_ms`, `weight_expiration_period_ms`, `weight_update_period_ms`,
    /// `error_utilization_penalty` (a number at least 0), `enable_oob_load_report` and
    /// `oob_reporting_period_ms`.
    fn with_params(&self, params: &[(String, String)]) -> Result<PolicyConfig, PolicyParamError> {
        let mut config = self.clone();
        for (key, value) in params {
            match key.as_str() {
                "blackout_period_ms" => {
                    config.blackout_period = parse_millis(self.name(), key, value)?
                }
                "weight_expiration_period_ms" => {
                    config.weight_expiration_period = parse_millis(self.name(), key, value)?;
                }
                "weight_update_period_ms" => {
                    config.weight_update_period = parse_millis(self.name(), key, value)?;
                }
                "error_utilization_penalty" => {
                    config.error_utilization_penalty = match value.parse::<f64>() {
                        Ok(penalty) if penalty.is_finite() && penalty >= 0.0 => penalty,
                        _ => {
                            return Err(PolicyParamError::invalid_value(
                                self.name(),
                                key,
                                value,
                                "a number at least 0",
                            ))
                        }
                    };
                }
                "enable_oob_load_report" => {
                    config.enable_oob_load_report = parse_bool(self.name(), key, value)?;
                }
                "oob_reporting_period_ms" => {
                    config.oob_reporting_period = parse_millis(self.name(), key, value)?;
                }
                other => {
                    return Err(PolicyParamError::unknown_parameter(
                        self.name(),
                        other,
                        "blackout_period_ms, weight_expiration_period_ms, \
                         weight_update_period_ms, error_utilization_penalty, \
                         enable_oob_load_report, oob_reporting_period_ms",
                    ))
                }
            }
        }
        Ok(PolicyConfig::new(config))
    }
}

/// One endpoint's weight as its load reports set it, with A58's two timestamps.
#[derive(Debug, Default)]
struct Reported {
    weight: f64,
    /// When the current run of non-empty reports began; `None` until one arrives, and again
    /// after the endpoint reconnects or its weight expires.
    non_empty_since: Option<Instant>,
    /// When the last non-empty report arrived.
    last_updated: Option<Instant>,
    /// The weight counted when the weights were last computed (past its blackout, not expired).
    counted: bool,
}

impl Reported {
    fn update(&mut self, weight: f64, now: Instant) {
        if weight <= 0.0 {
            return; // an empty report changes nothing
        }
        self.non_empty_since.get_or_insert(now);
        self.last_updated = Some(now);
        self.weight = weight;
    }

    /// The weight at `now`: not yet usable during the blackout, stale once expired.
    fn current(&mut self, now: Instant, config: &WeightedRoundRobinConfig) -> LoadWeight {
        let Some(last) = self.last_updated else {
            return LoadWeight::NotYetUsable;
        };
        if now.saturating_duration_since(last) >= config.weight_expiration_period {
            self.non_empty_since = None;
            return LoadWeight::Stale;
        }
        match self.non_empty_since {
            Some(since) if now.saturating_duration_since(since) >= config.blackout_period => {
                LoadWeight::Usable(self.weight)
            }
            Some(_) => LoadWeight::NotYetUsable,
            // Reconnected since: the blackout starts again with the next report.
            None if config.blackout_period.is_zero() => LoadWeight::Usable(self.weight),
            None => LoadWeight::NotYetUsable,
        }
    }

    /// Whether the weight may still change with time alone (blackout ending, or expiry).
    fn ticking(&self, now: Instant, config: &WeightedRoundRobinConfig) -> bool {
        self.last_updated.is_some_and(|last| {
            now.saturating_duration_since(last) < config.weight_expiration_period
        })
    }
}

/// weighted_round_robin's spread: settings, reported weights by endpoint, and the scaled
/// weights last published. Beside each endpoint it keeps the static weight the resolver gave.
#[derive(Debug)]
pub(crate) struct Weights {
    config: WeightedRoundRobinConfig,
    reported: FastMap<EndpointKey, Reported>,
    /// The scaled weights in the current picker, in its order; empty for plain round robin.
    published: Vec<u16>,
    /// The weight an endpoint without a usable report got when the weights were last computed
    /// from reports (the mean of those with one); `None` when they came from static weights.
    by_reports: Option<f64>,
    /// What each endpoint's reports gave it when the weights were last computed, in the order
    /// of the READY endpoints then.
    loads: Vec<LoadWeight>,
}

/// A READY endpoint as the picker is built from it: its key, subchannel and static weight.
type WeightedEntry = (EndpointKey, SubchannelId, u32);

/// The READY endpoints as the picker is built from them.
fn entries(ready: &ReadyEndpoints<'_, u32>) -> Vec<WeightedEntry> {
    ready
        .iter()
        .map(|endpoint| (endpoint.key, endpoint.subchannel, *endpoint.kept))
        .collect()
}

impl Weights {
    fn new(config: WeightedRoundRobinConfig) -> Self {
        Weights {
            config,
            reported: FastMap::default(),
            published: Vec::new(),
            by_reports: None,
            loads: Vec::new(),
        }
    }

    /// A call to endpoint `key` ended, perhaps with a load report. Returns whether it recorded a
    /// weight (only then can the weights start changing with time). Ignored when weights come
    /// from out-of-band reports.
    fn in_band(&mut self, key: EndpointKey, outcome: &CallOutcome, now: Instant) -> bool {
        !self.config.enable_oob_load_report
            && outcome
                .load
                .as_ref()
                .is_some_and(|report| self.report(key, report, now))
    }

    /// Endpoint `key`'s backend sent an out-of-band load report. Returns whether it recorded a
    /// weight; ignored unless weights come from out-of-band reports.
    fn out_of_band(&mut self, key: EndpointKey, report: &LoadReport, now: Instant) -> bool {
        self.config.enable_oob_load_report && self.report(key, report, now)
    }

    fn report(&mut self, key: EndpointKey, report: &LoadReport, now: Instant) -> bool {
        let weight = report.weight(self.config.error_utilization_penalty);
        if weight > 0.0 {
            self.reported.entry(key).or_default().update(weight, now);
        }
        weight > 0.0
    }

    /// Whether any reported weight may still change with time alone.
    fn ticking(&self, now: Instant) -> bool {
        self.reported
            .values()
            .any(|reported| reported.ticking(now, &self.config))
    }

    /// The scaled weights for `ready` at `now`; empty means plain round robin.
    fn scaled(&mut self, ready: &[WeightedEntry], now: Instant) -> Vec<u16> {
        let Weights {
            config,
            reported,
            loads,
            ..
        } = self;
        loads.clear();
        loads.extend(ready.iter().map(|(key, _, _)| {
            reported
                .get_mut(key)
                .map_or(LoadWeight::NotYetUsable, |reported| {
                    let weight = reported.current(now, config);
                    reported.counted = matches!(weight, LoadWeight::Usable(_));
                    weight
                })
        }));
        let reported: Vec<f64> = loads.iter().map(|load| load.value()).collect();
        let (known, sum) = reported
            .iter()
            .filter(|w| **w > 0.0)
            .fold((0usize, 0.0), |(known, sum), w| (known + 1, sum + w));
        if known >= 2 {
            self.by_reports = Some(sum / known as f64);
            scale(&reported)
        } else {
            self.by_reports = None;
            let statics: Vec<f64> = ready.iter().map(|(_, _, w)| f64::from(*w)).collect();
            scale(&statics)
        }
    }

    /// Whether the weights for `ready` at `now` differ from the published ones.
    fn changed(&mut self, ready: &[WeightedEntry], now: Instant) -> bool {
        self.scaled(ready, now) != self.published
    }

    /// The picker for `ready` at `now`, its counter starting at `start`.
    fn weighted_picker(
        &mut self,
        ready: &[WeightedEntry],
        now: Instant,
        start: u32,
    ) -> WeightedPicker {
        self.published = self.scaled(ready, now);
        let entries: Vec<(SubchannelId, u16)> = if self.published.is_empty() {
            ready.iter().map(|(_, id, _)| (*id, MAX_WEIGHT)).collect()
        } else {
            ready
                .iter()
                .zip(&self.published)
                .map(|((_, id, _), weight)| (*id, *weight))
                .collect()
        };
        WeightedPicker::new(entries, start)
    }
}

impl Spread for Weights {
    type Endpoint = u32;

    fn reconfigure(&mut self, config: &PolicyConfig) -> bool {
        config.replace(&mut self.config)
    }

    fn add_endpoint(&mut self, _: EndpointKey, endpoint: &Endpoint) -> u32 {
        endpoint.attributes().weight()
    }

    fn update_endpoint(&mut self, _: EndpointKey, weight: &mut u32, endpoint: &Endpoint) -> bool {
        let listed = endpoint.attributes().weight();
        let changed = *weight != listed;
        *weight = listed;
        changed
    }

    /// An endpoint READY again starts its blackout over.
    fn ready_changed(&mut self, key: EndpointKey, _: &mut u32, ready: Option<SubchannelId>) {
        if ready.is_some() {
            if let Some(reported) = self.reported.get_mut(&key) {
                reported.non_empty_since = None;
            }
        }
    }

    fn remove_endpoint(&mut self, key: EndpointKey, _: u32) {
        self.reported.remove(&key);
    }

    fn picker(
        &mut self,
        ready: &ReadyEndpoints<'_, u32>,
        ctl: &mut dyn Controller,
    ) -> Arc<dyn Picker> {
        let entries = entries(ready);
        let start = ctl.rng().next_u64() as u32;
        let before = ctl.notices_enabled().then(|| self.published.clone());
        let picker = self.weighted_picker(&entries, ctl.now(), start);
        if before.is_some_and(|before| before != self.published) {
            let weights = picker
                .ready
                .iter()
                .filter_map(|&(id, weight)| {
                    let address = ctl.subchannel_address(id)?;
                    Some(SubchannelWeight::new(id, address, weight))
                })
                .collect();
            ctl.notify(Notice::WeightsUpdated { weights });
        }
        if ctl.notices_enabled() {
            let endpoints = entries
                .iter()
                .zip(&self.loads)
                .filter_map(|(&(_, id, _), &weight)| {
                    let address = ctl.subchannel_address(id)?;
                    Some(EndpointLoad::new(id, address, weight))
                })
                .collect();
            let fallback = self.by_reports.is_none();
            ctl.notify(Notice::SchedulerUpdated {
                endpoints,
                fallback,
            });
        }
        Arc::new(picker)
    }

    fn describe_subchannel(
        &self,
        _: SubchannelId,
        endpoint: Option<(EndpointKey, &u32)>,
        details: &mut PolicyDetails,
    ) {
        let Some((key, static_weight)) = endpoint else {
            return;
        };
        details.weight = Some(match self.by_reports {
            Some(mean) => self
                .reported
                .get(&key)
                .filter(|reported| reported.counted)
                .map_or(mean, |reported| reported.weight),
            None => f64::from(*static_weight),
        });
    }

    fn wants_call_outcomes(&self) -> bool {
        true
    }

    fn call_finished(
        &mut self,
        _: SubchannelId,
        endpoint: Option<(EndpointKey, &mut u32)>,
        outcome: &CallOutcome,
        now: Instant,
    ) -> bool {
        endpoint.is_some_and(|(key, _)| self.in_band(key, outcome, now))
    }

    fn load_report(
        &mut self,
        _: SubchannelId,
        endpoint: Option<(EndpointKey, &mut u32)>,
        report: &LoadReport,
        now: Instant,
    ) -> bool {
        endpoint.is_some_and(|(key, _)| self.out_of_band(key, report, now))
    }

    /// While reported weights may change with time alone, they are recomputed every period.
    fn tick_period(&self, now: Instant) -> Option<Duration> {
        self.ticking(now).then(|| self.config.update_period())
    }

    fn tick(&mut self, ready: Option<&ReadyEndpoints<'_, u32>>, now: Instant) -> bool {
        ready.is_some_and(|ready| self.changed(&entries(ready), now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_weights_wait_out_the_blackout_and_expire() {
        let config = WeightedRoundRobinConfig::default();
        let t0 = Instant::now();
        let mut reported = Reported::default();
        let at = |reported: &mut Reported, secs| {
            reported.current(t0 + Duration::from_secs(secs), &config)
        };
        assert_eq!(at(&mut reported, 0), LoadWeight::NotYetUsable);
        reported.update(100.0, t0);
        assert_eq!(at(&mut reported, 9), LoadWeight::NotYetUsable);
        assert_eq!(at(&mut reported, 10), LoadWeight::Usable(100.0));
        reported.update(50.0, t0 + Duration::from_secs(20));
        assert_eq!(at(&mut reported, 30), LoadWeight::Usable(50.0));
        // Three minutes after the last report the weight is gone, and the blackout starts again.
        assert_eq!(at(&mut reported, 200), LoadWeight::Stale);
        reported.update(70.0, t0 + Duration::from_secs(201));
        assert_eq!(at(&mut reported, 205), LoadWeight::NotYetUsable);
        assert_eq!(at(&mut reported, 211), LoadWeight::Usable(70.0));
    }
}
