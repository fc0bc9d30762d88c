//! A call's deadline and its status, through croupier's gRPC channel against real tonic servers
//! on loopback: the deadline bounds the whole call whatever the server does, a call lost with
//! its connection is UNAVAILABLE, and tonic's own idioms (interceptors) take the channel.
//!
//! Only `croupier_tokio` paths are used for croupier's types: it is the one dependency a tonic
//! user needs.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier_echo_grpc::{
    EchoClient, EchoRequest, GrpcEchoServer, ServerOptions, STREAMED_REPLIES,
};
use croupier_testkit::{recording, Outcomes};
use croupier_tokio::{Code, PickOptions, PolicyConfig};
use support::{echo, GrpcChannel, PATIENCE};

/// The deadline of the calls that stall.
const DEADLINE: Duration = Duration::from_millis(300);

/// How late after its deadline a call may end: generous, for a loaded machine.
const MARGIN: Duration = Duration::from_millis(500);

/// A server that never answers the message "stall", and a channel to it whose balancer records
/// each call's outcome.
async fn stalling() -> (GrpcEchoServer, GrpcChannel, Outcomes) {
    let server = GrpcEchoServer::start(0, ServerOptions::new().stall_message("stall"))
        .await
        .expect("a free port on loopback");
    let (policy, outcomes) = recording(PolicyConfig::pick_first());
    let channel = croupier_tokio::grpc::builder(format!("ipv4:{}", server.address()))
        .policy(policy)
        .build()
        .unwrap();
    (server, channel, outcomes)
}

fn request(message: &str, timeout: Option<Duration>) -> tonic::Request<EchoRequest> {
    let mut request = echo(message);
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}

/// Waits until `condition` holds, looking every few milliseconds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("in time: {what}"));
}

fn heard(outcomes: &Outcomes, code: Code) -> bool {
    outcomes.heard().iter().any(|outcome| outcome.code == code)
}

/// Runs `call`, which must fail within PATIENCE: its status and how long it took.
async fn fails<T: std::fmt::Debug>(
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> (tonic::Status, Duration) {
    let started = Instant::now();
    let status = tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the deadline ended the call")
        .expect_err("the call fails");
    (status, started.elapsed())
}

/// A request whose deadline only the channel knows: a timeout in its pick options.
fn with_options(message: &str, options: PickOptions) -> tonic::Request<EchoRequest> {
    let mut request = request(message, None);
    request.extensions_mut().insert(options);
    request
}

/// Checks that a call given DEADLINE ended so: `DEADLINE_EXCEEDED` with a message that starts
/// with `expected`, in time; its stream was reset (the server dropped the call); the balancer
/// heard the outcome.
async fn ended_by_deadline(
    status: &tonic::Status,
    took: Duration,
    expected: &str,
    server: &GrpcEchoServer,
    outcomes: &Outcomes,
) {
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().starts_with(expected), "{status:?}");
    assert!(took >= DEADLINE && took < DEADLINE + MARGIN, "{took:?}");
    eventually("the server saw the stream reset", || {
        server.cancelled() == 1
    })
    .await;
    eventually("the balancer heard DEADLINE_EXCEEDED", || {
        heard(outcomes, Code::DeadlineExceeded)
    })
    .await;
}

/// Sends each request on with its `grpc-timeout` replaced: the server is told another deadline
/// than the channel keeps, so that what the server sees is the channel's doing, not its own timer.
#[derive(Clone)]
struct TellsServer<S> {
    inner: S,
    grpc_timeout: &'static str,
}

