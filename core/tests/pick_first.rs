//! pick_first, rule by rule (gRFC A61/A62 as summarised in the crate docs).

mod support;

use croupier::policy::PickFirstConfig;
use croupier::{Address, ConnectivityState, Endpoint, Pick, PolicyConfig, ResolverUpdate};
use support::*;

fn harness() -> Harness {
    Harness::new(PolicyConfig::pick_first(), 1)
}

#[test]
fn pick_first_tries_only_the_first_address_at_first() {
    let mut h = harness();
    let seen = h.resolve(update(&[1, 2, 3]));
    assert_eq!(connects(&seen), vec![addr(1)]);
    assert_eq!(h.state(), ConnectivityState::Connecting);
    assert_eq!(h.pick(), Pick::Queue);
}

#[test]
fn happy_eyeballs_starts_the_next_address_after_250ms_without_cancelling() {
    let mut h = harness();
    h.resolve(update(&[1, 2, 3]));
    assert!(connects(&h.advance(ms(249))).is_empty());
    let seen = h.advance(ms(1));
    assert_eq!(connects(&seen), vec![addr(2)]);
    assert!(h.has_attempt(&addr(1)), "the first attempt keeps running");
    assert!(!seen.iter().any(|s| matches!(s, Seen::Disconnect(_))));
    assert_eq!(connects(&h.advance(ms(250))), vec![addr(3)]);
}

#[test]
fn a_failed_attempt_moves_to_the_next_address_at_once() {
    let mut h = harness();
    h.resolve(update(&[1, 2, 3]));
    h.advance(ms(10));
    assert_eq!(connects(&h.failed(&addr(1))), vec![addr(2)]);
    assert_eq!(h.state(), ConnectivityState::Connecting);
}

#[test]
fn first_ready_wins_and_the_others_are_removed() {
    let mut h = harness();
    h.resolve(update(&[1, 2, 3]));
    h.advance(ms(600)); // all three attempts running
    assert_eq!(h.attempts.len(), 3);
    let seen = h.connected(&addr(2));
    let shutdowns = seen
        .iter()
        .filter(|s| matches!(s, Seen::Shutdown(_)))
        .count();
    assert_eq!(shutdowns, 2);
    assert!(h.attempts.is_empty());
    assert_eq!(h.state(), ConnectivityState::Ready);
    assert_eq!(h.lb.subchannels().len(), 1);
    for _ in 0..10 {
        assert_eq!(h.pick_address(), Some(addr(2)));
    }
}

