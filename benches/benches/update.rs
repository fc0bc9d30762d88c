//! Applying resolver updates: N endpoints to a fresh balancer, the identical list again, and a
//! list with 1% of it changed. The actions each emits are counted and printed once.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use croupier::{Balancer, BalancerConfig, Endpoint, PolicyConfig, ResolverUpdate};
use croupier_benches::{endpoints, port};

fn policies() -> Vec<PolicyConfig> {
    vec![PolicyConfig::pick_first(), PolicyConfig::round_robin()]
}

fn fresh(policy: &PolicyConfig, now: Instant) -> Balancer {
    Balancer::new(BalancerConfig::default().policy(policy.clone()), 7, now)
}

fn drain(balancer: &mut Balancer) -> usize {
    let mut count = 0;
    while balancer.poll_action().is_some() {
        count += 1;
    }
    count
}

/// The list with every hundredth endpoint replaced by a new one.
fn one_percent_changed(n: usize) -> Vec<Endpoint> {
    let mut list = endpoints(n);
    for (i, endpoint) in list.iter_mut().enumerate().step_by(100) {
        *endpoint = Endpoint::new(croupier::testing::addr(port(n + i)));
    }
    list
}

fn update(c: &mut Criterion) {
    let mut group = c.benchmark_group("update");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let now = Instant::now();
    for policy in policies() {
        let name = policy.name().to_owned();
        for n in [1_000usize, 10_000] {
            let list = endpoints(n);
            let changed = one_percent_changed(n);

            // Count the actions once, outside the timing.
            let mut balancer = fresh(&policy, now);
            balancer.handle_resolver_update(ResolverUpdate::new(list.clone()), now);
            let first = drain(&mut balancer);
            balancer.handle_resolver_update(ResolverUpdate::new(list.clone()), now);
            let again = drain(&mut balancer);
            balancer.handle_resolver_update(ResolverUpdate::new(changed.clone()), now);
            let one_percent = drain(&mut balancer);
            println!(
                "update/{name}/{n}: actions: fresh {first}, identical {again}, 1% changed {one_percent}"
            );

            group.bench_with_input(BenchmarkId::new(format!("{name}/fresh"), n), &n, |b, _| {
                b.iter_batched(
                    || (fresh(&policy, now), ResolverUpdate::new(list.clone())),
                    |(mut balancer, update)| {
                        balancer.handle_resolver_update(update, now);
                        black_box(drain(&mut balancer));
                        balancer
                    },
                    BatchSize::LargeInput,
                )
            });
            group.bench_with_input(
                BenchmarkId::new(format!("{name}/identical"), n),
                &n,
                |b, _| {
                    b.iter_batched(
                        || {
                            let mut balancer = fresh(&policy, now);
                            balancer.handle_resolver_update(ResolverUpdate::new(list.clone()), now);
                            drain(&mut balancer);
                            (balancer, ResolverUpdate::new(list.clone()))
                        },
                        |(mut balancer, update)| {
                            balancer.handle_resolver_update(update, now);
                            black_box(drain(&mut balancer));
                            balancer
                        },
                        BatchSize::LargeInput,
                    )
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("{name}/one_percent"), n),
                &n,
                |b, _| {
                    b.iter_batched(
                        || {
                            let mut balancer = fresh(&policy, now);
                            balancer.handle_resolver_update(ResolverUpdate::new(list.clone()), now);
                            drain(&mut balancer);
                            (balancer, ResolverUpdate::new(changed.clone()))
                        },
                        |(mut balancer, update)| {
                            balancer.handle_resolver_update(update, now);
                            black_box(drain(&mut balancer));
                            balancer
                        },
                        BatchSize::LargeInput,
                    )
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, update);
criterion_main!(benches);
