//! What a resolver reports: endpoints (with an optional policy choice), or an error.
//!
//! Resolvers themselves do I/O (DNS lookups, watching a registry) and so live in the adapters; the
//! core only consumes their results, through
//! [`Balancer::handle_resolver_update`](crate::Balancer::handle_resolver_update) and
//! [`Balancer::handle_resolver_error`](crate::Balancer::handle_resolver_error), and says when it
//! wants a fresh result with [`Action::ResolveNow`](crate::Action::ResolveNow).

use std::fmt;
use std::sync::Arc;

use crate::address::Endpoint;

/// A resolver's answer: the endpoints the target names now, and optionally the policy to balance
/// them with (as gRPC's service config can choose one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolverUpdate {
    /// The endpoints, in the resolver's order. An empty list is reported to callers as an error.
    pub endpoints: Vec<Endpoint>,
    /// A policy the resolver asks for, by name; `None` keeps the channel's own choice.
    pub policy: Option<PolicyChoice>,
}

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
            policy: None,
        }
    }

    /// Asks for `policy` as well.
    pub fn with_policy(mut self, policy: PolicyChoice) -> Self {
        self.policy = Some(policy);
        self
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
