//! The controller a policy hands one of its children so that the child's timers carry the
//! child's slot: how a policy of the user's own owns several [`PickFirstList`]s (or policies)
//! without packing timer tokens.
//!
//! [`PickFirstList`]: crate::policy::PickFirstList

use std::sync::Arc;
use std::time::Instant;

use crate::address::Address;
use crate::picker::Picker;
use crate::policy::{Controller, TimerToken};
use crate::rng::Rng;
use crate::status::ConnectivityState;
use crate::subchannel::SubchannelId;

/// Forwards everything to the policy's own controller, except that timers the child sets get the
/// child's slot ([`TimerToken::child`]); the policy routes them back in [`Policy::timer`] with
/// [`TimerToken::split`]. Building one allocates nothing.
///
/// A timer of a child that already nests [`TimerToken::MAX_DEPTH`] deep is not set: it could not
/// be told apart from another. Slot `u32::MAX` has no tokens: its child's timers are never set.
///
/// [`Policy::timer`]: crate::policy::Policy::timer
pub struct SlotController<'a> {
    inner: &'a mut dyn Controller,
    slot: u32,
}

impl<'a> SlotController<'a> {
    /// The controller of the child in slot `slot`, over the policy's controller `inner`.
    pub fn new(inner: &'a mut dyn Controller, slot: u32) -> Self {
        SlotController { inner, slot }
    }
}

impl std::fmt::Debug for SlotController<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotController")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl Controller for SlotController<'_> {
    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn create_subchannel(&mut self, address: &Address) -> SubchannelId {
        self.inner.create_subchannel(address)
    }

    fn reserve_subchannels(&mut self, additional: usize) {
        self.inner.reserve_subchannels(additional);
    }

    fn connect(&mut self, subchannel: SubchannelId) {
        self.inner.connect(subchannel);
    }

    fn remove_subchannel(&mut self, subchannel: SubchannelId) {
        self.inner.remove_subchannel(subchannel);
    }

    fn subchannel_state(&self, subchannel: SubchannelId) -> Option<ConnectivityState> {
        self.inner.subchannel_state(subchannel)
    }

    fn publish(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>) {
        self.inner.publish(state, picker);
    }

    fn request_resolution(&mut self) {
        self.inner.request_resolution();
    }

    fn request_probe(&mut self, subchannel: SubchannelId) {
        self.inner.request_probe(subchannel);
    }

    fn set_timer(&mut self, at: Instant, token: TimerToken) {
        if let Some(token) = TimerToken::child(self.slot, token) {
            self.inner.set_timer(at, token);
        }
    }

    fn rng(&mut self) -> &mut Rng {
        self.inner.rng()
    }

    fn notices_enabled(&self) -> bool {
        self.inner.notices_enabled()
    }

    fn notify(&mut self, notice: crate::notice::Notice) {
        self.inner.notify(notice);
    }

    fn subchannel_address(&self, subchannel: SubchannelId) -> Option<Address> {
        self.inner.subchannel_address(subchannel)
    }
}
