//! random and least_request: the picker rules (they connect and aggregate like round_robin).

mod support;

use std::collections::BTreeMap;

use croupier::policy::LeastRequestConfig;
use croupier::{Address, CallOutcome, Pick, PickRequest, PolicyChoice, PolicyConfig};
use support::*;

fn ready(policy: PolicyConfig, ports: &[u16], seed: u64) -> Harness {
    let mut h = Harness::new(policy, seed);
    // The checker's probe picks are calls too: let them end, so counts are the test's own.
    h.report_probes = true;
    h.resolve(update(ports));
    for &p in ports {
        h.connected(&addr(p));
    }
    h
}

fn shares(h: &Harness, picks: usize) -> BTreeMap<Address, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..picks {
        *counts.entry(h.pick_address().expect("a pick")).or_insert(0) += 1;
    }
    counts
}

#[test]
fn random_spreads_picks_uniformly_over_ready_endpoints() {
    let h = ready(PolicyConfig::random(), &[1, 2, 3], 4);
    let counts = shares(&h, 30_000);
    assert_eq!(counts.len(), 3);
    for (address, count) in counts {
        assert!(
            (9_500..=10_500).contains(&count),
            "{address}: {count} of 30,000"
        );
    }
}

#[test]
fn random_follows_the_seed() {
    let sequence = |seed| {
        let h = ready(PolicyConfig::random(), &[1, 2, 3, 4], seed);
        (0..20).map(|_| h.pick_address()).collect::<Vec<_>>()
    };
    assert_eq!(sequence(9), sequence(9));
    assert_ne!(sequence(9), sequence(10));
}

#[test]
fn random_skips_failed_endpoints() {
    let mut h = Harness::new(PolicyConfig::random(), 1);
    h.resolve(update(&[1, 2]));
    h.connected(&addr(1));
    h.failed(&addr(2));
    assert!(shares(&h, 200).keys().all(|a| *a == addr(1)));
}

#[test]
fn least_request_with_nothing_outstanding_spreads_uniformly() {
    let mut h = ready(PolicyConfig::least_request(), &[1, 2, 3], 5);
    let mut counts: BTreeMap<Address, usize> = BTreeMap::new();
    for _ in 0..30_000 {
        let Pick::Ready(id) = h.pick() else {
            panic!("READY")
        };
        let address =
            h.lb.subchannels()
                .into_iter()
                .find(|s| s.id == id)
                .unwrap()
                .address;
        *counts.entry(address).or_insert(0) += 1;
        // Every call ends at once: nothing stays outstanding.
        h.lb.handle_call_outcome(id, CallOutcome::ok(ms(1)), h.now);
    }
    h.drain();
    for (address, count) in counts {
        assert!(
            (9_500..=10_500).contains(&count),
            "{address}: {count} of 30,000"
        );
    }
}

#[test]
fn least_request_prefers_the_endpoint_with_fewer_outstanding_calls() {
    let h = ready(PolicyConfig::least_request(), &[1, 2], 6);
    // Picks add outstanding calls that never end: the two endpoints stay within one of each other.
    let counts = shares(&h, 1_000);
    let values: Vec<usize> = counts.values().copied().collect();
    // Two distinct samples of two endpoints compare both every time, so they never drift more
    // than one apart; a plain random choice would drift by about sqrt(1000) = 32.
    assert!(values[0].abs_diff(values[1]) <= 1, "{counts:?}");
}

#[test]
fn least_request_sends_almost_nothing_to_a_loaded_endpoint() {
    let mut h = ready(PolicyConfig::least_request(), &[1, 2, 3, 4], 7);
    let picker = h.picker();
    // Load endpoint 1 with a call that stays outstanding (while the others' calls end at once,
    // it wins no more picks: every pick compares it with another endpoint).
    let mut loaded = 0;
    while loaded < 1 {
        if let Pick::Ready(id) = picker.pick(&PickRequest::new()) {
            let address =
                h.lb.subchannels()
                    .into_iter()
                    .find(|s| s.id == id)
                    .unwrap()
                    .address;
            if address != addr(1) {
                h.lb.handle_call_outcome(id, CallOutcome::ok(ms(1)), h.now);
            } else {
                loaded += 1;
            }
        }
    }
    h.drain();
    let mut to_loaded = 0;
    for _ in 0..3_000 {
        let Pick::Ready(id) = picker.pick(&PickRequest::new()) else {
            panic!()
        };
        let address =
            h.lb.subchannels()
                .into_iter()
                .find(|s| s.id == id)
                .unwrap()
                .address;
        if address == addr(1) {
            to_loaded += 1;
        }
        h.lb.handle_call_outcome(id, CallOutcome::ok(ms(1)), h.now);
    }
    // Distinct samples always hold an endpoint with nothing outstanding: none goes to it.
    // (Sampled with replacement, as gRFC A48 does, endpoint 1 drawn twice takes a sixteenth.)
    assert_eq!(
        to_loaded, 0,
        "{to_loaded} of 3,000 went to the loaded endpoint"
    );
}

#[test]
fn least_request_counts_drop_on_any_outcome_and_never_below_zero() {
    let mut h = ready(PolicyConfig::least_request(), &[1, 2], 8);
    let Pick::Ready(id) = h.pick() else { panic!() };
    let failed = CallOutcome::new(croupier::Code::Internal, ms(2));
    h.lb.handle_call_outcome(id, failed.clone(), h.now);
    // Extra outcomes (more than picks) must not wrap the counter around.
    for _ in 0..5 {
        h.lb.handle_call_outcome(id, failed.clone(), h.now);
    }
    h.drain();
    let counts = shares(&h, 1_000);
    let values: Vec<usize> = counts.values().copied().collect();
    assert!(values[0].abs_diff(values[1]) <= 12, "{counts:?}");
    assert!(h.lb.wants_call_outcomes());
}

#[test]
fn least_request_choice_count_is_a_parameter_and_clamped() {
    let mut h = Harness::new(PolicyConfig::pick_first(), 1);
    let choice = PolicyChoice::new("least_request").param("choice_count", "50");
    h.resolve(update(&[1, 2]).with_policy(choice));
    assert_eq!(
        h.lb.subchannels().len(),
        2,
        "switched to least_request: both connect"
    );
    let bad = PolicyChoice::new("least_request").param("choice_count", "many");
    let mut h = Harness::new(PolicyConfig::pick_first(), 1);
    h.resolve(update(&[1]).with_policy(bad));
    match h.pick() {
        Pick::Fail(status) => assert!(status.message().contains("choice_count"), "{status}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(LeastRequestConfig::default().choice_count, 2);
}
