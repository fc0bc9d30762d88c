//! priority, rule by rule (gRFC A56), in virtual time.

mod support;

use std::time::Duration;

use croupier::policy::{PriorityChild, PriorityConfig};
use croupier::{ConnectivityState, Endpoint, Pick, PolicyConfig, ResolverUpdate};
use support::*;

const FAILOVER: Duration = Duration::from_secs(10);
const RETENTION: Duration = Duration::from_secs(15 * 60);

/// Two round_robin children, `p0` over port 1 and `p1` over port 2.
fn harness() -> Harness {
    let config = PriorityConfig::new()
        .child("p0", PolicyConfig::round_robin())
        .child("p1", PolicyConfig::round_robin());
    let mut h = Harness::new(PolicyConfig::new(config), 7);
    h.resolve(placed(&[(1, "p0"), (2, "p1")]));
    h
}

/// An update with one endpoint per port, each under the child named beside it.
fn placed(ports: &[(u16, &str)]) -> ResolverUpdate {
    ResolverUpdate::new(
        ports
            .iter()
            .map(|&(port, child)| Endpoint::new(addr(port)).hierarchy([child])),
    )
}

/// p0's attempt fails and p1 takes the calls; then p0's next attempt, after its backoff,
/// succeeds.
fn fail_over_and_back(h: &mut Harness) {
    h.failed(&addr(1));
    h.connected(&addr(2));
    assert_eq!(h.pick_address(), Some(addr(2)));
    for _ in 0..10 {
        if h.has_attempt(&addr(1)) {
            break;
        }
        h.advance(Duration::from_secs(1));
    }
    h.connected(&addr(1));
}

#[test]
fn only_the_highest_child_starts_while_it_connects() {
    let mut h = harness();
    assert!(h.has_attempt(&addr(1)));
    assert!(!h.has_attempt(&addr(2)), "p1 started before p0 failed");
    assert_eq!(h.state(), ConnectivityState::Connecting);
    assert_eq!(h.pick(), Pick::Queue);
    h.connected(&addr(1));
    assert_eq!(h.state(), ConnectivityState::Ready);
    assert_eq!(h.pick_address(), Some(addr(1)));
    h.advance(FAILOVER * 2);
    assert!(
        !h.has_attempt(&addr(2)),
        "a READY child's failover timer fired"
    );
}

#[test]
fn a_child_in_transient_failure_fails_over_to_the_next() {
    let mut h = harness();
    h.failed(&addr(1));
    assert!(h.has_attempt(&addr(2)), "p1 not started when p0 failed");
    h.connected(&addr(2));
    assert_eq!(h.state(), ConnectivityState::Ready);
    for _ in 0..10 {
        assert_eq!(h.pick_address(), Some(addr(2)));
    }
}

#[test]
fn a_child_still_connecting_when_its_timer_fires_fails_over() {
    let mut h = harness();
    h.advance(FAILOVER - ms(1));
    assert!(!h.has_attempt(&addr(2)), "p1 started before the timer");
    h.advance(ms(1));
    assert!(
        h.has_attempt(&addr(2)),
        "p1 not started when the timer fired"
    );
    h.connected(&addr(2));
    assert_eq!(h.pick_address(), Some(addr(2)));
    // p0 answering late takes the calls back.
    h.connected(&addr(1));
    assert_eq!(h.pick_address(), Some(addr(1)));
}

#[test]
fn a_higher_child_that_becomes_ready_takes_the_calls_back() {
    let mut h = harness();
    fail_over_and_back(&mut h);
    assert_eq!(h.state(), ConnectivityState::Ready);
    for _ in 0..10 {
        assert_eq!(h.pick_address(), Some(addr(1)));
    }
}

#[test]
fn a_child_no_longer_needed_is_kept_for_the_retention_interval_then_removed() {
    let mut h = harness();
    fail_over_and_back(&mut h);
    let p1 = |h: &Harness| {
        h.lb.subchannels()
            .into_iter()
            .find(|s| s.address == addr(2))
            .map(|s| s.state)
    };
    h.advance(RETENTION - ms(1));
    assert_eq!(
        p1(&h),
        Some(ConnectivityState::Ready),
        "p1 removed before its retention ended"
    );
    h.advance(ms(1));
    assert_eq!(p1(&h), None, "p1 kept past its retention");
    // Needed again, it is started afresh.
    h.closed(&addr(1));
    h.advance(FAILOVER);
    assert!(h.has_attempt(&addr(2)), "p1 not started afresh");
}

#[test]
fn a_retained_child_needed_again_is_used_at_once() {
    let mut h = harness();
    fail_over_and_back(&mut h);
    h.advance(Duration::from_secs(60));
    // p0 fails again: p1, kept READY, serves without reconnecting.
    h.closed(&addr(1));
    h.advance(FAILOVER);
    assert!(!h.has_attempt(&addr(2)));
    assert_eq!(h.pick_address(), Some(addr(2)));
}

#[test]
fn every_child_failed_shows_the_lowest_childs_failure() {
    let mut h = harness();
    h.failed(&addr(1));
    h.failed(&addr(2));
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
    let Pick::Fail(status) = h.pick() else {
        panic!("a pick with every child failed")
    };
    assert!(status.message().contains("127.0.0.1:2"), "{status:?}");
}

#[test]
fn endpoints_without_a_path_to_a_child_go_nowhere() {
    let config = PriorityConfig::new()
        .push(PriorityChild::new("p0", PolicyConfig::round_robin()))
        .child("p1", PolicyConfig::pick_first());
    let mut h = Harness::new(PolicyConfig::new(config), 7);
    let seen = h.resolve(update(&[1, 2]));
    assert!(connects(&seen).is_empty(), "{seen:?}");
    h.advance(FAILOVER);
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
    let Pick::Fail(status) = h.pick() else {
        panic!("a pick with no endpoint placed")
    };
    assert!(
        status.message().contains(
            "none of the 2 endpoints has a hierarchy path naming one of its children (p0, p1)"
        ),
        "{status:?}"
    );
}

#[test]
fn a_ready_child_that_goes_back_to_connecting_restarts_its_failover_timer() {
    let mut h = harness();
    h.connected(&addr(1));
    h.advance(Duration::from_secs(60));
    // The connection is lost; p0 reconnects at once and its attempt hangs.
    h.closed(&addr(1));
    assert!(h.has_attempt(&addr(1)), "p0 does not reconnect");
    assert_eq!(h.state(), ConnectivityState::Connecting);
    h.advance(FAILOVER - ms(1));
    assert!(!h.has_attempt(&addr(2)), "p1 started before the timer");
    h.advance(ms(1));
    assert!(
        h.has_attempt(&addr(2)),
        "p1 not started when the timer fired"
    );
}

#[test]
fn a_child_may_ignore_its_requests_to_re_resolve() {
    let failing = |ignore: bool| {
        let child = PriorityChild::new("p0", PolicyConfig::round_robin())
            .ignore_reresolution_requests(ignore);
        let mut h = Harness::new(PolicyConfig::new(PriorityConfig::new().push(child)), 7);
        h.resolve(placed(&[(1, "p0")]));
        h.advance(Duration::from_secs(10));
        let seen = h.failed(&addr(1));
        resolve_nows(&seen)
    };
    assert!(
        failing(false) > 0,
        "round_robin asks to re-resolve on failure"
    );
    assert_eq!(failing(true), 0);
}
