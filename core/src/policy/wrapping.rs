//! Controllers that wrap another, as a policy hands one to each child: every [`Controller`]
//! method passes to the wrapped controller unless the wrapper says otherwise, so a method added
//! to `Controller` reaches every child at once and is never dropped by a wrapper that forgot to
//! pass it on.

use std::sync::Arc;
use std::time::Instant;

use crate::address::Address;
use crate::notice::Notice;
use crate::picker::Picker;
use crate::policy::{Controller, TimerToken};
use crate::rng::Rng;
use crate::status::ConnectivityState;
use crate::subchannel::SubchannelId;

/// A controller over another ([`Wrapping::inner`]). The methods here are those some wrapper
/// changes; each passes on by default. The others always pass on. A wrapper that needs to
/// change one of those adds it here, with a default that passes it on.
pub(crate) trait Wrapping {
    /// The controller wrapped.
    fn inner(&self) -> &dyn Controller;

    /// The controller wrapped, to ask things of.
    fn inner_mut(&mut self) -> &mut dyn Controller;

    fn create_subchannel(&mut self, address: &Address) -> SubchannelId {
        self.inner_mut().create_subchannel(address)
    }

    fn reserve_subchannels(&mut self, additional: usize) {
        self.inner_mut().reserve_subchannels(additional);
    }

    fn remove_subchannel(&mut self, subchannel: SubchannelId) {
        self.inner_mut().remove_subchannel(subchannel);
    }

    fn subchannel_state(&self, subchannel: SubchannelId) -> Option<ConnectivityState> {
        self.inner().subchannel_state(subchannel)
    }

    fn publish(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>) {
        self.inner_mut().publish(state, picker);
    }

    fn request_resolution(&mut self) {
        self.inner_mut().request_resolution();
    }
}

impl<W: Wrapping> Controller for W {
    fn now(&self) -> Instant {
        self.inner().now()
    }

    fn create_subchannel(&mut self, address: &Address) -> SubchannelId {
        Wrapping::create_subchannel(self, address)
    }

    fn reserve_subchannels(&mut self, additional: usize) {
        Wrapping::reserve_subchannels(self, additional);
    }

    fn connect(&mut self, subchannel: SubchannelId) {
        self.inner_mut().connect(subchannel);
    }

    fn remove_subchannel(&mut self, subchannel: SubchannelId) {
        Wrapping::remove_subchannel(self, subchannel);
    }

    fn subchannel_state(&self, subchannel: SubchannelId) -> Option<ConnectivityState> {
        Wrapping::subchannel_state(self, subchannel)
    }

    fn publish(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>) {
        Wrapping::publish(self, state, picker);
    }

    fn request_resolution(&mut self) {
        Wrapping::request_resolution(self);
    }

    fn request_probe(&mut self, subchannel: SubchannelId) {
        self.inner_mut().request_probe(subchannel);
    }

    fn set_timer(&mut self, at: Instant, token: TimerToken) {
        self.inner_mut().set_timer(at, token);
    }

    fn rng(&mut self) -> &mut Rng {
        self.inner_mut().rng()
    }

    fn notices_enabled(&self) -> bool {
        self.inner().notices_enabled()
    }

    fn notify(&mut self, notice: Notice) {
        self.inner_mut().notify(notice);
    }

    fn subchannel_address(&self, subchannel: SubchannelId) -> Option<Address> {
        self.inner().subchannel_address(subchannel)
    }
}
