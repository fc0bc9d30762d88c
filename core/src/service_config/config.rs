//! The typed service config: what a parsed JSON service config says.

use crate::policy::{
    LeastLatencyConfig, LeastRequestConfig, OutlierDetectionConfig, PeakEwmaConfig,
    PickFirstConfig, PolicyConfig, PriorityConfig, RandomConfig, RandomSubsettingConfig,
    RingHashConfig, RoundRobinConfig, WeightedRoundRobinConfig, WeightedTargetConfig,
};
use crate::retry::{RetryPolicyError, RetryThrottle};

use super::method::MethodConfigs;

/// A service config (grpc/grpc `doc/service_config.md`), parsed and validated: the policy to
/// balance with, per-method call settings, retry throttling and the health-check service.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// The policy chosen by `loadBalancingConfig` (or the older `loadBalancingPolicy`); `None`
    /// when the config names none, which leaves the choice to the channel.
    pub load_balancing: Option<LoadBalancingConfig>,
    /// The `methodConfig` entries, looked up by call path.
    pub methods: MethodConfigs,
    /// `retryThrottling`, if set.
    pub retry_throttling: Option<RetryThrottling>,
    /// `healthCheckConfig.serviceName`: the service a client-side health check (gRFC A17) asks
    /// about, if set (the empty string names the server as a whole).
    pub health_check_service_name: Option<String>,
}

impl ServiceConfig {
    /// The chosen policy as a balancer takes it, if the config chose one.
    pub fn policy(&self) -> Option<PolicyConfig> {
        self.load_balancing
            .as_ref()
            .map(LoadBalancingConfig::policy)
    }
}

/// The load-balancing policy a service config chose, with its settings in croupier's types.
///
/// Built-in policies keep their typed settings so they can be read and compared; a policy
/// registered with [`ServiceConfigParser::policy`](super::ServiceConfigParser::policy) is
/// [`LoadBalancingConfig::Custom`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum LoadBalancingConfig {
    /// `pick_first`.
    PickFirst(PickFirstConfig),
    /// `round_robin`.
    RoundRobin(RoundRobinConfig),
    /// croupier's `random`.
    Random(RandomConfig),
    /// `least_request` (or `least_request_experimental`).
    LeastRequest(LeastRequestConfig),
    /// `weighted_round_robin`. Its `enableOobLoadReport` and `oobReportingPeriod` are read and
    /// checked but have no effect: croupier takes load reports from call outcomes only.
    WeightedRoundRobin(WeightedRoundRobinConfig),
    /// croupier's `p2c_ewma`.
    PeakEwma(PeakEwmaConfig),
    /// croupier's `least_latency`.
    LeastLatency(LeastLatencyConfig),
    /// `ring_hash` (or `ring_hash_experimental`).
    RingHash(RingHashConfig),
    /// `outlier_detection` (or `outlier_detection_experimental`) around `child`.
    OutlierDetection {
        /// The settings; their `child_policy` is `child`'s policy.
        config: Box<OutlierDetectionConfig>,
        /// The child policy `childPolicy` chose.
        child: Box<LoadBalancingConfig>,
    },
    /// `priority_experimental` (gRFC A56).
    Priority {
        /// The settings; child `i`'s policy is `children[i]`'s.
        config: Box<PriorityConfig>,
        /// Each child's `config`, in priority order.
        children: Vec<LoadBalancingConfig>,
    },
    /// `weighted_target_experimental`.
    WeightedTarget {
        /// The settings; target `i`'s policy is `targets[i]`'s.
        config: Box<WeightedTargetConfig>,
        /// Each target's `childPolicy`, in the order of the config's targets (by name).
        targets: Vec<LoadBalancingConfig>,
    },
    /// `random_subsetting` (gRFC A68) around `child`.
    RandomSubsetting {
        /// The settings; their `child_policy` is `child`'s policy.
        config: Box<RandomSubsettingConfig>,
        /// The child policy `childPolicy` chose.
        child: Box<LoadBalancingConfig>,
    },
    /// A policy parsed by a registered parser.
    Custom(CustomPolicy),
}

/// A policy read by a parser registered with
/// [`ServiceConfigParser::policy`](super::ServiceConfigParser::policy): the name it was chosen
/// by, its JSON config as written, and the policy the parser made of it.
#[derive(Clone, Debug)]
pub struct CustomPolicy {
    name: String,
    json: serde_json::Value,
    policy: PolicyConfig,
}

impl CustomPolicy {
    pub(crate) fn new(name: &str, json: &serde_json::Value, policy: PolicyConfig) -> Self {
        CustomPolicy {
            name: name.to_owned(),
            json: json.clone(),
            policy,
        }
    }

    /// The name the `loadBalancingConfig` entry chose it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its config, as the service config held it.
    pub fn json(&self) -> &serde_json::Value {
        &self.json
    }

    /// The policy its parser made.
    pub fn policy(&self) -> &PolicyConfig {
        &self.policy
    }
}

