//! Notices: what the balancer saw happen, typed, for an adapter to log or count.
//!
//! Off unless [`BalancerConfig::notices`](crate::BalancerConfig::notices) turns them on. Once
//! on, every input may queue some, drained with
//! [`Balancer::poll_notice`](crate::Balancer::poll_notice) after the actions: a queue apart from
//! the actions, so an adapter that does not care pays nothing and one that does can read them
//! when it likes. The queue is bounded: when it is full the oldest notice is dropped, and the
//! next one polled is a [`Notice::Dropped`] that says how many went, so none is lost unseen.
//!
//! Every notice prints as one log line that names the subchannel (by id and address) and says
//! why: `subchannel#2 127.0.0.1:50052: CONNECTING -> TRANSIENT_FAILURE: connection refused`.

use std::fmt;
use std::sync::Arc;

use crate::address::Address;
use crate::resolver::ResolverError;
use crate::status::ConnectivityState;
use crate::subchannel::{ConnectionId, SubchannelId};

/// How many notices wait, at most, unless the config says otherwise
/// ([`BalancerConfig::notices`](crate::BalancerConfig::notices)).
pub const DEFAULT_NOTICE_CAPACITY: usize = 1024;

/// Something the balancer saw happen.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Notice {
    /// The channel moved from one connectivity state to another.
    ChannelState {
        /// The state it left.
        from: ConnectivityState,
        /// The state it entered.
        to: ConnectivityState,
    },
    /// A subchannel moved from one state to another.
    SubchannelState {
        /// The subchannel.
        subchannel: SubchannelId,
        /// Its address.
        address: Address,
        /// The state it left.
        from: ConnectivityState,
        /// The state it entered.
        to: ConnectivityState,
        /// Why, when an error moved it (an attempt failed, a connection ended, a health check
        /// failed): the adapter's message.
        reason: Option<Arc<str>>,
    },
    /// A connection attempt started.
    ConnectStarted {
        /// The attempt.
        connection: ConnectionId,
        /// Where to.
        address: Address,
    },
    /// A connection attempt failed (or timed out).
    ConnectFailed {
        /// The attempt.
        connection: ConnectionId,
        /// Where to.
        address: Address,
        /// Why, as the adapter (or the core's connect timeout) said.
        error: Arc<str>,
    },
    /// A resolver update was applied.
    ResolverApplied {
        /// How many endpoints it listed.
        endpoints: usize,
        /// The policy that runs them.
        policy: String,
    },
    /// The resolver failed, or its update was refused; the endpoints in use stay.
    ResolverRejected {
        /// How many endpoints a refused update listed; `None` when the resolver itself failed.
        endpoints: Option<usize>,
        /// Why.
        error: ResolverError,
    },
    /// A service config named another policy: it is being built beside the running one,
    /// which serves calls until the new one is READY (the graceful switch).
    PolicySwitchStarted {
        /// The running policy.
        from: String,
        /// The policy being built.
        to: String,
    },
    /// The new policy took over; the old one's subchannels are shut down.
    PolicySwitched {
        /// The policy that served until now.
        from: String,
        /// The policy serving from now on.
        to: String,
    },
    /// outlier_detection ejected a subchannel's address: no calls go to it for a while,
    /// though its connection stays open.
    Ejected {
        /// The subchannel.
        subchannel: SubchannelId,
        /// Its address.
        address: Address,
        /// How many times in a row it has been ejected (its ejection time's multiplier).
        times: u32,
    },
    /// outlier_detection's ejection of a subchannel's address ended.
    Restored {
        /// The subchannel.
        subchannel: SubchannelId,
        /// Its address.
        address: Address,
    },
    /// weighted_round_robin's picker shares calls by new weights.
    WeightsUpdated {
        /// Each READY subchannel's weight in the new picker, in its order.
        weights: Vec<SubchannelWeight>,
    },
    /// weighted_round_robin built a scheduler (a new picker) for its READY endpoints, whether or
    /// not their shares changed: what each endpoint's load reports gave it, the facts gRFC A78's
    /// metrics count per scheduler update. A scheduler is built when the READY endpoints or
    /// their static weights change, and when a weight update (every `weight_update_period`
    /// while load reports are live) changes the weights.
    SchedulerUpdated {
        /// Each READY subchannel's weight from its load reports, in the picker's order.
        endpoints: Vec<EndpointLoad>,
        /// Fewer than two endpoints had a usable weight: the scheduler does not weigh by load
        /// reports, and falls back to the resolver's weights (plain round robin unless the
        /// resolver gave weights).
        fallback: bool,
    },
    /// pick_first (the channel's policy, or a child of a priority or weighted_target policy)
    /// connected, lost its connection, or saw an attempt fail: the facts gRFC A78's pick_first
    /// metrics count. round_robin's and ring_hash's endpoints, which walk their addresses as
    /// pick_first does, do not tell these.
    PickFirst {
        /// The subchannel.
        subchannel: SubchannelId,
        /// Its address.
        address: Address,
        /// What happened.
        event: PickFirstEvent,
    },
    /// The queue was full: this many older notices were dropped before the ones that follow.
    Dropped {
        /// How many.
        count: u64,
    },
}

