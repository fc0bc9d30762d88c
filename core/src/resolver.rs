//! What a resolver reports: endpoints (with an optional service config or policy choice), or an
//! error.
//!
//! Resolvers themselves do I/O (DNS lookups, watching a registry) and so live in the adapters; the
//! core only consumes their results, through
//! [`Balancer::handle_resolver_update`](crate::Balancer::handle_resolver_update) and
//! [`Balancer::handle_resolver_error`](crate::Balancer::handle_resolver_error), and says when it
//! wants a fresh result with [`Action::ResolveNow`](crate::Action::ResolveNow).

use std::fmt;
use std::sync::Arc;

use crate::address::Endpoint;
#[cfg(feature = "service-config")]
use crate::service_config::{ServiceConfig, ServiceConfigError};

/// A resolver's answer: the endpoints the target names now, and optionally the service config
/// to use them with (gRPC's `resolver.State.ServiceConfig`), or just a policy by name.
///
/// How the balancer treats the config (gRFC A21): a valid one replaces whatever config was in
/// use, unless the channel ignores resolver configs
/// ([`BalancerConfig::ignore_resolver_service_config`](crate::BalancerConfig::ignore_resolver_service_config));
/// an invalid one (a parse error, or a policy choice the balancer cannot use) keeps the config
/// in use, or else the channel's default, or else fails the channel with the reason until a
/// valid one comes; no config means the channel's default.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ResolverUpdate {
    /// The endpoints, in the resolver's order. An empty list is reported to callers as an error.
    pub endpoints: Vec<Endpoint>,
    /// A policy the resolver asks for, by name, with string parameters: the same as a service
    /// config that holds only this policy (a [`ResolverUpdate::service_config`] that names a
    /// policy of its own wins over it). `None`: the service config's, else the channel's choice.
    pub policy: Option<PolicyChoice>,
    /// The service config the resolver found for the target, as parsed: `Some(Err(..))` when
    /// the text it found is not a valid config. `None`: the resolver has none to give.
    #[cfg(feature = "service-config")]
    pub service_config: Option<Result<Arc<ServiceConfig>, ServiceConfigError>>,
}

impl PartialEq for ResolverUpdate {
    /// The same endpoints, policy choice and service config (configs compared by what they
    /// print, errors by their message).
    fn eq(&self, other: &Self) -> bool {
        self.endpoints == other.endpoints
            && self.policy == other.policy
            && self.config_fingerprint() == other.config_fingerprint()
    }
}

/// What tells two updates' service configs apart: the printed config, or the error.
#[cfg(feature = "service-config")]
pub(crate) type ConfigFingerprint = Option<Result<serde_json::Value, ServiceConfigError>>;
/// Without service configs, every update's is the same.
#[cfg(not(feature = "service-config"))]
#[derive(Debug, PartialEq)]
pub(crate) struct ConfigFingerprint;

/// A load-balancing policy named by a resolver, with its parameters: the data form of gRPC's
/// `loadBalancingConfig`. The balancer looks the name up among the policies it knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyChoice {
    name: String,
    params: Vec<(String, String)>,
}

impl PolicyChoice {
    /// The policy called `name` (`pick_first`, `round_robin`, or a registered one) with no parameters.
    pub fn new(name: impl Into<String>) -> Self {
        PolicyChoice {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter (`shuffle_address_list = true`, ...).
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((key.into(), value.into()));
        self
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parameters, in the order given.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }
}

impl ResolverUpdate {
    /// An update with these endpoints and no policy choice.
    pub fn new(endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        ResolverUpdate {
            endpoints: endpoints.into_iter().collect(),
            ..ResolverUpdate::default()
        }
    }

    /// Asks for `policy` as well.
    pub fn with_policy(mut self, policy: PolicyChoice) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Carries the service config the resolver found, as parsed: pass the parser's result,
    /// error or not (`ServiceConfigParser::new().parse(json)`), and the balancer applies gRFC
    /// A21's rules to it.
    #[cfg(feature = "service-config")]
    pub fn with_service_config(
        mut self,
        config: Result<ServiceConfig, ServiceConfigError>,
    ) -> Self {
        self.service_config = Some(config.map(Arc::new));
        self
    }

    /// What tells this update's service config from another's.
    #[cfg(feature = "service-config")]
    pub(crate) fn config_fingerprint(&self) -> ConfigFingerprint {
        self.service_config.as_ref().map(|config| {
            config
                .as_ref()
                .map(|config| config.to_json())
                .map_err(Clone::clone)
        })
    }

    /// What tells this update's service config from another's.
    #[cfg(not(feature = "service-config"))]
    pub(crate) fn config_fingerprint(&self) -> ConfigFingerprint {
        ConfigFingerprint
    }
}

/// A resolver's failure to produce endpoints (a DNS lookup failed, a registry is unreachable).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResolverError {
    message: Arc<str>,
}

impl ResolverError {
    /// An error with this message; say what was looked up and what went wrong.
    pub fn new(message: impl Into<Arc<str>>) -> Self {
        ResolverError {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ResolverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "name resolution failed: {}", self.message)
    }
}

impl std::error::Error for ResolverError {}
