//! weighted_target, rule by rule: calls split by weight over the READY targets, states
//! aggregated gRPC's way.

mod support;

use std::collections::BTreeMap;

use croupier::policy::WeightedTargetConfig;
use croupier::{Address, ConnectivityState, Endpoint, Pick, PolicyConfig, ResolverUpdate};
use support::*;

/// Target `a` (weight 3) over ports 1 and 2, `b` (weight 1) over port 3, both round_robin.
fn harness() -> Harness {
    let config = WeightedTargetConfig::new()
        .target("a", 3, PolicyConfig::round_robin())
        .target("b", 1, PolicyConfig::round_robin());
    let mut h = Harness::new(PolicyConfig::new(config), 3);
    h.resolve(placed(&[(1, "a"), (2, "a"), (3, "b")]));
    h
}

fn placed(ports: &[(u16, &str)]) -> ResolverUpdate {
    ResolverUpdate::new(
        ports
            .iter()
            .map(|&(port, target)| Endpoint::new(addr(port)).hierarchy([target])),
    )
}

/// How many of `n` picks reach each address.
fn spread(h: &Harness, n: usize) -> BTreeMap<Address, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        *counts
            .entry(h.pick_address().expect("a READY pick"))
            .or_default() += 1;
    }
    counts
}

#[test]
fn every_target_starts_with_the_first_update() {
    let h = harness();
    for port in [1, 2, 3] {
        assert!(h.has_attempt(&addr(port)), "no attempt to port {port}");
    }
    assert_eq!(h.state(), ConnectivityState::Connecting);
    assert_eq!(h.pick(), Pick::Queue);
}

#[test]
fn calls_split_by_weight_across_ready_targets() {
    let mut h = harness();
    for port in [1, 2, 3] {
        h.connected(&addr(port));
    }
    let counts = spread(&h, 40_000);
    let a = counts[&addr(1)] + counts[&addr(2)];
    let b = counts[&addr(3)];
    let share = a as f64 / 40_000.0;
    assert!((0.74..0.76).contains(&share), "a took {share} of the calls");
    assert_eq!(a + b, 40_000);
    // Inside a target, its own policy spreads the calls.
    let (one, two) = (counts[&addr(1)] as f64, counts[&addr(2)] as f64);
    assert!((one / two - 1.0).abs() < 0.05, "{counts:?}");
}

#[test]
fn only_ready_targets_get_calls() {
    let mut h = harness();
    h.connected(&addr(3));
    assert_eq!(h.state(), ConnectivityState::Ready);
    let counts = spread(&h, 1_000);
    assert_eq!(counts.get(&addr(3)), Some(&1_000), "{counts:?}");
    h.connected(&addr(1));
    h.connected(&addr(2));
    h.closed(&addr(3));
    let counts = spread(&h, 1_000);
    assert_eq!(counts.get(&addr(3)), None, "{counts:?}");
}

#[test]
fn the_state_is_aggregated_with_sticky_transient_failure() {
    let mut h = harness();
    h.failed(&addr(3));
    assert_eq!(h.state(), ConnectivityState::Connecting, "a still connects");
    h.failed(&addr(1));
    h.failed(&addr(2));
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
    let Pick::Fail(status) = h.pick() else {
        panic!("a pick with every target failed")
    };
    assert!(status.message().contains("127.0.0.1:"), "{status:?}");
    // Reconnecting after backoff does not make the channel CONNECTING again.
    let seen = h.advance(ms(5_000));
    assert!(!connects(&seen).is_empty(), "no reconnect attempt");
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
    assert!(!states(&seen).contains(&ConnectivityState::Connecting));
    h.connected(&addr(3));
    assert_eq!(h.state(), ConnectivityState::Ready);
}

#[test]
fn endpoints_without_a_path_to_a_target_go_nowhere() {
    let config = WeightedTargetConfig::new().target("a", 1, PolicyConfig::round_robin());
    let mut h = Harness::new(PolicyConfig::new(config), 3);
    let mut endpoints = vec![
        Endpoint::new(addr(1)),
        Endpoint::new(addr(2)).hierarchy(["z"]),
    ];
    endpoints.push(Endpoint::new(addr(3)).hierarchy(["a"]));
    let seen = h.resolve(ResolverUpdate::new(endpoints));
    assert_eq!(connects(&seen), [addr(3)]);
}

/// A child that fails at once and then, asked to leave IDLE, reports CONNECTING with no
/// subchannel: the flapping a target must not show.
#[derive(Debug)]
struct Flapping;

impl croupier::Policy for Flapping {
    fn resolver_update(&mut self, _: &[Endpoint], ctl: &mut dyn croupier::Controller) {
        let status = croupier::Status::unavailable("flapping child failed");
        let picker = std::sync::Arc::new(croupier::FailPicker::new(status));
        ctl.publish(ConnectivityState::TransientFailure, picker);
    }

    fn resolver_error(&mut self, _: &croupier::ResolverError, _: &mut dyn croupier::Controller) {}

    fn subchannel_update(
        &mut self,
        _: croupier::SubchannelId,
        _: &croupier::SubchannelUpdate,
        _: &mut dyn croupier::Controller,
    ) {
    }

    fn exit_idle(&mut self, ctl: &mut dyn croupier::Controller) {
        let picker = std::sync::Arc::new(croupier::QueuePicker);
        ctl.publish(ConnectivityState::Connecting, picker);
    }
}

#[derive(Debug)]
struct FlappingBuilder;

impl croupier::PolicyBuilder for FlappingBuilder {
    fn name(&self) -> &str {
        "flapping"
    }

    fn build(&self) -> Box<dyn croupier::Policy> {
        Box::new(Flapping)
    }
}

#[test]
fn a_failed_target_that_reports_connecting_still_counts_as_failed() {
    let config = WeightedTargetConfig::new()
        .target("a", 1, PolicyConfig::new(FlappingBuilder))
        .target("b", 1, PolicyConfig::new(FlappingBuilder));
    let mut h = Harness::new(PolicyConfig::new(config), 3);
    h.resolve(placed(&[(1, "a"), (2, "b")]));
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
    h.exit_idle();
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
    let Pick::Fail(status) = h.pick() else {
        panic!("a pick with both targets failed")
    };
    assert_eq!(status.message(), "flapping child failed");
}