/// One subchannel's weight in a weighted picker.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SubchannelWeight {
    /// The subchannel.
    pub subchannel: SubchannelId,
    /// Its address.
    pub address: Address,
    /// Its weight, scaled so the heaviest is 65,535 (all equal: plain round robin).
    pub weight: u16,
}

impl SubchannelWeight {
    /// `subchannel` at `address` weighs `weight`.
    pub fn new(subchannel: SubchannelId, address: Address, weight: u16) -> Self {
        SubchannelWeight {
            subchannel,
            address,
            weight,
        }
    }
}

/// What happened to a connection of pick_first ([`Notice::PickFirst`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PickFirstEvent {
    /// The subchannel connected and was chosen: calls go to it.
    Connected,
    /// An attempt to connect the subchannel failed (or timed out).
    AttemptFailed,
    /// The chosen subchannel's connection was lost.
    Disconnected,
}

impl fmt::Display for PickFirstEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PickFirstEvent::Connected => "connected and chosen",
            PickFirstEvent::AttemptFailed => "connection attempt failed",
            PickFirstEvent::Disconnected => "the chosen connection was lost",
        })
    }
}

/// One endpoint's weight from its load reports in a scheduler update
/// ([`Notice::SchedulerUpdated`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EndpointLoad {
    /// The endpoint's READY subchannel.
    pub subchannel: SubchannelId,
    /// Its address.
    pub address: Address,
    /// What its load reports gave it.
    pub weight: LoadWeight,
}

impl EndpointLoad {
    /// `subchannel` at `address`, weighing `weight` by its load reports.
    pub fn new(subchannel: SubchannelId, address: Address, weight: LoadWeight) -> Self {
        EndpointLoad {
            subchannel,
            address,
            weight,
        }
    }
}

/// An endpoint's weight from its load reports, as of a scheduler update.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum LoadWeight {
    /// Its reports have counted for the blackout period and are fresh: this weight
    /// (`qps / (utilization + eps / qps * penalty)`, before scaling) is usable.
    Usable(f64),
    /// No report has come yet, or the first of the current run came less than the blackout
    /// period ago.
    NotYetUsable,
    /// The last report came longer ago than the weight expiration period.
    Stale,
}

impl LoadWeight {
    /// The weight, 0 unless usable (as gRFC A78 records an endpoint without a usable one).
    pub fn value(self) -> f64 {
        match self {
            LoadWeight::Usable(weight) => weight,
            LoadWeight::NotYetUsable | LoadWeight::Stale => 0.0,
        }
    }
}

