//! outlier_detection, rule by rule (gRFC A50).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use croupier::policy::{FailurePercentageEjection, OutlierDetectionConfig};
use croupier::{
    Action, Address, CallOutcome, Code, ConnectionEvent, ConnectivityState, Endpoint, Pick,
    PolicyChoice, PolicyConfig, ResolverUpdate,
};
use support::*;

const INTERVAL: Duration = Duration::from_secs(10);

fn harness_with(config: OutlierDetectionConfig, ports: &[u16]) -> Harness {
    let mut h = Harness::new(PolicyConfig::new(config), 5);
    h.resolve(update(ports));
    for &port in ports {
        h.connected(&addr(port));
    }
    assert_eq!(h.state(), ConnectivityState::Ready);
    h
}

/// Round robin over `ports` with A50's defaults (success-rate ejection only).
fn harness(ports: &[u16]) -> Harness {
    harness_with(
        OutlierDetectionConfig::new(PolicyConfig::round_robin()),
        ports,
    )
}

/// Failure-percentage ejection enforced, success-rate ejection off.
fn failure_percentage_config() -> OutlierDetectionConfig {
    OutlierDetectionConfig::new(PolicyConfig::round_robin())
        .success_rate_ejection(None)
        .failure_percentage_ejection(Some(
            FailurePercentageEjection::default().enforcement_percentage(100),
        ))
}

/// One interval of traffic: 100 calls to every port, all failing on `failing`; then the
/// interval timer fires.
fn interval_of_calls(h: &mut Harness, ports: &[u16], failing: &[u16]) -> Vec<Seen> {
    for &port in ports {
        calls_ended(h, &addr(port), 100, !failing.contains(&port));
    }
    h.advance(INTERVAL)
}

/// The addresses 200 picks reach.
fn picked(h: &Harness) -> BTreeSet<Address> {
    (0..200).filter_map(|_| h.pick_address()).collect()
}

#[test]
fn a_failing_endpoint_is_ejected_after_an_interval_and_gets_no_picks() {
    let ports = [1, 2, 3, 4, 5];
    let mut h = harness(&ports);
    for &port in &ports[..4] {
        calls_ended(&mut h, &addr(port), 100, true);
    }
    calls_ended(&mut h, &addr(5), 100, false);
    assert!(
        picked(&h).contains(&addr(5)),
        "nothing happens before the interval ends"
    );
    h.advance(INTERVAL - ms(1));
    assert!(picked(&h).contains(&addr(5)));
    h.advance(ms(1));
    let reached = picked(&h);
    assert!(!reached.contains(&addr(5)), "ejected: {reached:?}");
    assert_eq!(reached.len(), 4);
    assert_eq!(h.state(), ConnectivityState::Ready);
}

#[test]
fn an_ejected_endpoint_keeps_its_connection_open() {
    let ports = [1, 2, 3, 4, 5];
    let mut h = harness(&ports);
    let seen = interval_of_calls(&mut h, &ports, &[5]);
    assert!(!picked(&h).contains(&addr(5)));
    assert!(
        !seen
            .iter()
            .any(|s| matches!(s, Seen::Disconnect(_) | Seen::Shutdown(_))),
        "no connection was dropped: {seen:?}"
    );
    let five =
        h.lb.subchannels()
            .into_iter()
            .find(|s| s.address == addr(5));
    assert_eq!(five.map(|s| s.state), Some(ConnectivityState::Ready));
    assert!(h.connections.values().any(|(_, a)| *a == addr(5)));
}

#[test]
fn an_ejected_endpoint_returns_after_the_base_ejection_time() {
    let ports = [1, 2, 3, 4, 5];
    let mut h = harness(&ports);
    interval_of_calls(&mut h, &ports, &[5]); // ejected at 10 s, for 30 s
    let no_connect = h.advance(INTERVAL * 2); // the intervals at 20 s and 30 s
    assert!(!picked(&h).contains(&addr(5)), "still ejected at 30 s");
    assert!(connects(&no_connect).is_empty());
    h.advance(INTERVAL); // 40 s: 30 s after the ejection
    assert!(
        picked(&h).contains(&addr(5)),
        "back at 40 s, on its old connection"
    );
    assert_eq!(h.history.len(), ports.len(), "no new connection was needed");
}

