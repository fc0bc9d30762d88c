//! The controller a multi-endpoint policy hands each endpoint's `PickFirstList`: it forwards
//! everything to the real controller (through the endpoint's [`SlotController`], so its timers
//! carry its slot) and records which endpoint owns each subchannel, so the policy can route
//! subchannel updates back to the right list.

use std::sync::Arc;

use crate::address::Address;
use crate::picker::Picker;
use crate::policy::wrapping::Wrapping;
use crate::policy::{Controller, SlotController};
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

impl<K: Copy> Wrapping for ChildController<'_, K> {
    fn inner(&self) -> &dyn Controller {
        &self.inner
    }

    fn inner_mut(&mut self) -> &mut dyn Controller {
        &mut self.inner
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

    fn remove_subchannel(&mut self, subchannel: SubchannelId) {
        self.owners.remove(&subchannel);
        self.inner.remove_subchannel(subchannel);
    }

    fn publish(&mut self, _: ConnectivityState, _: Arc<dyn Picker>) {
        // Children report through their state; the parent publishes.
    }
}