impl LoadBalancingConfig {
    /// The policy's name in croupier (`ring_hash`, also for `ring_hash_experimental`); a custom
    /// policy's registered name.
    pub fn name(&self) -> &str {
        match self {
            LoadBalancingConfig::PickFirst(_) => "pick_first",
            LoadBalancingConfig::RoundRobin(_) => "round_robin",
            LoadBalancingConfig::Random(_) => "random",
            LoadBalancingConfig::LeastRequest(_) => "least_request",
            LoadBalancingConfig::WeightedRoundRobin(_) => "weighted_round_robin",
            LoadBalancingConfig::PeakEwma(_) => "p2c_ewma",
            LoadBalancingConfig::LeastLatency(_) => "least_latency",
            LoadBalancingConfig::RingHash(_) => "ring_hash",
            LoadBalancingConfig::OutlierDetection { .. } => "outlier_detection",
            LoadBalancingConfig::Priority { .. } => "priority",
            LoadBalancingConfig::WeightedTarget { .. } => "weighted_target",
            LoadBalancingConfig::RandomSubsetting { .. } => "random_subsetting",
            LoadBalancingConfig::Custom(custom) => custom.name(),
        }
    }

    /// The policy as a balancer takes it.
    pub fn policy(&self) -> PolicyConfig {
        match self {
            LoadBalancingConfig::PickFirst(config) => PolicyConfig::new(config.clone()),
            LoadBalancingConfig::RoundRobin(config) => PolicyConfig::new(config.clone()),
            LoadBalancingConfig::Random(config) => PolicyConfig::new(config.clone()),
            LoadBalancingConfig::LeastRequest(config) => PolicyConfig::new(config.clone()),
            LoadBalancingConfig::WeightedRoundRobin(config) => PolicyConfig::new(config.clone()),
            LoadBalancingConfig::PeakEwma(config) => PolicyConfig::new(config.clone()),
            LoadBalancingConfig::LeastLatency(config) => PolicyConfig::new(config.clone()),
            LoadBalancingConfig::RingHash(config) => PolicyConfig::new(config.clone()),
            LoadBalancingConfig::OutlierDetection { config, .. } => {
                PolicyConfig::new(OutlierDetectionConfig::clone(config))
            }
            LoadBalancingConfig::Priority { config, .. } => {
                PolicyConfig::new(PriorityConfig::clone(config))
            }
            LoadBalancingConfig::WeightedTarget { config, .. } => {
                PolicyConfig::new(WeightedTargetConfig::clone(config))
            }
            LoadBalancingConfig::RandomSubsetting { config, .. } => {
                PolicyConfig::new(RandomSubsettingConfig::clone(config))
            }
            LoadBalancingConfig::Custom(custom) => custom.policy.clone(),
        }
    }
}

/// `retryThrottling` (gRFC A6): retries and hedges stop while a channel's failures outweigh
/// its successes. It is the setting, not the bucket: each channel built from the config makes
/// its own [`RetryThrottle`] with [`RetryThrottling::throttle`] and shares it among its calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryThrottling {
    /// `maxTokens`: the token count starts here and never exceeds it (1 to 1000).
    pub max_tokens: u32,
    /// `tokenRatio` in thousandths of a token (A6 keeps three decimal places): what each
    /// successful call adds back. At least 1; at most 1,000,000 (a ratio of 1000, which already
    /// refills any bucket at once).
    pub token_ratio_millis: u32,
}

impl RetryThrottling {
    /// `tokenRatio` as written, to its three decimal places.
    pub fn token_ratio(&self) -> f64 {
        f64::from(self.token_ratio_millis) / 1000.0
    }

    /// A full throttle with these settings, for one channel. As parsed, the settings are valid;
    /// the error is for fields changed since to values A6 refuses.
    pub fn throttle(&self) -> Result<RetryThrottle, RetryPolicyError> {
        RetryThrottle::with_thousandths(self.max_tokens, self.token_ratio_millis)
    }
}

/// What a channel builder takes as a default service config: the JSON text (parsed with the
/// built-in policies), a [`ServiceConfig`] already parsed, or a parser's result (to use a
/// [`ServiceConfigParser`](super::ServiceConfigParser) that knows your own policies).
pub trait IntoServiceConfig {
    /// The config, or why the text is not one (naming the JSON path).
    fn into_service_config(self) -> Result<ServiceConfig, super::ServiceConfigError>;
}

impl IntoServiceConfig for ServiceConfig {
    fn into_service_config(self) -> Result<ServiceConfig, super::ServiceConfigError> {
        Ok(self)
    }
}

impl IntoServiceConfig for Result<ServiceConfig, super::ServiceConfigError> {
    fn into_service_config(self) -> Result<ServiceConfig, super::ServiceConfigError> {
        self
    }
}

impl IntoServiceConfig for &str {
    fn into_service_config(self) -> Result<ServiceConfig, super::ServiceConfigError> {
        self.parse()
    }
}

impl IntoServiceConfig for String {
    fn into_service_config(self) -> Result<ServiceConfig, super::ServiceConfigError> {
        self.parse()
    }
}
