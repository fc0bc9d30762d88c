//! random: every call goes to a READY endpoint drawn uniformly at random.
//!
//! Endpoints are connected and aggregated by [`EndpointPolicy`], as for round_robin; only the
//! picker differs. Its draws come from a lock-free generator seeded from the balancer's seed.

use std::sync::Arc;

use crate::picker::{Pick, PickRequest, Picker};
use crate::policy::endpoints::{EndpointPolicy, ReadyEndpoints, Spread};
use crate::policy::{Controller, Policy, PolicyBuilder};
use crate::rng::AtomicRng;
use crate::subchannel::SubchannelId;

/// Settings of random (it has none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RandomConfig {}

impl PolicyBuilder for RandomConfig {
    fn name(&self) -> &str {
        "random"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(EndpointPolicy::new(Random))
    }
}

/// random's spread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Random;

impl Spread for Random {
    type Endpoint = ();

    fn picker(
        &mut self,
        ready: &ReadyEndpoints<'_, ()>,
        ctl: &mut dyn Controller,
    ) -> Arc<dyn Picker> {
        let ready: Vec<SubchannelId> = ready.subchannels().collect();
        Arc::new(RandomPicker::new(ready, ctl.rng().next_u64()))
    }
}

/// Picks uniformly among READY subchannels.
#[derive(Debug)]
pub(crate) struct RandomPicker {
    ready: Box<[SubchannelId]>,
    rng: AtomicRng,
}

impl RandomPicker {
    pub(crate) fn new(ready: Vec<SubchannelId>, seed: u64) -> Self {
        RandomPicker {
            ready: ready.into_boxed_slice(),
            rng: AtomicRng::new(seed),
        }
    }
}

impl Picker for RandomPicker {
    fn pick(&self, _: &PickRequest<'_>) -> Pick {
        if self.ready.is_empty() {
            return Pick::Queue;
        }
        match self.ready.get(self.rng.index(self.ready.len())) {
            Some(&subchannel) => Pick::Ready(subchannel),
            None => Pick::Queue,
        }
    }
}
