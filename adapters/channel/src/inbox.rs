//! The driver's inbox: what channel handles, call guards and the resolver send the driver. It sits
//! below the driver, the channel and the resolver so that each of them depends on it and none on
//! another for it.

use croupier::{CallOutcome, ResolverError, ResolverUpdate, SubchannelId, SubchannelInfo};

use crate::snapshot::ChannelSnapshot;

/// What the driver hears from handles, guards and the resolver.
#[derive(Debug)]
pub(crate) enum Input {
    /// The resolver's new list of endpoints (and service config).
    Resolved(ResolverUpdate),
    /// The resolver could not resolve the target.
    ResolverFailed(ResolverError),
    /// A call picked on this subchannel ended with this outcome.
    CallEnded(SubchannelId, CallOutcome),
    /// A pick found the channel idle and asks it to connect.
    ExitIdle,
    /// A request for the subchannels' current state, answered on this sender.
    Subchannels(async_channel::Sender<Vec<SubchannelInfo>>),
    /// A request for the channel's snapshot, answered on this sender.
    Snapshot(async_channel::Sender<ChannelSnapshot>),
}
