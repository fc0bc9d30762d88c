//! Where the channel's service config comes from, by gRFC A21's rules: the resolver's, unless
//! invalid (then the one in use, else the default, else none and the channel fails), or the
//! channel's default when the resolver gives none or is ignored; a resolver's [`PolicyChoice`]
//! counts as a resolver config that holds only a policy.

#[cfg(feature = "service-config")]
use std::sync::Arc;

use crate::policy::PolicyConfig;
use crate::resolver::{PolicyChoice, ResolverUpdate};
#[cfg(feature = "service-config")]
use crate::service_config::ServiceConfig;

use super::config::BalancerConfig;

/// Tells whether a newly chosen policy is the one already running (then it keeps running, and
/// only its endpoints change) or another (then the graceful switch builds it).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum PolicyKey {
    /// [`BalancerConfig::policy`]: no service config chose one.
    Channel,
    /// A resolver's [`PolicyChoice`].
    Choice(PolicyChoice),
    /// A service config's `loadBalancingConfig`, as it prints: equal settings, equal keys.
    #[cfg(feature = "service-config")]
    Config(serde_json::Value),
}

/// What the balancer runs with: the policy, and the service config whose method settings calls
/// get.
#[derive(Clone, Debug)]
pub(super) struct Selection {
    pub(super) key: PolicyKey,
    pub(super) policy: PolicyConfig,
    #[cfg(feature = "service-config")]
    pub(super) service_config: Arc<ServiceConfig>,
}

impl BalancerConfig {
    /// What applies while the resolver gives no config: the default service config (its
    /// policy, else [`BalancerConfig::policy`]), or no config and [`BalancerConfig::policy`].
    pub(super) fn fallback(&self) -> Selection {
        #[cfg(feature = "service-config")]
        {
            let config = self.default_service_config.clone().unwrap_or_default();
            config_policy(&config).unwrap_or_else(|| self.channel_policy(config))
        }
        #[cfg(not(feature = "service-config"))]
        self.channel_policy()
    }

    /// Whether an invalid resolver config falls back on a default service config.
    pub(super) fn has_default(&self) -> bool {
        #[cfg(feature = "service-config")]
        return self.default_service_config.is_some();
        #[cfg(not(feature = "service-config"))]
        false
    }

    /// What `update` asks for: `Ok(None)` if nothing (no config, or the resolver's are
    /// ignored), `Err` with the reason if what it gives cannot be used.
    pub(super) fn requested(&self, update: &ResolverUpdate) -> Result<Option<Selection>, String> {
        #[cfg(feature = "service-config")]
        {
            if self.ignore_resolver_service_config {
                return Ok(None);
            }
            let config = match &update.service_config {
                None => Arc::default(),
                Some(Ok(config)) => match config_policy(config) {
                    Some(selection) => return Ok(Some(selection)),
                    None => Arc::clone(config),
                },
                Some(Err(error)) => {
                    return Err(format!("the resolver's service config is invalid: {error}"))
                }
            };
            match &update.policy {
                Some(choice) => self.chosen(choice, config).map(Some),
                None if update.service_config.is_some() => Ok(Some(self.channel_policy(config))),
                None => Ok(None),
            }
        }
        #[cfg(not(feature = "service-config"))]
        update
            .policy
            .as_ref()
            .map(|choice| self.chosen(choice))
            .transpose()
    }

    /// The policy `choice` names, with `config`'s method settings.
    fn chosen(
        &self,
        choice: &PolicyChoice,
        #[cfg(feature = "service-config")] config: Arc<ServiceConfig>,
    ) -> Result<Selection, String> {
        let policy = self.lookup(choice).map_err(|reason| {
            format!("the resolver chose a policy that cannot be used: {reason}")
        })?;
        Ok(Selection {
            key: PolicyKey::Choice(choice.clone()),
            policy,
            #[cfg(feature = "service-config")]
            service_config: config,
        })
    }

    /// [`BalancerConfig::policy`], with `config`'s method settings.
    fn channel_policy(
        &self,
        #[cfg(feature = "service-config")] config: Arc<ServiceConfig>,
    ) -> Selection {
        Selection {
            key: PolicyKey::Channel,
            policy: self.policy.clone(),
            #[cfg(feature = "service-config")]
            service_config: config,
        }
    }
}

/// `config` with the policy it names, if it names one.
#[cfg(feature = "service-config")]
fn config_policy(config: &Arc<ServiceConfig>) -> Option<Selection> {
    let load_balancing = config.load_balancing.as_ref()?;
    Some(Selection {
        key: PolicyKey::Config(load_balancing.to_json()),
        policy: load_balancing.policy(),
        service_config: Arc::clone(config),
    })
}
