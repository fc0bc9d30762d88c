//! Echo calls on loopback through a croupier channel (round_robin over two servers) against the
//! same calls on direct TCP connections to the same two servers, alternating: same payload, same
//! servers, one call at a time.
//!
//! A loopback round trip here moves by several microseconds from one run of a benchmark to the
//! next, more than the difference being measured. So `interleaved/croupier_round_robin` makes a
//! direct call and a croupier call in turn, to the same server, and times both: the benchmark's
//! figure is the croupier call, and the line it prints compares the two sides over the same
//! moments (the ratio to read).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use croupier::{PickRequest, PolicyConfig};
use croupier_echo::{tokio_io::echo, EchoServer};

const PAYLOAD: &str = "this is examples/load_balancing";

fn end_to_end(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (servers, channel, mut direct) = runtime.block_on(async {
        let servers = [
            EchoServer::start(0).await.expect("a free port"),
            EchoServer::start(0).await.expect("a free port"),
        ];
        let target = format!("ipv4:{},{}", servers[0].address(), servers[1].address());
        let channel = croupier_tokio::builder(target)
            .policy(PolicyConfig::round_robin())
            .build()
            .expect("a channel");
        // Wait until both backends are READY, so every measured call is a steady-state call.
        for _ in 0..1_000 {
            let ready = channel
                .subchannels()
                .await
                .iter()
                .filter(|s| s.state == croupier::ConnectivityState::Ready)
                .count();
            if ready == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut direct = Vec::new();
        for server in &servers {
            let stream = tokio::net::TcpStream::connect(server.address())
                .await
                .expect("a direct connection");
            stream.set_nodelay(true).expect("nodelay");
            direct.push(stream);
        }
        (servers, channel, direct)
    });

    let mut group = c.benchmark_group("end_to_end");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    group.bench_function("direct", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let stream = &mut direct[i as usize % 2];
                    echo(stream, PAYLOAD).await.expect("a reply");
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("croupier_round_robin", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let request = PickRequest::new();
                let start = Instant::now();
                for _ in 0..iters {
                    croupier_call(&channel, &request).await;
                }
                start.elapsed()
            })
        })
    });
    // The same channel, with connections whose end is not watched: what the watcher costs.
    let unwatched = runtime.block_on(async {
        let target = format!("ipv4:{},{}", servers[0].address(), servers[1].address());
        let channel = croupier_tokio::builder(target)
            .policy(PolicyConfig::round_robin())
            .connector(Unwatched)
            .build()
            .expect("a channel");
        channel.pick(&PickRequest::new()).await.expect("a pick");
        tokio::time::sleep(Duration::from_millis(50)).await;
        channel
    });
    group.bench_function("croupier_round_robin_unwatched", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let request = PickRequest::new();
                let start = Instant::now();
                for _ in 0..iters {
                    croupier_call(&unwatched, &request).await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("end_to_end/interleaved");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    // Which server a reply came from.
    let replies: Vec<String> = servers
        .iter()
        .map(|server| format!("{PAYLOAD} (from {})", server.address()))
        .collect();
    let server_of = |reply: &str| {
        replies
            .iter()
            .position(|r| r == reply)
            .expect("a reply from one of the two servers")
    };
    // round_robin alternates between the two servers; after each croupier call the next goes to
    // the other one. Calls go in pairs to one server, the direct call first in one pair and
    // second in the next, so that each side follows a call to the same server half the time
    // and a call to the other server half the time (which moves a call by several microseconds).
    let mut next = runtime
        .block_on(async { 1 - server_of(&croupier_call(&channel, &PickRequest::new()).await) });
    let mut pairs = 0u64;
    // Both sides' totals over every pair run, warm-up included, for the ratio printed below.
    let mut totals = [Duration::ZERO; 2];
    group.bench_function("croupier_round_robin", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let request = PickRequest::new();
                let mut times = [Duration::ZERO; 2];
                for _ in 0..iters {
                    let direct_first = pairs % 2 == 0;
                    pairs += 1;
                    let mut server = next;
                    if direct_first {
                        let start = Instant::now();
                        echo(&mut direct[server], PAYLOAD).await.expect("a reply");
                        times[0] += start.elapsed();
                    }
                    let start = Instant::now();
                    let reply = croupier_call(&channel, &request).await;
                    times[1] += start.elapsed();
                    if !direct_first {
                        server = server_of(&reply);
                        let start = Instant::now();
                        echo(&mut direct[server], PAYLOAD).await.expect("a reply");
                        times[0] += start.elapsed();
                    }
                    next = 1 - server_of(&reply);
                }
                totals[0] += times[0];
                totals[1] += times[1];
                times[1]
            })
        })
    });
    let per_call = |total: Duration| total.as_secs_f64() * 1e6 / pairs as f64;
    println!(
        "end_to_end/interleaved: {pairs} pairs; per call: direct {:.2} us, croupier {:.2} us; \
         croupier at {:.3} of direct throughput",
        per_call(totals[0]),
        per_call(totals[1]),
        totals[0].as_secs_f64() / totals[1].as_secs_f64()
    );
    group.finish();
    drop(servers);
}

/// One echo call through `channel`; the reply names the server.
async fn croupier_call(
    channel: &croupier_tokio::Channel<croupier_tokio::SharedStream>,
    request: &PickRequest<'_>,
) -> String {
    let picked = channel.pick(request).await.expect("a pick");
    let mut stream = picked.connection.lock().await;
    let reply = echo(&mut *stream, PAYLOAD).await.expect("a reply");
    drop(stream);
    picked.call.success();
    reply
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);

/// TCP connections whose end is not watched.
struct Unwatched;

impl croupier_tokio::Connector for Unwatched {
    type Connection = croupier_tokio::SharedStream;

    fn connect(
        &self,
        address: &croupier::Address,
    ) -> impl std::future::Future<
        Output = std::io::Result<croupier_tokio::Connected<Self::Connection>>,
    > + Send
           + 'static {
        let croupier::Address::Socket(address) = address.clone() else {
            panic!("socket addresses only");
        };
        async move {
            let stream = tokio::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            let shared = croupier_tokio::SharedStream::new(croupier_tokio::Stream::Tcp(stream));
            Ok(croupier_tokio::Connected::unobserved(shared))
        }
    }
}
