//! The seed's scenario, in core terms: a custom `example` scheme resolving
//! `lb.example.grpc.io` to two backends, ten calls with pick_first, then ten with round_robin.

mod support;

use croupier::{PolicyConfig, Target};
use support::*;

fn resolve_example(target: &Target) -> croupier::ResolverUpdate {
    assert_eq!(target.scheme(), "example");
    assert_eq!(target.endpoint(), "lb.example.grpc.io");
    update(&[50051, 50052])
}

fn run(policy: PolicyConfig) -> Vec<croupier::Address> {
    let target = Target::parse("example:///lb.example.grpc.io", |s| {
        matches!(s, "example" | "dns")
    })
    .expect("a registered scheme parses");
    let mut h = Harness::new(policy, 2024);
    let seen = h.resolve(resolve_example(&target));
    for address in connects(&seen) {
        h.connected(&address);
    }
    // pick_first connected only the first; round_robin both.
    (0..10).map(|_| h.pick_address().expect("READY")).collect()
}

#[test]
fn pick_first_sends_all_ten_calls_to_the_first_backend() {
    let replies = run(PolicyConfig::pick_first());
    assert!(replies.iter().all(|a| *a == addr(50051)), "{replies:?}");
}

#[test]
fn round_robin_alternates_between_the_two_backends() {
    let replies = run(PolicyConfig::round_robin());
    for pair in replies.windows(2) {
        assert_ne!(pair[0], pair[1], "{replies:?}");
    }
    assert_eq!(replies.iter().filter(|a| **a == addr(50051)).count(), 5);
}

#[test]
fn an_unregistered_scheme_is_an_error_naming_it() {
    let err = Target::parse("example:///lb.example.grpc.io", |s| s == "dns").unwrap_err();
    assert!(err.to_string().contains("example"), "{err}");
}
