//! Replays every input of the fuzz corpora (fuzz/corpus/<target>/) through the same checks the
//! fuzz targets make, so whatever a fuzzer once found stays fixed, on stable Rust, in every run.

use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use croupier_fuzz_checks::{
    check_policy_choice, check_request_hash, check_service_config, check_target,
    request_hash_fixture,
};
use croupier_testing::Scenario;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    // A fuzzer running beside the tests may remove files as it minimises: skip what vanished.
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let bytes = std::fs::read(&path).ok()?;
            Some((path, bytes))
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "the {target} corpus is empty");
    inputs
}

#[test]
fn balancer_inputs_corpus_replays_cleanly() {
    let mut replayed = 0;
    for (_, bytes) in corpus("balancer_inputs") {
        // Decoded exactly as libFuzzer's `fuzz_target!(|scenario: Scenario| ...)` decodes it.
        if let Ok(scenario) = Scenario::arbitrary_take_rest(Unstructured::new(&bytes)) {
            scenario.run();
            replayed += 1;
        }
    }
    assert!(replayed > 0);
}

#[test]
fn target_parse_corpus_replays_cleanly() {
    for (_, bytes) in corpus("target_parse") {
        check_target(&bytes);
    }
}

#[test]
fn service_config_corpus_replays_cleanly() {
    for (_, bytes) in corpus("service_config") {
        check_service_config(&bytes);
    }
}

#[test]
fn policy_params_corpus_replays_cleanly() {
    for (_, bytes) in corpus("policy_params") {
        let decoded =
            <(String, Vec<(String, String)>)>::arbitrary_take_rest(Unstructured::new(&bytes));
        if let Ok((name, params)) = decoded {
            check_policy_choice(&name, &params);
        }
    }
}

#[test]
fn request_hash_corpus_replays_cleanly() {
    let fixture = request_hash_fixture();
    for (_, bytes) in corpus("request_hash") {
        let decoded = <(String, Vec<Vec<u8>>)>::arbitrary_take_rest(Unstructured::new(&bytes));
        if let Ok((name, values)) = decoded {
            check_request_hash(&fixture, &name, &values);
        }
    }
}

#[test]
fn the_request_hash_fixture_is_ready() {
    let fixture = request_hash_fixture();
    assert_eq!(fixture.state(), croupier::ConnectivityState::Ready);
    let mut headers = http::HeaderMap::new();
    headers.insert("x-user", http::HeaderValue::from_static("alice"));
    let request = croupier::PickRequest::new().with_headers(&headers);
    assert!(matches!(
        fixture.picker().pick(&request),
        croupier::Pick::Ready(_)
    ));
}
