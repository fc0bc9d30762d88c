//! round_robin: a connection to every endpoint, calls spread evenly over the READY ones.
//!
//! Endpoints are connected, aggregated and published by [`EndpointPolicy`] (one pick_first
//! list per endpoint, sticky TRANSIENT_FAILURE, paced pickers). The picker cycles over the
//! READY endpoints from a random start, so many clients do not all begin with the same backend
//! (a fixed start skewed load 3-4x in grpc-java #4462); a retry passes over the subchannels its
//! call already tried.

use std::sync::Arc;

use crate::picker::{Picker, RoundRobinPicker};
use crate::policy::endpoints::{EndpointPolicy, ReadyEndpoints, Spread};
use crate::policy::{Controller, Policy, PolicyBuilder};
use crate::subchannel::SubchannelId;

/// Settings of round_robin (it has none yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoundRobinConfig {}

impl PolicyBuilder for RoundRobinConfig {
    fn name(&self) -> &str {
        "round_robin"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(EndpointPolicy::new(RoundRobin))
    }
}

/// round_robin's spread: in turn, from a random start.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoundRobin;

impl Spread for RoundRobin {
    type Endpoint = ();

    fn picker(
        &mut self,
        ready: &ReadyEndpoints<'_, ()>,
        ctl: &mut dyn Controller,
    ) -> Arc<dyn Picker> {
        let ready: Vec<SubchannelId> = ready.subchannels().collect();
        let start = ctl.rng().index(ready.len());
        Arc::new(RoundRobinPicker::new(ready, start))
    }
}