#[test]
fn all_addresses_failed_is_transient_failure_naming_each_error_and_re_resolves() {
    let mut h = harness();
    h.resolve(update(&[1, 2]));
    h.failed(&addr(1));
    let seen = h.failed(&addr(2));
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
    assert_eq!(resolve_nows(&seen), 1);
    match h.pick() {
        Pick::Fail(status) => {
            let message = status.message();
            assert!(
                message.contains("127.0.0.1:1: connection refused"),
                "{message}"
            );
            assert!(
                message.contains("127.0.0.1:2: connection refused"),
                "{message}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn transient_failure_is_sticky_while_reconnecting() {
    let mut h = harness();
    h.resolve(update(&[1, 2]));
    h.failed(&addr(1));
    h.failed(&addr(2));
    // Backoff (1 s) ends: both reconnect, but the channel stays TRANSIENT_FAILURE.
    let seen = h.advance(ms(1000));
    assert_eq!(connects(&seen), vec![addr(1), addr(2)]);
    assert!(states(&seen).is_empty(), "no flap to CONNECTING: {seen:?}");
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
    assert!(matches!(h.pick(), Pick::Fail(_)));
    h.connected(&addr(2));
    assert_eq!(h.state(), ConnectivityState::Ready);
    assert_eq!(h.pick_address(), Some(addr(2)));
}

#[test]
fn each_address_reconnects_as_its_own_backoff_ends() {
    let mut h = harness();
    h.resolve(update(&[1, 2]));
    h.advance(ms(100));
    h.failed(&addr(1)); // failed at 100 ms: its backoff ends at 1 s
    h.advance(ms(400));
    h.failed(&addr(2)); // attempt started at 100 ms: backoff ends at 1.1 s
    let seen = h.advance(ms(500)); // now 1.0 s
    assert_eq!(connects(&seen), vec![addr(1)]);
    let seen = h.advance(ms(100)); // now 1.1 s
    assert_eq!(connects(&seen), vec![addr(2)]);
}

#[test]
fn losing_the_ready_connection_goes_idle_and_the_next_queued_pick_reconnects() {
    let mut h = harness();
    h.resolve(update(&[1, 2]));
    h.connected(&addr(1));
    let seen = h.closed(&addr(1));
    assert_eq!(states(&seen), vec![ConnectivityState::Idle]);
    assert_eq!(
        resolve_nows(&seen),
        1,
        "a lost connection asks for re-resolution"
    );
    assert!(connects(&seen).is_empty(), "IDLE waits for a call");
    assert_eq!(h.pick(), Pick::Queue);
    let seen = h.exit_idle();
    assert_eq!(connects(&seen), vec![addr(1)]);
    assert_eq!(h.state(), ConnectivityState::Connecting);
}

#[test]
fn a_new_list_that_keeps_the_ready_address_keeps_its_connection() {
    let mut h = harness();
    h.resolve(update(&[1, 2]));
    h.connected(&addr(1));
    let seen = h.resolve(update(&[3, 1]));
    assert!(seen.is_empty(), "nothing to do: {seen:?}");
    assert_eq!(h.pick_address(), Some(addr(1)));
}

#[test]
fn a_new_list_without_the_ready_address_starts_over() {
    let mut h = harness();
    h.resolve(update(&[1, 2]));
    h.connected(&addr(1));
    let seen = h.resolve(update(&[3, 4]));
    assert!(seen.iter().any(|s| matches!(s, Seen::Shutdown(_))));
    assert_eq!(connects(&seen), vec![addr(3)]);
    assert_eq!(h.state(), ConnectivityState::Connecting);
}

#[test]
fn shuffle_address_list_follows_the_seed() {
    let first_try = |seed| {
        let config = PolicyConfig::new(PickFirstConfig::default().shuffle_address_list(true));
        let mut h = Harness::new(config, seed);
        connects(&h.resolve(update(&[1, 2, 3, 4, 5, 6, 7, 8])))[0].clone()
    };
    assert_eq!(first_try(7), first_try(7));
    let firsts: std::collections::BTreeSet<_> = (0..20).map(first_try).collect();
    assert!(
        firsts.len() > 3,
        "shuffling should vary the first address: {firsts:?}"
    );
    // Without shuffling the first address is always first.
    let mut h = harness();
    assert_eq!(
        connects(&h.resolve(update(&[1, 2, 3, 4, 5, 6, 7, 8]))),
        vec![addr(1)]
    );
}

#[test]
fn addresses_of_all_endpoints_are_flattened_and_deduplicated() {
    let mut h = harness();
    let both = Endpoint::with_addresses([addr(1), addr(2)]);
    h.resolve(ResolverUpdate::new([
        both,
        Endpoint::new(addr(1)),
        Endpoint::new(addr(3)),
    ]));
    h.failed(&addr(1));
    h.failed(&addr(2));
    let seen = h.failed(&addr(3));
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
    assert_eq!(h.lb.subchannels().len(), 3);
    assert!(connects(&seen).is_empty());
}

#[test]
fn ipv6_and_ipv4_addresses_are_interleaved() {
    let v6 = |p: u16| {
        Address::Socket(std::net::SocketAddr::from((
            std::net::Ipv6Addr::LOCALHOST,
            p,
        )))
    };
    let mut h = harness();
    h.resolve(ResolverUpdate::new([
        Endpoint::new(v6(1)),
        Endpoint::new(v6(2)),
        Endpoint::new(addr(3)),
    ]));
    h.failed(&v6(1));
    assert_eq!(connects(&h.failed(&addr(3))), vec![v6(2)]);
}

#[test]
fn pick_first_sends_every_pick_to_the_one_connection() {
    let mut h = harness();
    h.resolve(update(&[1, 2]));
    h.connected(&addr(1));
    for _ in 0..100 {
        assert_eq!(h.pick_address(), Some(addr(1)));
    }
}
