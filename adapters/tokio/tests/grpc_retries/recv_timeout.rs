//! `perAttemptRecvTimeout`: an attempt that waits too long for response headers is cancelled
//! (its stream reset, its connection kept) and retried; the call's deadline bounds them all.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier::Code;
use croupier_tokio::PickOptions;

use crate::scripted::{scripted, target_of, Script};
use crate::support::{echo, send, GrpcChannel, PATIENCE};
use crate::{client, retry_unavailable};

/// How long each attempt may wait for its response headers.
const RECV_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a stalled server takes to answer: far past every bound the tests check.
const STALL: Duration = Duration::from_secs(30);
/// How late after its bound a call may end: generous, for a loaded machine.
const MARGIN: Duration = Duration::from_millis(500);

/// A channel to one server following `script`, retrying UNAVAILABLE up to `max_attempts`, each
/// attempt bounded by `recv_timeout`.
async fn timed(script: &Arc<Script>, max_attempts: u32, recv_timeout: Duration) -> GrpcChannel {
    let addresses = scripted(1, script).await;
    let policy = retry_unavailable(max_attempts)
        .with_per_attempt_recv_timeout(recv_timeout)
        .unwrap();
    croupier_tokio::grpc::builder(target_of(&addresses))
        .retry_policy(policy)
        .build()
        .unwrap()
}

/// One call with a deadline `timeout` away that only the channel knows (in its pick options: a
/// server that enforced it too could reset the stream first, which would be retried); its
/// result, and how long it took.
async fn call_within(
    channel: GrpcChannel,
    timeout: Duration,
) -> (Result<String, tonic::Status>, Duration) {
    let mut request = echo("stall?");
    request
        .extensions_mut()
        .insert(PickOptions::new().timeout(timeout));
    let started = Instant::now();
    let result = send(&mut client(channel), request).await;
    (result, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_stalled_past_its_recv_timeout_is_reset_and_the_retry_answers() {
    let script = Arc::new(Script {
        slow_first: Some(STALL),
        ..Script::default()
    });
    let channel = timed(&script, 3, RECV_TIMEOUT).await;
    let (reply, took) = call_within(channel, PATIENCE).await;
    let reply = reply.expect("the retry answers");
    assert!(reply.starts_with("stall? (from :"), "{reply}");
    assert_eq!(script.calls(), 2);
    assert_eq!(script.previous_attempts(), [None, Some("1".into())]);
    // The first attempt's timeout, a backoff of at most 10 ms, the answer.
    assert!(
        took >= RECV_TIMEOUT && took < RECV_TIMEOUT + MARGIN,
        "the call took {took:?}"
    );
    // The stalled attempt's stream was reset...
    tokio::time::timeout(PATIENCE, async {
        while script.cancelled.load(Ordering::SeqCst) == 0 {
            script.cancel.notified().await;
        }
    })
    .await
    .expect("the stalled attempt's server saw its stream reset");
    // ...and its connection kept: the retry came on it.
    let peers = script.peers();
    assert!(peers[0].is_some(), "{peers:?}");
    assert_eq!(peers[0], peers[1], "both attempts on one connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_attempt_stalls_the_call_ends_cancelled_before_its_deadline() {
    let script = Arc::new(Script {
        slow_all: Some(STALL),
        ..Script::default()
    });
    let deadline = Duration::from_secs(3);
    let channel = timed(&script, 3, RECV_TIMEOUT).await;
    let (result, took) = call_within(channel, deadline).await;
    let status = result.expect_err("no attempt answers");
    assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");
    assert!(
        status.message().contains("perAttemptRecvTimeout"),
        "{status:?}"
    );
    assert_eq!(script.calls(), 3, "maxAttempts attempts");
    // Each attempt's stream was reset at its timeout, not at the call's end: the third came
    // 200 ms after the first was reset.
    let resets = script.cancelled_before();
    assert!(
        resets[2] >= 1,
        "resets seen as each attempt came: {resets:?}"
    );
    // Three timeouts and two backoffs of at most 10 ms: well before the deadline.
    assert!(
        took >= RECV_TIMEOUT * 3 && took < RECV_TIMEOUT * 3 + MARGIN,
        "the call took {took:?}"
    );
    assert!(took < deadline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_s_deadline_ends_an_attempt_whose_recv_timeout_is_longer() {
    let script = Arc::new(Script {
        slow_all: Some(STALL),
        ..Script::default()
    });
    let deadline = Duration::from_millis(300);
    let channel = timed(&script, 3, Duration::from_secs(5)).await;
    let (result, took) = call_within(channel, deadline).await;
    let status = result.expect_err("the deadline passes first");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert_eq!(script.calls(), 1, "no retry after the deadline");
    assert!(took < deadline + MARGIN, "the call took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_attempt_is_retried_though_cancelled_is_not_retryable() {
    // UNAVAILABLE alone is retryable: the timed-out attempt is retried all the same, and the
    // retry's own UNAVAILABLE is retried by the codes.
    let script = Arc::new(Script {
        failures: vec![None, Some((tonic::Code::Unavailable, None))],
        slow_first: Some(STALL),
        ..Script::default()
    });
    let channel = timed(&script, 3, RECV_TIMEOUT).await;
    let (reply, _) = call_within(channel, PATIENCE).await;
    reply.expect("the third attempt answers");
    assert_eq!(script.calls(), 3);
    assert!(!retry_unavailable(2)
        .retryable_status_codes()
        .contains(Code::Cancelled));
}
