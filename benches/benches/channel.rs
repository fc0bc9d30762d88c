//! What a call costs the channel itself: a pick on a READY round_robin channel and the report of
//! its end (no I/O: the picked connection is not used), and a unary gRPC call on loopback
//! through tonic. With the `metrics` feature, the same with a Prometheus recorder installed, so
//! that every call records its attempt, its backend and its sizes.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use croupier::{ConnectivityState, PickRequest, PolicyConfig};
use croupier_echo::EchoServer;
use croupier_echo_grpc::{EchoClient, EchoRequest, GrpcEchoServer, ServerOptions};

fn channel(c: &mut Criterion) {
    #[cfg(feature = "metrics")]
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (_servers, channel, _grpc, mut client) = runtime.block_on(async {
        let servers = [
            EchoServer::start(0).await.expect("a free port"),
            EchoServer::start(0).await.expect("a free port"),
        ];
        let target = format!("ipv4:{},{}", servers[0].address(), servers[1].address());
        let channel = croupier_tokio::builder(target)
            .policy(PolicyConfig::round_robin())
            .build()
            .expect("a channel");
        while channel
            .subchannels()
            .await
            .iter()
            .filter(|s| s.state == ConnectivityState::Ready)
            .count()
            < 2
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let grpc = GrpcEchoServer::start(0, ServerOptions::new())
            .await
            .expect("a free port");
        let grpc_channel = croupier_tokio::grpc::builder(format!("ipv4:{}", grpc.address()))
            .build()
            .expect("a channel");
        let mut client = EchoClient::new(grpc_channel);
        echo(&mut client).await; // connected before anything is measured
        (servers, channel, grpc, client)
    });

    let mut group = c.benchmark_group("channel");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    group.bench_function("pick_and_finish", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let request = PickRequest::new();
                let start = Instant::now();
                for _ in 0..iters {
                    let picked = channel.pick(&request).await.expect("a pick");
                    picked.call.success();
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("grpc_unary", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    echo(&mut client).await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

async fn echo(client: &mut EchoClient<croupier_tokio::grpc::Http2Channel<tonic::body::Body>>) {
    let request = EchoRequest {
        message: "this is examples/load_balancing".to_owned(),
    };
    client.unary_echo(request).await.expect("a reply");
}

criterion_group!(benches, channel);
criterion_main!(benches);
