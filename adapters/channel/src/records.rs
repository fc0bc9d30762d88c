//! What the driver records as it carries out the core's actions and hears reports, beyond what
//! the core keeps: when each state began, each subchannel's connection attempts and backend, the
//! resolver's last result (for [`ChannelSnapshot`]), and, with feature `metrics`, gRFC A94's
//! subchannel instruments.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use croupier::{
    Address, ConnectivityState, Endpoint, ResolverError, ResolverUpdate, SubchannelId,
    SubchannelInfo,
};

use crate::backend::Backend;
use crate::snapshot::{ChannelSnapshot, ResolverSnapshot, SubchannelSnapshot};

/// What the driver records for the snapshot.
#[derive(Debug)]
pub(crate) struct Records {
    /// The channel's target, as the snapshot and the metrics name it.
    target: Arc<str>,
    subchannels: HashMap<SubchannelId, Record>,
    state: ConnectivityState,
    state_since: Instant,
    resolver: ResolverSnapshot,
}

#[derive(Debug)]
struct Record {
    backend: Arc<Backend>,
    state: ConnectivityState,
    since: Instant,
    attempts: u64,
}

impl Records {
    /// Records for a channel to `target` that started at `now`, connecting.
    pub(crate) fn new(target: Arc<str>, now: Instant) -> Self {
        Records {
            target,
            subchannels: HashMap::new(),
            state: ConnectivityState::Connecting,
            state_since: now,
            resolver: ResolverSnapshot::default(),
        }
    }

    /// The backend of `subchannel`, which connects to `address`.
    pub(crate) fn backend(
        &mut self,
        subchannel: SubchannelId,
        address: &Address,
        now: Instant,
    ) -> &Arc<Backend> {
        &self
            .record(subchannel, address, ConnectivityState::Idle, now)
            .backend
    }

    fn record(
        &mut self,
        subchannel: SubchannelId,
        address: &Address,
        state: ConnectivityState,
        now: Instant,
    ) -> &mut Record {
        self.subchannels
            .entry(subchannel)
            .or_insert_with(|| Record {
                backend: Arc::new(Backend::new(address.clone())),
                state,
                since: now,
                attempts: 0,
            })
    }

    /// `subchannel` starts a connection attempt to `address`: it is CONNECTING.
    pub(crate) fn attempt_started(
        &mut self,
        subchannel: SubchannelId,
        address: &Address,
        now: Instant,
    ) {
        let record = self.record(subchannel, address, ConnectivityState::Connecting, now);
        record.attempts += 1;
        record.moved(ConnectivityState::Connecting, now);
    }

    /// The core says `subchannel` is in `state` (`None`: it was removed).
    pub(crate) fn observe(
        &mut self,
        subchannel: SubchannelId,
        state: Option<ConnectivityState>,
        now: Instant,
    ) {
        match state {
            Some(state) => {
                if let Some(record) = self.subchannels.get_mut(&subchannel) {
                    record.moved(state, now);
                }
            }
            None => {
                self.subchannels.remove(&subchannel);
            }
        }
    }

    /// A connection attempt succeeded: its connection is open.
    pub(crate) fn connected(&mut self) {
        #[cfg(feature = "metrics")]
        {
            crate::metrics::connection_attempt(&self.target, true);
            crate::metrics::connection_open(&self.target, true);
        }
    }

    /// A connection attempt failed, or timed out.
    pub(crate) fn attempt_failed(&mut self) {
        #[cfg(feature = "metrics")]
        crate::metrics::connection_attempt(&self.target, false);
    }

    /// An open connection ended, because of `reason` (the connector's, or the channel's when it
    /// dropped the connection itself).
    pub(crate) fn disconnected(&mut self, reason: &str) {
        #[cfg(feature = "metrics")]
        {
            crate::metrics::disconnected(&self.target, reason);
            crate::metrics::connection_open(&self.target, false);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = reason;
    }

    /// The channel's state is `state`.
    pub(crate) fn channel_state(&mut self, state: ConnectivityState, now: Instant) {
        if state != self.state {
            self.state = state;
            self.state_since = now;
        }
    }

    /// The resolver gave `update`.
    pub(crate) fn resolved(&mut self, update: &ResolverUpdate, now: Instant) {
        self.resolver.at = Some(now);
        self.resolver.service_config = None;
        self.resolver.error = None;
        match &update.service_config {
            Some(Ok(config)) => self.resolver.service_config = Some(Arc::clone(config)),
            Some(Err(error)) => {
                self.resolver.error = Some(format!("invalid service config: {error}"));
            }
            None => {}
        }
    }

    /// The resolver failed with `error`.
    pub(crate) fn resolver_failed(&mut self, error: &ResolverError, now: Instant) {
        self.resolver.at = Some(now);
        self.resolver.error = Some(error.message().to_owned());
    }

    /// The snapshot of the channel, whose balancer has `subchannels` and uses `endpoints`, at
    /// `now`.
    pub(crate) fn snapshot(
        &mut self,
        subchannels: Vec<SubchannelInfo>,
        endpoints: &[Endpoint],
        now: Instant,
    ) -> ChannelSnapshot {
        let subchannels = subchannels
            .into_iter()
            .map(|info| {
                let record = self.record(info.id, &info.address, info.state, now);
                record.moved(info.state, now);
                SubchannelSnapshot {
                    id: info.id,
                    address: info.address,
                    state: info.state,
                    since: record.since,
                    connection_attempts: record.attempts,
                    last_error: info.last_error,
                    calls: record.backend.calls(),
                    weight: info.policy.weight,
                    ejected: info.policy.ejected,
                    latency_estimate: info.policy.latency_estimate,
                }
            })
            .collect();
        ChannelSnapshot {
            target: self.target.to_string(),
            state: self.state,
            state_since: self.state_since,
            resolver: ResolverSnapshot {
                endpoints: endpoints.to_vec(),
                ..self.resolver.clone()
            },
            subchannels,
        }
    }
}

impl Record {
    fn moved(&mut self, state: ConnectivityState, now: Instant) {
        if state != self.state {
            self.state = state;
            self.since = now;
        }
    }
}
