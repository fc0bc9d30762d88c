//! What a retry or hedging policy costs a gRPC call that succeeds at once: unary echo calls on
//! loopback to one tonic server, through a channel without a policy and through channels with
//! one (the call then runs through the retry front: its request body kept, its machine run,
//! its throttle told of the success).
//!
//! A loopback round trip moves by more from one moment to the next than the difference measured,
//! so `interleaved` makes a call without a policy and one with a retry policy in turn (each first
//! in every other pair) and times both; the line it prints compares the two over the same
//! moments.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use croupier_echo_grpc::{EchoClient, EchoRequest, GrpcEchoServer, ServerOptions};
use croupier_tokio::grpc::Http2Channel;
use croupier_tokio::retry::{CodeSet, HedgingPolicy, RetryPolicy, RetryThrottle};
use croupier_tokio::Code;

type Client = EchoClient<Http2Channel<tonic::body::Body>>;

const PAYLOAD: &str = "this is examples/load_balancing";

async fn echo(client: &mut Client) {
    let request = EchoRequest {
        message: PAYLOAD.to_owned(),
    };
    client.unary_echo(request).await.expect("a reply");
}

fn grpc_retry(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let retry = RetryPolicy::new(
        3,
        Duration::from_millis(100),
        Duration::from_secs(1),
        2.0,
        CodeSet::new().with(Code::Unavailable),
    )
    .expect("a retry policy");
    // A hedge after a second: never sent, as every call ends well before.
    let hedging = HedgingPolicy::new(
        2,
        Duration::from_secs(1),
        CodeSet::new().with(Code::Unavailable),
    )
    .expect("a hedging policy");
    let (_server, mut clients) = runtime.block_on(async {
        let server = GrpcEchoServer::start(0, ServerOptions::new())
            .await
            .expect("a free port");
        let target = format!("ipv4:{}", server.address());
        let builder = || croupier_tokio::grpc::builder(target.clone());
        let channels = [
            builder().build(),
            builder()
                .retry_policy(retry)
                .retry_throttle(RetryThrottle::new(100, 0.1).expect("a throttle"))
                .build(),
            builder().hedging_policy(hedging).build(),
        ];
        let mut clients = Vec::new();
        for channel in channels {
            let mut client = EchoClient::new(channel.expect("a channel"));
            echo(&mut client).await; // connected before anything is measured
            clients.push(client);
        }
        (server, clients)
    });

    let mut group = c.benchmark_group("grpc_retry");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for (name, client) in ["no_policy", "retry_policy", "hedging_policy"]
        .into_iter()
        .zip(clients.iter_mut())
    {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        echo(client).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    let mut totals = [Duration::ZERO; 2];
    let mut calls = 0u64;
    group.bench_function("interleaved/retry_policy", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut measured = Duration::ZERO;
                for i in 0..iters {
                    // Each side goes first in every other pair, so that neither always follows
                    // the other.
                    let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
                    for side in order {
                        let start = Instant::now();
                        echo(&mut clients[side]).await;
                        let took = start.elapsed();
                        totals[side] += took;
                        if side == 1 {
                            measured += took;
                        }
                    }
                }
                calls += iters;
                measured
            })
        })
    });
    group.finish();
    if calls > 0 {
        let mean = |total: Duration| total / u32::try_from(calls).unwrap_or(u32::MAX);
        println!(
            "interleaved over {calls} pairs: no policy {:?} per call, retry policy {:?} ({:+.1}%)",
            mean(totals[0]),
            mean(totals[1]),
            (totals[1].as_secs_f64() / totals[0].as_secs_f64() - 1.0) * 100.0,
        );
    }
}

criterion_group!(benches, grpc_retry);
criterion_main!(benches);
