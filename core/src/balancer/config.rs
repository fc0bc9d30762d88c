//! A balancer's configuration.

use std::fmt;
#[cfg(feature = "service-config")]
use std::sync::Arc;

use crate::address::Endpoint;
use crate::backoff::BackoffConfig;
use crate::policy::{PolicyConfig, PolicyParamError};
use crate::resolution::ResolutionConfig;
use crate::resolver::{PolicyChoice, ResolverError};
#[cfg(feature = "service-config")]
use crate::service_config::ServiceConfig;

/// A balancer's configuration: the policy, the default service config, the backoff, the
/// re-resolution schedule, and the most endpoints it takes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BalancerConfig {
    /// The policy used while no service config chooses one, neither the resolver's nor the
    /// default (default: pick_first).
    pub policy: PolicyConfig,
    /// The service config used while the resolver gives none (grpc-go's
    /// `WithDefaultServiceConfig`); its policy, if it names one, wins over
    /// [`BalancerConfig::policy`].
    #[cfg(feature = "service-config")]
    pub default_service_config: Option<Arc<ServiceConfig>>,
    /// Whether service configs and policy choices from the resolver are ignored, so that the
    /// default service config (or the policy) always applies (grpc-go's
    /// `WithDisableServiceConfig`). Default: `false`.
    #[cfg(feature = "service-config")]
    pub ignore_resolver_service_config: bool,
    /// Further policies a resolver may choose by name, besides the built-in ones.
    pub policies: Vec<PolicyConfig>,
    /// Connection backoff for every subchannel.
    pub backoff: BackoffConfig,
    /// When to ask the resolver again.
    pub resolution: ResolutionConfig,
    /// The most endpoints a resolver update may list (default [`DEFAULT_MAX_ENDPOINTS`]). A
    /// longer list is refused as a resolver error, and the last good list stays in use: a
    /// resolver gone wrong cannot make the channel hold connections and memory without bound.
    pub max_endpoints: usize,
    /// How many [`Notice`](crate::Notice)s may wait to be polled; 0, the default, turns
    /// notices off (none is built, so a balancer whose adapter does not read them pays
    /// nothing). When the queue is full, the oldest is dropped and counted.
    pub notice_capacity: usize,
}

/// The most endpoints a resolver update may list unless [`BalancerConfig::max_endpoints`]
/// says otherwise.
pub const DEFAULT_MAX_ENDPOINTS: usize = 100_000;

impl Default for BalancerConfig {
    fn default() -> Self {
        BalancerConfig {
            policy: PolicyConfig::default(),
            #[cfg(feature = "service-config")]
            default_service_config: None,
            #[cfg(feature = "service-config")]
            ignore_resolver_service_config: false,
            policies: Vec::new(),
            backoff: BackoffConfig::default(),
            resolution: ResolutionConfig::default(),
            max_endpoints: DEFAULT_MAX_ENDPOINTS,
            notice_capacity: 0,
        }
    }
}

impl BalancerConfig {
    /// Sets the policy.
    pub fn policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    /// Uses `config` while the resolver gives no service config (see
    /// [`BalancerConfig::default_service_config`]).
    #[cfg(feature = "service-config")]
    pub fn default_service_config(mut self, config: ServiceConfig) -> Self {
        self.default_service_config = Some(Arc::new(config));
        self
    }

    /// Ignores the resolver's service configs and policy choices (see
    /// [`BalancerConfig::ignore_resolver_service_config`]).
    #[cfg(feature = "service-config")]
    pub fn ignore_resolver_service_config(mut self, ignore: bool) -> Self {
        self.ignore_resolver_service_config = ignore;
        self
    }

    /// Makes `policy` choosable by name in resolver updates.
    pub fn register_policy(mut self, policy: PolicyConfig) -> Self {
        self.policies.push(policy);
        self
    }

    /// Sets the connection backoff.
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the re-resolution schedule.
    pub fn resolution(mut self, resolution: ResolutionConfig) -> Self {
        self.resolution = resolution;
        self
    }

    /// Sets the most endpoints a resolver update may list.
    pub fn max_endpoints(mut self, max: usize) -> Self {
        self.max_endpoints = max;
        self
    }

    /// Turns notices on, with room for `capacity` waiting (see
    /// [`BalancerConfig::notice_capacity`]; [`DEFAULT_NOTICE_CAPACITY`](crate::DEFAULT_NOTICE_CAPACITY)
    /// suits an adapter that drains them with the actions); 0 turns them off.
    pub fn notices(mut self, capacity: usize) -> Self {
        self.notice_capacity = capacity;
        self
    }

    /// `Err` with the reason when `endpoints` is more than an update may list.
    pub(crate) fn check_size(&self, endpoints: &[Endpoint]) -> Result<(), ResolverError> {
        if endpoints.len() <= self.max_endpoints {
            return Ok(());
        }
        Err(ResolverError::new(format!(
            "the resolver returned {} endpoints, more than the limit of {} \
             (BalancerConfig::max_endpoints); the last list accepted stays in use",
            endpoints.len(),
            self.max_endpoints
        )))
    }

    /// The policy a resolver's choice names, configured with its parameters.
    pub(crate) fn lookup(&self, choice: &PolicyChoice) -> Result<PolicyConfig, PolicyChoiceError> {
        let builtins = [PolicyConfig::pick_first(), PolicyConfig::round_robin()];
        let known = std::iter::once(&self.policy)
            .chain(&self.policies)
            .chain(builtins.iter());
        // And every built-in the policy module lists (ring_hash, outlier_detection, ...).
        let listed = crate::policy::builtins();
        let known = known.chain(listed.iter());
        let mut names = Vec::new();
        for policy in known {
            if policy.name() == choice.name() {
                return policy
                    .with_params(choice.params())
                    .map_err(PolicyChoiceError::Params);
            }
            names.push(policy.name().to_owned());
        }
        names.sort();
        names.dedup();
        Err(PolicyChoiceError::UnknownPolicy {
            name: choice.name().to_owned(),
            known: names,
        })
    }
}

/// Why a resolver's [`PolicyChoice`] cannot be used.
#[derive(Debug)]
pub(crate) enum PolicyChoiceError {
    /// No policy the balancer knows has this name.
    UnknownPolicy { name: String, known: Vec<String> },
    /// The policy refused the choice's parameters.
    Params(PolicyParamError),
}

impl fmt::Display for PolicyChoiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyChoiceError::UnknownPolicy { name, known } => write!(
                f,
                "unknown load-balancing policy {name:?} (known: {})",
                known.join(", ")
            ),
            PolicyChoiceError::Params(error) => error.fmt(f),
        }
    }
}
