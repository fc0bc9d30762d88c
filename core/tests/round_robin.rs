//! round_robin, rule by rule.

mod support;

use std::collections::BTreeMap;

use croupier::{Address, ConnectivityState, Endpoint, Pick, PolicyConfig, ResolverUpdate};
use support::*;

fn harness(seed: u64) -> Harness {
    Harness::new(PolicyConfig::round_robin(), seed)
}

fn ready_harness(ports: &[u16]) -> Harness {
    let mut h = harness(3);
    h.resolve(update(ports));
    for &p in ports {
        h.connected(&addr(p));
    }
    h
}

fn spread(h: &Harness, picks: usize) -> BTreeMap<Address, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..picks {
        *counts.entry(h.pick_address().expect("a pick")).or_insert(0) += 1;
    }
    counts
}

#[test]
fn round_robin_connects_to_every_endpoint_at_once() {
    let mut h = harness(1);
    let seen = h.resolve(update(&[1, 2, 3]));
    assert_eq!(connects(&seen), vec![addr(1), addr(2), addr(3)]);
    assert_eq!(h.state(), ConnectivityState::Connecting);
    assert_eq!(h.pick(), Pick::Queue);
}

#[test]
fn picks_cycle_evenly_over_ready_endpoints() {
    let h = ready_harness(&[1, 2, 3]);
    let counts = spread(&h, 300);
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![100, 100, 100]
    );
    let a = h.pick_address();
    let b = h.pick_address();
    let c = h.pick_address();
    assert!(a != b && b != c && a != c, "consecutive picks differ");
}

#[test]
fn round_robin_is_ready_as_soon_as_one_endpoint_is() {
    let mut h = harness(1);
    h.resolve(update(&[1, 2]));
    let seen = h.connected(&addr(2));
    assert_eq!(states(&seen), vec![ConnectivityState::Ready]);
    for _ in 0..5 {
        assert_eq!(h.pick_address(), Some(addr(2)));
    }
}

#[test]
fn round_robin_skips_transient_failure_subchannels() {
    let mut h = harness(1);
    h.resolve(update(&[1, 2, 3]));
    h.connected(&addr(1));
    h.failed(&addr(2));
    h.connected(&addr(3));
    let counts = spread(&h, 100);
    assert_eq!(counts.get(&addr(2)), None);
    assert_eq!(counts.len(), 2);
}

#[test]
fn the_start_index_is_random_per_seed() {
    let first = |seed| {
        let mut h = harness(seed);
        h.resolve(update(&[1, 2, 3, 4, 5, 6, 7, 8]));
        for p in 1..=8 {
            h.connected(&addr(p));
        }
        h.pick_address().unwrap()
    };
    assert_eq!(first(5), first(5));
    let distinct: std::collections::BTreeSet<_> = (0..30).map(first).collect();
    assert!(
        distinct.len() >= 4,
        "start index should vary with the seed: {distinct:?}"
    );
}

#[test]
fn a_dropped_connection_is_reconnected_at_once() {
    let mut h = ready_harness(&[1, 2]);
    let seen = h.closed(&addr(1));
    assert_eq!(connects(&seen), vec![addr(1)]);
    assert_eq!(h.state(), ConnectivityState::Ready);
    let counts = spread(&h, 10);
    assert_eq!(
        counts.get(&addr(2)),
        Some(&10),
        "only the connected one is picked"
    );
}

#[test]
fn a_failed_endpoint_retries_with_backoff() {
    let mut h = harness(1);
    h.resolve(update(&[1, 2]));
    h.connected(&addr(1));
    h.failed(&addr(2));
    assert!(connects(&h.advance(ms(999))).is_empty());
    assert_eq!(connects(&h.advance(ms(1))), vec![addr(2)]);
    h.failed(&addr(2));
    // The second wait is 1.6 s +- 20%, counted from the attempt's start.
    let seen = h.advance(ms(2000));
    let retry = seen
        .iter()
        .find_map(|s| match s {
            Seen::Connect(_, a, at) if *a == addr(2) => Some(*at),
            _ => None,
        })
        .expect("a retry");
    let wait = retry - ms(1000);
    assert!(
        wait >= ms(1280) && wait <= ms(1920),
        "second backoff {wait:?}"
    );
}