impl<S, B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for TellsServer<S>
where
    S: tonic::codegen::Service<tonic::codegen::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: tonic::codegen::http::Request<B>) -> S::Future {
        request.headers_mut().insert(
            "grpc-timeout",
            tonic::codegen::http::HeaderValue::from_static(self.grpc_timeout),
        );
        self.inner.call(request)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_server_never_answers_ends_at_its_deadline() {
    let (server, channel, outcomes) = stalling().await;
    // The channel keeps the deadline of the call's options; the server hears of a later one.
    let mut client = EchoClient::new(TellsServer {
        inner: channel,
        grpc_timeout: "10S",
    });
    client.unary_echo(request("warm", None)).await.unwrap();

    let stalled = with_options("stall", PickOptions::new().timeout(DEADLINE));
    let (status, took) = fails(client.unary_echo(stalled)).await;
    let expected = format!(
        "no response headers from {} within 300 ms",
        server.address()
    );
    assert_eq!(status.message(), expected);
    ended_by_deadline(&status, took, &expected, &server, &outcomes).await;
    // Only the stream ended, not the connection: the next call goes through.
    let reply = client.unary_echo(request("after", None)).await.unwrap();
    assert!(reply.into_inner().message.starts_with("after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_stalls_ends_at_its_deadline_mid_stream() {
    let (server, channel, outcomes) = stalling().await;
    let mut client = EchoClient::new(channel);
    // A stream that ends carries every reply.
    let mut full = client
        .server_streaming_echo(request("all", Some(PATIENCE)))
        .await
        .unwrap()
        .into_inner();
    let mut replies = 0;
    while full.message().await.unwrap().is_some() {
        replies += 1;
    }
    assert_eq!(replies, STREAMED_REPLIES);

    let started = Instant::now();
    let mut stalled = client
        .server_streaming_echo(request("stall", Some(DEADLINE)))
        .await
        .expect("the response's headers come")
        .into_inner();
    let first = stalled.message().await.unwrap().expect("one reply");
    assert!(first.message.starts_with("stall"));
    let (status, _) = fails(stalled.message()).await;
    let expected = format!(
        "the response from {} did not end within 300 ms",
        server.address()
    );
    ended_by_deadline(&status, started.elapsed(), &expected, &server, &outcomes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_timeout_bounds_a_call_that_sets_none() {
    let server = GrpcEchoServer::start(0, ServerOptions::new().stall_message("stall"))
        .await
        .unwrap();
    let channel: GrpcChannel = croupier_tokio::grpc::builder(format!("ipv4:{}", server.address()))
        .default_timeout(DEADLINE)
        .build()
        .unwrap();
    let mut client = EchoClient::new(channel);
    let (status, took) = fails(client.unary_echo(request("stall", None))).await;
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("within 300 ms"), "{status:?}");
    assert!(took >= DEADLINE && took < DEADLINE + MARGIN, "{took:?}");
    // A call's own timeout wins over the default.
    let (status, took) = fails(client.unary_echo(request("stall", Some(DEADLINE * 2)))).await;
    assert!(status.message().contains("within 600 ms"), "{status:?}");
    assert!(took >= DEADLINE * 2, "{took:?}");
}

/// A `grpc-timeout` value as a duration (the units clients send).
fn grpc_timeout(value: &str) -> Duration {
    let (amount, unit) = value.split_at(value.len() - 1);
    let amount: u64 = amount.parse().expect("digits");
    match unit {
        "n" => Duration::from_nanos(amount),
        "u" => Duration::from_micros(amount),
        "m" => Duration::from_millis(amount),
        "S" => Duration::from_secs(amount),
        other => panic!("unit {other} in {value}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_told_the_default_timeout() {
    let server = GrpcEchoServer::start(0, ServerOptions::new())
        .await
        .unwrap();
    let target = format!("ipv4:{}", server.address());
    let defaulted: GrpcChannel = croupier_tokio::grpc::builder(target.clone())
        .default_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut client = EchoClient::new(defaulted);
    client.unary_echo(request("hi", None)).await.unwrap();
    let told = grpc_timeout(&server.last_grpc_timeout().expect("a grpc-timeout"));
    assert!(
        told <= Duration::from_secs(5) && told > Duration::from_secs(4),
        "{told:?}"
    );
    // A call's own timeout is what the server hears.
    client
        .unary_echo(request("hi", Some(Duration::from_secs(2))))
        .await
        .unwrap();
    let told = grpc_timeout(&server.last_grpc_timeout().expect("a grpc-timeout"));
    assert!(told <= Duration::from_secs(2), "{told:?}");
    // No timeout anywhere: none is sent.
    let plain: GrpcChannel = croupier_tokio::grpc::builder(target).build().unwrap();
    EchoClient::new(plain)
        .unary_echo(request("hi", None))
        .await
        .unwrap();
    assert_eq!(server.last_grpc_timeout(), None);
}

/// A target with nothing listening: its channel goes TRANSIENT_FAILURE.
async fn refused_target() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("ipv4:{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_ready_without_a_timeout_still_honours_the_grpc_timeout() {
    let channel: GrpcChannel = croupier_tokio::grpc::builder(refused_target().await)
        .build()
        .unwrap();
    let mut client = EchoClient::new(channel);
    let mut waiting = with_options("waits", PickOptions::new().wait_for_ready(true));
    waiting.set_timeout(DEADLINE);
    let (status, took) = fails(client.unary_echo(waiting)).await;
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("waiting for a ready backend"),
        "{status:?}"
    );
    assert!(took >= DEADLINE && took < DEADLINE + MARGIN, "{took:?}");
}

/// Kills `server` while `call` waits on it, and checks that the call ends UNAVAILABLE, its
/// message starting with `expected`, and that the balancer heard so.
async fn lost_with(
    server: GrpcEchoServer,
    call: impl std::future::Future<Output = tonic::Status>,
    expected: String,
    outcomes: &Outcomes,
) {
    tokio::time::timeout(PATIENCE, server.kill())
        .await
        .expect("the server died in time");
    let status = tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the call ended when its connection did");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().starts_with(&expected), "{status:?}");
    eventually("the balancer heard UNAVAILABLE", || {
        heard(outcomes, Code::Unavailable)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_lost_with_its_server_is_unavailable_and_says_where() {
    let (server, channel, outcomes) = stalling().await;
    let mut client = EchoClient::new(channel);
    let call = tokio::spawn(async move {
        client
            .unary_echo(request("stall", Some(PATIENCE)))
            .await
            .expect_err("a call whose server died fails")
    });
    eventually("the server took the call", || server.calls() == 1).await;
    let expected = format!("the call to {} failed: ", server.address());
    let ended = async { call.await.expect("the caller did not panic") };
    lost_with(server, ended, expected, &outcomes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_lost_with_its_server_is_unavailable_and_says_where() {
    let (server, channel, outcomes) = stalling().await;
    let mut client = EchoClient::new(channel);
    let mut stream = client
        .server_streaming_echo(request("stall", Some(PATIENCE)))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().expect("one reply");
    let expected = format!("the response from {} failed: ", server.address());
    let ended = async {
        stream
            .message()
            .await
            .expect_err("a stream whose server died fails")
    };
    lost_with(server, ended, expected, &outcomes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_failure_names_its_code_once() {
    let channel: GrpcChannel = croupier_tokio::grpc::builder(refused_target().await)
        .build()
        .unwrap();
    let mut client = EchoClient::new(channel);
    // The first call waits out the connection attempt; once the channel is in
    // TRANSIENT_FAILURE, calls fail at once.
    let mut status = None;
    for _ in 0..100 {
        let (failed, _) = fails(client.unary_echo(request("x", Some(PATIENCE)))).await;
        if failed.code() == tonic::Code::Unavailable {
            status = Some(failed);
            break;
        }
    }
    let status = status.expect("a call failed UNAVAILABLE");
    assert!(!status.message().is_empty(), "{status:?}");
    assert!(
        !status.message().contains("UNAVAILABLE:"),
        "the code is not part of the message: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_an_interceptor_takes_the_channel() {
    let server = GrpcEchoServer::start(0, ServerOptions::new())
        .await
        .unwrap();
    let channel: GrpcChannel = croupier_tokio::grpc::builder(format!("ipv4:{}", server.address()))
        .policy(PolicyConfig::round_robin())
        .build()
        .unwrap();
    let intercepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&intercepted);
    let mut client =
        EchoClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            counter.fetch_add(1, Ordering::SeqCst);
            request
                .metadata_mut()
                .insert("x-caller", "interceptor".parse().expect("ASCII"));
            Ok(request)
        });
    let reply = client
        .unary_echo(request("hi", Some(PATIENCE)))
        .await
        .unwrap();
    assert!(reply.into_inner().message.starts_with("hi (from :"));
    assert_eq!(intercepted.load(Ordering::SeqCst), 1);
    assert_eq!(server.calls(), 1);
}

/// The time from a stalled call's deadline to its caller's error, for 20 calls to a server that
/// does not know the deadline: printed (run with `--nocapture` to see it), and each bounded by
/// the margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_from_deadline_to_the_callers_error() {
    let (_server, channel, _) = stalling().await;
    let mut client = EchoClient::new(TellsServer {
        inner: channel,
        grpc_timeout: "10S",
    });
    client.unary_echo(request("warm", None)).await.unwrap();
    let deadline = Duration::from_millis(100);
    let mut lateness = Vec::new();
    for _ in 0..20 {
        let stalled = with_options("stall", PickOptions::new().timeout(deadline));
        let (status, took) = fails(client.unary_echo(stalled)).await;
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(took >= deadline && took < deadline + MARGIN, "{took:?}");
        lateness.push(took - deadline);
    }
    lateness.sort();
    println!(
        "deadline to error, stalled server, 20 calls: median {:?}, min {:?}, max {:?}",
        lateness[10], lateness[0], lateness[19]
    );
}
