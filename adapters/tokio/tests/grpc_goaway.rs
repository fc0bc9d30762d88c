//! A server's GOAWAY, against real tonic servers on loopback: the subchannel leaves READY when
//! the GOAWAY arrives, its health check's stream ends (so the server's graceful shutdown is not
//! held up by it), calls open on the draining connection run to their end, and new calls go
//! elsewhere.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier::{ConnectivityState, PolicyConfig};
use croupier_echo_grpc::{EchoClient, EchoRequest, GrpcEchoServer, ServerOptions};
use croupier_tokio::grpc::HealthCheck;
use support::http2::{frame, goaway, loopback, ENHANCE_YOUR_CALM, SETTINGS};
use support::{call, servers, target, until_failed, until_ready, GrpcChannel, PATIENCE};
use tokio::io::AsyncWriteExt;

/// A graceful shutdown that nothing holds up ends within this.
const PROMPT: Duration = Duration::from_secs(1);

fn round_robin(servers: &[GrpcEchoServer], health: bool) -> GrpcChannel {
    let builder =
        croupier_tokio::grpc::builder(target(servers)).policy(PolicyConfig::round_robin());
    let builder = if health {
        builder.health_check(HealthCheck::default())
    } else {
        builder
    };
    builder.build().unwrap()
}

/// Clients that call one after another until stopped, every call required to succeed.
struct Callers {
    stop: Arc<AtomicBool>,
    made: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<usize>>,
}

impl Callers {
    fn start(client: &EchoClient<GrpcChannel>, n: usize) -> Callers {
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicUsize::new(0));
        let tasks = (0..n)
            .map(|_| {
                let mut client = client.clone();
                let stop = Arc::clone(&stop);
                let made = Arc::clone(&made);
                tokio::spawn(async move {
                    let mut calls = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if let Err(status) = call(&mut client, "meanwhile").await {
                            panic!("call {calls} failed: {status}");
                        }
                        calls += 1;
                        made.fetch_add(1, Ordering::Relaxed);
                    }
                    calls
                })
            })
            .collect();
        Callers { stop, made, tasks }
    }

    /// Waits until they have made `n` calls between them.
    async fn until_made(&self, n: usize) {
        tokio::time::timeout(PATIENCE, async {
            while self.made.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the callers made their first calls in time");
    }

    /// Stops them; the number of calls made, all of which succeeded.
    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let mut calls = 0;
        for task in self.tasks {
            calls += tokio::time::timeout(PATIENCE * 3, task)
                .await
                .expect("the callers stopped in time")
                .expect("every call succeeded");
        }
        calls
    }
}

/// A server-streaming call that its first reply shows to be served by `server`.
async fn stream_on(
    client: &mut EchoClient<GrpcChannel>,
    server: &GrpcEchoServer,
) -> tonic::Streaming<croupier_echo_grpc::EchoResponse> {
    let port = format!("(from :{})", server.address().port());
    for _ in 0..10 {
        let request = tonic::Request::new(EchoRequest {
            message: "long".to_owned(),
        });
        let mut stream = tokio::time::timeout(PATIENCE, client.server_streaming_echo(request))
            .await
            .expect("the stream started in time")
            .expect("the stream started")
            .into_inner();
        let first = stream.message().await.expect("a first reply").expect("one");
        if first.message.ends_with(&port) {
            return stream;
        }
    }
    panic!("no stream reached {port}");
}

/// Reads the rest of `stream` (after its first reply): the number of replies, once it has
/// ended with status OK.
async fn rest_of(mut stream: tonic::Streaming<croupier_echo_grpc::EchoResponse>) -> usize {
    let mut replies = 1;
    loop {
        match tokio::time::timeout(PATIENCE, stream.message()).await {
            Ok(Ok(Some(_))) => replies += 1,
            Ok(Ok(None)) => return replies,
            Ok(Err(status)) => panic!("the stream failed after {replies} replies: {status}"),
            Err(_) => panic!("the stream stalled after {replies} replies"),
        }
    }
}

/// The state of the subchannel to `address`.
async fn state_of(channel: &GrpcChannel, address: SocketAddr) -> ConnectivityState {
    let address = address.to_string();
    channel
        .subchannels()
        .await
        .into_iter()
        .find(|s| s.address.to_string() == address)
        .expect("its subchannel")
        .state
}

/// Shuts `server` down gracefully, in the background; the task ends when the shutdown has.
fn shut_down(server: GrpcEchoServer) -> tokio::task::JoinHandle<Instant> {
    tokio::spawn(async move {
        server.shutdown().await;
        Instant::now()
    })
}

