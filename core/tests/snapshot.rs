//! Looking inside a balancer: the channel's state and since when, the resolver's last result,
//! and each subchannel's state, since, attempts, last error and what its policy knows of it.

mod support;

use std::time::Duration;

use croupier::policy::OutlierDetectionConfig;
use croupier::{
    CallOutcome, ConnectivityState, Endpoint, Pick, PickRequest, PolicyConfig, PolicyDetails,
    ResolverUpdate, SubchannelInfo,
};
use support::*;

fn info(h: &Harness, port: u16) -> SubchannelInfo {
    h.lb.subchannels()
        .into_iter()
        .find(|s| s.address == addr(port))
        .unwrap_or_else(|| panic!("no subchannel for port {port}"))
}

#[test]
fn the_channel_state_says_since_when() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 7);
    let snapshot = h.lb.snapshot();
    assert_eq!(snapshot.state, ConnectivityState::Connecting);
    assert_eq!(snapshot.since, h.start);
    assert!(snapshot.resolver.is_none(), "the resolver said nothing yet");
    assert!(snapshot.subchannels.is_empty());
    h.resolve(update(&[1]));
    h.advance(Duration::from_secs(3));
    h.connected(&addr(1));
    let snapshot = h.lb.snapshot();
    assert_eq!(snapshot.state, ConnectivityState::Ready);
    assert_eq!(snapshot.since - h.start, Duration::from_secs(3));
    assert_eq!(h.lb.state_since(), snapshot.since);
}

#[test]
fn the_resolver_result_keeps_the_endpoints_in_use_and_the_last_error() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 7);
    h.resolve(update(&[1, 2]));
    let result = h.lb.resolver_result().expect("a result");
    assert_eq!(
        (result.endpoints, result.policy.as_str()),
        (2, "round_robin")
    );
    assert_eq!(result.at, h.start);
    assert!(result.error.is_none());
    h.advance(Duration::from_secs(5));
    h.resolver_error("dns: no such host");
    let result = h.lb.resolver_result().expect("a result");
    assert_eq!(result.endpoints, 2, "the last good list stays in use");
    assert_eq!(result.at - h.start, Duration::from_secs(5));
    assert_eq!(
        result.error.as_ref().map(|e| e.message()),
        Some("dns: no such host")
    );
    h.resolve(update(&[1, 2, 3]));
    let result = h.lb.resolver_result().expect("a result");
    assert_eq!((result.endpoints, result.error), (3, None));
}

#[test]
fn a_subchannel_says_since_when_how_many_attempts_and_its_last_error() {
    let mut h = Harness::new(PolicyConfig::pick_first(), 7);
    h.resolve(update(&[1]));
    let first = info(&h, 1);
    assert_eq!(first.state, ConnectivityState::Connecting);
    assert_eq!((first.connection_attempts, first.since), (1, h.start));
    assert_eq!(first.last_error, None);
    h.advance(Duration::from_millis(200));
    h.failed(&addr(1));
    let failed = info(&h, 1);
    assert_eq!(failed.state, ConnectivityState::TransientFailure);
    assert_eq!(failed.since - h.start, Duration::from_millis(200));
    assert_eq!(
        failed.last_error.as_deref(),
        Some("connection refused by 127.0.0.1:1")
    );
    // After the backoff it tries again.
    h.advance(Duration::from_secs(2));
    h.connected(&addr(1));
    let ready = info(&h, 1);
    assert_eq!(ready.state, ConnectivityState::Ready);
    assert_eq!(ready.connection_attempts, 2);
    assert_eq!(ready.since, h.now);
    assert_eq!(
        ready.policy,
        PolicyDetails::default(),
        "pick_first keeps nothing"
    );
}

fn ready(policy: PolicyConfig, update: ResolverUpdate) -> Harness {
    let mut h = Harness::new(policy, 7);
    let ports: Vec<u16> = (1..=update.endpoints.len() as u16).collect();
    h.resolve(update);
    for port in ports {
        h.connected(&addr(port));
    }
    h
}

#[test]
fn weighted_round_robin_shows_each_weight() {
    let h = ready(
        PolicyConfig::weighted_round_robin(),
        ResolverUpdate::new([
            Endpoint::new(addr(1)).weight(1),
            Endpoint::new(addr(2)).weight(3),
        ]),
    );
    assert_eq!(info(&h, 1).policy.weight, Some(1.0));
    assert_eq!(info(&h, 2).policy.weight, Some(3.0));
    assert_eq!(info(&h, 2).policy.ejected, None);
}

