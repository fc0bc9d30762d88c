//! Service configs: parsing one (done when a channel is built or a resolver sends a new one), and
//! finding a call's method config by its path (done per call, so it must stay cheap).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use croupier::ServiceConfigParser;

/// grpc-go's load_balancing example.
const ROUND_ROBIN: &str = r#"{"loadBalancingConfig":[{"round_robin":{}}]}"#;

/// A config with a policy tree, retries and per-service timeouts, as a service owner writes one.
const TYPICAL: &str = r#"{
  "loadBalancingConfig": [{"outlier_detection_experimental": {
    "interval": "10s", "baseEjectionTime": "30s", "maxEjectionPercent": 20,
    "failurePercentageEjection": {"threshold": 85, "requestVolume": 50},
    "childPolicy": [{"ring_hash_experimental": {"minRingSize": 1024, "requestHashHeader": "x-user"}}]
  }}],
  "methodConfig": [
    {"name": [{"service": "shop.Cart", "method": "Checkout"}], "timeout": "30s", "waitForReady": true},
    {"name": [{"service": "shop.Cart"}, {"service": "shop.Stock"}], "timeout": "2s",
     "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s",
                     "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}},
    {"name": [{}], "timeout": "1s"}
  ],
  "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}
}"#;

fn parse(c: &mut Criterion) {
    let parser = ServiceConfigParser::new();
    let mut group = c.benchmark_group("service_config/parse");
    for (name, json) in [("round_robin", ROUND_ROBIN), ("typical", TYPICAL)] {
        group.bench_function(name, |b| {
            b.iter(|| parser.parse(black_box(json)).unwrap());
        });
    }
    group.finish();
}

fn lookup(c: &mut Criterion) {
    // 100 services of 10 methods each, every method named, plus a default.
    let mut entries = Vec::new();
    for service in 0..100 {
        for method in 0..10 {
            entries.push(format!(
                r#"{{"name": [{{"service": "pkg.Service{service}", "method": "Method{method}"}}], "timeout": "1s"}}"#
            ));
        }
        entries.push(format!(
            r#"{{"name": [{{"service": "pkg.Service{service}"}}], "timeout": "2s"}}"#
        ));
    }
    entries.push(r#"{"name": [{}], "timeout": "3s"}"#.to_owned());
    let json = format!(r#"{{"methodConfig": [{}]}}"#, entries.join(","));
    let config = ServiceConfigParser::new().parse(&json).unwrap();
    let mut group = c.benchmark_group("service_config/for_path (1,101 names)");
    for (name, path) in [
        ("method", "/pkg.Service57/Method3"),
        ("service", "/pkg.Service57/Other"),
        ("default", "/other.Service/Method"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| config.methods.for_path(black_box(path)).unwrap().timeout);
        });
    }
    group.finish();
}

criterion_group!(benches, parse, lookup);
criterion_main!(benches);
