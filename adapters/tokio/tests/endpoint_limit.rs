//! The channel's limit on a resolver's list: a longer list fails calls with the reason, and the
//! channel builder sets it.

use std::time::Duration;

use croupier_tokio::{PickOptions, PickRequest};

#[tokio::test]
async fn a_list_longer_than_the_channels_limit_fails_calls_saying_so() {
    // Nothing listens on these: the list is refused before any connection is tried.
    let channel = croupier_tokio::builder("ipv4:127.0.0.1:9,127.0.0.2:9,127.0.0.3:9")
        .max_endpoints(2)
        .build()
        .unwrap();
    let options = PickOptions::new().timeout(Duration::from_secs(5));
    let error = channel
        .pick_with(&PickRequest::new(), options)
        .await
        .expect_err("a pick over a refused list fails");
    assert_eq!(error.code(), croupier_tokio::Code::Unavailable, "{error}");
    let message = error.to_string();
    assert!(
        message.contains("3 endpoints") && message.contains("limit of 2"),
        "{message}"
    );
    assert!(channel.subchannels().await.is_empty());
}
