//! The `request_hash` fuzz target's check, and the balancer it picks from.

use croupier::policy::RingHashConfig;
use croupier::{ConnectionEvent, ConnectivityState, Pick, PickRequest, PolicyConfig};
use croupier_testing::{update, Harness};

/// A ring_hash balancer hashing on header `x-user`, with eight READY endpoints, for
/// [`check_request_hash`]. Build it once and reuse it: it is the expensive part.
pub fn request_hash_fixture() -> Harness {
    let config = RingHashConfig::default()
        .request_hash_header("x-user")
        .expect("a valid header name");
    let mut harness = Harness::new(PolicyConfig::new(config), 11);
    harness.resolve(update(&[1, 2, 3, 4, 5, 6, 7, 8]));
    for round in 0..64u64 {
        let picker = harness.picker();
        for i in 0..256u64 {
            picker.pick(
                &PickRequest::new().with_hash((round << 8 | i).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            );
        }
        harness.exit_idle();
        let attempts = harness.attempts_in_flight();
        if attempts.is_empty() && harness.state() == ConnectivityState::Ready {
            break;
        }
        for connection in attempts {
            harness.report(connection, ConnectionEvent::Connected);
        }
    }
    harness
}

/// The check of the `request_hash` fuzz target: any header name is accepted or refused by the
/// config without a panic, and any values of the hashed header give a pick that names a READY
/// subchannel, the same one every time for the same values.
pub fn check_request_hash(fixture: &Harness, name: &str, values: &[Vec<u8>]) {
    let _ = RingHashConfig::default().request_hash_header(name);
    let mut headers = http::HeaderMap::new();
    for value in values.iter().take(8) {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            headers.append("x-user", value);
        }
    }
    let picker = fixture.picker();
    let request = PickRequest::new().with_headers(&headers);
    let first = picker.pick(&request);
    if let Pick::Ready(id) = &first {
        fixture.check_pick(*id);
    }
    // A header with one empty value counts as absent (a random hash); otherwise the hash is
    // the values', and so is the endpoint.
    let values: Vec<_> = headers.get_all("x-user").iter().collect();
    let hashed = values.len() > 1 || values.first().is_some_and(|v| !v.is_empty());
    if hashed {
        assert_eq!(
            picker.pick(&request),
            first,
            "the same header values, another endpoint"
        );
    }
}