#[test]
fn all_endpoints_failed_is_sticky_transient_failure() {
    let mut h = harness(1);
    h.resolve(update(&[1, 2]));
    h.failed(&addr(1));
    let seen = h.failed(&addr(2));
    assert_eq!(states(&seen), vec![ConnectivityState::TransientFailure]);
    match h.pick() {
        Pick::Fail(status) => {
            assert!(
                status.message().contains("all 2 endpoints failed"),
                "{status}"
            );
            assert!(
                status.message().contains("127.0.0.1:2: connection refused"),
                "{status}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let seen = h.advance(ms(1000));
    assert_eq!(connects(&seen).len(), 2, "both retry");
    assert!(
        states(&seen).is_empty(),
        "still TRANSIENT_FAILURE, no CONNECTING flap"
    );
    h.connected(&addr(1));
    assert_eq!(h.state(), ConnectivityState::Ready);
}

#[test]
fn an_update_keeps_existing_endpoints_adds_new_ones_and_removes_gone_ones() {
    let mut h = ready_harness(&[1, 2]);
    let before = h.lb.subchannels();
    let seen = h.resolve(update(&[2, 3]));
    assert_eq!(connects(&seen), vec![addr(3)]);
    let removed: Vec<_> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Shutdown(id) => Some(*id),
            _ => None,
        })
        .collect();
    let old_1 = before.iter().find(|s| s.address == addr(1)).unwrap().id;
    assert_eq!(removed, vec![old_1]);
    let old_2 = before.iter().find(|s| s.address == addr(2)).unwrap().id;
    assert_eq!(h.lb.subchannel_state(old_2), Some(ConnectivityState::Ready));
    let counts = spread(&h, 10);
    assert_eq!(counts.get(&addr(2)), Some(&10));
}

#[test]
fn a_reordered_update_with_replacements_keeps_every_endpoint_still_listed() {
    let mut h = ready_harness(&[1, 2, 3, 4, 5, 6]);
    let before = h.lb.subchannels();
    // Reversed, 2 and 5 replaced by 7 and 8, and 3 listed twice: the new ones sit where the
    // old ones were, out of the order their slots were filled in.
    let seen = h.resolve(update(&[6, 8, 4, 3, 7, 1, 3]));
    assert_eq!(connects(&seen), vec![addr(8), addr(7)]);
    let removed: Vec<_> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Shutdown(id) => Some(*id),
            _ => None,
        })
        .collect();
    let id_of = |port| before.iter().find(|s| s.address == addr(port)).unwrap().id;
    assert_eq!(removed, vec![id_of(2), id_of(5)]);
    for port in [1, 3, 4, 6] {
        assert_eq!(
            h.lb.subchannel_state(id_of(port)),
            Some(ConnectivityState::Ready)
        );
    }
    // Back to the first order: the new ones are found in the slots of the old ones.
    let seen = h.resolve(update(&[1, 7, 3, 4, 8, 6]));
    assert!(connects(&seen).is_empty());
    assert!(!seen.iter().any(|s| matches!(s, Seen::Shutdown(_))));
}

#[test]
fn an_endpoint_with_two_addresses_uses_the_first_that_answers() {
    let mut h = harness(1);
    let endpoint = Endpoint::with_addresses([addr(1), addr(2)]);
    let seen = h.resolve(ResolverUpdate::new([endpoint, Endpoint::new(addr(3))]));
    assert_eq!(connects(&seen), vec![addr(1), addr(3)]);
    let seen = h.failed(&addr(1));
    assert_eq!(connects(&seen), vec![addr(2)]);
    h.connected(&addr(2));
    h.connected(&addr(3));
    let counts = spread(&h, 10);
    assert_eq!(counts.get(&addr(2)), Some(&5));
    assert_eq!(counts.get(&addr(3)), Some(&5));
}

#[test]
fn duplicate_endpoints_get_one_connection() {
    let mut h = harness(1);
    let seen = h.resolve(update(&[1, 1, 2]));
    assert_eq!(connects(&seen), vec![addr(1), addr(2)]);
}

#[test]
fn an_endpoint_is_known_by_its_distinct_addresses_in_order() {
    let list = |lists: &[&[u16]]| {
        ResolverUpdate::new(
            lists
                .iter()
                .map(|ports| Endpoint::with_addresses(ports.iter().map(|&p| addr(p)))),
        )
    };
    let mut h = harness(1);
    assert_eq!(
        connects(&h.resolve(list(&[&[1, 2], &[3]]))),
        vec![addr(1), addr(3)]
    );
    // A repeated address does not make another endpoint, in the same list or the next one.
    assert!(connects(&h.resolve(list(&[&[1, 2, 1], &[3, 3]]))).is_empty());
    assert!(h.seen.iter().all(|s| !matches!(s, Seen::Shutdown(_))));
    // The same addresses in another order are another endpoint: the old one goes.
    let seen = h.resolve(list(&[&[2, 1], &[3]]));
    assert_eq!(connects(&seen), vec![addr(2)]);
    assert_eq!(
        seen.iter()
            .filter(|s| matches!(s, Seen::Shutdown(_)))
            .count(),
        1
    );
}

#[test]
fn a_late_happy_eyeballs_timer_of_a_removed_endpoint_does_not_hurry_its_successor() {
    let two = |a: u16, b: u16| ResolverUpdate::new([Endpoint::with_addresses([addr(a), addr(b)])]);
    let mut h = Harness::new(PolicyConfig::round_robin(), 1);
    assert_eq!(connects(&h.resolve(two(1, 2))), vec![addr(1)]);
    h.advance(ms(100));
    // The endpoint is replaced while its happy eyeballs timer (due at 250 ms) is pending.
    assert_eq!(connects(&h.resolve(two(3, 4))), vec![addr(3)]);
    // At 250 ms the old timer fires: the new endpoint's second address must wait for its own.
    assert!(connects(&h.advance(ms(150))).is_empty());
    assert_eq!(connects(&h.advance(ms(100))), vec![addr(4)]);
}
