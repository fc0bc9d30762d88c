//! least_latency: the cheapest of several endpoints by service time per call times calls in
//! flight, with its estimates drifting on the core's clock. Tests run a small fleet in virtual
//! time, every outcome reported with its pick's note.

mod support;

use croupier::policy::LeastLatencyConfig;
use croupier::service_config::{LoadBalancingConfig, ServiceConfigParser};
use croupier::{PolicyChoice, PolicyConfig, PolicyParamErrorKind};
use support::fleet::{share, Fleet};
use support::*;

#[test]
fn equal_backends_share_calls_evenly() {
    // Each backend serves calls at once, however many (10 ms each): none looks faster for
    // being busier.
    let mut fleet = Fleet::new(PolicyConfig::least_latency(), &[1, 2, 3, 4], 1);
    let sent = fleet.run(20_000, |_| 10);
    for port in 1..=4 {
        let s = share(&sent, port);
        assert!((0.22..0.28).contains(&s), "port {port}: {s} of {sent:?}");
    }
}

#[test]
fn load_moves_off_a_slow_backend_and_back_after_it_recovers() {
    let mut fleet = Fleet::new(PolicyConfig::least_latency(), &[1, 2, 3, 4], 2);
    fleet.run(2_000, |_| 10);
    // Port 1 turns five times slower: after its first slow answers it gets little.
    fleet.run(1_000, |a| if *a == addr(1) { 50 } else { 10 });
    let slow = fleet.run(5_000, |a| if *a == addr(1) { 50 } else { 10 });
    assert!(share(&slow, 1) < 0.08, "{slow:?}");
    // Recovered: drift brings it back into the comparison, and its fast answers keep it there.
    fleet.run(10_000, |_| 10);
    let back = fleet.run(5_000, |_| 10);
    assert!(share(&back, 1) > 0.18, "{back:?}");
}

#[test]
fn chosen_by_name_with_parameters_and_by_service_config() {
    let mut q = Quiet::new(PolicyConfig::pick_first(), 5);
    let choice = PolicyChoice::new("least_latency")
        .param("choice_count", "4")
        .param("rise", "0.5")
        .param("drift_ms", "2000");
    let mut actions = q.resolve(update(&[1, 2, 3]).with_policy(choice));
    actions.extend(q.exit_idle());
    assert_eq!(
        attempts(&actions).len(),
        3,
        "least_latency connects every endpoint"
    );
    let err = PolicyConfig::least_latency()
        .with_params(&[("rise".to_owned(), "2".to_owned())])
        .unwrap_err();
    assert!(
        matches!(&err.kind, PolicyParamErrorKind::InvalidValue { key, value, .. }
            if key == "rise" && value == "2"),
        "{err:?}"
    );

    let json = r#"{"loadBalancingConfig": [{"least_latency": {"choiceCount": 6, "fall": 0.1, "drift": "5s"}}]}"#;
    let config = ServiceConfigParser::new().parse(json).unwrap();
    let Some(LoadBalancingConfig::LeastLatency(parsed)) = &config.load_balancing else {
        panic!("{config:?}")
    };
    let expected = LeastLatencyConfig::default()
        .choice_count(6)
        .fall(0.1)
        .drift(std::time::Duration::from_secs(5));
    assert_eq!(parsed, &expected);
    let bad = r#"{"loadBalancingConfig": [{"least_latency": {"choiceCount": 40}}]}"#;
    let err = ServiceConfigParser::new()
        .parse(bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("choiceCount") && err.contains("40"), "{err}");
}
