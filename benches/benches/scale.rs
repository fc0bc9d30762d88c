//! The core at 10,000, 100,000 and 200,000 endpoints (consecutive IPs behind one port, as a fleet
//! of pods): a fresh round_robin update, a 1% change, and every endpoint connecting and becoming
//! READY one event at a time in a shuffled order, the actions drained after each event as an
//! adapter does, for round_robin, the policies built on it, and ring_hash (and for round_robin in
//! creation order too, which shows what the cache misses of the shuffled order cost). Linear work
//! means 100,000 costs about ten times 10,000. (`core/tests/scale.rs` counts the bytes and allocations
//! of the same scenarios, which unlike time are deterministic.)

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use croupier::{PolicyConfig, ResolverUpdate};
use croupier_testing::scale::{
    all_ready_one_by_one, balancer, connecting, drain, one_percent_changed, pods,
    ring_hash_connecting,
};

const SIZES: [u32; 3] = [10_000, 100_000, 200_000];

fn scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    let now = Instant::now();
    let policy = PolicyConfig::round_robin();
    for n in SIZES {
        let list = pods(0, n);
        let changed = one_percent_changed(n);
        group.bench_with_input(BenchmarkId::new("round_robin/fresh", n), &n, |b, _| {
            b.iter_batched(
                || (balancer(&policy, now), ResolverUpdate::new(list.clone())),
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
        PolicyConfig::least_latency(),
        PolicyConfig::prequal(),
    ] {
        for n in SIZES {
            let name = format!("{}/all_ready_one_by_one", policy.name());
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter_batched(
                    || connecting(&policy, n, now),
                    |(mut balancer, connects)| {
                        black_box(all_ready_one_by_one(&mut balancer, connects, now));
                        balancer
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    // The same in creation order: each event touches memory next to the last one's, so this
    // shows what the shuffled order's cache misses cost.
    let policy = PolicyConfig::round_robin();
    for n in SIZES {
        let name = "round_robin/all_ready_in_order";
        group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
            b.iter_batched(
                || {
                    let (balancer, mut connects) = connecting(&policy, n, now);
                    connects.sort_unstable();
                    (balancer, connects)
                },
                |(mut balancer, connects)| {
                    black_box(all_ready_one_by_one(&mut balancer, connects, now));
                    balancer
                },
                BatchSize::LargeInput,
            )
        });
    }
    for n in SIZES {
        let name = "ring_hash/all_ready_one_by_one";
        group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
            b.iter_batched(
                || {
                    let (balancer, connects, _) = ring_hash_connecting(n, now);
                    (balancer, connects)
                },
                |(mut balancer, connects)| {
                    black_box(all_ready_one_by_one(&mut balancer, connects, now));
                    balancer
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, scale);
criterion_main!(benches);
