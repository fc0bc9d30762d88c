//! The gRPC channel's connection options (tonic's `Endpoint` options), each seen where it acts:
//! on the socket, in the HTTP/2 frames a raw server on loopback reads, or in what a tonic server
//! lets through.

mod support;

use std::time::{Duration, Instant};

use croupier::{Address, ConnectivityState};
use croupier_echo_grpc::{EchoClient, EchoRequest, GrpcEchoServer, ServerOptions};
use croupier_tokio::grpc::{KeepAlive, Transport};
use croupier_tokio::{Stream, StreamConnector};
use support::http2::{
    accept_http2, goaway, loopback, read_frame, until_frame, ENHANCE_YOUR_CALM, PING, SETTINGS,
    SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_HEADER_LIST_SIZE, SPEC_WINDOW, WINDOW_UPDATE,
};
use support::{hold_connections, servers, target, until_failed, GrpcChannel, PATIENCE};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

#[tokio::test]
async fn tcp_nodelay_is_on_by_default_and_tcp_keepalive_off_until_set() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = Address::Socket(listener.local_addr().unwrap());
    let defaults = StreamConnector::new();
    let set = StreamConnector::new()
        .tcp_nodelay(false)
        .tcp_keepalive(Some(Duration::from_secs(42)))
        .tcp_keepalive_interval(Some(Duration::from_secs(7)))
        .tcp_keepalive_retries(Some(3));
    for (connector, nodelay, keepalive) in [
        (defaults, true, None),
        (set, false, Some(Duration::from_secs(42))),
    ] {
        let Stream::Tcp(stream) = Transport::open(&connector, &address).await.unwrap() else {
            panic!("a TCP stream");
        };
        assert_eq!(stream.nodelay().unwrap(), nodelay, "{connector:?}");
        let socket = socket2::SockRef::from(&stream);
        assert_eq!(
            socket.keepalive().unwrap(),
            keepalive.is_some(),
            "{connector:?}"
        );
        if let Some(idle) = keepalive {
            assert_eq!(socket.tcp_keepalive_time().unwrap(), idle);
            assert_eq!(
                socket.tcp_keepalive_interval().unwrap(),
                Duration::from_secs(7)
            );
            assert_eq!(socket.tcp_keepalive_retries().unwrap(), 3);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_timeout_ends_an_attempt_that_the_server_never_answers() {
    // The listener takes the connection and never says a word: without a timeout of its own,
    // the attempt would wait for the core's bound (the backoff's 20 s min connect timeout).
    let (listener, target) = loopback().await;
    let held = hold_connections(listener);
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target)
        .connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    channel.connect();
    let started = Instant::now();
    let (error, _) = until_failed(&channel).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(error.contains("connect timeout (200ms)"), "{error}");
    assert!(error.contains("127.0.0.1:"), "{error}");
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_windows_and_header_limit_reach_the_server_in_the_clients_settings() {
    for (adaptive, stream_window, connection_window) in [
        (false, 1_000_000, 3_000_000),
        (true, SPEC_WINDOW, SPEC_WINDOW),
    ] {
        let (listener, target) = loopback().await;
        let mut builder = croupier_tokio::grpc::builder(target)
            .initial_stream_window_size(stream_window)
            .initial_connection_window_size(connection_window)
            .http2_max_header_list_size(32_000);
        if adaptive {
            builder = builder.http2_adaptive_window(true);
        }
        let channel: GrpcChannel = builder.build().unwrap();
        channel.connect();
        let (mut stream, _) = tokio::time::timeout(PATIENCE, accept_http2(&listener))
            .await
            .expect("a connection in time");
        let settings = tokio::time::timeout(PATIENCE, until_frame(&mut stream, SETTINGS))
            .await
            .expect("the client's SETTINGS in time")
            .settings();
        assert!(
            settings.contains(&(SETTINGS_INITIAL_WINDOW_SIZE, stream_window)),
            "{settings:?}"
        );
        assert!(
            settings.contains(&(SETTINGS_MAX_HEADER_LIST_SIZE, 32_000)),
            "{settings:?}"
        );
        if !adaptive {
            // The connection's window grows from HTTP/2's 65,535 bytes by a WINDOW_UPDATE.
            let update = tokio::time::timeout(PATIENCE, until_frame(&mut stream, WINDOW_UPDATE))
                .await
                .expect("the connection's WINDOW_UPDATE in time");
            let increment = u32::from_be_bytes(update.payload[..4].try_into().unwrap());
            assert_eq!(increment, connection_window - SPEC_WINDOW);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_pings_doubles_the_keepalive_time_of_the_channels_later_connections() {
    let (listener, target) = loopback().await;
    let time = Duration::from_millis(200);
    let (gaps, mut heard) = mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        // The first connection: the first ping, then GOAWAY ENHANCE_YOUR_CALM "too_many_pings"
        // and the end, as a gRPC server that polices pings does.
        let (mut stream, settled) = accept_http2(&listener).await;
        until_frame(&mut stream, PING).await;
        let _ = gaps.send(settled.elapsed());
        let too_many_pings = goaway(ENHANCE_YOUR_CALM, b"too_many_pings");
        stream.write_all(&too_many_pings).await.unwrap();
        drop(stream);
        // The next connection: when its first ping comes.
        let (mut stream, settled) = accept_http2(&listener).await;
        until_frame(&mut stream, PING).await;
        let _ = gaps.send(settled.elapsed());
        stream
    });
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target)
        .keep_alive(KeepAlive::new(time).permit_without_calls(true))
        .build()
        .unwrap();
    channel.connect();
    let first = tokio::time::timeout(PATIENCE, heard.recv())
        .await
        .expect("the first connection's ping in time")
        .expect("the server's report");
    // The first connection is gone: reconnect (pick_first waits in IDLE for a reason to).
    let second = tokio::time::timeout(PATIENCE, async {
        loop {
            channel.connect();
            tokio::select! {
                gap = heard.recv() => return gap.expect("the server's report"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    })
    .await
    .expect("the second connection's ping in time");
    println!("first ping after {first:?}, then after {second:?} (keepalive time {time:?})");
    // Pings come `time` after the last frame read, never sooner.
    assert!(first >= time - Duration::from_millis(10), "{first:?}");
    assert!(second >= 2 * time - Duration::from_millis(10), "{second:?}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keepalive_ping_left_unanswered_ends_the_connection() {
    // The server reads everything and answers nothing, PINGs included.
    let (listener, target) = loopback().await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = accept_http2(&listener).await;
        while read_frame(&mut stream).await.is_ok() {}
    });
    let (time, timeout) = (Duration::from_millis(100), Duration::from_millis(200));
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target)
        .keep_alive(
            KeepAlive::new(time)
                .timeout(timeout)
                .permit_without_calls(true),
        )
        .build()
        .unwrap();
    channel.connect();
    tokio::time::timeout(PATIENCE, async {
        while channel.state() != ConnectivityState::Ready {
            channel.state_changed(channel.state()).await;
        }
    })
    .await
    .expect("READY in time");
    let ready = Instant::now();
    let state = tokio::time::timeout(PATIENCE, channel.state_changed(ConnectivityState::Ready))
        .await
        .expect("the connection was found dead in time");
    let lasted = ready.elapsed();
    let subchannels = channel.subchannels().await;
    println!("READY for {lasted:?}, then {state:?}: {subchannels:?}");
    assert!(
        lasted >= time + timeout - Duration::from_millis(10),
        "{lasted:?}"
    );
    let error = subchannels[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("keep-alive"), "{error}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pings_wait_for_a_call_unless_permitted_without_calls() {
    for permit in [false, true] {
        let (listener, target) = loopback().await;
        let channel: GrpcChannel = croupier_tokio::grpc::builder(target)
            .keep_alive(KeepAlive::new(Duration::from_millis(50)).permit_without_calls(permit))
            .build()
            .unwrap();
        channel.connect();
        let (mut stream, _) = tokio::time::timeout(PATIENCE, accept_http2(&listener))
            .await
            .expect("a connection in time");
        // Ten keepalive times with no call in flight.
        let ping =
            tokio::time::timeout(Duration::from_millis(500), until_frame(&mut stream, PING)).await;
        assert_eq!(ping.is_ok(), permit, "permit_without_calls({permit})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_servers_max_concurrent_streams_wait_for_a_stream_and_succeed() {
    // One stream at a time per connection, and calls that each hold it for a while.
    let options = ServerOptions::new()
        .max_concurrent_streams(1)
        .stream(4, Duration::from_millis(50));
    let servers: Vec<GrpcEchoServer> = servers(1, options).await;
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target(&servers))
        .build()
        .unwrap();
    let client = EchoClient::new(channel);
    let started = Instant::now();
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let request = tonic::Request::new(EchoRequest {
                    message: format!("call {i}"),
                });
                let mut stream = client.server_streaming_echo(request).await?.into_inner();
                let mut replies = 0;
                while stream.message().await?.is_some() {
                    replies += 1;
                }
                Ok::<_, tonic::Status>(replies)
            })
        })
        .collect();
    for call in calls {
        let replies = tokio::time::timeout(PATIENCE, call)
            .await
            .expect("the call ended in time")
            .expect("the call's task")
            .expect("the call succeeded");
        assert_eq!(replies, 4);
    }
    // One after another: each holds the connection's only stream for 150 ms.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(4 * 150), "{took:?}");
}
