//! The registry of policy config parsers: which `loadBalancingConfig` names are known, and how
//! each one's JSON becomes a policy.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::config::{CustomPolicy, LoadBalancingConfig, ServiceConfig};
use super::error::{ServiceConfigError, ServiceConfigErrorKind};
use super::json::Node;
use super::{parser, policies, strict};

/// A user's parser for a policy's JSON config.
type CustomParser = dyn Fn(&Value) -> Result<crate::PolicyConfig, String> + Send + Sync;

/// How one policy's config is read.
#[derive(Clone)]
enum Entry {
    /// A built-in policy, read into its typed settings.
    Builtin(policies::BuiltinParser),
    /// A policy registered by the user.
    Custom(Arc<CustomParser>),
}

/// Parses service configs: the policies it knows by name, and how to read each one's settings.
///
/// [`ServiceConfigParser::new`] knows every built-in policy under gRPC's names (`pick_first`,
/// `round_robin`, `weighted_round_robin`, `least_request` and `least_request_experimental`,
/// `ring_hash` and `ring_hash_experimental`, `outlier_detection` and
/// `outlier_detection_experimental`, `priority_experimental`, `weighted_target_experimental`,
/// `random_subsetting`; the first two also as `priority` and `weighted_target`) and croupier's
/// own (`random`, `p2c_ewma`, `least_latency`); register your own policy with
/// [`ServiceConfigParser::policy`].
///
/// ```
/// use croupier::service_config::{LoadBalancingConfig, ServiceConfigParser};
/// use croupier::PolicyConfig;
/// use croupier::policy::RoundRobinConfig;
///
/// let parser = ServiceConfigParser::new().policy("my_policy", |json| {
///     // A real parser would read its settings from `json` (here `{"weight": 3}`).
///     match json.get("weight").and_then(|w| w.as_u64()) {
///         Some(_) => Ok(PolicyConfig::new(RoundRobinConfig::default())),
///         None => Err("weight must be a number".to_owned()),
///     }
/// });
/// let config = parser
///     .parse(r#"{"loadBalancingConfig": [{"my_policy": {"weight": 3}}, {"round_robin": {}}]}"#)
///     .unwrap();
/// assert!(matches!(config.load_balancing, Some(LoadBalancingConfig::Custom(_))));
///
/// let error = parser
///     .parse(r#"{"loadBalancingConfig": [{"my_policy": {}}]}"#)
///     .unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "loadBalancingConfig[0].my_policy: policy my_policy refused its config: weight must be a number"
/// );
/// ```
#[derive(Clone)]
pub struct ServiceConfigParser {
    policies: BTreeMap<String, Entry>,
}

impl ServiceConfigParser {
    /// A parser that knows every built-in policy.
    pub fn new() -> Self {
        let policies = policies::builtins()
            .into_iter()
            .map(|(name, parse)| (name.to_owned(), Entry::Builtin(parse)))
            .collect();
        ServiceConfigParser { policies }
    }

    /// Knows policy `name` too, its config read by `parse` (which gets the JSON value under the
    /// policy's name, usually an object, and says what is wrong if it refuses it). A name known
    /// already, built-in or not, is parsed by `parse` from now on.
    #[must_use]
    pub fn policy(
        mut self,
        name: impl Into<String>,
        parse: impl Fn(&Value) -> Result<crate::PolicyConfig, String> + Send + Sync + 'static,
    ) -> Self {
        self.policies
            .insert(name.into(), Entry::Custom(Arc::new(parse)));
        self
    }

    /// Whether policy `name` is known.
    pub fn knows(&self, name: &str) -> bool {
        self.policies.contains_key(name)
    }

    /// The names of the policies known, in order.
    pub fn policy_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.policies.keys().map(String::as_str)
    }

    /// Parses and validates a service config in JSON.
    pub fn parse(&self, json: &str) -> Result<ServiceConfig, ServiceConfigError> {
        let value = strict::read_json(json).map_err(|error| {
            ServiceConfigError::new(
                String::new(),
                ServiceConfigErrorKind::Syntax(error.to_string()),
            )
        })?;
        self.parse_value(&value)
    }

    /// Parses and validates a service config already read as JSON.
    pub fn parse_value(&self, json: &Value) -> Result<ServiceConfig, ServiceConfigError> {
        parser::service_config(self, &Node::root(json))
    }

    /// Reads a `loadBalancingConfig` list on its own (the first entry whose policy is known),
    /// as a policy that holds children (`childPolicy`) reads theirs.
    pub fn load_balancing_config(
        &self,
        list: &Value,
    ) -> Result<LoadBalancingConfig, ServiceConfigError> {
        self.choose(&Node::root(list))
    }

    /// The first entry of the list at `list` whose policy is known, parsed.
    pub(crate) fn choose(
        &self,
        list: &Node<'_>,
    ) -> Result<LoadBalancingConfig, ServiceConfigError> {
        let mut unknown = Vec::new();
        for item in list.items()? {
            let entry = item.object()?;
            let (name, config) = entry.single("a loadBalancingConfig entry")?;
            if let Some(found) = self.policies.get(name) {
                return self.parse_policy(name, found, &config);
            }
            unknown.push(name.to_owned());
        }
        Err(list.error(ServiceConfigErrorKind::NoKnownPolicy(unknown)))
    }

    /// Policy `name`'s config at `config`, if the name is known.
    pub(crate) fn parse_named(
        &self,
        name: &str,
        config: &Node<'_>,
    ) -> Option<Result<LoadBalancingConfig, ServiceConfigError>> {
        let found = self.policies.get(name)?;
        Some(self.parse_policy(name, found, config))
    }

    fn parse_policy(
        &self,
        name: &str,
        entry: &Entry,
        config: &Node<'_>,
    ) -> Result<LoadBalancingConfig, ServiceConfigError> {
        match entry {
            Entry::Builtin(parse) => parse(self, config),
            Entry::Custom(parse) => parse(config.value())
                .map(|policy| {
                    LoadBalancingConfig::Custom(CustomPolicy::new(name, config.value(), policy))
                })
                .map_err(|message| {
                    config.error(ServiceConfigErrorKind::Policy {
                        policy: name.to_owned(),
                        message,
                    })
                }),
        }
    }
}

impl Default for ServiceConfigParser {
    fn default() -> Self {
        ServiceConfigParser::new()
    }
}

impl fmt::Debug for ServiceConfigParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceConfigParser")
            .field("policies", &self.policies.keys().collect::<Vec<_>>())
            .finish()
    }
}
