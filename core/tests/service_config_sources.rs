//! Where the balancer's service config comes from (gRFC A21): the resolver's when valid, else
//! the one in use, else the channel's default, else the channel fails saying why; the default
//! when the resolver gives none or is ignored. Deterministic: no clock, fixed seeds.
#![cfg(feature = "service-config")]

mod support;

use std::time::Duration;

use croupier::service_config::ServiceConfigParser;
use croupier::{
    BalancerConfig, Code, ConnectivityState, Pick, PolicyChoice, PolicyConfig, ResolverUpdate,
};
use support::{addr, connects, update, Harness};

/// A config choosing `policy`, with every call's timeout `timeout_ms`.
fn config(policy: &str, timeout_ms: u64) -> String {
    format!(
        r#"{{"loadBalancingConfig": [{{"{policy}": {{}}}}],
            "methodConfig": [{{"name": [{{}}], "timeout": "{}s"}}]}}"#,
        timeout_ms as f64 / 1000.0
    )
}

fn parsed(json: &str) -> croupier::ServiceConfig {
    ServiceConfigParser::new()
        .parse(json)
        .expect("a valid config")
}

/// The resolver's update of `ports` carrying `json`, valid or not.
fn with_config(ports: &[u16], json: &str) -> ResolverUpdate {
    update(ports).with_service_config(ServiceConfigParser::new().parse(json))
}

/// The timeout the config in use gives a call to `/echo.Echo/UnaryEcho`.
fn timeout(h: &Harness) -> Option<Duration> {
    h.lb.service_config()
        .methods
        .for_path("/echo.Echo/UnaryEcho")
        .and_then(|method| method.timeout)
}

fn with_default(json: &str) -> Harness {
    Harness::with_config(
        BalancerConfig::default()
            .policy(PolicyConfig::pick_first())
            .default_service_config(parsed(json)),
        1,
    )
}

const INVALID: &str = r#"{"loadBalancingConfig": [{"ring_hash": {"minRingSize": "big"}}]}"#;

#[test]
fn the_default_service_config_chooses_the_policy_and_the_method_settings() {
    let mut h = with_default(&config("round_robin", 3000));
    assert_eq!(
        timeout(&h),
        Some(Duration::from_secs(3)),
        "before any update"
    );
    let seen = h.resolve(update(&[1, 2]));
    assert_eq!(
        connects(&seen),
        vec![addr(1), addr(2)],
        "round_robin, not the builder's pick_first"
    );
    assert_eq!(timeout(&h), Some(Duration::from_secs(3)));
}

#[test]
fn a_resolver_config_wins_over_the_default() {
    let mut h = with_default(&config("round_robin", 3000));
    let seen = h.resolve(with_config(&[1, 2], &config("pick_first", 2000)));
    assert_eq!(connects(&seen), vec![addr(1)], "pick_first connects one");
    assert_eq!(timeout(&h), Some(Duration::from_secs(2)));
}

#[test]
fn an_invalid_resolver_config_keeps_the_last_good_one_and_takes_the_endpoints() {
    let mut h = with_default(&config("round_robin", 3000));
    h.resolve(with_config(&[1], &config("pick_first", 2000)));
    h.connected(&addr(1));
    let seen = h.resolve(with_config(&[2], INVALID));
    assert_eq!(
        timeout(&h),
        Some(Duration::from_secs(2)),
        "not the default's"
    );
    assert_eq!(
        connects(&seen),
        vec![addr(2)],
        "pick_first still, on the new list"
    );
    assert_eq!(h.lb.endpoints().len(), 1);
}

#[test]
fn an_invalid_first_config_falls_back_on_the_default() {
    let mut h = with_default(&config("round_robin", 3000));
    let seen = h.resolve(with_config(&[1, 2], INVALID));
    assert_eq!(
        connects(&seen),
        vec![addr(1), addr(2)],
        "the default's round_robin"
    );
    assert_eq!(timeout(&h), Some(Duration::from_secs(3)));
}

