//! What pick_first tells of its connections, as [`Notice::PickFirst`]: the facts gRFC A78's
//! pick_first metrics count.

use crate::notice::{Notice, PickFirstEvent};
use crate::policy::Controller;
use crate::status::ConnectivityState;
use crate::subchannel::SubchannelId;

/// What `subchannel`, one of pick_first's, moving to `state` means for pick_first, given its
/// connected subchannel `before` and `after` the move: it connected (it is the one chosen now),
/// its connection was lost (it was the one chosen), or an attempt of it failed.
pub(super) fn event(
    subchannel: SubchannelId,
    state: ConnectivityState,
    before: Option<SubchannelId>,
    after: Option<SubchannelId>,
) -> Option<PickFirstEvent> {
    match state {
        ConnectivityState::Ready if after == Some(subchannel) && before != after => {
            Some(PickFirstEvent::Connected)
        }
        ConnectivityState::Idle | ConnectivityState::TransientFailure
            if before == Some(subchannel) && after != before =>
        {
            Some(PickFirstEvent::Disconnected)
        }
        ConnectivityState::TransientFailure => Some(PickFirstEvent::AttemptFailed),
        _ => None,
    }
}

/// Tells `event` of `subchannel`.
pub(super) fn tell(ctl: &mut dyn Controller, subchannel: SubchannelId, event: PickFirstEvent) {
    if let Some(address) = ctl.subchannel_address(subchannel) {
        ctl.notify(Notice::PickFirst {
            subchannel,
            address,
            event,
        });
    }
}
