//! The notices a subchannel's changes make, built only when notices are on.

use crate::address::Address;
use crate::notice::{Notice, Notices};
use crate::status::ConnectivityState;
use crate::subchannel::{ConnectionId, Subchannel, SubchannelId};

/// `subchannel` (whose handle is `id` and address `address`) moved from `from` to the state it
/// is in: a [`Notice::SubchannelState`], after a [`Notice::ConnectFailed`] if an attempt failed.
/// The caller looks the address up only while notices are on; without it, nothing is told.
#[inline]
pub(super) fn state_changed(
    notices: &mut Notices,
    id: SubchannelId,
    subchannel: &Subchannel,
    address: Option<&Address>,
    from: ConnectivityState,
) {
    if let Some(address) = address.filter(|_| notices.enabled()) {
        push_state_changed(notices, id, subchannel, address, from);
    }
}

#[cold]
fn push_state_changed(
    notices: &mut Notices,
    id: SubchannelId,
    subchannel: &Subchannel,
    address: &Address,
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
            address: address.clone(),
            error: reason.clone().unwrap_or_else(|| "no reason given".into()),
        });
    }
    notices.push(Notice::SubchannelState {
        subchannel: id,
        address: address.clone(),
        from,
        to,
        reason,
    });
}

/// The subchannel of `address` started the attempt `connection`: IDLE -> CONNECTING.
#[inline]
pub(super) fn connecting(
    notices: &mut Notices,
    connection: ConnectionId,
    address: Option<&Address>,
) {
    if let Some(address) = address.filter(|_| notices.enabled()) {
        push_connecting(notices, connection, address);
    }
}

#[cold]
fn push_connecting(notices: &mut Notices, connection: ConnectionId, address: &Address) {
    notices.push(Notice::ConnectStarted {
        connection,
        address: address.clone(),
    });
    notices.push(Notice::SubchannelState {
        subchannel: connection.subchannel(),
        address: address.clone(),
        from: ConnectivityState::Idle,
        to: ConnectivityState::Connecting,
        reason: None,
    });
}
