//! Retries configured by a service config (gRFC A6 in `methodConfig` and `retryThrottling`),
//! run by the same front as the builder's.

use super::*;

/// A default service config that retries the echo service's UNAVAILABLE calls up to
/// `max_attempts`, with the throttle `throttling` (JSON, or none).
fn retrying_config(max_attempts: u32, throttling: Option<&str>) -> String {
    let throttling = throttling
        .map(|throttling| format!(r#", "retryThrottling": {throttling}"#))
        .unwrap_or_default();
    format!(
        r#"{{
            "methodConfig": [{{
                "name": [{{"service": "grpc.examples.echo.Echo"}}],
                "retryPolicy": {{
                    "maxAttempts": {max_attempts},
                    "initialBackoff": "0.01s",
                    "maxBackoff": "0.05s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"]
                }}
            }}]{throttling}
        }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_configs_retry_policy_retries_its_calls() {
    let script = Arc::new(Script::failing(3, tonic::Code::Unavailable));
    let addresses = scripted(1, &script).await;
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target_of(&addresses))
        .default_service_config(retrying_config(4, None).as_str())
        .build()
        .unwrap();
    let reply = call(&mut client(channel), "configured").await.unwrap();
    assert!(reply.starts_with("configured (from :"), "{reply}");
    assert_eq!(script.calls(), 4);
    assert_eq!(
        script.previous_attempts(),
        [None, Some("1".into()), Some("2".into()), Some("3".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_configs_retry_policy_wins_over_the_builders() {
    let script = Arc::new(Script::failing(10, tonic::Code::Unavailable));
    let addresses = scripted(1, &script).await;
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target_of(&addresses))
        .retry_policy(retry_unavailable(5))
        .default_service_config(retrying_config(2, None).as_str())
        .build()
        .unwrap();
    let status = call(&mut client(channel), "twice").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(
        script.calls(),
        2,
        "the method config's maxAttempts, not the builder's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_configs_throttle_holds_back_retries() {
    let script = Arc::new(Script::failing(100, tonic::Code::Unavailable));
    let addresses = scripted(1, &script).await;
    let throttling = r#"{"maxTokens": 10, "tokenRatio": 1}"#;
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target_of(&addresses))
        .default_service_config(retrying_config(3, Some(throttling)).as_str())
        .build()
        .unwrap();
    let mut client = client(channel);
    let mut attempts = Vec::new();
    for _ in 0..4 {
        let before = script.calls();
        assert!(call(&mut client, "throttled").await.is_err());
        attempts.push(script.calls() - before);
    }
    // Ten tokens, one per failure, retries while more than five are left: 10 -> 7 in the first
    // call's three attempts, 7 -> 5 in the second's two, then one attempt each.
    assert_eq!(attempts, [3, 2, 1, 1]);
}
