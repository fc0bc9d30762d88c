//! ring_hash, rule by rule (gRFC A42, A61, A76).

mod support;

use std::collections::{BTreeMap, BTreeSet};

use croupier::policy::{RingHashConfig, RingHashConfigError};
use croupier::{
    Address, ConnectionEvent, ConnectionId, ConnectivityState, Endpoint, Pick, PickRequest,
    PolicyChoice, PolicyConfig, ResolverUpdate,
};
use http::{HeaderMap, HeaderValue};
use support::*;
use xxhash_rust::xxh64::xxh64;

fn harness() -> Harness {
    Harness::new(PolicyConfig::ring_hash(), 7)
}

fn with_header(name: &str) -> Harness {
    let config = RingHashConfig::default()
        .request_hash_header(name)
        .expect("a valid header");
    Harness::new(PolicyConfig::new(config), 7)
}

fn ready_ring(ports: &[u16]) -> Harness {
    let mut h = harness();
    h.resolve(update(ports));
    connect_everything(&mut h);
    assert_eq!(h.lb.subchannels().len(), ports.len());
    h
}

fn headers(values: &[&str]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for value in values {
        map.append("user-id", HeaderValue::from_str(value).unwrap());
    }
    map
}

/// Which endpoint each of `hashes` lands on.
fn mapping(h: &Harness, hashes: impl Iterator<Item = u64>) -> BTreeMap<u64, Address> {
    hashes
        .map(|hash| (hash, pick_hash(h, hash).expect("a READY pick")))
        .collect()
}

#[test]
fn the_same_hash_reaches_the_same_endpoint() {
    let h = ready_ring(&[1, 2, 3, 4]);
    let mut reached = BTreeSet::new();
    for hash in spread_hashes(200) {
        let first = pick_hash(&h, hash).expect("a pick");
        for _ in 0..3 {
            assert_eq!(pick_hash(&h, hash).as_ref(), Some(&first));
        }
        reached.insert(first);
    }
    assert_eq!(
        reached.len(),
        4,
        "different hashes spread over every endpoint"
    );
}

#[test]
fn the_request_hash_header_is_hashed_with_xxh64() {
    let mut h = with_header("user-id");
    h.resolve(update(&[1, 2, 3, 4]));
    connect_everything(&mut h);
    for user in ["alice", "bob", "carol", "dave", "erin"] {
        let map = headers(&[user]);
        let by_header = pick_address_for(&h, &PickRequest::new().with_headers(&map));
        assert!(by_header.is_some());
        assert_eq!(
            by_header,
            pick_hash(&h, xxh64(user.as_bytes(), 0)),
            "{user}"
        );
    }
}

#[test]
fn several_header_values_are_joined_with_commas_before_hashing() {
    let mut h = with_header("user-id");
    h.resolve(update(&[1, 2, 3, 4, 5, 6]));
    connect_everything(&mut h);
    for (a, b) in [("x", "y"), ("alice", "bob"), ("1", "22")] {
        let two = headers(&[a, b]);
        let joined_value = format!("{a},{b}");
        let joined = headers(&[&joined_value]);
        let by_two = pick_address_for(&h, &PickRequest::new().with_headers(&two));
        let by_joined = pick_address_for(&h, &PickRequest::new().with_headers(&joined));
        assert!(by_two.is_some());
        assert_eq!(by_two, by_joined);
        assert_eq!(by_two, pick_hash(&h, xxh64(joined_value.as_bytes(), 0)));
    }
}

#[test]
fn an_explicit_hash_wins_over_the_header() {
    let mut h = with_header("user-id");
    h.resolve(update(&[1, 2, 3, 4]));
    connect_everything(&mut h);
    let map = headers(&["alice"]);
    for hash in spread_hashes(50) {
        let request = PickRequest::new().with_headers(&map).with_hash(hash);
        assert_eq!(pick_address_for(&h, &request), pick_hash(&h, hash));
    }
}

