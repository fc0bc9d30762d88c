//! `methodConfig`, its retry and hedging policies (gRFC A6), `retryThrottling` and
//! `healthCheckConfig`.

use std::time::Duration;

use croupier::retry::{CallPolicy, HedgingPolicy, RetryPolicy};
use croupier::Code;

use super::parse;

/// The retry policy a config's default method config runs.
fn retry_of(config: &croupier::ServiceConfig) -> RetryPolicy {
    match &config.methods.default_config().unwrap().call_policy {
        CallPolicy::Retry(retry) => retry.clone(),
        other => panic!("a retry policy, got {other:?}"),
    }
}

/// The hedging policy the config gives a call to `path`.
fn hedging_of(config: &croupier::ServiceConfig, path: &str) -> HedgingPolicy {
    match &config.methods.for_path(path).unwrap().call_policy {
        CallPolicy::Hedging(hedging) => hedging.clone(),
        other => panic!("a hedging policy, got {other:?}"),
    }
}

fn retry_json(policy: &str) -> String {
    format!(r#"{{"methodConfig": [{{"name": [{{}}], "retryPolicy": {policy}}}]}}"#)
}

#[test]
fn retry_policy_is_read_per_a6_with_max_attempts_capped_at_5() {
    let config = parse(&retry_json(
        r#"{"maxAttempts": 7, "initialBackoff": "0.1s", "maxBackoff": "2s", "backoffMultiplier": 1.5,
            "retryableStatusCodes": ["UNAVAILABLE", "resource_exhausted", 10]}"#,
    ));
    let retry = retry_of(&config);
    assert_eq!(retry.max_attempts(), 5);
    assert_eq!(retry.configured_max_attempts(), 7, "kept as written");
    assert_eq!(retry.initial_backoff(), Duration::from_millis(100));
    assert_eq!(retry.max_backoff(), Duration::from_secs(2));
    assert_eq!(retry.backoff_multiplier(), 1.5);
    let codes: Vec<Code> = retry.retryable_status_codes().iter().collect();
    assert_eq!(
        codes,
        [Code::ResourceExhausted, Code::Aborted, Code::Unavailable]
    );
    assert!(!retry.retryable_status_codes().contains(Code::Internal));
    assert_eq!(retry.per_attempt_recv_timeout(), None);
    let config = parse(&retry_json(
        r#"{"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 1,
            "retryableStatusCodes": [14], "perAttemptRecvTimeout": "0.25s"}"#,
    ));
    assert_eq!(
        retry_of(&config).per_attempt_recv_timeout(),
        Some(Duration::from_millis(250))
    );
}

#[test]
fn hedging_policy_defaults_its_delay_and_codes() {
    let config = parse(
        r#"{"methodConfig": [{"name": [{"service": "a.B"}], "hedgingPolicy": {"maxAttempts": "3"}}]}"#,
    );
    let hedging = hedging_of(&config, "/a.B/C");
    assert_eq!(hedging.max_attempts(), 3);
    assert_eq!(hedging.hedging_delay(), Duration::ZERO);
    assert!(hedging.non_fatal_status_codes().is_empty());
    let config = parse(
        r#"{"methodConfig": [{"name": [{}], "hedgingPolicy": {"maxAttempts": 9, "hedgingDelay": "0.25s", "nonFatalStatusCodes": ["UNAVAILABLE"]}}]}"#,
    );
    let hedging = hedging_of(&config, "/any.Service/Call");
    assert_eq!(hedging.max_attempts(), 5);
    assert_eq!(hedging.configured_max_attempts(), 9);
    assert_eq!(hedging.hedging_delay(), Duration::from_millis(250));
    assert!(hedging.non_fatal_status_codes().contains(Code::Unavailable));
}

