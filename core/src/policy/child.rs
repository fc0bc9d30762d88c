//! The controller a multi-endpoint policy hands each endpoint's `PickFirstList`: it forwards
//! everything to the real controller (through the endpoint's [`SlotController`], so its timers
//! carry its slot) and records which endpoint owns each subchannel, so the policy can route
//! subchannel updates back to the right list.

use std::sync::Arc;
use std::time::Instant;

use crate::address::Address;
use crate::picker::Picker;
use crate::policy::{Controller, SlotController, TimerToken};
use crate::rng::Rng;
use crate::status::ConnectivityState;
use crate::subchannel::{DenseIdMap, SubchannelId};

/// The controller one child (endpoint) sees; `K` is how its policy names children.
pub(crate) struct ChildController<'a, K = u32> {
    /// The policy's own controller, seen through the child's slot.
    pub(crate) inner: SlotController<'a>,
    /// Which child owns each subchannel.
    pub(crate) owners: &'a mut DenseIdMap<K>,
    /// This child's key.
    pub(crate) key: K,
}

impl<K: Copy> Controller for ChildController<'_, K> {
    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn create_subchannel(&mut self, address: &Address) -> SubchannelId {
        let id = self.inner.create_subchannel(address);
        self.owners.insert(id, self.key);
        id
    }

    fn reserve_subchannels(&mut self, additional: usize) {
        self.owners.reserve(additional);
        self.inner.reserve_subchannels(additional);
    }

    fn connect(&mut self, subchannel: SubchannelId) {
        self.inner.connect(subchannel);
    }

    fn remove_subchannel(&mut self, subchannel: SubchannelId) {
        self.owners.remove(&subchannel);
        self.inner.remove_subchannel(subchannel);
    }

    fn subchannel_state(&self, subchannel: SubchannelId) -> Option<ConnectivityState> {
        self.inner.subchannel_state(subchannel)
    }

    fn publish(&mut self, _: ConnectivityState, _: Arc<dyn Picker>) {
        // Children report through their state; the parent publishes.
    }

    fn request_resolution(&mut self) {
        self.inner.request_resolution();
    }

    fn request_probe(&mut self, subchannel: SubchannelId) {
        self.inner.request_probe(subchannel);
    }

    fn set_timer(&mut self, at: Instant, token: TimerToken) {
        self.inner.set_timer(at, token);
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
