//! A pick allocates nothing, and a call's retry machine allocates once: counted with a global
//! allocator that tallies every allocation.

#![allow(unsafe_code)] // a GlobalAlloc is unsafe to implement; it only forwards to the system's

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use croupier::{Endpoint, Pick, PickRequest, PolicyConfig, ResolverUpdate};

mod support;
use support::*;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every method forwards to `System` unchanged; the counter is a thread-local cell.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn picks_from_every_built_in_picker_allocate_nothing() {
    for policy in [
        PolicyConfig::pick_first(),
        PolicyConfig::round_robin(),
        PolicyConfig::random(),
        PolicyConfig::least_request(),
        PolicyConfig::weighted_round_robin(),
        PolicyConfig::p2c_ewma(),
        PolicyConfig::least_latency(),
        PolicyConfig::prequal(),
    ] {
        let mut h = Harness::new(policy, 1);
        // Unequal static weights, so weighted_round_robin runs its stride scheduler.
        let endpoints =
            (1..=64u16).map(|port| Endpoint::new(addr(port)).weight(u32::from(port % 5) + 1));
        h.resolve(ResolverUpdate::new(endpoints));
        for address in connects(&h.seen.clone()) {
            h.connected(&address);
        }
        // READY: the single or round-robin picker.
        let picker = h.picker();
        let request = PickRequest::new().with_hash(7);
        // A retry names what its earlier attempts used; passing over them allocates nothing.
        let tried: Vec<_> = (0..3)
            .filter_map(|_| match picker.pick(&request) {
                Pick::Ready(id) => Some(id),
                _ => None,
            })
            .collect();
        let retry = request.with_tried(&tried);
        let count = allocations_during(|| {
            for _ in 0..10_000 {
                assert!(matches!(picker.pick(&request), Pick::Ready(_)));
                assert!(matches!(picker.pick(&retry), Pick::Ready(_)));
                assert!(matches!(picker.pick_with_note(&request).0, Pick::Ready(_)));
            }
        });
        assert_eq!(count, 0, "READY picks allocated");
    }
    // TRANSIENT_FAILURE: the failing picker hands out a shared status.
    let mut h = Harness::new(PolicyConfig::round_robin(), 1);
    h.resolve(update(&[1]));
    h.failed(&addr(1));
    let picker = h.picker();
    let count = allocations_during(|| {
        for _ in 0..10_000 {
            assert!(matches!(picker.pick(&PickRequest::new()), Pick::Fail(_)));
        }
    });
    assert_eq!(count, 0, "failing picks allocated");
}

#[test]
fn prequal_picks_from_its_probe_pool_allocate_nothing() {
    let mut h = Harness::new(PolicyConfig::prequal(), 1);
    h.resolve(update(&(1..=64).collect::<Vec<u16>>()));
    for address in connects(&h.seen.clone()) {
        h.connected(&address);
    }
    let ids: Vec<_> = h.lb.subchannels().into_iter().map(|s| s.id).collect();
    let picker = h.picker();
    let mut total = 0;
    for round in 0..200u32 {
        // Answers come between picks (outside the count), as from the adapter's probes.
        for (i, &id) in ids.iter().enumerate().skip(round as usize % 48).take(16) {
            let latency = std::time::Duration::from_micros(500 + 37 * i as u64);
            h.answer_probe(id, croupier::ProbeResult::new(i as u32 % 5, Some(latency)));
        }
        total += allocations_during(|| {
            for _ in 0..50 {
                assert!(matches!(picker.pick(&PickRequest::new()), Pick::Ready(_)));
            }
        });
    }
    assert_eq!(total, 0, "prequal picks allocated");
}

#[test]
fn picks_through_tree_policies_allocate_nothing() {
    use croupier::policy::{PriorityConfig, RandomSubsettingConfig, WeightedTargetConfig};
    let weighted = PolicyConfig::new(
        WeightedTargetConfig::new()
            .target("b0", 1, PolicyConfig::round_robin())
            .target("b1", 3, PolicyConfig::least_request()),
    );
    let tree = PriorityConfig::new()
        .child("a0", weighted)
        .child("a1", PolicyConfig::pick_first());
    for policy in [
        PolicyConfig::new(tree),
        PolicyConfig::new(RandomSubsettingConfig::new(8, PolicyConfig::random())),
    ] {
        let mut h = Harness::new(policy, 1);
        let endpoints = (1..=32u16).map(|port| {
            let zone = if port % 2 == 0 { "b0" } else { "b1" };
            Endpoint::new(addr(port)).hierarchy(["a0", zone])
        });
        h.resolve(ResolverUpdate::new(endpoints));
        connect_everything(&mut h);
        let picker = h.picker();
        let request = PickRequest::new();
        let count = allocations_during(|| {
            for _ in 0..10_000 {
                assert!(matches!(picker.pick(&request), Pick::Ready(_)));
            }
        });
        assert_eq!(count, 0, "READY picks allocated");
    }
}