/// Waits (at most [`PROMPT`]) until the subchannel to `address` has left READY, which must
/// happen while `reading` still runs; how long that took.
async fn until_not_ready<T>(
    channel: &GrpcChannel,
    address: SocketAddr,
    reading: &tokio::task::JoinHandle<T>,
) -> Duration {
    let started = Instant::now();
    tokio::time::timeout(PROMPT, async {
        while state_of(channel, address).await == ConnectivityState::Ready {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the subchannel left READY at once");
    assert!(
        !reading.is_finished(),
        "the stream ended before the GOAWAY was seen"
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_checked_server_shuts_down_gracefully_at_once() {
    let mut servers = servers(2, ServerOptions::new().health(true)).await;
    let channel = round_robin(&servers, true);
    until_ready(&channel, 2).await;
    let mut client = EchoClient::new(channel.clone());
    for _ in 0..4 {
        call(&mut client, "before")
            .await
            .expect("the call succeeds");
    }

    // No call is in flight, but the health check's Watch stream is, and it never ends by
    // itself: the server's shutdown finishes because the client ends it at the GOAWAY.
    let leaving = servers.remove(0);
    let started = Instant::now();
    tokio::time::timeout(PATIENCE, leaving.shutdown())
        .await
        .expect("the graceful shutdown finished");
    let took = started.elapsed();
    println!("graceful shutdown of a health-checked server took {took:?}");
    assert!(took < PROMPT, "the graceful shutdown took {took:?}");

    until_ready(&channel, 1).await;
    let before = servers[0].calls();
    for _ in 0..10 {
        call(&mut client, "after").await.expect("the call succeeds");
    }
    assert_eq!(servers[0].calls(), before + 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_open_at_the_goaway_finishes_while_its_subchannel_leaves_ready() {
    // Twenty replies, 100 ms apart: the stream outlasts the GOAWAY by about two seconds.
    let options = ServerOptions::new()
        .health(true)
        .stream(20, Duration::from_millis(100));
    let mut servers = servers(2, options).await;
    let channel = round_robin(&servers, true);
    until_ready(&channel, 2).await;
    let mut client = EchoClient::new(channel.clone());
    let stream = stream_on(&mut client, &servers[0]).await;
    let reading = tokio::spawn(async move {
        let replies = rest_of(stream).await;
        (replies, Instant::now())
    });
    let callers = Callers::start(&client, 2);
    callers.until_made(2).await;

    let leaving = servers.remove(0);
    let address = leaving.address();
    let shutdown = shut_down(leaving);
    // The subchannel leaves READY at the GOAWAY, while the stream still runs.
    let left = until_not_ready(&channel, address, &reading).await;

    // The stream ends as the server meant it to, and the shutdown follows at once.
    let (replies, stream_ended) = tokio::time::timeout(PATIENCE, reading)
        .await
        .expect("the stream ended in time")
        .expect("the stream ended normally");
    assert_eq!(replies, 20);
    let shut_down = tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("the graceful shutdown finished")
        .expect("the shutdown task");
    let after = shut_down.saturating_duration_since(stream_ended);
    println!(
        "left READY {left:?} after the shutdown began; the shutdown finished {after:?} after \
         the stream's end"
    );
    assert!(
        after < PROMPT,
        "the shutdown finished {after:?} after the stream ended"
    );
    assert!(callers.stop().await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_sent_goaway_gets_no_new_call_while_an_old_stream_drains() {
    let options = ServerOptions::new().stream(20, Duration::from_millis(100));
    let mut servers = servers(2, options).await;
    let channel = round_robin(&servers, false);
    until_ready(&channel, 2).await;
    let mut client = EchoClient::new(channel.clone());
    let stream = stream_on(&mut client, &servers[0]).await;
    let reading = tokio::spawn(rest_of(stream));

    let staying = servers.pop().unwrap();
    let leaving = servers.pop().unwrap();
    let address = leaving.address();
    let shutdown = shut_down(leaving);
    let left = until_not_ready(&channel, address, &reading).await;
    println!("left READY {left:?} after the shutdown began");

    // New calls all go to the other server, while the old stream still runs on the first.
    let before = staying.calls();
    for _ in 0..10 {
        let reply = call(&mut client, "new").await.expect("the call succeeds");
        assert!(
            reply.ends_with(&format!("(from :{})", staying.address().port())),
            "{reply}"
        );
    }
    assert_eq!(staying.calls(), before + 10);
    assert!(
        !reading.is_finished(),
        "the stream ended too soon for the test to say anything"
    );
    assert_eq!(
        tokio::time::timeout(PATIENCE, reading)
            .await
            .expect("the stream ended in time")
            .expect("the stream ended normally"),
        20
    );
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("the graceful shutdown finished")
        .expect("the shutdown task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goaway_with_the_servers_preface_fails_the_connection_attempt() {
    // A server that turns every connection away as it answers it: the attempt fails (and the
    // subchannel backs off), rather than being READY for a moment and reconnecting at once.
    let (listener, target) = loopback().await;
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut stream, _) = listener.accept().await.expect("a connection");
            let mut refusal = frame(SETTINGS, 0, &[]);
            refusal.extend(goaway(ENHANCE_YOUR_CALM, b"overloaded"));
            let _ = stream.write_all(&refusal).await;
            held.push(stream);
        }
    });
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target).build().unwrap();
    channel.connect();
    let (error, subchannels) = until_failed(&channel).await;
    assert!(
        error.contains("GOAWAY (ENHANCE_YOUR_CALM, last stream 0) \"overloaded\""),
        "{error}; {subchannels:?}"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_checked_connection_that_the_server_ages_out_is_replaced_at_once() {
    // Every connection is closed gracefully at 200 ms of age. The health check's stream would
    // hold each one open for good; ended at the GOAWAY, it lets the server close it, and
    // round_robin connects again at once, with no call in flight to find out.
    let options = ServerOptions::new()
        .health(true)
        .max_connection_age(Duration::from_millis(200));
    let servers = servers(1, options).await;
    let channel = round_robin(&servers, true);
    until_ready(&channel, 1).await;
    tokio::time::timeout(PATIENCE, async {
        while servers[0].connections() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the server saw its connections replaced in time");
    let mut client = EchoClient::new(channel);
    for _ in 0..10 {
        call(&mut client, "aged").await.expect("the call succeeds");
    }
}
