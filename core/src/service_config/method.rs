//! Per-method call settings (`methodConfig`) and the table that finds them for a call's path.

use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use crate::hasher::FastMap;
use crate::retry::CallPolicy;

/// One `methodConfig` entry: settings for the calls its `name` list matches.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct MethodConfig {
    /// `timeout`: the longest a call may take, unless the caller set a shorter deadline.
    pub timeout: Option<Duration>,
    /// `waitForReady`: whether calls queue while the channel is not READY instead of failing.
    pub wait_for_ready: Option<bool>,
    /// `maxRequestMessageBytes`: the largest request message the client sends.
    pub max_request_message_bytes: Option<u64>,
    /// `maxResponseMessageBytes`: the largest response message the client accepts.
    pub max_response_message_bytes: Option<u64>,
    /// `retryPolicy` or `hedgingPolicy` (gRFC A6, never both), as the retry machine runs it:
    /// [`CallPolicy::None`] when the entry has neither.
    pub call_policy: CallPolicy,
}

/// Every `methodConfig` entry, found by the path of a call (`/package.Service/Method`): the
/// entry naming that method, else the one naming its service, else the default (`{}`).
///
/// A lookup allocates nothing and hashes at most twice: entries are keyed by the path strings
/// gRPC derives from their names (`/package.Service/Method` and `/package.Service/`), in a map
/// with the core's deterministic hasher, and a call's path, or the slice of it up to its second
/// `/`, is looked up as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MethodConfigs {
    by_path: FastMap<Box<str>, Arc<MethodConfig>>,
    default: Option<Arc<MethodConfig>>,
    /// Every name with its entry, in the order the config gave them.
    names: Vec<(MethodName, Arc<MethodConfig>)>,
}

/// What one `name` of a method config entry matches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MethodName {
    /// One method of one service: `{"service": "pkg.Service", "method": "Method"}`.
    Method {
        /// The service, with its package.
        service: String,
        /// The method.
        method: String,
    },
    /// Every method of a service: `{"service": "pkg.Service"}`.
    Service(String),
    /// Every method without a more specific entry: `{}`.
    Default,
}

impl MethodName {
    /// The key the lookup table files it under; `None` for the default.
    fn key(&self) -> Option<String> {
        match self {
            MethodName::Method { service, method } => Some(format!("/{service}/{method}")),
            MethodName::Service(service) => Some(format!("/{service}/")),
            MethodName::Default => None,
        }
    }
}

impl MethodConfigs {
    /// Files `config` under `name`; `false` (and nothing changed) if the name is taken already.
    pub(crate) fn insert(&mut self, name: &MethodName, config: &Arc<MethodConfig>) -> bool {
        let filed = match name.key() {
            None if self.default.is_some() => false,
            None => {
                self.default = Some(Arc::clone(config));
                true
            }
            Some(key) => match self.by_path.entry(key.into_boxed_str()) {
                Entry::Occupied(_) => false,
                Entry::Vacant(slot) => {
                    slot.insert(Arc::clone(config));
                    true
                }
            },
        };
        if filed {
            self.names.push((name.clone(), Arc::clone(config)));
        }
        filed
    }

    /// Every name with the settings it gets, in the order the config gave them.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&MethodName, &MethodConfig)> + '_ {
        self.names.iter().map(|(name, config)| (name, &**config))
    }

    /// The settings for a call to `path` (`/package.Service/Method`), if any entry matches it.
    pub fn for_path(&self, path: &str) -> Option<&MethodConfig> {
        self.shared_for_path(path).map(|config| &**config)
    }

    /// The same as [`MethodConfigs::for_path`], shared: a call that outlives the config it
    /// started under keeps its settings by cloning the `Arc` (no allocation).
    pub fn shared_for_path(&self, path: &str) -> Option<&Arc<MethodConfig>> {
        let found = self.by_path.get(path).or_else(|| {
            let service_end = path.get(1..)?.find('/')? + 2;
            self.by_path.get(&path[..service_end])
        });
        found.or(self.default.as_ref())
    }

    /// The settings every call without a more specific entry gets (`"name": [{}]`).
    pub fn default_config(&self) -> Option<&MethodConfig> {
        self.default.as_deref()
    }

    /// Whether there are no entries at all.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty() && self.default.is_none()
    }

    /// How many names are filed (each `name` of each entry, the default included).
    pub fn len(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(timeout_secs: u64) -> Arc<MethodConfig> {
        Arc::new(MethodConfig {
            timeout: Some(Duration::from_secs(timeout_secs)),
            ..MethodConfig::default()
        })
    }

    #[test]
    fn method_beats_service_beats_default() {
        let mut table = MethodConfigs::default();
        let method = MethodName::Method {
            service: "pkg.Echo".into(),
            method: "Say".into(),
        };
        assert!(table.insert(&method, &config(1)));
        assert!(table.insert(&MethodName::Service("pkg.Echo".into()), &config(2)));
        assert!(table.insert(&MethodName::Default, &config(3)));
        assert!(
            !table.insert(&MethodName::Default, &config(4)),
            "a second default"
        );
        let timeout = |path| table.for_path(path).and_then(|c| c.timeout);
        assert_eq!(timeout("/pkg.Echo/Say"), Some(Duration::from_secs(1)));
        assert_eq!(timeout("/pkg.Echo/Other"), Some(Duration::from_secs(2)));
        assert_eq!(timeout("/pkg.Other/Say"), Some(Duration::from_secs(3)));
        assert_eq!(timeout("no slashes"), Some(Duration::from_secs(3)));
        assert_eq!(timeout(""), Some(Duration::from_secs(3)));
        assert_eq!(table.len(), 3);
    }
}
