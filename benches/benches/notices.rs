//! What notices cost: a fresh update of N endpoints, and those endpoints becoming READY one by
//! one (each connection reported and the actions drained), with notices off (what every balancer
//! did before notices existed, and still does unless its config turns them on) and on (every
//! notice drained as an adapter that logs them would).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use croupier::{
    Action, Balancer, BalancerConfig, ConnectionEvent, ConnectionId, PolicyConfig, ResolverUpdate,
};
use croupier_benches::endpoints;

const N: usize = 10_000;

fn config(notices: bool) -> BalancerConfig {
    let config = BalancerConfig::default().policy(PolicyConfig::round_robin());
    if notices {
        config.notices(croupier::DEFAULT_NOTICE_CAPACITY)
    } else {
        config
    }
}

/// Drains the actions (and the notices, if on), returning the connection attempts asked for.
fn drain(balancer: &mut Balancer, connects: &mut Vec<ConnectionId>) -> usize {
    let mut count = 0;
    while let Some(action) = balancer.poll_action() {
        if let Action::Connect { connection, .. } = action {
            connects.push(connection);
        }
        count += 1;
    }
    while let Some(notice) = balancer.poll_notice() {
        black_box(notice);
        count += 1;
    }
    count
}

fn notices(c: &mut Criterion) {
    let mut group = c.benchmark_group("notices");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let now = Instant::now();
    let list = endpoints(N);
    for on in [false, true] {
        let mode = if on { "on" } else { "off" };
        group.bench_with_input(BenchmarkId::new(format!("fresh/{mode}"), N), &N, |b, _| {
            b.iter_batched(
                || {
                    (
                        Balancer::new(config(on), 7, now),
                        ResolverUpdate::new(list.clone()),
                    )
                },
                |(mut balancer, update)| {
                    balancer.handle_resolver_update(update, now);
                    black_box(drain(&mut balancer, &mut Vec::new()));
                    balancer
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_with_input(
            BenchmarkId::new(format!("ready_one_by_one/{mode}"), N),
            &N,
            |b, _| {
                b.iter_batched(
                    || {
                        let mut balancer = Balancer::new(config(on), 7, now);
                        balancer.handle_resolver_update(ResolverUpdate::new(list.clone()), now);
                        let mut connects = Vec::new();
                        drain(&mut balancer, &mut connects);
                        (balancer, connects)
                    },
                    |(mut balancer, connects)| {
                        let mut ignored = Vec::new();
                        for connection in connects {
                            balancer.handle_connection_event(
                                connection,
                                ConnectionEvent::Connected,
                                now,
                            );
                            black_box(drain(&mut balancer, &mut ignored));
                        }
                        balancer
                    },
                    BatchSize::LargeInput,
                )
            },
        );
    }
    group.finish();
}

criterion_group!(benches, notices);
criterion_main!(benches);
