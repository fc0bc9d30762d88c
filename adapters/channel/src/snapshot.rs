//! The channel's snapshot: its state and since when, what the resolver last said, and each
//! subchannel with its state, attempts, last error and calls. What an operator reads to answer
//! "where did this call go, and why did it fail".
//!
//! The driver keeps what the core does not (when each state began, how many connection attempts
//! each subchannel made, the resolver's last result: see `records`); the calls on a subchannel
//! count themselves on its backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier::service_config::ServiceConfig;
use croupier::{Address, ConnectivityState, Endpoint, SubchannelId};

/// A channel as it is at one moment ([`Channel::snapshot`](crate::Channel::snapshot)).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ChannelSnapshot {
    /// The target, as the channel parsed it (`dns:///api.internal:50051`).
    pub target: String,
    /// The channel's connectivity state.
    pub state: ConnectivityState,
    /// When it entered that state.
    pub state_since: Instant,
    /// What the resolver last said.
    pub resolver: ResolverSnapshot,
    /// Every subchannel, in creation order.
    pub subchannels: Vec<SubchannelSnapshot>,
}

impl ChannelSnapshot {
    /// The snapshot of a channel to `target` that was closed by `now`.
    pub(crate) fn closed(target: String, now: Instant) -> Self {
        ChannelSnapshot {
            target,
            state: ConnectivityState::Shutdown,
            state_since: now,
            resolver: ResolverSnapshot::default(),
            subchannels: Vec::new(),
        }
    }

    /// The subchannel connected to `address`, if there is one.
    pub fn subchannel(&self, address: &Address) -> Option<&SubchannelSnapshot> {
        self.subchannels.iter().find(|s| &s.address == address)
    }
}

/// The resolver's last result, as the channel took it.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ResolverSnapshot {
    /// When it came (a list or an error); `None` before the first.
    pub at: Option<Instant>,
    /// The endpoints in use: the last list the channel accepted.
    pub endpoints: Vec<Endpoint>,
    /// The valid service config the last list came with, if it had one (the config in use is
    /// [`Channel::service_config`](crate::Channel::service_config)).
    pub service_config: Option<Arc<ServiceConfig>>,
    /// What was wrong with the last result, if anything: the resolver's error, or why its
    /// service config did not parse.
    pub error: Option<String>,
}

/// One subchannel.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SubchannelSnapshot {
    /// Its handle.
    pub id: SubchannelId,
    /// The address it connects to.
    pub address: Address,
    /// Its connectivity state.
    pub state: ConnectivityState,
    /// When the channel saw it enter that state: at the action or report that moved it there,
    /// or, for a move made by a timer alone (the end of a backoff), when the channel next
    /// looked.
    pub since: Instant,
    /// How many connection attempts it started.
    pub connection_attempts: u64,
    /// Why its last attempt failed or its last connection ended, if one did.
    pub last_error: Option<Arc<str>>,
    /// The calls picked for it.
    pub calls: CallCounts,
    /// The weight its policy gives it (weighted_round_robin), `None` under a policy that
    /// weighs nothing.
    pub weight: Option<f64>,
    /// Whether outlier detection has ejected it, `None` without outlier detection.
    pub ejected: Option<bool>,
    /// Its policy's latency estimate (p2c_ewma, least_latency), `None` under a policy that
    /// keeps none.
    pub latency_estimate: Option<Duration>,
}

/// Calls picked for a subchannel. An attempt of a retried or hedged call is a call here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallCounts {
    /// Picked for it.
    pub started: u64,
    /// Ended `OK`.
    pub succeeded: u64,
    /// Ended with any other status (`CANCELLED` included).
    pub failed: u64,
    /// Started and not yet ended.
    pub in_flight: u64,
}