#[test]
fn a_method_config_is_found_by_method_then_service_then_default() {
    let config = parse(
        r#"{"methodConfig": [
            {"name": [{"service": "shop.Cart", "method": "Checkout"}], "timeout": "30s", "waitForReady": true},
            {"name": [{"service": "shop.Cart"}, {"service": "shop.Stock", "method": ""}], "timeout": "2s",
             "maxRequestMessageBytes": "1048576", "maxResponseMessageBytes": 4194304},
            {"name": [{"service": ""}], "timeout": "0.5s"},
            {"timeout": "99s"}
        ]}"#,
    );
    let methods = &config.methods;
    let timeout = |path| methods.for_path(path).and_then(|m| m.timeout);
    assert_eq!(
        timeout("/shop.Cart/Checkout"),
        Some(Duration::from_secs(30))
    );
    assert_eq!(timeout("/shop.Cart/Add"), Some(Duration::from_secs(2)));
    assert_eq!(timeout("/shop.Stock/Count"), Some(Duration::from_secs(2)));
    assert_eq!(
        timeout("/shop.Other/Count"),
        Some(Duration::from_millis(500))
    );
    assert_eq!(
        timeout("/shop.Cart"),
        Some(Duration::from_millis(500)),
        "not a method path"
    );
    let checkout = methods.for_path("/shop.Cart/Checkout").unwrap();
    assert_eq!(checkout.wait_for_ready, Some(true));
    assert_eq!(
        checkout.max_request_message_bytes, None,
        "no merging with the service entry"
    );
    let add = methods.for_path("/shop.Cart/Add").unwrap();
    assert_eq!(add.max_request_message_bytes, Some(1_048_576));
    assert_eq!(add.max_response_message_bytes, Some(4_194_304));
    // The entry without a name applies to nothing; four names are filed.
    assert_eq!(methods.len(), 4);
}

#[test]
fn without_a_default_unmatched_paths_have_no_method_config() {
    let config = parse(
        r#"{"methodConfig": [{"name": [{"service": "a.B", "method": "C"}], "timeout": "1s"}]}"#,
    );
    assert!(config.methods.for_path("/a.B/C").is_some());
    assert!(config.methods.for_path("/a.B/D").is_none());
    assert!(config.methods.default_config().is_none());
}

#[test]
fn retry_throttling_keeps_three_decimal_places_of_token_ratio() {
    let throttling = |json: &str| parse(json).retry_throttling.unwrap();
    let t = throttling(r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}}"#);
    assert_eq!((t.max_tokens, t.token_ratio_millis), (10, 100));
    let t = throttling(r#"{"retryThrottling": {"maxTokens": "1000", "tokenRatio": 4.35}}"#);
    assert_eq!((t.max_tokens, t.token_ratio_millis), (1000, 4350));
    assert_eq!(t.token_ratio(), 4.35);
    let t = throttling(r#"{"retryThrottling": {"maxTokens": 1, "tokenRatio": "0.12345"}}"#);
    assert_eq!(
        t.token_ratio_millis, 123,
        "digits past the third are dropped"
    );
    let t = throttling(r#"{"retryThrottling": {"maxTokens": 1, "tokenRatio": 1e9}}"#);
    assert_eq!(t.token_ratio_millis, 1_000_000);
}

#[test]
fn retry_throttling_builds_a_full_throttle_per_channel() {
    let config = parse(r#"{"retryThrottling": {"maxTokens": 4, "tokenRatio": 0.5}}"#);
    let settings = config.retry_throttling.unwrap();
    let throttle = settings.throttle().unwrap();
    assert_eq!((throttle.max_tokens(), throttle.token_ratio()), (4, 0.5));
    assert_eq!(throttle.tokens(), 4.0, "it starts full");
    // Three failures leave 1 token, not more than half of 4: retries stop.
    for _ in 0..3 {
        throttle.record_failure();
    }
    assert!(!throttle.allows_retries());
    // A second channel's throttle is its own, full bucket.
    assert!(settings.throttle().unwrap().allows_retries());
}

#[test]
fn a_method_without_retry_settings_has_no_call_policy() {
    let config = parse(r#"{"methodConfig": [{"name": [{}], "timeout": "1s"}]}"#);
    let policy = &config.methods.default_config().unwrap().call_policy;
    assert_eq!(*policy, CallPolicy::None);
    assert_eq!(policy.max_attempts(), 1);
}

#[test]
fn health_check_config_names_the_service() {
    let config = parse(r#"{"healthCheckConfig": {"serviceName": "grpc.health.v1.Health"}}"#);
    assert_eq!(
        config.health_check_service_name.as_deref(),
        Some("grpc.health.v1.Health")
    );
    assert!(parse(r#"{"healthCheckConfig": {}}"#)
        .health_check_service_name
        .is_none());
}
