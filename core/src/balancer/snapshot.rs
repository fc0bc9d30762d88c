//! Looking inside a balancer: its state and since when, what the resolver last said, and every
//! subchannel with what its policy knows of it. What an adapter's status page or metrics read.

use std::time::Instant;

#[cfg(feature = "service-config")]
use std::sync::Arc;

use crate::address::Endpoint;
use crate::policy::PolicyDetails;
use crate::resolver::ResolverError;
#[cfg(feature = "service-config")]
use crate::service_config::ServiceConfig;
use crate::status::ConnectivityState;
use crate::subchannel::{Subchannel, SubchannelId, SubchannelInfo};

use super::Balancer;

/// A balancer as it stands: the channel's state, the resolver's last result and every
/// subchannel ([`Balancer::snapshot`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BalancerSnapshot {
    /// The channel's connectivity state.
    pub state: ConnectivityState,
    /// When it entered that state (the balancer's creation, for the first).
    pub since: Instant,
    /// What the resolver last said; `None` before it said anything.
    pub resolver: Option<ResolverResult>,
    /// Every subchannel, in creation order.
    pub subchannels: Vec<SubchannelInfo>,
}

/// The resolver's last result, and what the balancer runs with since.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ResolverResult {
    /// When it came.
    pub at: Instant,
    /// How many endpoints are in use: the last list accepted (not a refused one).
    pub endpoints: usize,
    /// The policy in use (during a graceful switch, the one being switched to).
    pub policy: String,
    /// The service config in use.
    #[cfg(feature = "service-config")]
    pub service_config: Arc<ServiceConfig>,
    /// Why the last result was not used, if it was not: the resolver failed, or its update
    /// was refused (too many endpoints, a config that cannot be used).
    pub error: Option<ResolverError>,
}

impl Balancer {
    /// The channel's state and since when, the resolver's last result and every subchannel
    /// ([`Balancer::subchannels`]). Builds a copy of it all: for a status page or a periodic
    /// report, not for every call.
    pub fn snapshot(&self) -> BalancerSnapshot {
        BalancerSnapshot {
            state: self.core.state,
            since: self.core.state_since,
            resolver: self.resolver_result(),
            subchannels: self.subchannels(),
        }
    }

    /// The resolver's last result; `None` before it said anything.
    pub fn resolver_result(&self) -> Option<ResolverResult> {
        let (at, error) = self.core.resolved.clone()?;
        Some(ResolverResult {
            at,
            endpoints: self.endpoints().len(),
            policy: self.policies.latest_name().to_owned(),
            #[cfg(feature = "service-config")]
            service_config: Arc::clone(self.service_config()),
            error,
        })
    }

    /// The endpoints in use: the last resolver list the balancer accepted (none before the
    /// first). A list it refused (too long, or with a service config it cannot use while it has
    /// no other to fall back on) leaves it as it was.
    pub fn endpoints(&self) -> &[Endpoint] {
        self.last_update
            .as_ref()
            .map_or(&[], |last| last.endpoints.as_slice())
    }

    /// When the channel entered its state ([`Balancer::state`]).
    pub fn state_since(&self) -> Instant {
        self.core.state_since
    }

    /// Every subchannel, in creation order, with what its policy knows of it.
    pub fn subchannels(&self) -> Vec<SubchannelInfo> {
        self.core
            .subchannels
            .in_creation_order()
            .into_iter()
            .map(|(id, subchannel, address)| {
                let mut details = PolicyDetails::default();
                self.policies.describe_subchannel(id, &mut details);
                subchannel.info(id, address, details)
            })
            .collect()
    }

    /// Every live subchannel's handle and state, in no particular order (cheaper than
    /// [`Balancer::subchannels`]: nothing is copied or sorted).
    pub fn subchannel_states(
        &self,
    ) -> impl Iterator<Item = (SubchannelId, ConnectivityState)> + '_ {
        self.core
            .subchannels
            .iter()
            .map(|(id, subchannel)| (id, subchannel.state()))
    }

    /// The state of one subchannel, `None` once it is removed.
    pub fn subchannel_state(&self, subchannel: SubchannelId) -> Option<ConnectivityState> {
        self.core
            .subchannels
            .get(&subchannel)
            .map(Subchannel::state)
    }
}