#[test]
fn a_binary_request_hash_header_is_rejected() {
    let error = RingHashConfig::default()
        .request_hash_header("session-bin")
        .unwrap_err();
    assert_eq!(
        error,
        RingHashConfigError::BinaryHeader("session-bin".into())
    );
    assert!(error.to_string().contains("binary"), "{error}");
    assert!(matches!(
        RingHashConfig::default().request_hash_header("not a header"),
        Err(RingHashConfigError::InvalidHeaderName(_))
    ));
    // Chosen by a resolver, the mistake fails calls with a message that says why.
    let mut h = Harness::new(PolicyConfig::pick_first(), 1);
    let choice = PolicyChoice::new("ring_hash").param("request_hash_header", "Session-Bin");
    h.resolve(update(&[1]).with_policy(choice));
    match h.pick() {
        Pick::Fail(status) => assert!(status.message().contains("binary header"), "{status}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn a_missing_header_gives_a_random_hash() {
    let mut h = with_header("user-id");
    h.resolve(update(&[1, 2, 3, 4]));
    connect_everything(&mut h);
    let empty = headers(&[""]);
    let mut counts: BTreeMap<Address, usize> = BTreeMap::new();
    for i in 0..2000 {
        let request = if i % 2 == 0 {
            PickRequest::new()
        } else {
            PickRequest::new().with_headers(&empty) // an empty value counts as missing
        };
        *counts
            .entry(pick_address_for(&h, &request).unwrap())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 4, "{counts:?}");
    for (address, count) in &counts {
        assert!(
            *count > 250,
            "{address} got only {count} of 2000: {counts:?}"
        );
    }
}

#[test]
fn a_picked_idle_endpoint_queues_the_call_and_connects_on_exit_idle() {
    let mut q = Quiet::new(PolicyConfig::ring_hash(), 7);
    let actions = q.resolve(update(&[1, 2, 3]));
    assert!(attempts(&actions).is_empty(), "ring_hash connects lazily");
    assert_eq!(q.lb.state(), ConnectivityState::Idle);
    assert_eq!(q.pick(12345), Pick::Queue);
    let started = attempts(&q.exit_idle());
    assert_eq!(started.len(), 1, "only the picked endpoint connects");
    assert_eq!(q.lb.state(), ConnectivityState::Connecting);
    assert_eq!(q.pick(12345), Pick::Queue, "CONNECTING queues");
    let (connection, _) = started[0];
    q.event(connection, ConnectionEvent::Connected);
    assert_eq!(q.pick(12345), Pick::Ready(connection.subchannel()));
    assert_eq!(q.lb.state(), ConnectivityState::Ready);
    assert!(
        attempts(&q.exit_idle()).is_empty(),
        "nothing more was asked for"
    );
}

fn refused() -> ConnectionEvent {
    ConnectionEvent::Failed("connection refused".into())
}

/// A quiet balancer over `ports` whose pick of `hash` started exactly one attempt.
fn quiet_with_one_attempt(ports: &[u16], hash: u64) -> (Quiet, ConnectionId, Address) {
    let mut q = Quiet::new(PolicyConfig::ring_hash(), 7);
    q.resolve(update(ports));
    assert_eq!(q.pick(hash), Pick::Queue);
    let started = attempts(&q.exit_idle());
    assert_eq!(started.len(), 1);
    let (connection, address) = started[0].clone();
    (q, connection, address)
}

#[test]
fn transient_failure_endpoints_are_skipped_on_the_walk() {
    let mut q = Quiet::new(PolicyConfig::ring_hash(), 7);
    q.resolve(update(&[1, 2, 3, 4]));
    let connections = q.connect_everything();
    assert_eq!(connections.len(), 4);
    let owner = |q: &Quiet, hash| match q.pick(hash) {
        Pick::Ready(id) => id,
        other => panic!("expected a READY pick, got {other:?}"),
    };
    let hashes: Vec<u64> = spread_hashes(2_000).collect();
    let before: Vec<_> = hashes.iter().map(|&hash| owner(&q, hash)).collect();
    // Endpoint 1's connection is lost; a call that hashes to it reconnects it, and that fails.
    let (connection, _) = connections.iter().find(|(_, a)| *a == addr(1)).unwrap();
    let lost = connection.subchannel();
    q.event(*connection, ConnectionEvent::Closed("went away".into()));
    let on_lost = hashes[before.iter().position(|id| *id == lost).unwrap()];
    assert_eq!(q.pick(on_lost), Pick::Queue);
    let retry = attempts(&q.exit_idle());
    assert_eq!(retry.len(), 1);
    q.event(retry[0].0, refused());
    // Calls that hashed to it walk on to the next endpoint on the ring; the others stay put.
    let mut moved = 0;
    for (hash, was) in hashes.iter().zip(&before) {
        let now = owner(&q, *hash);
        if *was == lost {
            assert_ne!(now, lost);
            moved += 1;
        } else {
            assert_eq!(
                now, *was,
                "hash {hash} moved although its endpoint is READY"
            );
        }
    }
    assert!(moved > 0);
}

#[test]
fn every_endpoint_failed_fails_with_the_hashed_endpoints_error() {
    let hash = 42;
    let (mut q, connection, first) = quiet_with_one_attempt(&[1, 2], hash);
    let second = attempts(&q.event(
        connection,
        ConnectionEvent::Failed(format!("refused by {first}")),
    ));
    q.event(second[0].0, refused());
    assert_eq!(q.lb.state(), ConnectivityState::TransientFailure);
    match q.pick(hash) {
        Pick::Fail(status) => {
            assert!(status.message().contains("none of 2 endpoints"), "{status}");
            assert!(
                status.message().contains(&format!("refused by {first}")),
                "names the hashed endpoint's error: {status}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn aggregate_is_idle_while_every_endpoint_is_idle() {
    let mut q = Quiet::new(PolicyConfig::ring_hash(), 7);
    q.resolve(update(&[1, 2, 3]));
    assert_eq!(q.lb.state(), ConnectivityState::Idle);
}

#[test]
fn aggregate_is_ready_when_any_endpoint_is_ready() {
    let (mut q, connection, _) = quiet_with_one_attempt(&[1, 2, 3, 4], 1);
    q.event(connection, ConnectionEvent::Connected);
    assert_eq!(q.lb.state(), ConnectivityState::Ready);
    // Even with the others failed, one READY endpoint keeps the channel READY.
    for hash in spread_hashes(256) {
        let _ = q.pick(hash);
    }
    for (other, _) in attempts(&q.exit_idle()) {
        q.event(other, refused());
    }
    assert!(q.lb.subchannels().len() == 4);
    assert_eq!(q.lb.state(), ConnectivityState::Ready);
}

#[test]
fn aggregate_is_connecting_while_any_endpoint_connects() {
    let (q, _, _) = quiet_with_one_attempt(&[1, 2, 3], 1);
    assert_eq!(q.lb.state(), ConnectivityState::Connecting);
}

#[test]
fn aggregate_is_connecting_with_exactly_one_failure_among_several() {
    let (mut q, connection, _) = quiet_with_one_attempt(&[1, 2, 3], 1);
    let next = attempts(&q.event(connection, refused()));
    assert_eq!(q.lb.state(), ConnectivityState::Connecting);
    // Still CONNECTING, not IDLE, once the next attempt ends too without a failure (A42).
    q.event(next[0].0, ConnectionEvent::Connected);
    q.event(next[0].0, ConnectionEvent::Closed("went away".into()));
    assert_eq!(q.lb.state(), ConnectivityState::Connecting);
}

#[test]
fn aggregate_is_transient_failure_with_two_failures() {
    let (mut q, connection, _) = quiet_with_one_attempt(&[1, 2, 3, 4], 1);
    let second = attempts(&q.event(connection, refused()));
    q.event(second[0].0, refused());
    assert_eq!(q.lb.state(), ConnectivityState::TransientFailure);
    assert!(
        q.lb.subchannels().len() < 4,
        "not every endpoint has been tried, yet the channel reports the failure"
    );
}

#[test]
fn aggregate_is_transient_failure_when_the_only_endpoint_failed() {
    let (mut q, connection, _) = quiet_with_one_attempt(&[1], 1);
    q.event(connection, refused());
    assert_eq!(q.lb.state(), ConnectivityState::TransientFailure);
    assert!(matches!(q.pick(1), Pick::Fail(_)));
}

#[test]
fn while_failing_one_connection_attempt_is_always_under_way() {
    let mut q = Quiet::new(PolicyConfig::ring_hash(), 7);
    let ports = [1, 2, 3, 4, 5];
    q.resolve(update(&ports));
    assert_eq!(q.pick(3), Pick::Queue);
    let mut in_flight = attempts(&q.exit_idle());
    let mut tried = BTreeSet::new();
    // No calls arrive; every attempt fails; the policy moves on by itself, one at a time.
    for _ in 0..ports.len() {
        assert_eq!(
            in_flight.len(),
            1,
            "exactly one attempt in flight: {in_flight:?}"
        );
        let (connection, address) = in_flight.pop().unwrap();
        assert!(tried.insert(address.clone()), "{address} tried twice");
        in_flight = attempts(&q.event(connection, ConnectionEvent::Failed("refused".into())));
    }
    assert!(in_flight.is_empty());
    assert_eq!(tried.len(), ports.len(), "every endpoint was tried");
    assert_eq!(q.lb.state(), ConnectivityState::TransientFailure);
    // Each failed endpoint retries after its backoff; the first success ends the failure.
    let retries = attempts(&q.advance(ms(1_000)));
    assert!(!retries.is_empty());
    q.event(retries[0].0, ConnectionEvent::Connected);
    assert_eq!(q.lb.state(), ConnectivityState::Ready);
}

#[test]
fn a_lost_connection_leaves_its_endpoint_idle_until_a_pick_needs_it() {
    let mut h = ready_ring(&[1, 2]);
    let seen = h.closed(&addr(1));
    assert!(connects(&seen).is_empty(), "no reconnect without a pick");
    assert_eq!(h.state(), ConnectivityState::Ready);
    let hash = spread_hashes(512)
        .find(|&hash| pick_hash(&h, hash).is_none())
        .expect("some hash lands on the idle endpoint");
    let seen = h.exit_idle();
    assert_eq!(
        connects(&seen),
        vec![addr(1)],
        "the pick flagged it: {hash}"
    );
}

#[test]
fn the_ring_distribution_follows_weights() {
    let mut h = harness();
    h.resolve(ResolverUpdate::new([
        Endpoint::new(addr(1)).weight(1),
        Endpoint::new(addr(2)).weight(2),
    ]));
    connect_everything(&mut h);
    let mut counts: BTreeMap<Address, u32> = BTreeMap::new();
    for hash in spread_hashes(10_000) {
        *counts.entry(pick_hash(&h, hash).unwrap()).or_default() += 1;
    }
    let light = f64::from(counts[&addr(1)]) / 10_000.0;
    assert!(
        (light - 1.0 / 3.0).abs() < 0.03,
        "weight 1 of 3 got {:.1}% of 10,000 hashes: {counts:?}",
        light * 100.0
    );
}

#[test]
fn removing_an_endpoint_remaps_only_its_own_keys() {
    let mut h = ready_ring(&[1, 2, 3, 4, 5]);
    let before = mapping(&h, spread_hashes(5_000));
    h.resolve(update(&[1, 2, 3, 4]));
    let after = mapping(&h, spread_hashes(5_000));
    let (mut kept, mut others) = (0, 0);
    for (hash, address) in &before {
        if *address == addr(5) {
            assert_ne!(after[hash], addr(5), "keys of the removed endpoint move");
        } else {
            others += 1;
            kept += usize::from(after[hash] == *address);
        }
    }
    // Not all: with one endpoint fewer, each remaining one gets more entries (A42 sizes the ring
    // by the lightest share), and its new entries take some keys from its neighbours.
    assert!(
        kept * 100 >= others * 85,
        "only {kept} of {others} keys of the remaining endpoints stayed"
    );
}

#[test]
fn an_endpoint_listed_twice_counts_once_with_both_weights() {
    let mut h = harness();
    h.resolve(update(&[1, 2, 1]));
    connect_everything(&mut h);
    assert_eq!(h.lb.subchannels().len(), 2, "one connection per endpoint");
    let share = spread_hashes(3_000)
        .filter(|&hash| pick_hash(&h, hash) == Some(addr(1)))
        .count();
    assert!((1_800..2_200).contains(&share), "{share} of 3000");
}

#[test]
fn a_hash_key_label_places_an_endpoint_independently_of_its_address() {
    let ring = |port_b: u16| {
        let mut h = harness();
        h.resolve(ResolverUpdate::new([
            Endpoint::new(addr(1)).label("hash_key", "a"),
            Endpoint::new(addr(port_b)).label("hash_key", "b"),
        ]));
        connect_everything(&mut h);
        spread_hashes(1_000)
            .map(|hash| pick_hash(&h, hash) == Some(addr(1)))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ring(2),
        ring(9),
        "b moved to a new address but kept its place"
    );
}

#[test]
fn random_input_sequences_keep_the_invariants() {
    let mut rng = croupier::Rng::new(2024);
    for _ in 0..200 {
        let seed = rng.next_u64();
        let steps: Vec<_> = (0..60)
            .map(|_| croupier_testing::Step::random(&mut rng))
            .collect();
        let mut h = croupier_testing::run(PolicyConfig::ring_hash(), seed, &steps);
        h.recover();
    }
}
