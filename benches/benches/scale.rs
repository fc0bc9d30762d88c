//! The core at 10,000, 100,000 and 200,000 endpoints (consecutive IPs behind one port, as a fleet
//! of pods): a fresh round_robin update, a 1% change, and every endpoint connecting and becoming
//! READY one event at a time in a shuffled order, the actions drained after each event as an
//! adapter does. Linear work means 100,000 costs about ten times 10,000. (The bytes and
//! allocations of the same scenarios are counted, deterministically, in `core/tests/scale.rs`.)

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use croupier::{
    Action, Balancer, BalancerConfig, ConnectionEvent, ConnectionId, Endpoint, PolicyConfig,
    ResolverUpdate, Rng,
};
use croupier_benches::{pod_address, pod_endpoints};

const SIZES: [usize; 3] = [10_000, 100_000, 200_000];

fn fresh(policy: &PolicyConfig, now: Instant) -> Balancer {
    let config = BalancerConfig::default()
        .policy(policy.clone())
        .max_endpoints(200_000);
    Balancer::new(config, 7, now)
}

/// Drains the actions, keeping the attempts to connect.
fn drain(balancer: &mut Balancer, connects: &mut Vec<ConnectionId>) {
    while let Some(action) = balancer.poll_action() {
        if let Action::Connect { connection, .. } = action {
            connects.push(connection);
        }
    }
}

/// The list with every hundredth endpoint replaced by a new one.
fn one_percent_changed(n: usize) -> Vec<Endpoint> {
    let mut list = pod_endpoints(n);
    for (i, endpoint) in list.iter_mut().enumerate().step_by(100) {
        *endpoint = Endpoint::new(pod_address(n + i));
    }
    list
}

/// A balancer that was just given `n` endpoints, and its attempts in a shuffled order.
fn connecting(policy: &PolicyConfig, n: usize, now: Instant) -> (Balancer, Vec<ConnectionId>) {
    let mut balancer = fresh(policy, now);
    balancer.handle_resolver_update(ResolverUpdate::new(pod_endpoints(n)), now);
    let mut connects = Vec::with_capacity(n);
    drain(&mut balancer, &mut connects);
    Rng::new(n as u64).shuffle(&mut connects);
    (balancer, connects)
}

/// Every attempt connects, a microsecond apart, then the last waiting picker is published.
fn all_ready(balancer: &mut Balancer, connects: Vec<ConnectionId>, now: Instant) {
    let n = connects.len() as u64;
    let mut more = Vec::new();
    for (i, connection) in connects.into_iter().enumerate() {
        let at = now + Duration::from_micros(i as u64);
        balancer.handle_connection_event(connection, ConnectionEvent::Connected, at);
        drain(balancer, &mut more);
    }
    balancer.handle_timeout(now + Duration::from_micros(n) + Duration::from_secs(1));
    drain(balancer, &mut more);
}

fn scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    let now = Instant::now();
    let policy = PolicyConfig::round_robin();
    for n in SIZES {
        let list = pod_endpoints(n);
        let changed = one_percent_changed(n);
        group.bench_with_input(BenchmarkId::new("round_robin/fresh", n), &n, |b, _| {
            b.iter_batched(
                || (fresh(&policy, now), ResolverUpdate::new(list.clone())),
                |(mut balancer, update)| {
                    balancer.handle_resolver_update(update, now);
                    drain(&mut balancer, &mut Vec::new());
                    balancer
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_with_input(
            BenchmarkId::new("round_robin/one_percent", n),
            &n,
            |b, _| {
                b.iter_batched(
                    || {
                        let (balancer, _) = connecting(&policy, n, now);
                        (balancer, ResolverUpdate::new(changed.clone()))
                    },
                    |(mut balancer, update)| {
                        balancer.handle_resolver_update(update, now);
                        drain(&mut balancer, &mut Vec::new());
                        balancer
                    },
                    BatchSize::LargeInput,
                )
            },
        );
    }
    for policy in [
        PolicyConfig::round_robin(),
        PolicyConfig::least_request(),
        PolicyConfig::weighted_round_robin(),
        PolicyConfig::p2c_ewma(),
    ] {
        for n in SIZES {
            let name = format!("{}/all_ready_one_by_one", policy.name());
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter_batched(
                    || connecting(&policy, n, now),
                    |(mut balancer, connects)| {
                        all_ready(&mut balancer, connects, now);
                        black_box(balancer)
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, scale);
criterion_main!(benches);