#[test]
fn max_ejection_percent_caps_how_many_are_ejected_at_once() {
    let ports: Vec<u16> = (1..=10).collect();
    let mut h = harness_with(failure_percentage_config(), &ports);
    interval_of_calls(&mut h, &ports, &[2, 5, 8]);
    let reached = picked(&h);
    let ejected: Vec<_> = [2, 5, 8]
        .iter()
        .filter(|&&p| !reached.contains(&addr(p)))
        .collect();
    assert_eq!(
        ejected.len(),
        1,
        "10% of 10 endpoints: one ejected, {ejected:?}"
    );
    // With 20%, two of the three go.
    let config = failure_percentage_config().max_ejection_percent(20);
    let mut h = harness_with(config, &ports);
    interval_of_calls(&mut h, &ports, &[2, 5, 8]);
    let reached = picked(&h);
    assert_eq!(reached.len(), 8, "{reached:?}");
}

#[test]
fn one_endpoint_may_always_be_ejected() {
    // 10% of 5 endpoints is half an endpoint; one is ejected anyway.
    let ports = [1, 2, 3, 4, 5];
    let mut h = harness_with(failure_percentage_config(), &ports);
    interval_of_calls(&mut h, &ports, &[3]);
    assert!(!picked(&h).contains(&addr(3)));
}

#[test]
fn the_ejection_multiplier_grows_with_each_ejection() {
    let ports = [1, 2, 3, 4, 5];
    let mut h = harness(&ports);
    interval_of_calls(&mut h, &ports, &[5]); // 10 s: ejected for 30 s (multiplier 1)
    h.advance(INTERVAL * 3); // 40 s: back
    assert!(picked(&h).contains(&addr(5)));
    interval_of_calls(&mut h, &ports, &[5]); // 50 s: ejected again, for 60 s (multiplier 2)
    assert!(!picked(&h).contains(&addr(5)));
    h.advance(INTERVAL * 5); // 100 s: 50 s later, still out
    assert!(
        !picked(&h).contains(&addr(5)),
        "the second ejection lasts longer"
    );
    h.advance(INTERVAL); // 110 s: 60 s later, back
    assert!(picked(&h).contains(&addr(5)));
}

#[test]
fn the_multiplier_shrinks_while_an_endpoint_behaves() {
    let ports = [1, 2, 3, 4, 5];
    let mut h = harness(&ports);
    interval_of_calls(&mut h, &ports, &[5]); // 10 s: multiplier 1
    h.advance(INTERVAL * 3); // 40 s: back, multiplier still 1
    h.advance(INTERVAL * 2); // 60 s: two good intervals later, multiplier 0
    interval_of_calls(&mut h, &ports, &[5]); // 70 s: ejected with multiplier 1 again
    h.advance(INTERVAL * 3); // 100 s: 30 s later, back
    assert!(picked(&h).contains(&addr(5)));
}

#[test]
fn success_rate_ejects_only_statistical_outliers() {
    let ports = [1, 2, 3, 4, 5];
    let mut h = harness(&ports);
    for &port in &[1, 2, 3] {
        calls_ended(&mut h, &addr(port), 100, true);
    }
    // 95% success is within 1.9 standard deviations of the mean; 10% is not.
    calls_ended(&mut h, &addr(4), 95, true);
    calls_ended(&mut h, &addr(4), 5, false);
    calls_ended(&mut h, &addr(5), 10, true);
    calls_ended(&mut h, &addr(5), 90, false);
    h.advance(INTERVAL);
    let reached = picked(&h);
    assert!(reached.contains(&addr(4)), "{reached:?}");
    assert!(!reached.contains(&addr(5)), "{reached:?}");
}

#[test]
fn success_rate_needs_enough_calls_and_hosts() {
    // Too few calls: 99 per endpoint is under the request volume of 100.
    let ports = [1, 2, 3, 4, 5];
    let mut h = harness(&ports);
    for &port in &ports {
        calls_ended(&mut h, &addr(port), 99, port != 5);
    }
    h.advance(INTERVAL);
    assert!(picked(&h).contains(&addr(5)));
    // Too few hosts: four endpoints are under the minimum of five.
    let mut h = harness(&[1, 2, 3, 4]);
    interval_of_calls(&mut h, &[1, 2, 3, 4], &[4]);
    assert!(picked(&h).contains(&addr(4)));
}

#[test]
fn failure_percentage_ejects_above_the_threshold() {
    let ports = [1, 2, 3, 4, 5];
    let mut h = harness_with(failure_percentage_config(), &ports);
    // 80% failures is under the 85% threshold; 90% is over it.
    calls_ended(&mut h, &addr(1), 20, true);
    calls_ended(&mut h, &addr(1), 80, false);
    calls_ended(&mut h, &addr(2), 10, true);
    calls_ended(&mut h, &addr(2), 90, false);
    h.advance(INTERVAL);
    let reached = picked(&h);
    assert!(reached.contains(&addr(1)), "{reached:?}");
    assert!(!reached.contains(&addr(2)), "{reached:?}");
}

