//! Retries and hedging (gRFC A6) through the gRPC channel, against real tonic servers on
//! loopback: a failing call is tried again (on another backend when there is one) with
//! `grpc-previous-rpc-attempts`, a hedge races a slow attempt and the loser's stream is reset,
//! and the buffer limit, non-retryable codes, server pushback and the throttle stop retries.

#[path = "../support/mod.rs"]
mod support;

mod recv_timeout;
mod scripted;
mod service_config;
mod streaming;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier::retry::{CodeSet, HedgingPolicy, RetryBuffer, RetryPolicy, RetryThrottle};
use croupier::{Code, PolicyConfig};
use croupier_echo_grpc::{EchoClient, GrpcEchoServer, ServerOptions};
use croupier_testkit::{recording, Outcomes};
use scripted::{scripted, target_of, Script};
use support::{call, until_ready, GrpcChannel, PATIENCE};

/// Retries up to `max_attempts` of UNAVAILABLE, with short backoffs.
fn retry_unavailable(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::new(
        max_attempts,
        Duration::from_millis(10),
        Duration::from_millis(50),
        2.0,
        CodeSet::new().with(Code::Unavailable),
    )
    .unwrap()
}

fn client(channel: GrpcChannel) -> EchoClient<GrpcChannel> {
    EchoClient::new(channel)
}

/// A channel to one server following `script`, retrying UNAVAILABLE up to `max_attempts`, with
/// the settings `configure` adds.
async fn retrying(
    script: &Arc<Script>,
    max_attempts: u32,
    configure: impl FnOnce(Builder) -> Builder,
) -> GrpcChannel {
    let addresses = scripted(1, script).await;
    let builder = croupier_tokio::grpc::builder(target_of(&addresses))
        .retry_policy(retry_unavailable(max_attempts));
    configure(builder).build().unwrap()
}

type Builder = croupier_tokio::grpc::GrpcChannelBuilder<tonic::body::Body>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_failing_unavailable_is_retried_until_it_succeeds() {
    let script = Arc::new(Script::failing(3, tonic::Code::Unavailable));
    let addresses = scripted(1, &script).await;
    let (policy, outcomes) = recording(PolicyConfig::pick_first());
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target_of(&addresses))
        .policy(policy)
        .retry_policy(retry_unavailable(4))
        .build()
        .unwrap();
    let reply = call(&mut client(channel), "again").await.unwrap();
    assert_eq!(reply, format!("again (from :{})", addresses[0].port()));
    assert_eq!(script.calls(), 4);
    let previous = script.previous_attempts();
    assert_eq!(
        previous,
        [None, Some("1".into()), Some("2".into()), Some("3".into())]
    );
    // Each attempt told its server the time left of the one deadline.
    let timeouts = script.timeouts();
    assert!(timeouts.windows(2).all(|w| w[1] < w[0]), "{timeouts:?}");
    assert!(timeouts[0] <= 10_000_000, "{timeouts:?}");
    // The balancer heard of every attempt, not of the call alone.
    use Code::{Ok as Fine, Unavailable as Down};
    until_heard(&outcomes, &[Down, Down, Down, Fine]).await;
}

