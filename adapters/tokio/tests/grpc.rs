//! gRPC through croupier channels, against real tonic servers on loopback: tonic clients take the
//! channel as it is, calls spread and fail over as the policies say, and gRPC statuses reach the
//! balancer as call outcomes.

mod support;

use std::time::Duration;

use croupier::policy::{FailurePercentageEjection, OutlierDetectionConfig, RingHashConfig};
use croupier::{Code, ConnectivityState, PolicyConfig};
use croupier_echo_grpc::{EchoClient, EchoRequest, GrpcEchoServer, ServerOptions, ServingStatus};
use croupier_tokio::grpc::HealthCheck;
use support::{
    call, hold_connections, servers, target, until_failed, until_ready, GrpcChannel, PATIENCE,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_client_takes_the_channel_unchanged() {
    let servers = servers(1, ServerOptions::new()).await;
    let channel = croupier_tokio::grpc::builder(target(&servers))
        .build()
        .unwrap();
    let mut client = EchoClient::new(channel);
    let reply = client
        .unary_echo(EchoRequest {
            message: "hello".to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(
        reply.into_inner().message,
        format!("hello (from :{})", servers[0].address().port())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_grpc_calls_evenly() {
    let servers = servers(3, ServerOptions::new()).await;
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target(&servers))
        .policy(PolicyConfig::round_robin())
        .build()
        .unwrap();
    until_ready(&channel, 3).await;
    let mut client = EchoClient::new(channel);
    for _ in 0..30 {
        call(&mut client, "spread").await.unwrap();
    }
    let calls: Vec<usize> = servers.iter().map(GrpcEchoServer::calls).collect();
    assert_eq!(calls, vec![10, 10, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_response_names_the_backend_that_served_it() {
    let servers = servers(2, ServerOptions::new()).await;
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target(&servers))
        .policy(PolicyConfig::round_robin())
        .build()
        .unwrap();
    until_ready(&channel, 2).await;
    let mut client = EchoClient::new(channel);
    let mut named = Vec::new();
    for _ in 0..4 {
        let request = EchoRequest {
            message: "who".to_owned(),
        };
        let reply = tokio::time::timeout(PATIENCE, client.unary_echo(request))
            .await
            .expect("a call to a server ends")
            .unwrap();
        let served_by = reply
            .extensions()
            .get::<croupier_tokio::grpc::ServedBy>()
            .expect("the response names its backend")
            .address()
            .clone();
        // The server says who it is in the reply: the extension must agree.
        let port = match &served_by {
            croupier::Address::Socket(address) => address.port(),
            other => panic!("a TCP backend, not {other}"),
        };
        assert_eq!(reply.into_inner().message, format!("who (from :{port})"));
        named.push(port);
    }
    named.sort_unstable();
    named.dedup();
    assert_eq!(named.len(), 2, "round_robin used both backends: {named:?}");
}

/// Sends `n` calls one after another and fails on the first error.
async fn calls_all_succeed(client: &mut EchoClient<GrpcChannel>, n: usize) {
    for i in 0..n {
        if let Err(status) = call(client, "through").await {
            panic!("call {i} of {n} failed: {status}");
        }
    }
}

/// A round_robin channel over `servers`, every one READY, and a client that has sent ten calls
/// through it.
async fn round_robin_in_use(servers: &[GrpcEchoServer]) -> (GrpcChannel, EchoClient<GrpcChannel>) {
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target(servers))
        .policy(PolicyConfig::round_robin())
        .build()
        .unwrap();
    until_ready(&channel, servers.len()).await;
    let mut client = EchoClient::new(channel.clone());
    calls_all_succeed(&mut client, 10).await;
    (channel, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_shut_down_gracefully_is_routed_around_without_losing_a_call() {
    let mut servers = servers(2, ServerOptions::new()).await;
    let (channel, mut client) = round_robin_in_use(&servers).await;

    // Calls keep flowing, from four clients at once, while one server says GOAWAY and leaves.
    let survivor_calls = servers[1].calls();
    let leaving = servers.remove(0);
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { calls_all_succeed(&mut client, 50).await })
        })
        .collect();
    tokio::time::timeout(PATIENCE, leaving.shutdown())
        .await
        .expect("the server shut down in time");
    for caller in callers {
        tokio::time::timeout(PATIENCE * 3, caller)
            .await
            .expect("the calls ended in time")
            .expect("every call succeeded");
    }
    // The balancer heard of the GOAWAY without a call failing, and calls now go to the survivor.
    until_ready(&channel, 1).await;
    let before = servers[0].calls();
    calls_all_succeed(&mut client, 10).await;
    assert_eq!(servers[0].calls(), before + 10);
    assert!(servers[0].calls() > survivor_calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_abruptly_is_routed_around_without_losing_an_unsent_call() {
    let mut servers = servers(2, ServerOptions::new()).await;
    let (channel, mut client) = round_robin_in_use(&servers).await;

    // Every socket of one server is dropped at once, while no call is in flight: the channel
    // hears of it from the connection itself, without a call having to fail on it.
    let killed = servers.remove(0);
    tokio::time::timeout(PATIENCE, killed.kill())
        .await
        .expect("the server died in time");
    // (Its subchannel then tries to reconnect, and is refused.)
    until_ready(&channel, 1).await;

    // No call was lost: every one from now on reaches the other server.
    let before = servers[0].calls();
    calls_all_succeed(&mut client, 20).await;
    assert_eq!(servers[0].calls(), before + 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_status_error_is_a_failed_call_that_outlier_detection_sees() {
    // The first server fails every call with FAILED_PRECONDITION; the second answers them.
    let failing = GrpcEchoServer::start(0, ServerOptions::new().fail_message("call"))
        .await
        .unwrap();
    let healthy = GrpcEchoServer::start(0, ServerOptions::new())
        .await
        .unwrap();
    let servers = [failing, healthy];
    let outlier_detection = OutlierDetectionConfig::new(PolicyConfig::round_robin())
        .interval(Duration::from_millis(50))
        .max_ejection_percent(50)
        .success_rate_ejection(None)
        .failure_percentage_ejection(Some(
            FailurePercentageEjection::default()
                .threshold(50)
                .enforcement_percentage(100)
                .minimum_hosts(2)
                .request_volume(5),
        ));
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target(&servers))
        .policy(PolicyConfig::new(outlier_detection))
        .build()
        .unwrap();
    until_ready(&channel, 2).await;
    let mut client = EchoClient::new(channel);

    // The transport is fine and the HTTP status is 200: only the gRPC status says it failed.
    let mut failures = 0;
    for _ in 0..10 {
        if let Err(status) = call(&mut client, "call").await {
            assert_eq!(status.code(), tonic::Code::FailedPrecondition);
            failures += 1;
        }
    }
    assert!(failures > 0, "round_robin sent calls to the failing server");

    // Outlier detection ejects the failing server at one of its next intervals: from then on
    // every call reaches the healthy one.
    tokio::time::timeout(PATIENCE, async {
        let mut in_a_row = 0;
        while in_a_row < 10 {
            match call(&mut client, "call").await {
                Ok(_) => in_a_row += 1,
                Err(_) => in_a_row = 0,
            }
        }
    })
    .await
    .expect("the failing server was ejected in time");
    let failing_calls = servers[0].calls();
    for _ in 0..10 {
        call(&mut client, "call").await.unwrap();
    }
    assert_eq!(servers[0].calls(), failing_calls);
}

fn health_checked(servers: &[GrpcEchoServer]) -> GrpcChannel {
    croupier_tokio::grpc::builder(target(servers))
        .policy(PolicyConfig::round_robin())
        .health_check(HealthCheck::default())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checked_connections_follow_the_servers_serving_status() {
    let servers = servers(2, ServerOptions::new().health(true)).await;
    let channel = health_checked(&servers);
    until_ready(&channel, 2).await;
    let mut client = EchoClient::new(channel.clone());
    calls_all_succeed(&mut client, 4).await;

    // NOT_SERVING: no more calls for it, while its connection stays open.
    servers[0].set_health(ServingStatus::NotServing).await;
    until_ready(&channel, 1).await;
    let unhealthy = channel
        .subchannels()
        .await
        .into_iter()
        .find(|s| s.address.to_string() == servers[0].address().to_string())
        .expect("its subchannel");
    assert_eq!(unhealthy.state, ConnectivityState::TransientFailure);
    let error = unhealthy.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("NOT_SERVING"), "{error}");
    let (before, other_before) = (servers[0].calls(), servers[1].calls());
    calls_all_succeed(&mut client, 10).await;
    assert_eq!(servers[0].calls(), before);
    assert_eq!(servers[1].calls(), other_before + 10);

    // SERVING again: calls spread over both once more.
    servers[0].set_health(ServingStatus::Serving).await;
    until_ready(&channel, 2).await;
    let before = servers[0].calls();
    calls_all_succeed(&mut client, 10).await;
    assert_eq!(servers[0].calls(), before + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_not_serving_from_the_start_never_gets_a_call() {
    let servers = servers(2, ServerOptions::new().health(true)).await;
    servers[0].set_health(ServingStatus::NotServing).await;
    let channel = health_checked(&servers);
    let mut client = EchoClient::new(channel.clone());
    calls_all_succeed(&mut client, 10).await;
    until_ready(&channel, 1).await;
    calls_all_succeed(&mut client, 10).await;
    assert_eq!(servers[0].calls(), 0);
    assert_eq!(servers[1].calls(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_health_service_counts_as_healthy() {
    let servers = servers(2, ServerOptions::new()).await;
    let channel = health_checked(&servers);
    until_ready(&channel, 2).await;
    let mut client = EchoClient::new(channel);
    calls_all_succeed(&mut client, 10).await;
    assert_eq!(servers[0].calls(), 5);
    assert_eq!(servers[1].calls(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_picks_by_a_request_header() {
    let servers = servers(3, ServerOptions::new()).await;
    let ring_hash = RingHashConfig::default()
        .request_hash_header("x-user")
        .expect("a valid header name");
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target(&servers))
        .policy(PolicyConfig::new(ring_hash))
        .build()
        .unwrap();
    let client = EchoClient::new(channel);
    let call_as = |user: String| {
        let mut client = client.clone();
        async move {
            let mut request = tonic::Request::new(EchoRequest {
                message: "hashed".to_owned(),
            });
            request
                .metadata_mut()
                .insert("x-user", user.parse().expect("ASCII"));
            request.set_timeout(PATIENCE);
            tokio::time::timeout(PATIENCE * 2, client.unary_echo(request))
                .await
                .expect("a call sent to a server ends")
                .expect("the call succeeds")
                .into_inner()
                .message
        }
    };
    // One user's calls all go to one server.
    let mut replies = std::collections::BTreeSet::new();
    for _ in 0..10 {
        replies.insert(call_as("alice".to_owned()).await);
    }
    assert_eq!(replies.len(), 1, "{replies:?}");
    // Many users' calls spread over the servers.
    let mut replies = std::collections::BTreeSet::new();
    for user in 0..30 {
        replies.insert(call_as(format!("user-{user}")).await);
    }
    assert!(replies.len() > 1, "{replies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_calls_grpc_status_and_latency_reach_the_policy() {
    let servers = servers(1, ServerOptions::new().fail_message("refuse me")).await;
    let (policy, outcomes) = croupier_testkit::recording(PolicyConfig::round_robin());
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target(&servers))
        .policy(policy)
        .build()
        .unwrap();
    let mut client = EchoClient::new(channel);
    // A success (its status in the trailers), then a failure (a trailers-only response).
    call(&mut client, "hello").await.unwrap();
    let status = call(&mut client, "refuse me").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let heard = tokio::time::timeout(PATIENCE, async {
        loop {
            let heard = outcomes.heard();
            if heard.len() >= 2 {
                return heard;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("both outcomes were reported");
    let codes: Vec<Code> = heard.iter().map(|o| o.code).collect();
    assert_eq!(codes, vec![Code::Ok, Code::FailedPrecondition]);
    assert!(heard.iter().all(|o| o.latency > Duration::ZERO));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_ready_only_once_the_server_speaks_http2() {
    // One listener takes connections and never says a word; another answers in HTTP/1.1.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!(
        "ipv4:{},{}",
        silent.local_addr().unwrap(),
        http1.local_addr().unwrap()
    );
    let held = hold_connections(silent);
    let answered = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut held = Vec::new();
        loop {
            let (mut stream, _) = http1.accept().await.unwrap();
            let mut preface = [0; 24];
            let _ = stream.read_exact(&mut preface).await;
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
            held.push(stream);
        }
    });
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target)
        .policy(PolicyConfig::round_robin())
        .build()
        .unwrap();
    channel.connect();

    // The HTTP/1.1 server's answer fails the attempt, with the reason.
    let http1_error = until_failed(&channel).await;
    assert!(
        http1_error.0.contains("not SETTINGS"),
        "{}; {:?}",
        http1_error.0,
        http1_error.1
    );
    // The silent one is still connecting: TCP is up and the client's preface sent, but nothing
    // says a server will ever process a call, so no call is sent there.
    assert!(
        http1_error
            .1
            .iter()
            .all(|s| s.state != ConnectivityState::Ready),
        "{:?}",
        http1_error.1
    );
    let mut client = EchoClient::new(channel.clone());
    let mut request = tonic::Request::new(EchoRequest {
        message: "nobody".to_owned(),
    });
    request.set_timeout(Duration::from_millis(200));
    let status = tokio::time::timeout(PATIENCE, client.unary_echo(request))
        .await
        .expect("the call ended in time")
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("waiting for a ready backend")
            && status.message().contains("not SETTINGS"),
        "{status:?}"
    );
    held.abort();
    answered.abort();
}