#[test]
fn failure_percentage_is_not_enforced_by_default() {
    let ports = [1, 2, 3, 4, 5];
    let config =
        OutlierDetectionConfig::new(PolicyConfig::round_robin()).success_rate_ejection(None);
    let mut h = harness_with(config, &ports);
    interval_of_calls(&mut h, &ports, &[5]);
    assert!(picked(&h).contains(&addr(5)));
}

#[test]
fn outlier_detection_wraps_pick_first_too() {
    // (Driven by hand: the harness's checks insist that a READY subchannel makes a READY
    // channel, and an ejected one is READY while pick_first has nothing else.)
    let config = failure_percentage_config().child_policy(PolicyConfig::pick_first());
    let mut q = Quiet::new(PolicyConfig::new(config), 5);
    let first = attempts(&q.resolve(update(&[1, 2, 3, 4, 5])));
    assert_eq!(first.len(), 1);
    let (connection, address) = first[0].clone();
    assert_eq!(address, addr(1));
    q.event(connection, ConnectionEvent::Connected);
    for _ in 0..100 {
        let outcome = CallOutcome::new(Code::Unavailable, ms(2));
        q.lb.handle_call_outcome(connection.subchannel(), outcome, q.now);
    }
    let seen = q.advance(INTERVAL);
    assert!(
        !seen
            .iter()
            .any(|a| matches!(a, Action::Disconnect { .. } | Action::Shutdown { .. })),
        "{seen:?}"
    );
    // pick_first lost its backend to the ejection; the next queued call moves it on.
    assert_eq!(q.lb.state(), ConnectivityState::Idle);
    assert_eq!(q.pick(0), Pick::Queue);
    let next = attempts(&q.exit_idle());
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].1, addr(2));
    q.event(next[0].0, ConnectionEvent::Connected);
    assert_eq!(q.pick(0), Pick::Ready(next[0].0.subchannel()));
}

#[test]
fn a_resolver_can_choose_outlier_detection_with_a_child_by_name() {
    let mut h = Harness::new(PolicyConfig::pick_first(), 1);
    let choice = PolicyChoice::new("outlier_detection")
        .param("child_policy", "round_robin")
        .param("failure_percentage_enforcement_percentage", "100")
        .param("interval_ms", "1000");
    let seen = h.resolve(update(&[1, 2, 3, 4, 5]).with_policy(choice));
    assert_eq!(
        connects(&seen).len(),
        5,
        "round_robin connects to every endpoint"
    );
    for port in 1..=5 {
        h.connected(&addr(port));
    }
    calls_ended(&mut h, &addr(3), 60, false);
    h.advance(ms(1000));
    assert!(!picked(&h).contains(&addr(3)));
}

#[test]
fn random_input_sequences_keep_the_invariants() {
    let mut rng = croupier::Rng::new(77);
    for child in [PolicyConfig::round_robin(), PolicyConfig::ring_hash()] {
        for _ in 0..100 {
            let seed = rng.next_u64();
            let steps: Vec<_> = (0..60)
                .map(|_| croupier_testing::Step::random(&mut rng))
                .collect();
            let policy = PolicyConfig::outlier_detection(child.clone());
            let mut h = croupier_testing::run(policy, seed, &steps);
            h.recover();
        }
    }
}

#[test]
fn timers_of_a_policy_nested_three_deep_still_fire() {
    // outlier_detection over outlier_detection over round_robin: an endpoint's happy eyeballs
    // timer passes through three wrapping controllers, beside both wrappers' interval timers.
    let inner = OutlierDetectionConfig::new(PolicyConfig::round_robin());
    let outer = OutlierDetectionConfig::new(PolicyConfig::new(inner));
    let mut h = Harness::new(PolicyConfig::new(outer), 5);
    let two = ResolverUpdate::new([
        Endpoint::with_addresses([addr(1), addr(2)]),
        Endpoint::with_addresses([addr(3), addr(4)]),
    ]);
    assert_eq!(connects(&h.resolve(two)), vec![addr(1), addr(3)]);
    assert!(connects(&h.advance(Duration::from_millis(249))).is_empty());
    assert_eq!(
        connects(&h.advance(Duration::from_millis(1))),
        vec![addr(2), addr(4)]
    );
    h.connected(&addr(2));
    h.advance(INTERVAL);
    assert_eq!(h.state(), ConnectivityState::Ready);
}