#[test]
fn an_invalid_first_config_without_a_default_fails_the_channel_saying_why() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 1);
    let seen = h.resolve(with_config(&[1, 2], INVALID));
    assert!(connects(&seen).is_empty(), "the update is not acted on");
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
    match h.pick() {
        Pick::Fail(status) => {
            assert_eq!(status.code(), Code::Unavailable);
            assert!(
                status
                    .message()
                    .contains("loadBalancingConfig[0].ring_hash.minRingSize"),
                "names the place: {status}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A valid config later brings the channel up.
    let seen = h.resolve(with_config(&[1, 2], &config("round_robin", 1000)));
    assert_eq!(connects(&seen), vec![addr(1), addr(2)]);
    assert_eq!(timeout(&h), Some(Duration::from_secs(1)));
}

#[test]
fn an_update_without_a_config_returns_to_the_default() {
    let mut h = with_default(&config("round_robin", 3000));
    h.resolve(with_config(&[1, 2], &config("round_robin", 2000)));
    assert_eq!(timeout(&h), Some(Duration::from_secs(2)));
    h.resolve(update(&[1, 2]));
    assert_eq!(timeout(&h), Some(Duration::from_secs(3)));
    // And with no default, to no config at all.
    let mut h = Harness::new(PolicyConfig::pick_first(), 1);
    h.resolve(with_config(&[1], &config("pick_first", 2000)));
    h.resolve(update(&[1]));
    assert_eq!(timeout(&h), None);
    assert!(h.lb.service_config().load_balancing.is_none());
}

#[test]
fn a_channel_that_ignores_resolver_configs_keeps_its_default() {
    let mut h = Harness::with_config(
        BalancerConfig::default()
            .default_service_config(parsed(&config("round_robin", 3000)))
            .ignore_resolver_service_config(true),
        1,
    );
    let seen = h.resolve(
        with_config(&[1, 2], &config("pick_first", 2000))
            .with_policy(PolicyChoice::new("pick_first")),
    );
    assert_eq!(connects(&seen), vec![addr(1), addr(2)], "still round_robin");
    assert_eq!(timeout(&h), Some(Duration::from_secs(3)));
    // An invalid one is ignored too: nothing fails.
    h.resolve(with_config(&[1, 2], INVALID));
    assert_eq!(h.state(), ConnectivityState::Connecting);
}

#[test]
fn a_policy_choice_is_a_resolver_config_with_only_a_policy() {
    let mut h = with_default(&config("pick_first", 3000));
    let seen = h.resolve(update(&[1, 2]).with_policy(PolicyChoice::new("round_robin")));
    assert_eq!(connects(&seen), vec![addr(1), addr(2)]);
    assert_eq!(
        timeout(&h),
        None,
        "the default's method settings are replaced"
    );
    // With a config of its own that names no policy, the choice picks the policy and the
    // config the method settings.
    let mut h = Harness::new(PolicyConfig::pick_first(), 1);
    let methods = r#"{"methodConfig": [{"name": [{}], "timeout": "2s"}]}"#;
    let seen =
        h.resolve(with_config(&[1, 2], methods).with_policy(PolicyChoice::new("round_robin")));
    assert_eq!(connects(&seen), vec![addr(1), addr(2)]);
    assert_eq!(timeout(&h), Some(Duration::from_secs(2)));
}

#[test]
fn the_same_config_again_is_a_repeat() {
    let mut h = Harness::new(PolicyConfig::pick_first(), 1);
    h.resolve(with_config(&[1, 2], &config("round_robin", 2000)));
    let before = std::sync::Arc::clone(h.lb.service_config());
    let seen = h.resolve(with_config(&[1, 2], &config("round_robin", 2000)));
    assert!(seen.is_empty(), "{seen:?}");
    assert!(std::sync::Arc::ptr_eq(&before, h.lb.service_config()));
    // Another timeout is another config, for the same policy: no switch.
    let seen = h.resolve(with_config(&[1, 2], &config("round_robin", 1000)));
    assert!(connects(&seen).is_empty(), "{seen:?}");
    assert!(!h.lb.is_switching_policy());
    assert_eq!(timeout(&h), Some(Duration::from_secs(1)));
}
