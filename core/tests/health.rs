//! Client-side health checking (gRFC A17), as the core sees it: a READY connection reported
//! unhealthy is TRANSIENT_FAILURE while it stays open, and READY again when reported healthy.

mod support;

use std::collections::BTreeSet;

use croupier::{ConnectionEvent, ConnectivityState, Pick, PolicyConfig};
use support::*;

fn ready_harness(policy: PolicyConfig, ports: &[u16]) -> Harness {
    let mut h = Harness::new(policy, 3);
    h.resolve(update(ports));
    for &p in ports {
        if h.has_attempt(&addr(p)) {
            h.connected(&addr(p));
        }
    }
    h
}

/// Reports `event` on the open connection to `port`.
fn report(h: &mut Harness, port: u16, event: ConnectionEvent) -> Vec<Seen> {
    let connection = h
        .connections
        .values()
        .find(|(_, a)| *a == addr(port))
        .map(|(c, _)| *c)
        .expect("an open connection");
    h.report(connection, event)
}

fn state_of(h: &Harness, port: u16) -> Option<ConnectivityState> {
    h.lb.subchannels()
        .into_iter()
        .find(|s| s.address == addr(port))
        .map(|s| s.state)
}

fn picked(h: &Harness, picks: usize) -> BTreeSet<croupier::Address> {
    (0..picks).filter_map(|_| h.pick_address()).collect()
}

#[test]
fn an_unhealthy_connection_is_transient_failure_and_stays_open() {
    let mut h = ready_harness(PolicyConfig::round_robin(), &[1, 2]);
    let seen = report(&mut h, 1, ConnectionEvent::Unhealthy("NOT_SERVING".into()));
    assert_eq!(state_of(&h, 1), Some(ConnectivityState::TransientFailure));
    assert!(
        !seen
            .iter()
            .any(|s| matches!(s, Seen::Disconnect(_) | Seen::Connect(..))),
        "the connection is kept and no new one is made: {seen:?}"
    );
    assert_eq!(picked(&h, 10), BTreeSet::from([addr(2)]));
    assert_eq!(h.state(), ConnectivityState::Ready);

    // However long it stays unhealthy, no backoff runs out and no attempt starts.
    let seen = h.advance(ms(600_000));
    assert!(
        !seen.iter().any(|s| matches!(s, Seen::Connect(..))),
        "{seen:?}"
    );
    assert_eq!(state_of(&h, 1), Some(ConnectivityState::TransientFailure));
}

#[test]
fn a_healthy_report_makes_it_ready_again() {
    let mut h = ready_harness(PolicyConfig::round_robin(), &[1, 2]);
    report(&mut h, 1, ConnectionEvent::Unhealthy("NOT_SERVING".into()));
    report(&mut h, 1, ConnectionEvent::Healthy);
    assert_eq!(state_of(&h, 1), Some(ConnectivityState::Ready));
    assert_eq!(picked(&h, 10), BTreeSet::from([addr(1), addr(2)]));
}

#[test]
fn an_unhealthy_connection_that_closes_is_idle_and_reconnected() {
    let mut h = ready_harness(PolicyConfig::round_robin(), &[1, 2]);
    report(&mut h, 1, ConnectionEvent::Unhealthy("NOT_SERVING".into()));
    let seen = report(&mut h, 1, ConnectionEvent::Closed("GOAWAY".into()));
    // round_robin reconnects an IDLE child at once.
    assert_eq!(connects(&seen), vec![addr(1)]);
    assert_eq!(state_of(&h, 1), Some(ConnectivityState::Connecting));
}

#[test]
fn when_every_backend_is_unhealthy_picks_fail_quoting_the_health_check() {
    let mut h = ready_harness(PolicyConfig::round_robin(), &[1, 2]);
    report(
        &mut h,
        1,
        ConnectionEvent::Unhealthy("health: NOT_SERVING".into()),
    );
    report(
        &mut h,
        2,
        ConnectionEvent::Unhealthy("health: NOT_SERVING".into()),
    );
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
    match h.pick() {
        Pick::Fail(status) => assert!(
            status.message().contains("health: NOT_SERVING"),
            "{}",
            status.message()
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
    report(&mut h, 2, ConnectionEvent::Healthy);
    assert_eq!(h.state(), ConnectivityState::Ready);
    assert_eq!(picked(&h, 4), BTreeSet::from([addr(2)]));
}

#[test]
fn health_reports_on_a_connection_that_is_not_ready_are_ignored() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 3);
    h.resolve(update(&[1]));
    let attempt = h
        .attempts
        .values()
        .next()
        .map(|(c, _)| *c)
        .expect("an attempt");
    h.report(attempt, ConnectionEvent::Healthy);
    h.report(attempt, ConnectionEvent::Unhealthy("early".into()));
    assert_eq!(state_of(&h, 1), Some(ConnectivityState::Connecting));
    h.connected(&addr(1));
    report(&mut h, 1, ConnectionEvent::Healthy);
    assert_eq!(state_of(&h, 1), Some(ConnectivityState::Ready));
}

#[test]
fn pick_first_moves_off_an_unhealthy_backend_and_back_when_it_recovers() {
    let mut h = ready_harness(PolicyConfig::pick_first(), &[1, 2]);
    let first = h.pick_address().expect("a pick");
    let port = if first == addr(1) { 1 } else { 2 };
    report(
        &mut h,
        port,
        ConnectionEvent::Unhealthy("NOT_SERVING".into()),
    );
    assert_ne!(h.pick_address(), Some(first.clone()));
    h.exit_idle();
    report(&mut h, port, ConnectionEvent::Healthy);
    assert_eq!(state_of(&h, port), Some(ConnectivityState::Ready));
}
