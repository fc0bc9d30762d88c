//! p2c_ewma: the cheaper of two by peak-sensitive latency average times calls in flight, with
//! its decay on the core's clock. Tests run a small fleet in virtual time.

mod support;

use std::time::Duration;

use croupier::policy::PeakEwmaConfig;
use croupier::{Address, PolicyChoice, PolicyConfig, PolicyParamErrorKind};
use support::fleet::{share, Fleet};
use support::*;

#[test]
fn equal_backends_share_calls_evenly() {
    let mut fleet = Fleet::new(PolicyConfig::p2c_ewma(), &[1, 2, 3, 4], 1);
    let sent = fleet.run(20_000, |_| 10);
    for port in 1..=4 {
        let s = share(&sent, port);
        assert!((0.22..=0.28).contains(&s), "{port}: {s:.3} of {sent:?}");
    }
}

#[test]
fn load_moves_away_from_a_slow_backend_and_back_after_it_recovers() {
    let mut fleet = Fleet::new(PolicyConfig::p2c_ewma(), &[1, 2, 3, 4], 2);
    let slow = std::cell::Cell::new(false);
    let latency = |a: &Address| if slow.get() && *a == addr(1) { 100 } else { 10 };
    let before = fleet.run(10_000, latency);
    assert!(share(&before, 1) > 0.2, "{before:?}");
    // Backend 1 becomes ten times slower: after the first slow calls it gets very little.
    slow.set(true);
    let _ = fleet.run(1_000, latency);
    let during = fleet.run(20_000, latency);
    assert!(share(&during, 1) < 0.05, "{during:?}");
    // It recovers: decay lets it be tried again, its fast answers pull the estimate down, and
    // within a few decay windows it carries its share again.
    slow.set(false);
    let _ = fleet.run(30_000, latency);
    let after = fleet.run(10_000, latency);
    assert!(share(&after, 1) > 0.2, "{after:?}");
}

#[test]
fn without_decay_an_avoided_backend_would_wait_far_longer() {
    // The same recovery with a decay window 100 times longer: the old peak lingers, and the
    // recovered backend is still short of its share when the default one has its share back.
    let run = |policy: PolicyConfig| {
        let mut fleet = Fleet::new(policy, &[1, 2, 3, 4], 3);
        let slow = std::cell::Cell::new(true);
        let latency = |a: &Address| if slow.get() && *a == addr(1) { 100 } else { 10 };
        let _ = fleet.run(10_000, latency);
        slow.set(false);
        let _ = fleet.run(30_000, latency);
        share(&fleet.run(10_000, latency), 1)
    };
    let quick = run(PolicyConfig::p2c_ewma());
    let slow = run(PolicyConfig::new(
        PeakEwmaConfig::default().decay(Duration::from_secs(1000)),
    ));
    assert!(
        quick > 0.2 && slow < quick,
        "quick {quick:.3}, slow {slow:.3}"
    );
}

#[test]
fn in_flight_calls_count_in_the_cost() {
    // Equal latencies, but calls on 1 never end: its cost grows with every call in flight.
    let mut fleet = Fleet::new(PolicyConfig::p2c_ewma(), &[1, 2], 4);
    let sent = fleet.run(2_000, |a| if *a == addr(1) { 1_000_000 } else { 10 });
    assert!(share(&sent, 1) < 0.05, "{sent:?}");
}

#[test]
fn chosen_by_name_with_parameters() {
    let mut q = Quiet::new(PolicyConfig::pick_first(), 5);
    let choice = PolicyChoice::new("p2c_ewma")
        .param("decay_ms", "500")
        .param("default_rtt_ms", "5");
    let mut actions = q.resolve(update(&[1, 2]).with_policy(choice));
    actions.extend(q.exit_idle());
    assert_eq!(
        attempts(&actions).len(),
        2,
        "p2c_ewma connects every endpoint"
    );
    let err = PolicyConfig::p2c_ewma()
        .with_params(&[("decay_ms".to_owned(), "soon".to_owned())])
        .unwrap_err();
    assert_eq!(err.policy, "p2c_ewma");
    assert!(
        matches!(&err.kind, PolicyParamErrorKind::InvalidValue { key, value, .. }
            if key == "decay_ms" && value == "soon"),
        "{err:?}"
    );
    assert!(err.to_string().contains("decay_ms"), "{err}");
}