/// Waits until the balancer has heard exactly `codes`, in order.
async fn until_heard(outcomes: &Outcomes, codes: &[Code]) {
    let heard = || -> Vec<Code> { outcomes.heard().iter().map(|o| o.code).collect() };
    let waited = tokio::time::timeout(PATIENCE, async {
        while heard() != codes {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the balancer heard {:?}, not {codes:?}",
        heard()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_out_of_attempts_fails_with_the_last_status() {
    let script = Arc::new(Script::failing(10, tonic::Code::Unavailable));
    let channel = retrying(&script, 3, |builder| builder).await;
    let status = call(&mut client(channel), "never").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "call 2 fails");
    assert_eq!(script.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retryable_code_fails_at_once() {
    let script = Arc::new(Script::failing_with(vec![
        (tonic::Code::FailedPrecondition, None),
        (tonic::Code::Unavailable, None),
    ]));
    let channel = retrying(&script, 5, |builder| builder).await;
    let mut client = client(channel);
    let status = call(&mut client, "once").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(script.calls(), 1);
    // The next call's UNAVAILABLE is retried.
    call(&mut client, "twice").await.unwrap();
    assert_eq!(script.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushback_that_says_stop_ends_the_retries() {
    let script = Arc::new(Script::failing_with(vec![
        (tonic::Code::Unavailable, Some("-1")),
        (tonic::Code::Unavailable, Some("garbled")),
        (tonic::Code::Unavailable, None),
    ]));
    let channel = retrying(&script, 5, |builder| builder).await;
    let mut client = client(channel);
    for (n, message) in ["negative", "garbled"].into_iter().enumerate() {
        let status = call(&mut client, message).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(script.calls(), n + 1);
    }
    // Without pushback, the same failure is retried.
    call(&mut client, "retried").await.unwrap();
    assert_eq!(script.calls(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushback_delay_is_waited_before_the_retry() {
    let script = Arc::new(Script::failing_with(vec![(
        tonic::Code::Unavailable,
        Some("300"),
    )]));
    let channel = retrying(&script, 3, |builder| builder).await;
    let mut client = client(channel);
    // Connected first, so that the time measured is the retry's.
    let started = Instant::now();
    call(&mut client, "later").await.unwrap();
    let took = started.elapsed();
    assert_eq!(script.calls(), 2);
    // The policy's own backoff is at most 10 ms: the wait is the server's.
    assert!(took >= Duration::from_millis(300), "retried after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deadline_bounds_every_attempt_together() {
    let script = Arc::new(Script::failing_with(vec![
        (
            tonic::Code::Unavailable,
            Some("200")
        );
        5
    ]));
    let channel = retrying(&script, 5, |builder| builder).await;
    let mut client = client(channel);
    let deadline = Duration::from_millis(300);
    let mut request = support::echo("late");
    request.set_timeout(deadline);
    let started = Instant::now();
    let status = tokio::time::timeout(PATIENCE, client.unary_echo(request))
        .await
        .expect("the call ends")
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        status
            .message()
            .contains("; the last failed: UNAVAILABLE from 127.0.0.1:")
            && status.message().ends_with(": call 1 fails"),
        "{status:?}"
    );
    // Each retry waits the server's 200 ms: within 300 ms, two attempts, not five.
    assert_eq!(script.calls(), 2);
    assert!(
        took < deadline + Duration::from_millis(500),
        "took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_stops_retries_after_repeated_failures() {
    let unavailable = Some((tonic::Code::Unavailable, None));
    let mut failures = vec![unavailable; 6];
    // The server's calls 6 to 8 succeed; every other fails.
    failures.extend([None, None, None]);
    let script = Arc::new(Script {
        failures,
        fail_rest: Some(tonic::Code::Unavailable),
        ..Script::default()
    });
    let channel = retrying(&script, 3, |builder| {
        builder.retry_throttle(RetryThrottle::new(10, 1.0).unwrap())
    })
    .await;
    let mut client = client(channel);
    let mut attempts = Vec::new();
    for ends_well in [false, false, false, true, true, true, false] {
        let before = script.calls();
        assert_eq!(call(&mut client, "throttled").await.is_ok(), ends_well);
        attempts.push(script.calls() - before);
    }
    // Ten tokens, one per failure, retries while more than five are left: 10 -> 7 in the first
    // call's three attempts, 7 -> 5 in the second's two, 5 -> 4 in the third's one. Each success
    // gives one back (tokenRatio 1): 7 after three, so the last call is retried again (7 -> 5).
    assert_eq!(attempts, [3, 2, 1, 1, 1, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_buffer_limit_is_committed_and_not_retried() {
    let script = Arc::new(Script::failing(2, tonic::Code::Unavailable));
    let channel = retrying(&script, 5, |builder| {
        builder.retry_buffer(RetryBuffer::new(256, 1 << 20))
    })
    .await;
    let mut client = client(channel);
    let status = call(&mut client, &"x".repeat(1000)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(script.calls(), 1);
    // A request within the limit is retried, on the same channel.
    let reply = call(&mut client, "small").await.unwrap();
    assert!(reply.starts_with("small (from :"));
    assert_eq!(script.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_server_dies_mid_call_is_retried_on_the_other_backend() {
    let dying = GrpcEchoServer::start(0, ServerOptions::new().stall_message("hold"))
        .await
        .unwrap();
    let other = GrpcEchoServer::start(0, ServerOptions::new())
        .await
        .unwrap();
    let target = format!("ipv4:{},{}", dying.address(), other.address());
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target)
        .policy(PolicyConfig::round_robin())
        .retry_policy(retry_unavailable(3))
        .build()
        .unwrap();
    until_ready(&channel, 2).await;
    let mut client = client(channel);
    // Round robin alternates: once a call has gone to the other server, the next goes to the
    // one that will die.
    let other_port = format!("(from :{})", other.address().port());
    for _ in 0..2 {
        if call(&mut client, "warm")
            .await
            .unwrap()
            .ends_with(&other_port)
        {
            break;
        }
    }
    let held = tokio::spawn(async move { call(&mut client, "hold").await });
    let before = dying.calls();
    tokio::time::timeout(PATIENCE, async {
        while dying.calls() == before {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the first attempt reached the server that dies");
    dying.kill().await;
    let reply = held.await.unwrap().expect("the retry succeeds");
    assert_eq!(reply, format!("hold {other_port}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedge_beats_a_slow_attempt_whose_stream_is_reset() {
    let slow = Duration::from_millis(500);
    let delay = Duration::from_millis(100);
    let script = Arc::new(Script {
        slow_first: Some(slow),
        ..Script::default()
    });
    let addresses = scripted(2, &script).await;
    let hedging = HedgingPolicy::new(2, delay, CodeSet::new().with(Code::Unavailable)).unwrap();
    let (policy, outcomes) = recording(PolicyConfig::round_robin());
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target_of(&addresses))
        .policy(policy)
        .hedging_policy(hedging)
        .build()
        .unwrap();
    until_ready(&channel, 2).await;
    let started = Instant::now();
    let reply = call(&mut client(channel), "race").await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= delay && took < slow - Duration::from_millis(100),
        "the hedged call took {took:?}"
    );
    // The hedge went to the other server, and said it was the second attempt.
    let first_port = reply_port(&reply);
    assert_eq!(script.previous_attempts(), [None, Some("1".into())]);
    assert!(addresses.iter().any(|a| a.port() == first_port));
    tokio::time::timeout(PATIENCE, async {
        while script.cancelled.load(Ordering::SeqCst) == 0 {
            script.cancel.notified().await;
        }
    })
    .await
    .expect("the slow attempt's server saw its stream reset");
    // The loser's outcome, cancelled when the winner's headers came, then the winner's.
    until_heard(&outcomes, &[Code::Cancelled, Code::Ok]).await;
}

/// The port a reply names: `"<message> (from :<port>)"`.
fn reply_port(reply: &str) -> u16 {
    let (_, port) = reply.rsplit_once(':').expect("a reply naming its server");
    port.trim_end_matches(')').parse().expect("a port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_request_is_replayed_whole_on_the_retry() {
    use http_body_util::BodyExt;
    use tower_service::Service;

    let script = Arc::new(Script::failing(1, tonic::Code::Unavailable));
    let addresses = scripted(1, &script).await;
    let mut channel: croupier_tokio::grpc::Http2Channel<streaming::Chunks> =
        croupier_tokio::grpc::builder(target_of(&addresses))
            .retry_policy(retry_unavailable(3))
            .build()
            .unwrap();
    let message = "sent in three frames";
    let framed = streaming::framed(message);
    let (chunks, body) = tokio::sync::mpsc::channel(4);
    let request = http::Request::builder()
        .method("POST")
        .uri("/grpc.examples.echo.Echo/UnaryEcho")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(streaming::Chunks(body))
        .unwrap();
    let response = channel.call(request);
    for part in [&framed[..4], &framed[4..10], &framed[10..]] {
        chunks
            .send(bytes::Bytes::copy_from_slice(part))
            .await
            .unwrap();
    }
    drop(chunks);
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("the call ends")
        .expect("a response");
    let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .expect("the body ends")
        .expect("a body");
    let trailers = body.trailers().cloned().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    let reply = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    assert!(reply.contains(&format!("{message} (from :")), "{reply:?}");
    // Both attempts carried the whole message.
    assert_eq!(script.messages(), [message, message]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_no_server_processed_are_still_replayed_under_a_policy() {
    let mut servers = support::servers(2, ServerOptions::new()).await;
    // A policy that retries only ABORTED, which these servers never answer: a call that is
    // sent and lost would fail; only the requests a GOAWAY excluded are sent again.
    let aborted = RetryPolicy::new(
        2,
        Duration::from_millis(10),
        Duration::from_millis(50),
        2.0,
        CodeSet::new().with(Code::Aborted),
    )
    .unwrap();
    let channel: GrpcChannel = croupier_tokio::grpc::builder(support::target(&servers))
        .policy(PolicyConfig::round_robin())
        .retry_policy(aborted)
        .build()
        .unwrap();
    until_ready(&channel, 2).await;
    let client = client(channel);
    let leaving = servers.remove(0);
    // Four callers, fifty calls each, while one server says GOAWAY and leaves.
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let mut client = client.clone();
        callers.spawn(async move {
            for _ in 0..50 {
                call(&mut client, "through").await?;
            }
            Ok::<_, tonic::Status>(())
        });
    }
    let (left, ended) = tokio::join!(
        tokio::time::timeout(PATIENCE, leaving.shutdown()),
        tokio::time::timeout(PATIENCE * 3, callers.join_all()),
    );
    left.expect("the server shut down in time");
    let ended = ended.expect("the calls ended in time");
    assert!(ended.iter().all(Result::is_ok), "{ended:?}");
}
