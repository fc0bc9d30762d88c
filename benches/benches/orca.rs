//! The cost of reading a call's ORCA load report (gRFC A51) from its trailers: what the gRPC
//! channel pays per call while weighted_round_robin wants reports, and, with no report among the
//! trailers, what a call to a backend that sends none pays. A policy that ignores call outcomes
//! pays nothing: the trailers are not looked at.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use croupier_tokio::grpc::orca::{load_report, LOAD_REPORT_TRAILER};

/// A typical report: CPU 0.42, memory 0.61, 1250 rps, 3.5 eps, application 0.47 and one named
/// metric (`queue` 12), serialized and base64-encoded as a server sends it.
const REPORT: &str =
    "CeF6FK5H4do/EYXrUbgeheM/MQAAAAAAiJNAOQAAAAAAAAxASRSuR+F6FN4/QhAKBXF1ZXVlEQAAAAAAAChA";

/// The trailers of a successful gRPC call, with `report` if given.
fn trailers(report: Option<&'static str>) -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    if let Some(report) = report {
        trailers.insert(LOAD_REPORT_TRAILER, http::HeaderValue::from_static(report));
    }
    trailers
}

fn orca(c: &mut Criterion) {
    let mut group = c.benchmark_group("orca");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let with = trailers(Some(REPORT));
    assert!(load_report(&with).is_some(), "the report reads");
    group.bench_function("read_report", |b| b.iter(|| load_report(black_box(&with))));
    let without = trailers(None);
    group.bench_function("no_report", |b| b.iter(|| load_report(black_box(&without))));
    group.finish();
}

criterion_group!(benches, orca);
criterion_main!(benches);
