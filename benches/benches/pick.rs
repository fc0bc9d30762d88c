//! One pick from a published picker, per policy and endpoint count, beside the floor (an atomic
//! counter over a slice) and tower's p2c balancer over always-ready no-op services.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use croupier::policy::{PriorityConfig, WeightedTargetConfig};
use croupier::{PickRequest, PolicyConfig, ProbeResult, SubchannelId};
use croupier_benches::{
    endpoints, ready_picker, ready_picker_for, weighted_endpoints, Floor, SIZES,
};
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, Constant, PeakEwma};
use tower::Service;

/// A service that is always ready and answers at once.
#[derive(Clone, Copy)]
struct Noop;

impl Service<u32> for Noop {
    type Response = u32;
    type Error = Infallible;
    type Future = Ready<Result<u32, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u32) -> Self::Future {
        ready(Ok(request))
    }
}

fn policies() -> Vec<(&'static str, PolicyConfig)> {
    vec![
        ("pick_first", PolicyConfig::pick_first()),
        ("round_robin", PolicyConfig::round_robin()),
        ("random", PolicyConfig::random()),
        ("least_request", PolicyConfig::least_request()),
        ("p2c_ewma", PolicyConfig::p2c_ewma()),
        ("least_latency", PolicyConfig::least_latency()),
        // With its pool empty: the better of two by their latest answers.
        ("prequal(no probes)", PolicyConfig::prequal()),
        ("ring_hash", PolicyConfig::ring_hash()),
        (
            "outlier_detection(round_robin)",
            PolicyConfig::outlier_detection(PolicyConfig::round_robin()),
        ),
    ]
}

fn tree_policies() -> Vec<(&'static str, PolicyConfig)> {
    let zones = ["zone-0", "zone-1", "zone-2", "zone-3"];
    let priority = zones.iter().fold(PriorityConfig::new(), |config, zone| {
        config.child(zone, PolicyConfig::round_robin())
    });
    let weighted = zones
        .iter()
        .zip([1, 2, 3, 4])
        .fold(WeightedTargetConfig::new(), |config, (zone, weight)| {
            config.target(zone, weight, PolicyConfig::round_robin())
        });
    vec![
        ("priority(round_robin)", PolicyConfig::new(priority)),
        ("weighted_target(round_robin)", PolicyConfig::new(weighted)),
    ]
}

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    for &n in &SIZES {
        let (round_robin, _) = ready_picker(PolicyConfig::round_robin(), n);
        let ids: Vec<SubchannelId> = round_robin.lb.subchannels().iter().map(|s| s.id).collect();
        let floor = Floor::new(ids);
        group.bench_with_input(BenchmarkId::new("floor", n), &n, |b, _| {
            b.iter(|| black_box(floor.pick()))
        });
        for (name, policy) in policies() {
            let (_harness, picker) = ready_picker(policy, n);
            let request = PickRequest::new();
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| black_box(picker.pick(black_box(&request))))
            });
        }
        // prequal with its pool full of answers: the hot-cold rule over 16 probes, and the
        // probe used. Answers come in the (untimed) setup, as the channel's probes would.
        let (mut harness, picker) = ready_picker(PolicyConfig::prequal(), n);
        let ids: Vec<SubchannelId> = harness.lb.subchannels().iter().map(|s| s.id).collect();
        let request = PickRequest::new();
        let mut next = 0usize;
        group.bench_with_input(BenchmarkId::new("prequal", n), &n, |b, _| {
            b.iter_batched(
                || {
                    for _ in 0..16 {
                        next = (next + 7) % ids.len();
                        let latency = Duration::from_micros(500 + 37 * next as u64 % 900);
                        let answer = ProbeResult::new(next as u32 % 5, Some(latency));
                        harness.answer_probe(ids[next], answer);
                    }
                },
                |()| black_box(picker.pick(black_box(&request))),
                BatchSize::SmallInput,
            )
        });
        // Weighted round robin with unequal static weights (1, 2, 3 in turn), so its stride
        // scheduler runs rather than plain round robin.
        let (_harness, picker) =
            ready_picker_for(PolicyConfig::weighted_round_robin(), weighted_endpoints(n));
        let request = PickRequest::new();
        group.bench_with_input(BenchmarkId::new("weighted_round_robin", n), &n, |b, _| {
            b.iter(|| black_box(picker.pick(black_box(&request))))
        });
        // The tree policies: priority with everything in its first child, and weighted_target
        // over four targets of a quarter each, round_robin under both.
        for (name, policy) in tree_policies() {
            let placed = endpoints(n).into_iter().enumerate().map(|(i, endpoint)| {
                endpoint.hierarchy([["zone-0", "zone-1", "zone-2", "zone-3"][i % 4]])
            });
            let (_harness, picker) = ready_picker_for(policy, placed.collect());
            let request = PickRequest::new();
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| black_box(picker.pick(black_box(&request))))
            });
        }
        let services: Vec<_> = (0..n).map(|_| Constant::new(Noop, 1u32)).collect();
        let mut balance = tower::balance::p2c::Balance::new(ServiceList::new(services));
        let mut cx = Context::from_waker(Waker::noop());
        group.bench_with_input(BenchmarkId::new("tower_p2c", n), &n, |b, _| {
            b.iter(|| {
                let _ = balance.poll_ready(&mut cx);
                black_box(balance.call(black_box(7)))
            })
        });
        // tower's p2c over peak-EWMA load: the counterpart of p2c_ewma. The response future is
        // dropped at once, which ends the call.
        let services: Vec<_> = (0..n)
            .map(|_| {
                let decay = Duration::from_secs(10).as_nanos() as f64;
                PeakEwma::new(
                    Noop,
                    Duration::from_millis(30),
                    decay,
                    CompleteOnResponse::default(),
                )
            })
            .collect();
        let mut balance = tower::balance::p2c::Balance::new(ServiceList::new(services));
        group.bench_with_input(BenchmarkId::new("tower_p2c_peak_ewma", n), &n, |b, _| {
            b.iter(|| {
                let _ = balance.poll_ready(&mut cx);
                black_box(balance.call(black_box(7)))
            })
        });
    }
    group.finish();
}

/// The same round-robin picker shared by two threads picking at once, against one thread.
fn pick_contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick_contended");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    let (_harness, picker) = ready_picker(PolicyConfig::round_robin(), 1_000);
    for threads in [1usize, 2] {
        group.bench_with_input(
            BenchmarkId::new("round_robin_1000", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let per_thread = iters / threads as u64;
                    let start = std::time::Instant::now();
                    std::thread::scope(|scope| {
                        for _ in 0..threads {
                            let picker = &picker;
                            scope.spawn(move || {
                                let request = PickRequest::new();
                                for _ in 0..per_thread {
                                    black_box(picker.pick(black_box(&request)));
                                }
                            });
                        }
                    });
                    // The threads made `iters` picks between them in this time: criterion's
                    // figure is the machine's time per pick (the inverse of picks per second).
                    start.elapsed()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, pick, pick_contended);
criterion_main!(benches);