#[test]
fn ring_hash_picks_allocate_nothing() {
    let config = croupier::policy::RingHashConfig::default()
        .request_hash_header("user-id")
        .expect("a valid header");
    let mut h = Harness::new(PolicyConfig::new(config), 1);
    let ports: Vec<u16> = (1..=16).collect();
    h.resolve(update(&ports));
    connect_everything(&mut h);
    let picker = h.picker();
    let mut one = http::HeaderMap::new();
    one.insert("user-id", http::HeaderValue::from_static("alice"));
    let mut two = one.clone();
    two.append("user-id", http::HeaderValue::from_static("bob"));
    let requests = [
        PickRequest::new().with_hash(7),
        PickRequest::new().with_headers(&one),
        PickRequest::new().with_headers(&two),
        PickRequest::new(), // a random hash
    ];
    let tried: Vec<_> = requests
        .iter()
        .filter_map(|request| match picker.pick(request) {
            Pick::Ready(id) => Some(id),
            _ => None,
        })
        .collect();
    let retry = requests[0].with_tried(&tried);
    let count = allocations_during(|| {
        for _ in 0..1_000 {
            assert!(matches!(picker.pick(&retry), Pick::Ready(_)));
        }
        for i in 0..10_000 {
            let request = &requests[i % requests.len()];
            assert!(matches!(picker.pick(request), Pick::Ready(_)));
        }
    });
    assert_eq!(count, 0, "READY ring_hash picks allocated");
    // IDLE endpoints: a pick flags one and queues, without allocating.
    let mut h = Harness::new(PolicyConfig::ring_hash(), 1);
    h.resolve(update(&ports));
    let picker = h.picker();
    let count = allocations_during(|| {
        for hash in 0..10_000u64 {
            let request = PickRequest::new().with_hash(hash.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert_eq!(picker.pick(&request), Pick::Queue);
        }
    });
    assert_eq!(count, 0, "queued ring_hash picks allocated");
    // Every endpoint failed: the failure names the hashed endpoint's error, shared.
    let mut h = Harness::new(PolicyConfig::ring_hash(), 1);
    h.resolve(update(&[1, 2]));
    for _ in 0..4 {
        connect_everything_failing(&mut h);
    }
    assert_eq!(h.state(), croupier::ConnectivityState::TransientFailure);
    let picker = h.picker();
    let count = allocations_during(|| {
        for hash in 0..10_000u64 {
            let request = PickRequest::new().with_hash(hash.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert!(matches!(picker.pick(&request), Pick::Fail(_)));
        }
    });
    assert_eq!(count, 0, "failing ring_hash picks allocated");
}

/// Asks for every IDLE endpoint and fails every attempt.
fn connect_everything_failing(h: &mut Harness) {
    for hash in spread_hashes(64) {
        let _ = h.picker().pick(&PickRequest::new().with_hash(hash));
    }
    h.exit_idle();
    let attempts: Vec<_> = h.attempts.values().map(|(_, a)| a.clone()).collect();
    for address in attempts {
        h.failed(&address);
    }
}

/// A call's method config is looked up per call, like a pick: by its path, without allocating.
#[cfg(feature = "service-config")]
#[test]
fn method_config_lookups_allocate_nothing() {
    let config = croupier::service_config::ServiceConfigParser::new()
        .parse(
            r#"{"methodConfig": [
                {"name": [{"service": "shop.Cart", "method": "Checkout"}], "timeout": "30s"},
                {"name": [{"service": "shop.Cart"}], "timeout": "2s"},
                {"name": [{}], "timeout": "1s"}
            ]}"#,
        )
        .unwrap();
    let paths = [
        "/shop.Cart/Checkout",
        "/shop.Cart/Add",
        "/shop.Stock/Count",
        "bad",
    ];
    let count = allocations_during(|| {
        for _ in 0..1_000 {
            for path in paths {
                assert!(config.methods.for_path(path).is_some());
            }
        }
    });
    assert_eq!(count, 0, "method config lookups allocated");
}

/// A call's retry machine allocates once, its action queue, however its attempts go: a hedge of
/// five copies at once, then a commit with four cancels, or a call retried four times.
#[test]
fn a_retried_or_hedged_call_allocates_only_its_action_queue() {
    use croupier::retry::{
        CallPolicy, ChannelRetry, CodeSet, HedgingPolicy, Pushback, RetryAction, RetryCall,
        RetryPolicy, RetryThrottle,
    };
    use croupier::Code;
    use std::sync::Arc;
    use std::time::Instant;

    let codes = CodeSet::new().with(Code::Unavailable);
    let hedging = CallPolicy::Hedging(HedgingPolicy::new(5, ms(0), codes).unwrap());
    let retry = CallPolicy::Retry(RetryPolicy::new(5, ms(10), ms(100), 2.0, codes).unwrap());
    let channel = Arc::new(ChannelRetry::new().throttle(RetryThrottle::new(100, 1.0).unwrap()));
    let now = Instant::now();
    let count = allocations_during(|| {
        let mut call = RetryCall::new(hedging, Arc::clone(&channel), 1, now);
        call.handle_request_buffered(100, now);
        let mut copies = [None; 5];
        for copy in &mut copies {
            if let Some(RetryAction::Start { attempt, .. }) = call.poll_action() {
                *copy = Some(attempt);
            }
        }
        call.handle_attempt_end(copies[4].unwrap(), Code::Ok, Pushback::None, now);
        assert_eq!(std::iter::from_fn(|| call.poll_action()).count(), 6);
    });
    assert_eq!(
        count, 1,
        "a hedged call allocated more than its action queue"
    );
    let count = allocations_during(|| {
        let mut at = now;
        let mut call = RetryCall::new(retry, Arc::clone(&channel), 1, at);
        while let Some(RetryAction::Start { attempt, .. }) = call.poll_action() {
            call.handle_attempt_end(attempt, Code::Unavailable, Pushback::None, at);
            if let Some(retry_at) = call.poll_timeout() {
                at = retry_at;
                call.handle_timeout(at);
            }
        }
        assert_eq!(call.policy_attempts(), 5);
    });
    assert_eq!(
        count, 1,
        "a retried call allocated more than its action queue"
    );
}
