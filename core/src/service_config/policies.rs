//! The built-in policies' configs in gRPC's JSON form (field names and defaults from gRFCs A62,
//! A58, A48, A42/A76 and A50), read into croupier's config structs; the tree policies' are in
//! `trees`.

use std::time::Duration;

use crate::policy::ring_hash::MAX_RING_SIZE_CAP;
use crate::policy::{
    FailurePercentageEjection, LeastLatencyConfig, LeastRequestConfig, OutlierDetectionConfig,
    PeakEwmaConfig, PickFirstConfig, RandomConfig, RingHashConfig, RoundRobinConfig,
    SuccessRateEjection, WeightedRoundRobinConfig,
};

use super::config::LoadBalancingConfig;
use super::error::ServiceConfigError;
use super::json::{Node, Object};
use super::registry::ServiceConfigParser;
use super::trees;

type Result<T> = std::result::Result<T, ServiceConfigError>;

/// Reads one built-in policy's config.
pub(crate) type BuiltinParser = fn(&ServiceConfigParser, &Node<'_>) -> Result<LoadBalancingConfig>;

/// Every built-in policy by the names gRPC and croupier know it by.
pub(crate) fn builtins() -> [(&'static str, BuiltinParser); 17] {
    [
        ("pick_first", pick_first),
        ("round_robin", round_robin),
        ("random", random),
        ("least_request", least_request),
        ("least_request_experimental", least_request),
        ("weighted_round_robin", weighted_round_robin),
        ("p2c_ewma", p2c_ewma),
        ("least_latency", least_latency),
        ("ring_hash", ring_hash),
        ("ring_hash_experimental", ring_hash),
        ("outlier_detection", outlier_detection),
        ("outlier_detection_experimental", outlier_detection),
        ("priority", trees::priority),
        ("priority_experimental", trees::priority),
        ("weighted_target", trees::weighted_target),
        ("weighted_target_experimental", trees::weighted_target),
        ("random_subsetting", trees::random_subsetting),
    ]
}

/// A percentage: a whole number from 0 to 100.
fn percent(node: &Node<'_>) -> Result<u32> {
    match node.u32()? {
        p if p <= 100 => Ok(p),
        p => Err(node.invalid(format!("is a percentage, at most 100, got {p}"))),
    }
}

/// `pick_first` (gRFC A62): `shuffleAddressList`.
fn pick_first(_: &ServiceConfigParser, node: &Node<'_>) -> Result<LoadBalancingConfig> {
    let fields = node.object()?;
    let mut config = PickFirstConfig::default();
    if let Some(shuffle) = fields.opt("shuffleAddressList", Node::bool)? {
        config = config.shuffle_address_list(shuffle);
    }
    Ok(LoadBalancingConfig::PickFirst(config))
}

/// `round_robin`: no settings.
fn round_robin(_: &ServiceConfigParser, node: &Node<'_>) -> Result<LoadBalancingConfig> {
    node.object()?;
    Ok(LoadBalancingConfig::RoundRobin(RoundRobinConfig::default()))
}

/// `random`: no settings.
fn random(_: &ServiceConfigParser, node: &Node<'_>) -> Result<LoadBalancingConfig> {
    node.object()?;
    Ok(LoadBalancingConfig::Random(RandomConfig::default()))
}

/// `least_request` (gRFC A48): `choiceCount`, at least 2; more than 10 is taken as 10.
fn least_request(_: &ServiceConfigParser, node: &Node<'_>) -> Result<LoadBalancingConfig> {
    let fields = node.object()?;
    let mut config = LeastRequestConfig::default();
    if let Some(count) = fields.get("choiceCount") {
        let choices = count.u32()?;
        if choices < 2 {
            return Err(count.invalid(format!("must be at least 2, got {choices}")));
        }
        config = config.choice_count(choices.min(10));
    }
    Ok(LoadBalancingConfig::LeastRequest(config))
}

/// The shortest weight update period A58 allows; shorter ones are taken as this.
const MIN_WEIGHT_UPDATE_PERIOD: Duration = Duration::from_millis(100);

/// `weighted_round_robin` (gRFC A58). `enableOobLoadReport` and `oobReportingPeriod` are checked
/// and then ignored: croupier learns load from call outcomes only.
fn weighted_round_robin(_: &ServiceConfigParser, node: &Node<'_>) -> Result<LoadBalancingConfig> {
    let fields = node.object()?;
    let mut config = WeightedRoundRobinConfig::default();
    fields.opt("enableOobLoadReport", Node::bool)?;
    fields.opt("oobReportingPeriod", Node::duration)?;
    if let Some(period) = fields.opt("blackoutPeriod", Node::duration)? {
        config = config.blackout_period(period);
    }
    if let Some(period) = fields.opt("weightExpirationPeriod", Node::duration)? {
        config = config.weight_expiration_period(period);
    }
    if let Some(period) = fields.opt("weightUpdatePeriod", Node::duration)? {
        config = config.weight_update_period(period.max(MIN_WEIGHT_UPDATE_PERIOD));
    }
    if let Some(penalty) = fields.get("errorUtilizationPenalty") {
        let value = penalty.f64()?;
        if value < 0.0 {
            return Err(penalty.invalid(format!("must not be negative, got {value}")));
        }
        config = config.error_utilization_penalty(value);
    }
    Ok(LoadBalancingConfig::WeightedRoundRobin(config))
}

/// croupier's `p2c_ewma`: `decay` and `defaultRtt`, both durations.
fn p2c_ewma(_: &ServiceConfigParser, node: &Node<'_>) -> Result<LoadBalancingConfig> {
    let fields = node.object()?;
    let mut config = PeakEwmaConfig::default();
    if let Some(decay) = fields.opt("decay", Node::duration)? {
        config = config.decay(decay);
    }
    if let Some(rtt) = fields.opt("defaultRtt", Node::duration)? {
        config = config.default_rtt(rtt);
    }
    Ok(LoadBalancingConfig::PeakEwma(config))
}

/// croupier's `least_latency`: `choiceCount` (2 to 16), `rise` and `fall` (0 to 1), `drift` and
/// `defaultServiceTime` (durations).
fn least_latency(_: &ServiceConfigParser, node: &Node<'_>) -> Result<LoadBalancingConfig> {
    let fields = node.object()?;
    let mut config = LeastLatencyConfig::default();
    if let Some(count) = fields.get("choiceCount") {
        let choices = count.u32()?;
        if !(2..=16).contains(&choices) {
            return Err(count.invalid(format!("must be from 2 to 16, got {choices}")));
        }
        config = config.choice_count(choices);
    }
    for key in ["rise", "fall"] {
        if let Some(weight) = fields.get(key) {
            let value = weight.f64()?;
            if !(0.0..=1.0).contains(&value) {
                return Err(weight.invalid(format!("must be from 0 to 1, got {value}")));
            }
            config = if key == "rise" {
                config.rise(value)
            } else {
                config.fall(value)
            };
        }
    }
    if let Some(drift) = fields.opt("drift", Node::duration)? {
        config = config.drift(drift);
    }
    if let Some(time) = fields.opt("defaultServiceTime", Node::duration)? {
        config = config.default_service_time(time);
    }
    Ok(LoadBalancingConfig::LeastLatency(config))
}

/// `ring_hash` (gRFC A42, A76): `minRingSize` and `maxRingSize` from 1 to 8M with the smallest no
/// larger than the largest, and `requestHashHeader`.
fn ring_hash(_: &ServiceConfigParser, node: &Node<'_>) -> Result<LoadBalancingConfig> {
    let fields = node.object()?;
    let mut config = RingHashConfig::default();
    let size = |key| -> Result<Option<u64>> {
        let Some(size) = fields.get(key) else {
            return Ok(None);
        };
        match size.u64()? {
            entries @ 1..=MAX_RING_SIZE_CAP => Ok(Some(entries)),
            entries => Err(size.invalid(format!(
                "must be from 1 to {MAX_RING_SIZE_CAP}, got {entries}"
            ))),
        }
    };
    if let Some(min) = size("minRingSize")? {
        config = config.min_ring_size(min);
    }
    if let Some(max) = size("maxRingSize")? {
        config = config.max_ring_size(max);
    }
    if config.min_ring_size > config.max_ring_size {
        return Err(node.invalid(format!(
            "minRingSize ({}) must not be larger than maxRingSize ({})",
            config.min_ring_size, config.max_ring_size
        )));
    }
    if let Some(header) = fields.get("requestHashHeader") {
        config = config
            .request_hash_header(header.string()?)
            .map_err(|error| header.invalid(error.to_string()))?;
    }
    Ok(LoadBalancingConfig::RingHash(config))
}

/// `outlier_detection` (gRFC A50): the timings, the two ejection algorithms (each on only if its
/// object is present) and `childPolicy`, a `loadBalancingConfig` list of its own (required).
fn outlier_detection(parser: &ServiceConfigParser, node: &Node<'_>) -> Result<LoadBalancingConfig> {
    let fields = node.object()?;
    let child_list = fields
        .get("childPolicy")
        .ok_or_else(|| node.invalid("childPolicy is required"))?;
    let child = parser.choose(&child_list)?;
    let mut config = OutlierDetectionConfig::new(child.policy())
        .success_rate_ejection(None)
        .failure_percentage_ejection(None);
    if let Some(interval) = fields.opt("interval", Node::duration)? {
        config = config.interval(interval);
    }
    if let Some(time) = fields.opt("baseEjectionTime", Node::duration)? {
        config = config.base_ejection_time(time);
    }
    if let Some(time) = fields.opt("maxEjectionTime", Node::duration)? {
        config = config.max_ejection_time(time);
    }
    if let Some(percent) = fields.opt("maxEjectionPercent", percent)? {
        config = config.max_ejection_percent(percent);
    }
    if let Some(settings) = fields.get("successRateEjection") {
        config = config.success_rate_ejection(Some(success_rate(&settings.object()?)?));
    }
    if let Some(settings) = fields.get("failurePercentageEjection") {
        let settings = failure_percentage(&settings.object()?)?;
        config = config.failure_percentage_ejection(Some(settings));
    }
    Ok(LoadBalancingConfig::OutlierDetection {
        config: Box::new(config),
        child: Box::new(child),
    })
}

/// `enforcementPercentage`, `minimumHosts` and `requestVolume`, which both algorithms have, over
/// the defaults given.
fn shared_fields(fields: &Object<'_>, defaults: [u32; 3]) -> Result<[u32; 3]> {
    let [enforcement, hosts, volume] = defaults;
    Ok([
        fields
            .opt("enforcementPercentage", percent)?
            .unwrap_or(enforcement),
        fields.opt("minimumHosts", Node::u32)?.unwrap_or(hosts),
        fields.opt("requestVolume", Node::u32)?.unwrap_or(volume),
    ])
}

fn success_rate(fields: &Object<'_>) -> Result<SuccessRateEjection> {
    let defaults = SuccessRateEjection::default();
    let factor = fields
        .opt("stdevFactor", Node::u32)?
        .unwrap_or(defaults.stdev_factor);
    let [enforcement, hosts, volume] = shared_fields(
        fields,
        [
            defaults.enforcement_percentage,
            defaults.minimum_hosts,
            defaults.request_volume,
        ],
    )?;
    Ok(defaults
        .stdev_factor(factor)
        .enforcement_percentage(enforcement)
        .minimum_hosts(hosts)
        .request_volume(volume))
}

fn failure_percentage(fields: &Object<'_>) -> Result<FailurePercentageEjection> {
    let defaults = FailurePercentageEjection::default();
    let threshold = fields
        .opt("threshold", percent)?
        .unwrap_or(defaults.threshold);
    // A50: enforcement defaults to 100 once the algorithm is configured at all.
    let [enforcement, hosts, volume] = shared_fields(
        fields,
        [100, defaults.minimum_hosts, defaults.request_volume],
    )?;
    Ok(defaults
        .threshold(threshold)
        .enforcement_percentage(enforcement)
        .minimum_hosts(hosts)
        .request_volume(volume))
}
