//! Scenarios at scale, shared by the core's tests (which count their bytes and allocations) and
//! the benchmarks (which time them): many endpoints on consecutive IPs behind one port, as a
//! fleet of pods is, connecting and becoming READY one event at a time in a shuffled order.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use croupier::policy::RingHashConfig;
use croupier::{
    Action, Balancer, BalancerConfig, ConnectionEvent, ConnectionId, Endpoint, Pick, PickRequest,
    PolicyConfig, ResolverUpdate, Rng,
};

/// The most endpoints these scenarios use (the balancers they build accept that many).
pub const MAX_ENDPOINTS: usize = 200_000;

/// The address of pod `i`: 10.0.0.0 + `i`, port 8080 (never connected to: the core does no I/O).
pub fn pod_address(i: u32) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i)).into(), 8080)
}

/// Pods `first..first + n`.
pub fn pods(first: u32, n: u32) -> Vec<Endpoint> {
    (first..first + n)
        .map(|i| Endpoint::new(pod_address(i)))
        .collect()
}

/// `n` pods with every hundredth replaced by a new one.
pub fn one_percent_changed(n: u32) -> Vec<Endpoint> {
    let mut list = pods(0, n);
    for (i, endpoint) in list.iter_mut().enumerate().step_by(100) {
        *endpoint = Endpoint::new(pod_address(n + i as u32));
    }
    list
}

/// A balancer with `policy` that takes up to [`MAX_ENDPOINTS`] endpoints.
pub fn balancer(policy: &PolicyConfig, now: Instant) -> Balancer {
    let config = BalancerConfig::default()
        .policy(policy.clone())
        .max_endpoints(MAX_ENDPOINTS);
    Balancer::new(config, 7, now)
}

/// Carries out the actions as an adapter does, keeping the attempts to connect.
pub fn drain(balancer: &mut Balancer, connects: &mut Vec<ConnectionId>) {
    while let Some(action) = balancer.poll_action() {
        if let Action::Connect { connection, .. } = action {
            connects.push(connection);
        }
    }
}

/// A balancer with `policy` just given `n` pods, and its attempts in a shuffled order.
pub fn connecting(policy: &PolicyConfig, n: u32, now: Instant) -> (Balancer, Vec<ConnectionId>) {
    let mut balancer = balancer(policy, now);
    balancer.handle_resolver_update(ResolverUpdate::new(pods(0, n)), now);
    let mut connects = Vec::with_capacity(n as usize);
    drain(&mut balancer, &mut connects);
    Rng::new(u64::from(n)).shuffle(&mut connects);
    (balancer, connects)
}

/// Every attempt in `connects` connects, one event a microsecond after `now`, the actions drained
/// after each; then the window in which a picker may wait ends. Returns the attempts made on the
/// way (none, when every connection holds).
pub fn all_ready_one_by_one(
    balancer: &mut Balancer,
    connects: Vec<ConnectionId>,
    now: Instant,
) -> Vec<ConnectionId> {
    let n = connects.len() as u64;
    let mut more = Vec::new();
    for (i, connection) in connects.into_iter().enumerate() {
        let at = now + Duration::from_micros(i as u64);
        balancer.handle_connection_event(connection, ConnectionEvent::Connected, at);
        drain(balancer, &mut more);
    }
    balancer.handle_timeout(now + Duration::from_micros(n) + Duration::from_secs(1));
    drain(balancer, &mut more);
    more
}

/// ring_hash over `n` pods with a ring of `n` entries, one each: the balancer after a pick for
/// every pod's entry flagged it and one exit_idle connected them all, its attempts in a shuffled
/// order, and the hash of each pod's entry.
pub fn ring_hash_connecting(n: u32, now: Instant) -> (Balancer, Vec<ConnectionId>, Vec<u64>) {
    let list = pods(0, n);
    let hashes: Vec<u64> = list
        .iter()
        .map(|endpoint| {
            let key = format!("{}_0", endpoint.addresses()[0]);
            xxhash_rust::xxh64::xxh64(key.as_bytes(), 0)
        })
        .collect();
    let ring = RingHashConfig::default()
        .min_ring_size(u64::from(n))
        .max_ring_size(u64::from(n));
    let mut balancer = balancer(&PolicyConfig::new(ring), now);
    balancer.handle_resolver_update(ResolverUpdate::new(list), now);
    let mut connects = Vec::with_capacity(n as usize);
    drain(&mut balancer, &mut connects);
    let picker = balancer.picker();
    for hash in &hashes {
        let pick = picker.pick(&PickRequest::new().with_hash(*hash));
        debug_assert_eq!(pick, Pick::Queue, "an IDLE endpoint is flagged");
    }
    balancer.exit_idle(now);
    drain(&mut balancer, &mut connects);
    Rng::new(u64::from(n)).shuffle(&mut connects);
    (balancer, connects, hashes)
}
