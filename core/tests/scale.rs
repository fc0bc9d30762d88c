//! The core's work and memory grow linearly with the endpoints: 10,000, 100,000 and 200,000
//! endpoints (consecutive IPs behind one port) connecting and becoming READY one event at a
//! time, in a shuffled order, and resolver updates of those sizes. Bytes and allocations are
//! counted with a global allocator (deterministic, unlike time; `benches/benches/scale.rs` times
//! the same scenarios).

#![allow(unsafe_code)] // a GlobalAlloc is unsafe to implement; it only forwards to the system's

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use croupier::ResolverUpdate;
use croupier::{Balancer, ConnectionEvent, ConnectivityState, Pick, PickRequest, PolicyConfig};
use croupier_testing::scale::{
    all_ready_one_by_one, balancer, connecting, drain, one_percent_changed, pods,
    ring_hash_connecting,
};

thread_local! {
    /// Bytes allocated, allocations made, bytes live now and at most, on this thread.
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn allocated(bytes: usize) {
    ALLOCATED.with(|n| n.set(n.get() + bytes as u64));
    ALLOCATIONS.with(|n| n.set(n.get() + 1));
    LIVE.with(|live| {
        live.set(live.get() + bytes as i64);
        PEAK.with(|peak| peak.set(peak.get().max(live.get())));
    });
}

fn freed(bytes: usize) {
    LIVE.with(|live| live.set(live.get() - bytes as i64));
}

struct Counting;

// SAFETY: every method forwards to `System` unchanged; the counters are thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        allocated(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        freed(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        freed(layout.size());
        allocated(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What a piece of work allocated: bytes in all, allocations, and the most bytes live at once
/// above what was live when it began.
#[derive(Clone, Copy, Debug)]
struct Usage {
    bytes: u64,
    allocations: u64,
    peak: u64,
}

fn usage_of<T>(f: impl FnOnce() -> T) -> (T, Usage) {
    let bytes = ALLOCATED.with(Cell::get);
    let allocations = ALLOCATIONS.with(Cell::get);
    let live = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(live));
    let value = f();
    let usage = Usage {
        bytes: ALLOCATED.with(Cell::get) - bytes,
        allocations: ALLOCATIONS.with(Cell::get) - allocations,
        peak: (PEAK.with(Cell::get) - live) as u64,
    };
    (value, usage)
}

/// A fresh balancer given `n` endpoints, every one connecting and then becoming READY one event
/// at a time in a shuffled order, a microsecond apart, the actions drained after each event.
fn all_ready_one_at_a_time(policy: &PolicyConfig, n: u32) -> Usage {
    let start = Instant::now();
    let (balancer, usage) = usage_of(|| {
        let (mut balancer, connects) = connecting(policy, n, start);
        let more = all_ready_one_by_one(&mut balancer, connects, start);
        assert!(more.is_empty(), "no reconnects: {}", more.len());
        balancer
    });
    all_ready(&balancer);
    usage
}

fn all_ready(balancer: &Balancer) {
    assert_eq!(balancer.state(), ConnectivityState::Ready);
    let states = balancer.subchannel_states();
    assert!(states
        .into_iter()
        .all(|(_, s)| s == ConnectivityState::Ready));
}

fn assert_linear(what: &str, small: Usage, large: Usage, ratio: u64) {
    println!("{what}: {small:?} -> {large:?}");
    assert!(
        large.bytes <= ratio * small.bytes,
        "{what}: {} bytes allocated, then {}",
        small.bytes,
        large.bytes
    );
    assert!(
        large.allocations <= ratio * small.allocations,
        "{what}: {} allocations, then {}",
        small.allocations,
        large.allocations
    );
    assert!(
        large.peak <= ratio * small.peak,
        "{what}: {} bytes at most, then {}",
        small.peak,
        large.peak
    );
}

#[test]
fn round_robin_endpoints_becoming_ready_one_by_one_cost_linear_work_and_memory() {
    let policy = PolicyConfig::round_robin();
    let small = all_ready_one_at_a_time(&policy, 10_000);
    let large = all_ready_one_at_a_time(&policy, 100_000);
    let largest = all_ready_one_at_a_time(&policy, 200_000);
    for (n, usage) in [(10_000, small), (100_000, large), (200_000, largest)] {
        println!(
            "round_robin, {n} endpoints READY one by one: {} bytes allocated, {} allocations, \
             {} bytes at most ({} per endpoint)",
            usage.bytes,
            usage.allocations,
            usage.peak,
            usage.peak / n
        );
    }
    assert_linear("round_robin, 10,000 -> 100,000", small, large, 12);
    assert_linear("round_robin, 100,000 -> 200,000", large, largest, 3);
}

#[test]
fn every_policy_on_the_endpoint_layer_is_linear_too() {
    for policy in [
        PolicyConfig::random(),
        PolicyConfig::least_request(),
        PolicyConfig::weighted_round_robin(),
        PolicyConfig::p2c_ewma(),
        PolicyConfig::least_latency(),
        PolicyConfig::prequal(),
    ] {
        let small = all_ready_one_at_a_time(&policy, 10_000);
        let large = all_ready_one_at_a_time(&policy, 100_000);
        assert_linear(policy.name(), small, large, 12);
    }
}

#[test]
fn the_final_picker_offers_every_endpoint() {
    let start = Instant::now();
    let (mut balancer, connects) = connecting(&PolicyConfig::round_robin(), 1_000, start);
    let mut seen_ready = 0;
    for (i, connection) in connects.into_iter().enumerate() {
        let at = start + Duration::from_micros(i as u64);
        balancer.handle_connection_event(connection, ConnectionEvent::Connected, at);
        drain(&mut balancer, &mut Vec::new());
        seen_ready = seen_ready.max(distinct_picks(&balancer, 1_000));
    }
    // During the burst the picker trails the connections...
    assert!(seen_ready < 1_000, "{seen_ready}");
    // ...until the window is over.
    let timeout = balancer
        .poll_timeout()
        .expect("a picker waits for its timer");
    assert!(timeout <= start + Duration::from_millis(100), "{timeout:?}");
    balancer.handle_timeout(timeout);
    drain(&mut balancer, &mut Vec::new());
    assert_eq!(distinct_picks(&balancer, 1_000), 1_000);
}

/// How many distinct subchannels `picks` picks from the newest picker name.
fn distinct_picks(balancer: &Balancer, picks: usize) -> usize {
    let picker = balancer.picker();
    let mut seen = HashSet::new();
    for _ in 0..picks {
        if let Pick::Ready(id) = picker.pick(&PickRequest::new()) {
            seen.insert(id);
        }
    }
    seen.len()
}

/// A fresh update of `n` endpoints, and then one with every hundredth replaced.
fn update_usage(policy: &PolicyConfig, n: u32) -> (Usage, Usage) {
    let start = Instant::now();
    let list = pods(0, n);
    let changed = one_percent_changed(n);
    let mut connects = Vec::with_capacity(n as usize);
    let (mut balancer, fresh) = usage_of(|| {
        let mut balancer = balancer(policy, start);
        balancer.handle_resolver_update(ResolverUpdate::new(list), start);
        drain(&mut balancer, &mut connects);
        balancer
    });
    let ((), one_percent) = usage_of(|| {
        balancer.handle_resolver_update(ResolverUpdate::new(changed), start);
        drain(&mut balancer, &mut connects);
    });
    (fresh, one_percent)
}

#[test]
fn fresh_updates_and_one_percent_changes_cost_linear_work_and_memory() {
    for policy in [PolicyConfig::pick_first(), PolicyConfig::round_robin()] {
        let (fresh_small, change_small) = update_usage(&policy, 10_000);
        let (fresh_large, change_large) = update_usage(&policy, 100_000);
        let name = policy.name();
        assert_linear(&format!("{name}, fresh"), fresh_small, fresh_large, 12);
        assert_linear(
            &format!("{name}, 1% changed"),
            change_small,
            change_large,
            12,
        );
    }
}

/// ring_hash over `n` endpoints, a ring entry each, all flagged by picks and connected by one
/// exit_idle, becoming READY one event at a time in a shuffled order.
fn ring_hash_all_ready_one_at_a_time(n: u32) -> Usage {
    let start = Instant::now();
    let ((balancer, hashes), usage) = usage_of(|| {
        let (mut balancer, connects, hashes) = ring_hash_connecting(n, start);
        assert_eq!(connects.len(), n as usize, "every endpoint connects");
        let more = all_ready_one_by_one(&mut balancer, connects, start);
        assert!(more.is_empty(), "no reconnects: {}", more.len());
        (balancer, hashes)
    });
    all_ready(&balancer);
    // Every endpoint answers the calls that hash to it, through the newest picker.
    let picker = balancer.picker();
    let picked: HashSet<_> = hashes
        .iter()
        .filter_map(
            |hash| match picker.pick(&PickRequest::new().with_hash(*hash)) {
                Pick::Ready(id) => Some(id),
                _ => None,
            },
        )
        .collect();
    assert_eq!(picked.len(), n as usize);
    usage
}

#[test]
fn ring_hash_endpoints_becoming_ready_one_by_one_cost_linear_work_and_memory() {
    let small = ring_hash_all_ready_one_at_a_time(10_000);
    let large = ring_hash_all_ready_one_at_a_time(100_000);
    assert_linear("ring_hash", small, large, 12);
}
