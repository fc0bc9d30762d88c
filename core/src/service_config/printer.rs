//! Writing a parsed service config back as JSON, in the form the parser reads: every setting
//! explicit, durations as protobuf strings, policies under gRPC's current names.
//!
//! What the typed values do not keep is not written: weighted_round_robin's out-of-band
//! reporting fields (croupier ignores them) and unknown fields. Parsing the output gives the
//! same config again.

use serde_json::{json, Map, Value};

use crate::policy::OutlierDetectionConfig;
use crate::retry::{CallPolicy, CodeSet};

use super::config::{LoadBalancingConfig, RetryThrottling, ServiceConfig};
use super::duration::format_duration;
use super::method::{MethodConfig, MethodName};

impl ServiceConfig {
    /// This config as JSON that parses back to it (see the [module docs](super)).
    pub fn to_json(&self) -> Value {
        let mut fields = Map::new();
        if let Some(policy) = &self.load_balancing {
            fields.insert("loadBalancingConfig".into(), json!([policy.to_json()]));
        }
        if !self.methods.is_empty() {
            let entries = self
                .methods
                .iter()
                .map(|(name, config)| method_config(name, config));
            fields.insert("methodConfig".into(), entries.collect());
        }
        if let Some(throttling) = &self.retry_throttling {
            fields.insert("retryThrottling".into(), retry_throttling(throttling));
        }
        if let Some(service) = &self.health_check_service_name {
            fields.insert(
                "healthCheckConfig".into(),
                json!({ "serviceName": service }),
            );
        }
        Value::Object(fields)
    }
}

impl LoadBalancingConfig {
    /// This policy as one `loadBalancingConfig` entry: `{"name": {settings}}`.
    pub fn to_json(&self) -> Value {
        let settings = match self {
            LoadBalancingConfig::PickFirst(config) => {
                json!({ "shuffleAddressList": config.shuffle_address_list })
            }
            LoadBalancingConfig::RoundRobin(_) | LoadBalancingConfig::Random(_) => json!({}),
            LoadBalancingConfig::LeastRequest(config) => {
                json!({ "choiceCount": config.choice_count })
            }
            LoadBalancingConfig::WeightedRoundRobin(config) => json!({
                "blackoutPeriod": format_duration(config.blackout_period),
                "weightExpirationPeriod": format_duration(config.weight_expiration_period),
                "weightUpdatePeriod": format_duration(config.weight_update_period),
                "errorUtilizationPenalty": config.error_utilization_penalty,
            }),
            LoadBalancingConfig::PeakEwma(config) => json!({
                "decay": format_duration(config.decay),
                "defaultRtt": format_duration(config.default_rtt),
            }),
            LoadBalancingConfig::LeastLatency(config) => json!({
                "choiceCount": config.choice_count,
                "rise": config.rise,
                "fall": config.fall,
                "drift": format_duration(config.drift),
                "defaultServiceTime": format_duration(config.default_service_time),
            }),
            LoadBalancingConfig::RingHash(config) => json!({
                "minRingSize": config.min_ring_size,
                "maxRingSize": config.max_ring_size,
                "requestHashHeader": config.hash_header().map_or("", |header| header.as_str()),
            }),
            LoadBalancingConfig::OutlierDetection { config, child } => {
                outlier_detection(config, child)
            }
            LoadBalancingConfig::Priority { config, children } => {
                super::trees::print_priority(config, children)
            }
            LoadBalancingConfig::WeightedTarget { config, targets } => {
                super::trees::print_weighted_target(config, targets)
            }
            LoadBalancingConfig::RandomSubsetting { config, child } => {
                super::trees::print_random_subsetting(config, child)
            }
            LoadBalancingConfig::Custom(custom) => custom.json().clone(),
        };
        let mut entry = Map::new();
        entry.insert(self.json_name().to_owned(), settings);
        Value::Object(entry)
    }
}

fn outlier_detection(config: &OutlierDetectionConfig, child: &LoadBalancingConfig) -> Value {
    let mut fields = json!({
        "interval": format_duration(config.interval),
        "baseEjectionTime": format_duration(config.base_ejection_time),
        "maxEjectionTime": format_duration(config.max_ejection_time),
        "maxEjectionPercent": config.max_ejection_percent,
        "childPolicy": [child.to_json()],
    });
    if let Some(success) = &config.success_rate_ejection {
        fields["successRateEjection"] = numbers(&[
            ("stdevFactor", success.stdev_factor),
            ("enforcementPercentage", success.enforcement_percentage),
            ("minimumHosts", success.minimum_hosts),
            ("requestVolume", success.request_volume),
        ]);
    }
    if let Some(failure) = &config.failure_percentage_ejection {
        fields["failurePercentageEjection"] = numbers(&[
            ("threshold", failure.threshold),
            ("enforcementPercentage", failure.enforcement_percentage),
            ("minimumHosts", failure.minimum_hosts),
            ("requestVolume", failure.request_volume),
        ]);
    }
    fields
}

/// An object of numeric fields.
fn numbers(fields: &[(&str, u32)]) -> Value {
    let fields = fields
        .iter()
        .map(|(key, value)| ((*key).to_owned(), json!(value)));
    Value::Object(fields.collect())
}

/// One name's settings as a `methodConfig` entry of its own.
fn method_config(name: &MethodName, config: &MethodConfig) -> Value {
    let name = match name {
        MethodName::Method { service, method } => json!({ "service": service, "method": method }),
        MethodName::Service(service) => json!({ "service": service }),
        MethodName::Default => json!({}),
    };
    let mut fields = json!({ "name": [name] });
    if let Some(timeout) = config.timeout {
        fields["timeout"] = json!(format_duration(timeout));
    }
    if let Some(wait) = config.wait_for_ready {
        fields["waitForReady"] = json!(wait);
    }
    if let Some(bytes) = config.max_request_message_bytes {
        fields["maxRequestMessageBytes"] = json!(bytes);
    }
    if let Some(bytes) = config.max_response_message_bytes {
        fields["maxResponseMessageBytes"] = json!(bytes);
    }
    match &config.call_policy {
        CallPolicy::Retry(retry) => {
            fields["retryPolicy"] = json!({
                "maxAttempts": retry.configured_max_attempts(),
                "initialBackoff": format_duration(retry.initial_backoff()),
                "maxBackoff": format_duration(retry.max_backoff()),
                "backoffMultiplier": retry.backoff_multiplier(),
                "retryableStatusCodes": codes(retry.retryable_status_codes()),
            });
            if let Some(timeout) = retry.per_attempt_recv_timeout() {
                fields["retryPolicy"]["perAttemptRecvTimeout"] = json!(format_duration(timeout));
            }
        }
        CallPolicy::Hedging(hedging) => {
            fields["hedgingPolicy"] = json!({
                "maxAttempts": hedging.configured_max_attempts(),
                "hedgingDelay": format_duration(hedging.hedging_delay()),
                "nonFatalStatusCodes": codes(hedging.non_fatal_status_codes()),
            });
        }
        CallPolicy::None => {}
    }
    fields
}

fn codes(set: CodeSet) -> Value {
    set.iter().map(|code| json!(code.as_str())).collect()
}

fn retry_throttling(throttling: &RetryThrottling) -> Value {
    json!({
        "maxTokens": throttling.max_tokens,
        "tokenRatio": throttling.token_ratio(),
    })
}
