//! The notices a subchannel's changes make, built only when notices are on.

use crate::notice::{Notice, Notices};
use crate::status::ConnectivityState;
use crate::subchannel::{ConnectionId, Subchannel, SubchannelId};

/// `subchannel` (whose handle is `id`) moved from `from` to the state it is in: a
/// [`Notice::SubchannelState`], after a [`Notice::ConnectFailed`] if an attempt failed.
#[inline]
pub(super) fn state_changed(
    notices: &mut Notices,
    id: SubchannelId,
    subchannel: &Subchannel,
    from: ConnectivityState,
) {
    if notices.enabled() {
        push_state_changed(notices, id, subchannel, from);
    }
}

#[cold]
fn push_state_changed(
    notices: &mut Notices,
    id: SubchannelId,
    subchannel: &Subchannel,
    from: ConnectivityState,
) {
    let to = subchannel.state();
    // The last error says why only when an error moved it: a failure, or a connection lost.
    let by_error = to == ConnectivityState::TransientFailure
        || (from == ConnectivityState::Ready && to == ConnectivityState::Idle);
    let reason = subchannel.last_error().filter(|_| by_error).cloned();
    if from == ConnectivityState::Connecting && to == ConnectivityState::TransientFailure {
        notices.push(Notice::ConnectFailed {
            connection: subchannel.connection(id),
            address: subchannel.address().clone(),
            error: reason.clone().unwrap_or_else(|| "no reason given".into()),
        });
    }
    notices.push(Notice::SubchannelState {
        subchannel: id,
        address: subchannel.address().clone(),
        from,
        to,
        reason,
    });
}

/// `subchannel` started the attempt `connection`: IDLE -> CONNECTING.
#[inline]
pub(super) fn connecting(notices: &mut Notices, connection: ConnectionId, subchannel: &Subchannel) {
    if notices.enabled() {
        push_connecting(notices, connection, subchannel);
    }
}

#[cold]
fn push_connecting(notices: &mut Notices, connection: ConnectionId, subchannel: &Subchannel) {
    notices.push(Notice::ConnectStarted {
        connection,
        address: subchannel.address().clone(),
    });
    notices.push(Notice::SubchannelState {
        subchannel: connection.subchannel(),
        address: subchannel.address().clone(),
        from: ConnectivityState::Idle,
        to: ConnectivityState::Connecting,
        reason: None,
    });
}
