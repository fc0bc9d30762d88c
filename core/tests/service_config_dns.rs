//! Choosing among the service configs of a DNS TXT record (gRFC A2): the first choice whose
//! criteria all match the client wins; a malformed record is an error naming its place.
#![cfg(feature = "service-config")]

use croupier::service_config::{ClientCriteria, ServiceConfigParser};

fn policy_of(client: &ClientCriteria, record: &str) -> Option<String> {
    client
        .choose([record], &ServiceConfigParser::new())
        .unwrap_or_else(|error| panic!("{record}: {error}"))
        .map(|config| {
            config
                .policy()
                .map_or("none".into(), |p| p.name().to_owned())
        })
}

fn error_of(client: &ClientCriteria, record: &str) -> String {
    client
        .choose([record], &ServiceConfigParser::new())
        .expect_err("an invalid record")
        .to_string()
}

const LANGUAGES: &str = r#"grpc_config=[
    {"clientLanguage": ["go", "java"], "serviceConfig": {"loadBalancingPolicy": "pick_first"}},
    {"clientLanguage": ["C++", "RUST"], "serviceConfig": {"loadBalancingConfig": [{"ring_hash": {}}]}},
    {"serviceConfig": {"loadBalancingConfig": [{"round_robin": {}}]}}
]"#;

#[test]
fn the_first_choice_for_the_clients_language_wins_case_insensitively() {
    assert_eq!(
        policy_of(&ClientCriteria::new(1), LANGUAGES).as_deref(),
        Some("ring_hash")
    );
}

#[test]
fn a_host_name_must_match_exactly() {
    let record = r#"grpc_config=[
        {"clientHostname": ["web-1", "web-2"], "serviceConfig": {"loadBalancingPolicy": "pick_first"}},
        {"serviceConfig": {"loadBalancingPolicy": "round_robin"}}
    ]"#;
    let on = |host: &str| policy_of(&ClientCriteria::new(1).hostname(host), record);
    assert_eq!(on("web-2").as_deref(), Some("pick_first"));
    assert_eq!(
        on("WEB-2").as_deref(),
        Some("round_robin"),
        "case sensitive"
    );
    assert_eq!(on("web-22").as_deref(), Some("round_robin"));
    assert_eq!(
        policy_of(&ClientCriteria::new(1), record).as_deref(),
        Some("round_robin")
    );
}

#[test]
fn a_percentage_takes_the_clients_that_drew_at_most_it() {
    let record = r#"grpc_config=[
        {"percentage": 0, "serviceConfig": {"loadBalancingPolicy": "random"}},
        {"percentage": 25, "serviceConfig": {"loadBalancingPolicy": "pick_first"}},
        {"percentage": 100, "serviceConfig": {"loadBalancingPolicy": "round_robin"}}
    ]"#;
    let drew = |n| policy_of(&ClientCriteria::new(n), record);
    assert_eq!(drew(1).as_deref(), Some("pick_first"));
    assert_eq!(drew(25).as_deref(), Some("pick_first"));
    assert_eq!(drew(26).as_deref(), Some("round_robin"));
    assert_eq!(drew(100).as_deref(), Some("round_robin"));
    assert_eq!(drew(0).as_deref(), Some("pick_first"), "0 counts as 1");
    // Out of 100 clients drawing 1 to 100, 25 take the canary.
    let canaries = (1..=100)
        .filter(|&n| drew(n).as_deref() == Some("pick_first"))
        .count();
    assert_eq!(canaries, 25);
}

#[test]
fn no_record_or_no_match_gives_no_config() {
    let client = ClientCriteria::new(50);
    let parser = ServiceConfigParser::new();
    assert!(client.choose(["v=spf1 -all"], &parser).unwrap().is_none());
    assert!(client.choose([], &parser).unwrap().is_none());
    let none_match = r#"grpc_config=[{"clientLanguage": ["go"], "serviceConfig": {}}]"#;
    assert_eq!(policy_of(&client, none_match), None);
    // The record is found among others.
    let found = client
        .choose(["v=spf1 -all", LANGUAGES], &parser)
        .unwrap()
        .expect("a choice");
    assert_eq!(found.policy().unwrap().name(), "ring_hash");
}

#[test]
fn a_malformed_record_is_an_error_naming_its_place() {
    let client = ClientCriteria::new(50);
    let unknown =
        r#"grpc_config=[{"serviceConfig": {}}, {"clientLang": ["rust"], "serviceConfig": {}}]"#;
    let error = error_of(&client, unknown);
    assert!(
        error.starts_with("[1]: unknown field \"clientLang\""),
        "{error}"
    );
    let percent = r#"grpc_config=[{"percentage": 101, "serviceConfig": {}}]"#;
    assert!(
        error_of(&client, percent).starts_with("[0].percentage: "),
        "{}",
        error_of(&client, percent)
    );
    let fraction = r#"grpc_config=[{"percentage": 2.5, "serviceConfig": {}}]"#;
    assert!(error_of(&client, fraction).starts_with("[0].percentage: "));
    let missing = r#"grpc_config=[{"percentage": 10}]"#;
    assert_eq!(error_of(&client, missing), "[0]: serviceConfig is required");
    let not_object = r#"grpc_config=[{"serviceConfig": "round_robin"}]"#;
    assert!(error_of(&client, not_object).starts_with("[0].serviceConfig: expected an object"));
    let chosen_invalid = r#"grpc_config=[{"serviceConfig": {"loadBalancingConfig": [{"ring_hash": {"minRingSize": 0}}]}}]"#;
    let error = error_of(&client, chosen_invalid);
    assert!(
        error.starts_with("[0].serviceConfig.loadBalancingConfig[0].ring_hash.minRingSize: "),
        "{error}"
    );
    let not_json = "grpc_config=[{";
    assert!(error_of(&client, not_json).contains("not valid JSON"));
    let not_list = r#"grpc_config={"serviceConfig": {}}"#;
    assert!(
        error_of(&client, not_list).starts_with("expected a list"),
        "{}",
        error_of(&client, not_list)
    );
}
