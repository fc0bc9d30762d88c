//! Shared set-up for croupier's benchmarks: balancers with N READY endpoints, and the floor
//! that any picker is measured against.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use croupier::{Endpoint, Picker, PolicyConfig, ResolverUpdate, SubchannelId};
use croupier_testing::{addr, Harness};

/// The endpoint counts every pick benchmark runs at.
pub const SIZES: [usize; 5] = [2, 16, 256, 1_000, 10_000];

/// `n` endpoints on distinct loopback ports.
pub fn endpoints(n: usize) -> Vec<Endpoint> {
    (0..n).map(|i| Endpoint::new(addr(port(i)))).collect()
}

/// A distinct port for endpoint `i` (10,000 endpoints fit below 65,535).
pub fn port(i: usize) -> u16 {
    1_024 + (i % 60_000) as u16
}

/// `n` endpoints on distinct loopback ports, with static weights 1, 2 and 3 in turn.
pub fn weighted_endpoints(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| Endpoint::new(addr(port(i))).weight(i as u32 % 3 + 1))
        .collect()
}

/// A balancer with `policy` whose `n` endpoints are all connected, and its picker.
pub fn ready_picker(policy: PolicyConfig, n: usize) -> (Harness, Arc<dyn Picker>) {
    ready_picker_for(policy, endpoints(n))
}

/// A balancer with `policy` whose `endpoints` are all connected, and its picker.
pub fn ready_picker_for(
    policy: PolicyConfig,
    endpoints: Vec<Endpoint>,
) -> (Harness, Arc<dyn Picker>) {
    let n = endpoints.len();
    let mut harness = Harness::new(policy, 42);
    harness.resolve(ResolverUpdate::new(endpoints));
    // Connect whatever the policy asks for, until it asks for nothing more. Policies that
    // connect lazily (ring_hash) connect what picks land on: pick all over the hash space first.
    for _ in 0..64 {
        let picker = harness.picker();
        for i in 0..(4 * n as u64).min(40_000) {
            let hash = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            picker.pick(&croupier::PickRequest::new().with_hash(hash));
        }
        harness.exit_idle();
        let attempts: Vec<_> = harness.attempts.values().map(|(c, _)| *c).collect();
        if attempts.is_empty() {
            break;
        }
        for connection in attempts {
            harness.report(connection, croupier::ConnectionEvent::Connected);
        }
    }
    let picker = harness.picker();
    (harness, picker)
}

/// The least any picker can cost: a relaxed atomic counter over a slice, hand-written.
#[derive(Debug)]
pub struct Floor {
    items: Box<[SubchannelId]>,
    next: AtomicUsize,
}

impl Floor {
    /// A floor over the subchannels of a READY round-robin picker's size.
    pub fn new(items: Vec<SubchannelId>) -> Self {
        Floor {
            items: items.into_boxed_slice(),
            next: AtomicUsize::new(0),
        }
    }

    /// One pick.
    #[inline]
    pub fn pick(&self) -> SubchannelId {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.items[i % self.items.len()]
    }
}
