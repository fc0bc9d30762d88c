//! The channel's logs, through `tracing`: a span per channel (its target) and per subchannel
//! (its id and address), and the core's [`Notice`]s as events in them, at levels that fit. State
//! changes and attempts are `debug`; failures, refusals and ejections `warn`; resolver results,
//! policy switches and returns from ejection `info`; picks and scheduler updates only `trace`. Every event's target is
//! `croupier`, so `RUST_LOG=croupier=debug` shows them all. Addresses, states and error messages
//! are logged; payloads, header values and credentials never are (no event sees them).
//!
//! Without the `tracing` feature this is a set of empty functions.

#[cfg(feature = "tracing")]
pub(crate) use on::*;

#[cfg(not(feature = "tracing"))]
pub(crate) use off::*;

#[cfg(feature = "tracing")]
mod on {
    use std::collections::HashMap;

    use croupier::{Address, ConnectivityState, Notice, Status, SubchannelId};
    use tracing::{debug, info, trace, warn, Span};

    /// The spans of one channel and its live subchannels.
    #[derive(Debug)]
    pub(crate) struct Trace {
        channel: Span,
        subchannels: HashMap<SubchannelId, Span>,
    }

    impl Trace {
        /// The spans of the channel to `target`.
        pub(crate) fn new(target: &str) -> Self {
            Trace {
                channel: tracing::info_span!(target: "croupier", "channel", target = %target),
                subchannels: HashMap::new(),
            }
        }

        /// The channel's span, for what calls log.
        pub(crate) fn span(&self) -> Span {
            self.channel.clone()
        }

        /// Subchannel `id` is gone: its span goes too (even if the notice that said so was
        /// dropped from a full queue).
        pub(crate) fn forget(&mut self, id: SubchannelId) {
            self.subchannels.remove(&id);
        }

        /// The span of subchannel `id` at `address`, made on first use.
        fn subchannel(&mut self, id: SubchannelId, address: &Address) -> &Span {
            let channel = &self.channel;
            self.subchannels.entry(id).or_insert_with(|| {
                tracing::info_span!(
                    target: "croupier",
                    parent: channel,
                    "subchannel",
                    id = id.as_u64(),
                    %address
                )
            })
        }

        /// Logs `notice` in the span it is about.
        pub(crate) fn notice(&mut self, notice: &Notice) {
            let channel = self.channel.clone();
            match notice {
                Notice::ChannelState { from, to } => {
                    debug!(target: "croupier", parent: &channel, %from, %to, "channel state changed");
                }
                Notice::SubchannelState {
                    subchannel,
                    address,
                    from,
                    to,
                    reason,
                } => {
                    let span = self.subchannel(*subchannel, address);
                    let reason = reason.as_deref();
                    if *from == ConnectivityState::Ready {
                        info!(target: "croupier", parent: span, %from, %to, reason, "subchannel left READY");
                    } else {
                        debug!(target: "croupier", parent: span, %from, %to, reason, "subchannel state changed");
                    }
                    if *to == ConnectivityState::Shutdown {
                        self.subchannels.remove(subchannel);
                    }
                }
                Notice::ConnectStarted {
                    connection,
                    address,
                } => {
                    let span = self.subchannel(connection.subchannel(), address);
                    let attempt = connection.attempt();
                    debug!(target: "croupier", parent: span, attempt, "connecting");
                }
                Notice::ConnectFailed {
                    connection,
                    address,
                    error,
                } => {
                    let span = self.subchannel(connection.subchannel(), address);
                    let attempt = connection.attempt();
                    warn!(target: "croupier", parent: span, attempt, error = &**error, "connection attempt failed");
                }
                Notice::ResolverApplied { endpoints, policy } => {
                    info!(target: "croupier", parent: &channel, endpoints, %policy, "resolver update applied");
                }
                Notice::ResolverRejected {
                    endpoints: Some(endpoints),
                    error,
                } => {
                    warn!(target: "croupier", parent: &channel, endpoints, error = error.message(), "resolver update refused; the endpoints in use stay");
                }
                Notice::ResolverRejected {
                    endpoints: None,
                    error,
                } => {
                    warn!(target: "croupier", parent: &channel, error = error.message(), "resolver failed; the endpoints in use stay");
                }
                Notice::PolicySwitchStarted { from, to } => {
                    info!(target: "croupier", parent: &channel, %from, %to, "switching policy: the old one serves until the new one is READY");
                }
                Notice::PolicySwitched { from, to } => {
                    info!(target: "croupier", parent: &channel, %from, %to, "policy switched");
                }
                Notice::Ejected {
                    subchannel,
                    address,
                    times,
                } => {
                    let span = self.subchannel(*subchannel, address);
                    warn!(target: "croupier", parent: span, times, "ejected by outlier detection");
                }
                Notice::Restored {
                    subchannel,
                    address,
                } => {
                    let span = self.subchannel(*subchannel, address);
                    info!(target: "croupier", parent: span, "returned from ejection");
                }
                Notice::WeightsUpdated { .. } => {
                    debug!(target: "croupier", parent: &channel, "{notice}");
                }
                // One per scheduler weighted_round_robin builds, for its metrics: the weights
                // that changed are the WeightsUpdated above.
                Notice::SchedulerUpdated { .. } => {
                    trace!(target: "croupier", parent: &channel, "{notice}");
                }
                // For pick_first's metrics: the subchannel's state change tells it already.
                Notice::PickFirst {
                    subchannel,
                    address,
                    event,
                } => {
                    let span = self.subchannel(*subchannel, address);
                    trace!(target: "croupier", parent: span, %event, "pick_first");
                }
                Notice::Dropped { count } => {
                    warn!(target: "croupier", parent: &channel, count, "notices dropped: the driver fell behind");
                }
                other => debug!(target: "croupier", parent: &channel, "{other}"),
            }
        }
    }

    /// A pick in the channel of `span` sent a call to `subchannel` at `address`.
    #[inline]
    pub(crate) fn picked(span: &Span, subchannel: SubchannelId, address: &Address) {
        trace!(target: "croupier", parent: span, subchannel = subchannel.as_u64(), %address, "picked");
    }

    /// A pick in the channel of `span` failed its call with `status`.
    pub(crate) fn pick_failed(span: &Span, status: &Status) {
        debug!(target: "croupier", parent: span, %status, "pick failed");
    }

    /// The span of a channel, for its calls' events.
    pub(crate) type ChannelSpan = Span;
}

#[cfg(not(feature = "tracing"))]
mod off {
    use croupier::{Address, Status, SubchannelId};

    /// Nothing to keep.
    #[derive(Debug)]
    pub(crate) struct Trace;

    impl Trace {
        pub(crate) fn new(_: &str) -> Self {
            Trace
        }

        pub(crate) fn notice(&mut self, _: &croupier::Notice) {}

        pub(crate) fn span(&self) -> ChannelSpan {
            ChannelSpan
        }

        pub(crate) fn forget(&mut self, _: SubchannelId) {}
    }

    /// No span: nothing is logged.
    #[derive(Clone, Debug)]
    pub(crate) struct ChannelSpan;

    #[inline]
    pub(crate) fn picked(_: &ChannelSpan, _: SubchannelId, _: &Address) {}

    pub(crate) fn pick_failed(_: &ChannelSpan, _: &Status) {}
}
