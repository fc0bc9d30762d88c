//! prequal over real tonic servers on loopback, each behind croupier's `ProbeLayer`: the channel
//! probes them, and calls move off a server made five times slower within a second, and back
//! once it has recovered. A server without the layer leaves calls unaffected.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use croupier::PolicyConfig;
use croupier_echo_grpc::pb::echo_server::{Echo, EchoServer};
use croupier_echo_grpc::{EchoClient, EchoRequest, EchoResponse, ServerOptions};
use croupier_tokio::grpc::probe::ProbeLayer;
use support::{servers, target, until_ready, GrpcChannel, PATIENCE};
use tonic::codegen::tokio_stream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// A healthy server's service time.
const BASE: Duration = Duration::from_millis(20);

/// Callers sending one call after another.
const CALLERS: usize = 6;

/// An echo server that takes `delay` per call and answers with its own number.
#[derive(Clone)]
struct Slow {
    number: usize,
    delay_ms: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl Echo for Slow {
    async fn unary_echo(&self, _: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let delay = Duration::from_millis(self.delay_ms.load(Ordering::Relaxed));
        tokio::time::sleep(delay).await;
        Ok(Response::new(EchoResponse {
            message: self.number.to_string(),
        }))
    }

    type ServerStreamingEchoStream = tokio_stream::Empty<Result<EchoResponse, Status>>;

    async fn server_streaming_echo(
        &self,
        _: Request<EchoRequest>,
    ) -> Result<Response<Self::ServerStreamingEchoStream>, Status> {
        Err(Status::unimplemented("not served here"))
    }
}

/// Starts server `number` behind a [`ProbeLayer`]; returns its address and its delay.
async fn start(number: usize) -> (String, Arc<AtomicU64>) {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).expect("a free port");
    let address = incoming.local_addr().unwrap().to_string();
    let delay_ms = Arc::new(AtomicU64::new(BASE.as_millis() as u64));
    let service = EchoServer::new(Slow {
        number,
        delay_ms: Arc::clone(&delay_ms),
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(ProbeLayer::new())
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    (address, delay_ms)
}

/// Which server answered each call, by when the call started.
type Log = Arc<Mutex<Vec<(Instant, usize)>>>;

/// Server 0's share of the calls started between `from` and `to`, and how many there were.
fn share(log: &Log, from: Instant, to: Instant) -> (f64, usize) {
    let log = log.lock().unwrap();
    let window: Vec<usize> = log
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, server)| *server)
        .collect();
    let slow = window.iter().filter(|&&server| server == 0).count();
    (slow as f64 / window.len().max(1) as f64, window.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prequal_moves_calls_off_a_server_made_five_times_slower_and_back_after_it_recovers() {
    let mut addresses = Vec::new();
    let mut delays = Vec::new();
    for number in 0..3 {
        let (address, delay) = start(number).await;
        addresses.push(address);
        delays.push(delay);
    }
    let channel: GrpcChannel =
        croupier_tokio::grpc::builder(format!("ipv4:{}", addresses.join(",")))
            .policy(PolicyConfig::prequal())
            .build()
            .unwrap();
    tokio::time::timeout(PATIENCE, until_ready(&channel, 3))
        .await
        .expect("every server READY");

    let log: Log = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for _ in 0..CALLERS {
        let mut client = EchoClient::new(channel.clone());
        let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let request = EchoRequest {
                    message: "probe me".into(),
                };
                let reply = tokio::time::timeout(PATIENCE, client.unary_echo(request))
                    .await
                    .expect("a call ends in time")
                    .expect("a call succeeds");
                let server: usize = reply.into_inner().message.parse().unwrap();
                log.lock().unwrap().push((started, server));
            }
        }));
    }

    let second = Duration::from_secs(1);
    tokio::time::sleep(2 * second).await;
    let slowed = Instant::now();
    delays[0].store(5 * BASE.as_millis() as u64, Ordering::Relaxed);
    tokio::time::sleep(3 * second).await;
    let recovered = Instant::now();
    delays[0].store(BASE.as_millis() as u64, Ordering::Relaxed);
    tokio::time::sleep(3 * second).await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        tokio::time::timeout(PATIENCE, caller)
            .await
            .expect("callers stop")
            .expect("no caller panicked");
    }

    // About a third of the calls each while the servers are alike (at least a tenth, on a
    // loaded machine: the probes' answers herd a little); once one is five times slower, from
    // a second after, less than half of a third; from a second after it recovers, in rotation
    // again.
    let (before, n) = share(&log, slowed - second, slowed);
    assert!(
        before > 0.1,
        "server 0 had {before:.2} of {n} calls while healthy"
    );
    let (slow, n) = share(&log, slowed + second, recovered);
    assert!(
        slow < 1.0 / 6.0,
        "server 0 had {slow:.2} of {n} calls while slow"
    );
    let (after, n) = share(&log, recovered + second, recovered + 3 * second);
    assert!(
        after > 0.1,
        "server 0 had {after:.2} of {n} calls after it recovered"
    );
}

#[tokio::test]
async fn prequal_calls_servers_without_the_probe_layer_as_usual() {
    let servers = servers(2, ServerOptions::new()).await;
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target(&servers))
        .policy(PolicyConfig::prequal())
        .build()
        .unwrap();
    tokio::time::timeout(PATIENCE, until_ready(&channel, 2))
        .await
        .expect("every server READY");
    let mut client = EchoClient::new(channel);
    for _ in 0..40 {
        let request = EchoRequest {
            message: "hi".into(),
        };
        tokio::time::timeout(PATIENCE, client.unary_echo(request))
            .await
            .expect("a call ends in time")
            .expect("a call succeeds though probes are UNIMPLEMENTED");
    }
    assert!(
        servers.iter().all(|s| s.calls() > 0),
        "both servers get calls"
    );
}
