//! The cost of the core's timers with 10,000 subchannels in backoff: a wake-up with nothing due
//! (poll_timeout + handle_timeout), and the moment every backoff ends at once.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use croupier::{ConnectionEvent, PolicyConfig, ResolverUpdate};
use croupier_benches::endpoints;
use croupier_testing::Harness;

const N: usize = 10_000;

/// A round_robin balancer whose N endpoints all failed their first attempt: N subchannels in
/// backoff, all due to retry one second later.
fn all_in_backoff() -> Harness {
    let mut harness = Harness::new(PolicyConfig::round_robin(), 3);
    harness.resolve(ResolverUpdate::new(endpoints(N)));
    let attempts: Vec<_> = harness.attempts.values().map(|(c, _)| *c).collect();
    for connection in attempts {
        harness.lb.handle_connection_event(
            connection,
            ConnectionEvent::Failed("refused".into()),
            harness.now,
        );
        while harness.lb.poll_action().is_some() {}
    }
    harness
}

fn timers(c: &mut Criterion) {
    let mut group = c.benchmark_group("backoff_and_timers");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);

    let mut harness = all_in_backoff();
    let quiet: Instant = harness.now + Duration::from_millis(500);
    group.bench_function("idle_wakeup_10000_in_backoff", |b| {
        b.iter(|| {
            harness.lb.handle_timeout(black_box(quiet));
            black_box(harness.lb.poll_timeout())
        })
    });

    group.bench_function("all_10000_backoffs_end", |b| {
        b.iter_batched(
            all_in_backoff,
            |mut harness| {
                let due = harness.now + Duration::from_secs(2);
                harness.lb.handle_timeout(due);
                let mut actions = 0;
                while harness.lb.poll_action().is_some() {
                    actions += 1;
                }
                black_box(actions);
                harness
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, timers);
criterion_main!(benches);