#[test]
fn outlier_detection_shows_which_are_ejected() {
    let policy = PolicyConfig::new(OutlierDetectionConfig::new(PolicyConfig::least_request()));
    let ports = [1, 2, 3, 4, 5];
    let mut h = ready(policy, update(&ports));
    for &port in &ports {
        calls_ended(&mut h, &addr(port), 100, port != 5);
    }
    assert_eq!(info(&h, 5).policy.ejected, Some(false));
    h.advance(Duration::from_secs(10));
    assert_eq!(info(&h, 5).policy.ejected, Some(true));
    assert_eq!(info(&h, 4).policy.ejected, Some(false));
    // The child's details come through the wrapper.
    assert!(info(&h, 4).policy.in_flight.is_some());
}

#[test]
fn least_request_shows_calls_in_flight() {
    let h = ready(PolicyConfig::least_request(), update(&[1, 2]));
    // (The harness's own checks pick too: count from what it left.)
    let in_flight = |id| {
        let info = h.lb.subchannels().into_iter().find(|s| s.id == id).unwrap();
        info.policy
            .in_flight
            .expect("least_request counts calls in flight")
    };
    let (one, two) = (info(&h, 1).id, info(&h, 2).id);
    let before = (in_flight(one), in_flight(two));
    let Pick::Ready(id) = h.picker().pick(&PickRequest::new()) else {
        panic!("READY")
    };
    let after = (in_flight(one), in_flight(two));
    if id == one {
        assert_eq!(after, (before.0 + 1, before.1));
    } else {
        assert_eq!(after, (before.0, before.1 + 1));
    }
}

#[test]
fn p2c_ewma_shows_each_latency_estimate() {
    let mut h = ready(PolicyConfig::p2c_ewma(), update(&[1, 2]));
    // Before any call: the default estimate, 30 ms.
    assert_eq!(
        info(&h, 1).policy.latency_estimate,
        Some(Duration::from_millis(30))
    );
    let one = info(&h, 1).id;
    // A call slower than the estimate raises it at once (peak-sensitive).
    h.lb.handle_call_outcome(one, CallOutcome::ok(Duration::from_millis(400)), h.now);
    assert_eq!(
        info(&h, 1).policy.latency_estimate,
        Some(Duration::from_millis(400))
    );
    let in_flight = info(&h, 1)
        .policy
        .in_flight
        .expect("p2c_ewma counts calls in flight");
    h.lb.handle_call_outcome(one, CallOutcome::ok(Duration::from_millis(1)), h.now);
    let after = info(&h, 1)
        .policy
        .in_flight
        .expect("p2c_ewma counts calls in flight");
    assert_eq!(after, in_flight.saturating_sub(1));
    assert_eq!(info(&h, 2).policy.weight, None);
}

#[test]
fn a_pick_never_sent_ends_its_call_in_flight_and_teaches_no_latency() {
    for policy in [PolicyConfig::p2c_ewma(), PolicyConfig::least_latency()] {
        let mut h = ready(policy, update(&[1]));
        let one = info(&h, 1).id;
        let estimate = info(&h, 1).policy.latency_estimate;
        let in_flight = |h: &Harness| info(h, 1).policy.in_flight.expect("counts calls in flight");
        let before = in_flight(&h);
        let Pick::Ready(id) = h.picker().pick(&PickRequest::new()) else {
            panic!("READY")
        };
        assert_eq!(id, one);
        assert_eq!(in_flight(&h), before + 1);
        // Time passes, so a zero latency learned would move p2c_ewma's estimate.
        h.advance(Duration::from_secs(1));
        h.lb.handle_call_outcome(one, CallOutcome::unsent(), h.now);
        assert_eq!(in_flight(&h), before);
        assert_eq!(info(&h, 1).policy.latency_estimate, estimate);
    }
}

#[test]
fn outlier_detection_counts_no_failure_for_a_pick_never_sent() {
    let policy = PolicyConfig::new(OutlierDetectionConfig::new(PolicyConfig::round_robin()));
    let ports = [1, 2, 3, 4, 5];
    let mut h = ready(policy, update(&ports));
    for &port in &ports[..4] {
        calls_ended(&mut h, &addr(port), 100, true);
    }
    let five = info(&h, 5).id;
    for _ in 0..100 {
        h.lb.handle_call_outcome(five, CallOutcome::unsent(), h.now);
    }
    h.advance(Duration::from_secs(10));
    assert_eq!(info(&h, 5).policy.ejected, Some(false));
}