impl fmt::Display for LoadWeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadWeight::Usable(weight) => write!(f, "{weight:.1}"),
            LoadWeight::NotYetUsable => f.write_str("not yet usable"),
            LoadWeight::Stale => f.write_str("stale"),
        }
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::ChannelState { from, to } => write!(f, "channel: {from} -> {to}"),
            Notice::SubchannelState {
                subchannel,
                address,
                from,
                to,
                reason,
            } => {
                write!(f, "{subchannel} {address}: {from} -> {to}")?;
                match reason {
                    Some(reason) => write!(f, ": {reason}"),
                    None => Ok(()),
                }
            }
            Notice::ConnectStarted {
                connection,
                address,
            } => write!(f, "{connection} {address}: connecting"),
            Notice::ConnectFailed {
                connection,
                address,
                error,
            } => write!(f, "{connection} {address}: connection failed: {error}"),
            Notice::ResolverApplied { endpoints, policy } => {
                write!(
                    f,
                    "resolver update applied: {endpoints} endpoints, policy {policy}"
                )
            }
            Notice::ResolverRejected {
                endpoints: Some(endpoints),
                error,
            } => write!(
                f,
                "resolver update of {endpoints} endpoints refused: {error}"
            ),
            Notice::ResolverRejected {
                endpoints: None,
                error,
            } => write!(f, "{error}; the endpoints in use stay"),
            Notice::PolicySwitchStarted { from, to } => {
                write!(
                    f,
                    "switching policy from {from} to {to}: {from} serves until {to} is READY"
                )
            }
            Notice::PolicySwitched { from, to } => {
                write!(f, "policy switched from {from} to {to}")
            }
            Notice::Ejected {
                subchannel,
                address,
                times,
            } => write!(
                f,
                "{subchannel} {address}: ejected by outlier detection (ejection {times} in a row)"
            ),
            Notice::Restored {
                subchannel,
                address,
            } => write!(f, "{subchannel} {address}: returned from ejection"),
            Notice::WeightsUpdated { weights } => {
                f.write_str("weights updated:")?;
                let total: u64 = weights.iter().map(|w| u64::from(w.weight)).sum();
                for (i, weight) in weights.iter().enumerate() {
                    let share = if total == 0 {
                        0.0
                    } else {
                        f64::from(weight.weight) * 100.0 / total as f64
                    };
                    let separator = if i == 0 { " " } else { ", " };
                    write!(
                        f,
                        "{separator}{} {} {} ({share:.1}%)",
                        weight.subchannel, weight.address, weight.weight
                    )?;
                }
                Ok(())
            }
            Notice::SchedulerUpdated {
                endpoints,
                fallback,
            } => {
                f.write_str("scheduler updated")?;
                if *fallback {
                    f.write_str(" (too few usable weights: by the resolver's weights)")?;
                }
                for (i, endpoint) in endpoints.iter().enumerate() {
                    let separator = if i == 0 { ": " } else { ", " };
                    write!(
                        f,
                        "{separator}{} {} {}",
                        endpoint.subchannel, endpoint.address, endpoint.weight
                    )?;
                }
                Ok(())
            }
            Notice::PickFirst {
                subchannel,
                address,
                event,
            } => write!(f, "{subchannel} {address}: pick_first: {event}"),
            Notice::Dropped { count } => {
                write!(f, "{count} notices dropped: the queue was full")
            }
        }
    }
}

/// How many notices' room a drained queue keeps.
const RETAINED: usize = 256;

/// The notices not yet polled: at most `capacity`, the oldest dropped (and counted) first.
#[derive(Debug, Default)]
pub(crate) struct Notices {
    queue: std::collections::VecDeque<Notice>,
    capacity: usize,
    dropped: u64,
}

impl Notices {
    /// A queue of at most `capacity` notices; 0 keeps none.
    pub(crate) fn new(capacity: usize) -> Self {
        Notices {
            queue: std::collections::VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }

    /// Whether notices are kept: build one only if so.
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Queues `notice`, dropping the oldest if the queue is full.
    pub(crate) fn push(&mut self, notice: Notice) {
        if !self.enabled() {
            return;
        }
        if self.queue.len() >= self.capacity {
            self.queue.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        self.queue.push_back(notice);
    }

    /// The next notice: first how many were dropped, if any were since the last poll. Polling
    /// an empty queue (notices off, or nothing new) is two compares, inlined.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<Notice> {
        if self.dropped == 0 && self.queue.is_empty() {
            return None;
        }
        self.pop_waiting()
    }

    #[cold]
    fn pop_waiting(&mut self) -> Option<Notice> {
        if self.dropped > 0 {
            let count = std::mem::take(&mut self.dropped);
            return Some(Notice::Dropped { count });
        }
        let notice = self.queue.pop_front();
        if self.queue.is_empty() && self.queue.capacity() > RETAINED {
            // A burst (thousands of endpoints connecting) keeps no memory once drained.
            self.queue.shrink_to(RETAINED);
        }
        notice
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dropped(count: u64) -> Notice {
        Notice::Dropped { count }
    }

    #[test]
    fn a_queue_of_no_room_keeps_nothing() {
        let mut notices = Notices::new(0);
        assert!(!notices.enabled());
        notices.push(dropped(1));
        assert_eq!(notices.pop(), None);
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let mut notices = Notices::new(100_000);
        for i in 0..10_000 {
            notices.push(dropped(i));
        }
        assert!(notices.queue.capacity() >= 10_000);
        let mut seen = 0;
        while notices.pop().is_some() {
            seen += 1;
        }
        assert_eq!(seen, 10_000, "none dropped below the capacity");
        assert!(notices.queue.capacity() <= RETAINED);
    }
}
