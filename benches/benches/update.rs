//! Applying resolver updates: N endpoints to a fresh balancer, the identical list again, and a
//! list with 1% of it changed. The actions each emits are counted and printed once. Endpoints
//! differ by port, except in `fresh_pods`: consecutive IPs behind one port, as a fleet of pods is
//! (what a hash that leaves its low bits unmixed puts in a few buckets).
//!
//! Between the iterations of `fresh`, the allocator keeps the memory the last balancer freed and
//! hands it to the next, so `fresh` measures a balancer built in memory the process has used
//! before. `fresh_cold_memory` (Linux with glibc) returns free memory to the kernel before each
//! timed update, so every page the update touches is new to the process and costs a page fault:
//! the first balancer of a process pays that.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use croupier::{Balancer, BalancerConfig, Endpoint, PolicyConfig, ResolverUpdate};
use croupier_benches::{endpoints, port};
use croupier_testing::scale::pods;

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
        *endpoint = Endpoint::new(croupier_testing::addr(port(n + i)));
    }
    list
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod cold {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }

    /// Returns the allocator's free memory to the kernel.
    pub(crate) fn release_free_memory() {
        // SAFETY: malloc_trim has no preconditions; it only gives free heap pages back.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Times only the update (and draining its actions) of `list` into a fresh balancer, each time in
/// memory the process has just handed back to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fresh_cold_memory(
    policy: &PolicyConfig,
    list: &[Endpoint],
    now: Instant,
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut balancer = fresh(policy, now);
        let update = ResolverUpdate::new(list.to_vec());
        cold::release_free_memory();
        let start = Instant::now();
        balancer.handle_resolver_update(update, now);
        black_box(drain(&mut balancer));
        total += start.elapsed();
    }
    total
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
            let pods = pods(0, n as u32);
            group.bench_with_input(
                BenchmarkId::new(format!("{name}/fresh_pods"), n),
                &n,
                |b, _| {
                    b.iter_batched(
                        || (fresh(&policy, now), ResolverUpdate::new(pods.clone())),
                        |(mut balancer, update)| {
                            balancer.handle_resolver_update(update, now);
                            black_box(drain(&mut balancer));
                            balancer
                        },
                        BatchSize::LargeInput,
                    )
                },
            );
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            if n == 10_000 {
                group.bench_with_input(
                    BenchmarkId::new(format!("{name}/fresh_cold_memory"), n),
                    &n,
                    |b, _| b.iter_custom(|iters| fresh_cold_memory(&policy, &list, now, iters)),
                );
            }
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
