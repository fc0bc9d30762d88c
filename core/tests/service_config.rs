//! Service configs as gRPC's documents and its clients' parsers define them: what each valid
//! config parses to, and the exact place and message of each invalid one.
#![cfg(feature = "service-config")]

#[path = "service_config/methods.rs"]
mod methods;
#[path = "service_config/policies.rs"]
mod policies;
#[path = "service_config/trees.rs"]
mod trees;

use croupier::policy::RoundRobinConfig;
use croupier::service_config::{
    LoadBalancingConfig, ServiceConfig, ServiceConfigErrorKind, ServiceConfigParser,
};
use croupier::PolicyConfig;

fn parse(json: &str) -> ServiceConfig {
    match ServiceConfigParser::new().parse(json) {
        Ok(config) => config,
        Err(error) => panic!("{json} should parse, got: {error}"),
    }
}

fn lb(json: &str) -> LoadBalancingConfig {
    parse(json).load_balancing.expect("a policy was chosen")
}

fn lb_list(list: &str) -> LoadBalancingConfig {
    lb(&format!(r#"{{"loadBalancingConfig": {list}}}"#))
}

/// Every invalid config, with the exact error it gets: `path: message`.
const INVALID: &[(&str, &str)] = &[
    // The document itself.
    ("", "the service config is not valid JSON: EOF while parsing a value at line 1 column 0"),
    ("[]", "expected an object, got []"),
    (
        r#"{"loadBalancingConfig": [{"round_robin": {}}], "loadBalancingConfig": [{"pick_first": {}}]}"#,
        r#"the service config is not valid JSON: duplicate key "loadBalancingConfig" at line 1 column 68"#,
    ),
    (
        r#"{"methodConfig": [{"name": [{}], "timeout": "1s", "timeout": "2s"}]}"#,
        r#"the service config is not valid JSON: duplicate key "timeout" at line 1 column 59"#,
    ),
    // loadBalancingConfig's shape.
    (r#"{"loadBalancingConfig": {}}"#, "loadBalancingConfig: expected a list, got {}"),
    (r#"{"loadBalancingConfig": []}"#, "loadBalancingConfig: no known load-balancing policy among an empty list"),
    (
        r#"{"loadBalancingConfig": [{"grpclb": {}}, {"xds_cluster_impl": {}}]}"#,
        r#"loadBalancingConfig: no known load-balancing policy among "grpclb", "xds_cluster_impl""#,
    ),
    (r#"{"loadBalancingConfig": ["round_robin"]}"#, r#"loadBalancingConfig[0]: expected an object, got "round_robin""#),
    (
        r#"{"loadBalancingConfig": [{}]}"#,
        "loadBalancingConfig[0]: a loadBalancingConfig entry must have exactly one field, the policy's name, got 0",
    ),
    (
        r#"{"loadBalancingConfig": [{"round_robin": {}, "pick_first": {}}]}"#,
        "loadBalancingConfig[0]: a loadBalancingConfig entry must have exactly one field, the policy's name, got 2",
    ),
    (r#"{"loadBalancingConfig": [{"round_robin": []}]}"#, "loadBalancingConfig[0].round_robin: expected an object, got []"),
    // A known policy with a bad config is an error, not a reason to try the next entry.
    (
        r#"{"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": "yes"}}, {"round_robin": {}}]}"#,
        r#"loadBalancingConfig[0].pick_first.shuffleAddressList: expected true or false, got "yes""#,
    ),
    (r#"{"loadBalancingPolicy": "no_such_policy"}"#, r#"loadBalancingPolicy: unknown load-balancing policy "no_such_policy""#),
    (r#"{"loadBalancingPolicy": 1}"#, "loadBalancingPolicy: expected a string, got 1"),
    // ring_hash (A42, A76).
    (
        r#"{"loadBalancingConfig": [{"ring_hash_experimental": {"minRingSize": "big"}}]}"#,
        r#"loadBalancingConfig[0].ring_hash_experimental.minRingSize: expected a number, got "big""#,
    ),
    (
        r#"{"loadBalancingConfig": [{"ring_hash": {"minRingSize": 0}}]}"#,
        "loadBalancingConfig[0].ring_hash.minRingSize: must be from 1 to 8388608, got 0",
    ),
    (
        r#"{"loadBalancingConfig": [{"ring_hash": {"maxRingSize": 8388609}}]}"#,
        "loadBalancingConfig[0].ring_hash.maxRingSize: must be from 1 to 8388608, got 8388609",
    ),
    (
        r#"{"loadBalancingConfig": [{"ring_hash": {"minRingSize": 10, "maxRingSize": 5}}]}"#,
        "loadBalancingConfig[0].ring_hash: minRingSize (10) must not be larger than maxRingSize (5)",
    ),
    (
        r#"{"loadBalancingConfig": [{"ring_hash": {"minRingSize": -1}}]}"#,
        "loadBalancingConfig[0].ring_hash.minRingSize: must be a whole number from 0 to 18446744073709551615, got -1",
    ),
    (
        r#"{"loadBalancingConfig": [{"ring_hash": {"minRingSize": 1.5}}]}"#,
        "loadBalancingConfig[0].ring_hash.minRingSize: must be a whole number from 0 to 18446744073709551615, got 1.5",
    ),
    (
        r#"{"loadBalancingConfig": [{"ring_hash": {"requestHashHeader": "session-bin"}}]}"#,
        r#"loadBalancingConfig[0].ring_hash.requestHashHeader: ring_hash request_hash_header "session-bin" is a binary header; name a text header"#,
    ),
    (
        r#"{"loadBalancingConfig": [{"ring_hash": {"requestHashHeader": "two words"}}]}"#,
        r#"loadBalancingConfig[0].ring_hash.requestHashHeader: ring_hash request_hash_header "two words" is not a valid header name"#,
    ),
    // least_request (A48).
    (
        r#"{"loadBalancingConfig": [{"least_request_experimental": {"choiceCount": 1}}]}"#,
        "loadBalancingConfig[0].least_request_experimental.choiceCount: must be at least 2, got 1",
    ),
    (
        r#"{"loadBalancingConfig": [{"least_request": {"choiceCount": 4294967296}}]}"#,
        "loadBalancingConfig[0].least_request.choiceCount: must be a whole number from 0 to 4294967295, got 4294967296",
    ),
    // weighted_round_robin (A58).
    (
        r#"{"loadBalancingConfig": [{"weighted_round_robin": {"blackoutPeriod": "10"}}]}"#,
        r#"loadBalancingConfig[0].weighted_round_robin.blackoutPeriod: a duration must end in "s", as in "1.5s""#,
    ),
    (
        r#"{"loadBalancingConfig": [{"weighted_round_robin": {"blackoutPeriod": 10}}]}"#,
        r#"loadBalancingConfig[0].weighted_round_robin.blackoutPeriod: expected a duration such as "1.5s", got 10"#,
    ),
    (
        r#"{"loadBalancingConfig": [{"weighted_round_robin": {"weightExpirationPeriod": "-3s"}}]}"#,
        "loadBalancingConfig[0].weighted_round_robin.weightExpirationPeriod: a duration must not be negative",
    ),
    (
        r#"{"loadBalancingConfig": [{"weighted_round_robin": {"errorUtilizationPenalty": -0.5}}]}"#,
        "loadBalancingConfig[0].weighted_round_robin.errorUtilizationPenalty: must not be negative, got -0.5",
    ),
    (
        r#"{"loadBalancingConfig": [{"weighted_round_robin": {"enableOobLoadReport": 1}}]}"#,
        "loadBalancingConfig[0].weighted_round_robin.enableOobLoadReport: expected true or false, got 1",
    ),
    (
        r#"{"loadBalancingConfig": [{"weighted_round_robin": {"oobReportingPeriod": "1.0000000001s"}}]}"#,
        "loadBalancingConfig[0].weighted_round_robin.oobReportingPeriod: a duration has at most 9 digits after the point (nanoseconds)",
    ),
    // outlier_detection (A50).
    (
        r#"{"loadBalancingConfig": [{"outlier_detection_experimental": {}}]}"#,
        "loadBalancingConfig[0].outlier_detection_experimental: childPolicy is required",
    ),
    (
        r#"{"loadBalancingConfig": [{"outlier_detection": {"childPolicy": [{"nope": {}}]}}]}"#,
        r#"loadBalancingConfig[0].outlier_detection.childPolicy: no known load-balancing policy among "nope""#,
    ),
    (
        r#"{"loadBalancingConfig": [{"outlier_detection": {"childPolicy": [{"ring_hash": {"maxRingSize": "x"}}]}}]}"#,
        r#"loadBalancingConfig[0].outlier_detection.childPolicy[0].ring_hash.maxRingSize: expected a number, got "x""#,
    ),
    (
        r#"{"loadBalancingConfig": [{"outlier_detection": {"maxEjectionPercent": 101, "childPolicy": [{"round_robin": {}}]}}]}"#,
        "loadBalancingConfig[0].outlier_detection.maxEjectionPercent: is a percentage, at most 100, got 101",
    ),
    (
        r#"{"loadBalancingConfig": [{"outlier_detection": {"childPolicy": [{"round_robin": {}}], "successRateEjection": {"enforcementPercentage": 200}}}]}"#,
        "loadBalancingConfig[0].outlier_detection.successRateEjection.enforcementPercentage: is a percentage, at most 100, got 200",
    ),
    (
        r#"{"loadBalancingConfig": [{"outlier_detection": {"childPolicy": [{"round_robin": {}}], "failurePercentageEjection": {"threshold": 150}}}]}"#,
        "loadBalancingConfig[0].outlier_detection.failurePercentageEjection.threshold: is a percentage, at most 100, got 150",
    ),
    (
        r#"{"loadBalancingConfig": [{"outlier_detection": {"childPolicy": [{"round_robin": {}}], "interval": "ten seconds"}}]}"#,
        r#"loadBalancingConfig[0].outlier_detection.interval: a duration must be a decimal number of seconds, as in "1.5s""#,
    ),
    (
        r#"{"loadBalancingConfig": [{"outlier_detection": {"childPolicy": [{"round_robin": {}}], "baseEjectionTime": "1.5.0s"}}]}"#,
        r#"loadBalancingConfig[0].outlier_detection.baseEjectionTime: a duration must be a decimal number of seconds, as in "1.5s""#,
    ),
    (
        r#"{"loadBalancingConfig": [{"outlier_detection": {"childPolicy": [{"round_robin": {}}], "maxEjectionTime": "315576000001s"}}]}"#,
        "loadBalancingConfig[0].outlier_detection.maxEjectionTime: a duration is at most 315576000000s",
    ),
    // methodConfig names (doc/service_config.md).
    (r#"{"methodConfig": {}}"#, "methodConfig: expected a list, got {}"),
    (
        r#"{"methodConfig": [{"name": [{"method": "Get"}]}]}"#,
        r#"methodConfig[0].name[0]: method "Get" needs a service: an empty service may only go with an empty method"#,
    ),
    (
        r#"{"methodConfig": [{"name": [{"service": "a.B"}]}, {"name": [{"service": "a.B", "method": ""}]}]}"#,
        r#"methodConfig[1].name[0]: service "a.B" is named by an earlier method config"#,
    ),
    (
        r#"{"methodConfig": [{"name": [{"service": "a.B", "method": "C"}, {"service": "a.B", "method": "C"}]}]}"#,
        "methodConfig[0].name[1]: method a.B/C is named by an earlier method config",
    ),
    (
        r#"{"methodConfig": [{"name": [{}]}, {"name": [{"service": ""}]}]}"#,
        "methodConfig[1].name[0]: a second default method config ({})",
    ),
    (r#"{"methodConfig": [{"name": [{"service": 7}]}]}"#, "methodConfig[0].name[0].service: expected a string, got 7"),
    (r#"{"methodConfig": [{"name": {"service": "a.B"}}]}"#, r#"methodConfig[0].name: expected a list, got {"service":"a.B"}"#),
    // methodConfig settings.
    (r#"{"methodConfig": [{"name": [{}], "timeout": "1m"}]}"#, r#"methodConfig[0].timeout: a duration must end in "s", as in "1.5s""#),
    (r#"{"methodConfig": [{"name": [{}], "waitForReady": "true"}]}"#, r#"methodConfig[0].waitForReady: expected true or false, got "true""#),
    (
        r#"{"methodConfig": [{"name": [{}], "maxRequestMessageBytes": "lots"}]}"#,
        r#"methodConfig[0].maxRequestMessageBytes: expected a number, got "lots""#,
    ),
    // retryPolicy (A6).
    (
        r#"{"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 1, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#,
        "methodConfig[0].retryPolicy.maxAttempts: must be at least 2, got 1",
    ),
    (
        r#"{"methodConfig": [{"name": [{}], "retryPolicy": {"initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#,
        "methodConfig[0].retryPolicy: maxAttempts is required",
    ),
    (
        r#"{"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 2, "initialBackoff": "0s", "maxBackoff": "1s", "backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#,
        "methodConfig[0].retryPolicy.initialBackoff: must be more than 0s",
    ),
    (
        r#"{"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "0.000s", "backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#,
        "methodConfig[0].retryPolicy.maxBackoff: must be more than 0s",
    ),
    (
        r#"{"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 0, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#,
        "methodConfig[0].retryPolicy.backoffMultiplier: must be more than 0, got 0",
    ),
    (
        r#"{"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": -1.5, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#,
        "methodConfig[0].retryPolicy.backoffMultiplier: must be more than 0, got -1.5",
    ),
    (
        r#"{"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": []}}]}"#,
        "methodConfig[0].retryPolicy.retryableStatusCodes: must name at least one status code, or perAttemptRecvTimeout be set",
    ),
    (
        r#"{"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "NOT_A_CODE"]}}]}"#,
        r#"methodConfig[0].retryPolicy.retryableStatusCodes[1]: is not a gRPC status code, got "NOT_A_CODE""#,
    ),
    (
        r#"{"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": [17]}}]}"#,
        "methodConfig[0].retryPolicy.retryableStatusCodes[0]: is not a gRPC status code, got 17",
    ),
    (
        r#"{"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": [true]}}]}"#,
        "methodConfig[0].retryPolicy.retryableStatusCodes[0]: expected a status code name or number, got true",
    ),
    (
        r#"{"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": [14], "perAttemptRecvTimeout": "0s"}}]}"#,
        "methodConfig[0].retryPolicy.perAttemptRecvTimeout: must be more than 0s",
    ),
    // hedgingPolicy (A6), and never both.
    (
        r#"{"methodConfig": [{"name": [{}], "hedgingPolicy": {"hedgingDelay": "1s"}}]}"#,
        "methodConfig[0].hedgingPolicy: maxAttempts is required",
    ),
    (
        r#"{"methodConfig": [{"name": [{}], "hedgingPolicy": {"maxAttempts": 1}}]}"#,
        "methodConfig[0].hedgingPolicy.maxAttempts: must be at least 2, got 1",
    ),
    (
        r#"{"methodConfig": [{"name": [{}], "hedgingPolicy": {"maxAttempts": 3, "nonFatalStatusCodes": "UNAVAILABLE"}}]}"#,
        r#"methodConfig[0].hedgingPolicy.nonFatalStatusCodes: expected a list, got "UNAVAILABLE""#,
    ),
    (
        r#"{"methodConfig": [{"name": [{}], "hedgingPolicy": {"maxAttempts": 3}, "retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": [14]}}]}"#,
        "methodConfig[0]: a method config may have a retryPolicy or a hedgingPolicy, not both",
    ),
    // retryThrottling (A6).
    (r#"{"retryThrottling": {"maxTokens": 0, "tokenRatio": 0.1}}"#, "retryThrottling.maxTokens: must be from 1 to 1000, got 0"),
    (r#"{"retryThrottling": {"maxTokens": 1001, "tokenRatio": 0.1}}"#, "retryThrottling.maxTokens: must be from 1 to 1000, got 1001"),
    (r#"{"retryThrottling": {"tokenRatio": 0.1}}"#, "retryThrottling: maxTokens is required"),
    (r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0}}"#, "retryThrottling.tokenRatio: must be at least 0.001, got 0"),
    (r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.0004}}"#, "retryThrottling.tokenRatio: must be at least 0.001, got 0.0004"),
    (r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": "NaN"}}"#, r#"retryThrottling.tokenRatio: must be a finite number, got "NaN""#),
    // healthCheckConfig.
    (r#"{"healthCheckConfig": {"serviceName": 5}}"#, "healthCheckConfig.serviceName: expected a string, got 5"),
    (r#"{"healthCheckConfig": "svc"}"#, r#"healthCheckConfig: expected an object, got "svc""#),
];

#[test]
fn every_invalid_config_names_the_path_and_the_problem() {
    let parser = ServiceConfigParser::new();
    let mut wrong = Vec::new();
    for (json, expected) in INVALID {
        match parser.parse(json) {
            Ok(config) => wrong.push(format!(
                "{json}\n  parsed: {config:?}\n  wanted: {expected}"
            )),
            Err(error) if error.to_string() != *expected => {
                wrong.push(format!("{json}\n  got:    {error}\n  wanted: {expected}"));
            }
            Err(_) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases:\n{}",
        wrong.len(),
        INVALID.len(),
        wrong.join("\n")
    );
}

#[test]
fn an_error_keeps_its_path_and_kind_apart() {
    let error = ServiceConfigParser::new()
        .parse(r#"{"loadBalancingConfig": [{"ring_hash": {"minRingSize": "big"}}]}"#)
        .unwrap_err();
    assert_eq!(error.path(), "loadBalancingConfig[0].ring_hash.minRingSize");
    assert_eq!(
        error.kind(),
        &ServiceConfigErrorKind::Type {
            expected: "a number",
            got: "\"big\"".to_owned()
        }
    );
}

#[test]
fn a_long_offending_value_is_quoted_shortened() {
    let long = "x".repeat(500);
    let json = format!(r#"{{"healthCheckConfig": {{"serviceName": ["{long}"]}}}}"#);
    let message = ServiceConfigParser::new()
        .parse(&json)
        .unwrap_err()
        .to_string();
    assert!(message.len() < 200, "{message}");
    assert!(message.ends_with("..."), "{message}");
}

#[test]
fn an_empty_config_chooses_nothing() {
    let config = parse("{}");
    assert!(config.load_balancing.is_none());
    assert!(config.policy().is_none());
    assert!(config.methods.is_empty());
    assert!(config.retry_throttling.is_none());
    assert!(config.health_check_service_name.is_none());
}

#[test]
fn unknown_fields_are_ignored_everywhere() {
    let config = parse(
        r#"{
            "someFutureField": {"anything": [1, 2]},
            "loadBalancingConfig": [{"round_robin": {"futureKnob": true}}],
            "methodConfig": [{"name": [{"service": "a.B", "futureNameField": 1}], "futureSetting": "x"}],
            "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.5, "futureRatio": 2},
            "healthCheckConfig": {"serviceName": "", "futureHealth": 1}
        }"#,
    );
    assert_eq!(config.load_balancing.unwrap().name(), "round_robin");
    assert!(config.methods.for_path("/a.B/C").is_some());
    assert_eq!(config.health_check_service_name.as_deref(), Some(""));
}

#[test]
fn grpc_go_load_balancing_example_chooses_round_robin() {
    let config = parse(r#"{"loadBalancingConfig":[{"round_robin":{}}]}"#);
    assert!(matches!(
        config.load_balancing,
        Some(LoadBalancingConfig::RoundRobin(_))
    ));
    assert_eq!(config.policy().unwrap().name(), "round_robin");
}

#[test]
fn the_first_known_policy_wins_and_unknown_ones_before_it_are_skipped() {
    let chosen =
        lb_list(r#"[{"grpclb": {"childPolicy": 1}}, {"pick_first": {}}, {"round_robin": {}}]"#);
    assert_eq!(chosen.name(), "pick_first");
    // Entries after the chosen one are not looked at, even malformed ones.
    let chosen = lb_list(r#"[{"round_robin": {}}, "not even an object"]"#);
    assert_eq!(chosen.name(), "round_robin");
}

#[test]
fn null_fields_are_absent_fields() {
    let config = parse(
        r#"{"loadBalancingConfig": null, "loadBalancingPolicy": "round_robin", "methodConfig": null}"#,
    );
    assert_eq!(config.load_balancing.unwrap().name(), "round_robin");
    let LoadBalancingConfig::RingHash(ring) = lb_list(r#"[{"ring_hash": {"minRingSize": null}}]"#)
    else {
        panic!("ring_hash");
    };
    assert_eq!(ring.min_ring_size, 1024);
}

#[test]
fn load_balancing_policy_is_read_without_a_config_list_in_any_case() {
    assert_eq!(
        lb(r#"{"loadBalancingPolicy": "ROUND_ROBIN"}"#).name(),
        "round_robin"
    );
    assert_eq!(
        lb(r#"{"loadBalancingPolicy": "pick_first"}"#).name(),
        "pick_first"
    );
    // loadBalancingConfig wins when both are given.
    let both = lb(
        r#"{"loadBalancingPolicy": "round_robin", "loadBalancingConfig": [{"pick_first": {}}]}"#,
    );
    assert_eq!(both.name(), "pick_first");
}

#[test]
fn a_registered_policy_is_parsed_by_its_own_parser() {
    let parser = ServiceConfigParser::new().policy("sticky_round_robin", |json| {
        let stickiness = json.get("stickiness").and_then(|s| s.as_str());
        match stickiness {
            Some("session") => Ok(PolicyConfig::new(RoundRobinConfig::default())),
            other => Err(format!("stickiness must be \"session\", got {other:?}")),
        }
    });
    assert!(parser.knows("sticky_round_robin"));
    assert!(parser.knows("ring_hash_experimental"));
    let config = parser
        .parse(r#"{"loadBalancingConfig": [{"sticky_round_robin": {"stickiness": "session"}}]}"#)
        .unwrap();
    assert!(matches!(
        config.load_balancing,
        Some(LoadBalancingConfig::Custom(_))
    ));
    // Its errors name it and its place; as a child of a built-in policy too.
    let error = parser
        .parse(r#"{"loadBalancingConfig": [{"outlier_detection": {"childPolicy": [{"sticky_round_robin": {}}]}}]}"#)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "loadBalancingConfig[0].outlier_detection.childPolicy[0].sticky_round_robin: \
         policy sticky_round_robin refused its config: stickiness must be \"session\", got None"
    );
    // The parser without it does not know the name.
    assert!(!ServiceConfigParser::new().knows("sticky_round_robin"));
}

#[test]
fn a_registered_parser_replaces_a_built_in_one() {
    let parser = ServiceConfigParser::new().policy("round_robin", |_| Ok(PolicyConfig::random()));
    let chosen = parser
        .parse(r#"{"loadBalancingConfig": [{"round_robin": {}}]}"#)
        .unwrap();
    assert_eq!(chosen.policy().unwrap().name(), "random");
}

#[test]
fn a_policy_holding_children_reads_their_list_with_the_same_parser() {
    let inner = ServiceConfigParser::new();
    let parser = ServiceConfigParser::new().policy("wrapper", move |json| {
        let children = json.get("children").ok_or("children is required")?;
        inner
            .load_balancing_config(children)
            .map(|child| child.policy())
            .map_err(|e| e.to_string())
    });
    let config = parser
        .parse(r#"{"loadBalancingConfig": [{"wrapper": {"children": [{"x": {}}, {"p2c_ewma": {}}]}}]}"#)
        .unwrap();
    assert_eq!(config.policy().unwrap().name(), "p2c_ewma");
}

#[test]
fn from_str_uses_the_built_in_policies() {
    let config: ServiceConfig = r#"{"loadBalancingPolicy": "round_robin"}"#.parse().unwrap();
    assert_eq!(config.policy().unwrap().name(), "round_robin");
}

#[test]
fn the_chosen_policy_runs_in_a_balancer() {
    use croupier::{Action, Balancer, BalancerConfig, Endpoint, ResolverUpdate};
    let config = parse(r#"{"loadBalancingConfig": [{"round_robin": {}}]}"#);
    let start = std::time::Instant::now();
    let policy = config.policy().unwrap();
    let mut balancer = Balancer::new(BalancerConfig::default().policy(policy), 7, start);
    let backends = ["127.0.0.1:50051", "127.0.0.1:50052"];
    let endpoints = backends.map(|a| Endpoint::new(a.parse::<std::net::SocketAddr>().unwrap()));
    balancer.handle_resolver_update(ResolverUpdate::new(endpoints), start);
    let mut connects = 0;
    while let Some(action) = balancer.poll_action() {
        connects += usize::from(matches!(action, Action::Connect { .. }));
    }
    assert_eq!(
        connects, 2,
        "round_robin connects to every endpoint, pick_first to one"
    );
}

#[test]
fn a_printed_config_is_explicit_and_parses_to_the_same_config() {
    let config = parse(
        r#"{"loadBalancingConfig": [{"ring_hash_experimental": {"minRingSize": "16"}}],
            "methodConfig": [{"name": [{"service": "a.B"}, {}], "timeout": "1.5s",
                              "hedgingPolicy": {"maxAttempts": 7}}],
            "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1234}}"#,
    );
    let printed = config.to_json();
    let expected: serde_json::Value = serde_json::from_str(
        r#"{"loadBalancingConfig": [{"ring_hash": {"minRingSize": 16, "maxRingSize": 4096, "requestHashHeader": ""}}],
            "methodConfig": [
                {"name": [{"service": "a.B"}], "timeout": "1.500s",
                 "hedgingPolicy": {"maxAttempts": 7, "hedgingDelay": "0s", "nonFatalStatusCodes": []}},
                {"name": [{}], "timeout": "1.500s",
                 "hedgingPolicy": {"maxAttempts": 7, "hedgingDelay": "0s", "nonFatalStatusCodes": []}}
            ],
            "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.123}}"#,
    )
    .unwrap();
    assert_eq!(printed, expected);
    let again = ServiceConfigParser::new().parse_value(&printed).unwrap();
    assert_eq!(again.to_json(), printed);
    assert_eq!(again.methods, config.methods);
}

#[test]
fn a_custom_policy_prints_its_json_as_written() {
    let parser = ServiceConfigParser::new().policy("mine", |_| Ok(PolicyConfig::round_robin()));
    let config = parser
        .parse(r#"{"loadBalancingConfig": [{"mine": {"knob": [1, "two"]}}]}"#)
        .unwrap();
    let LoadBalancingConfig::Custom(custom) = config.load_balancing.as_ref().unwrap() else {
        panic!("custom");
    };
    assert_eq!(custom.name(), "mine");
    assert_eq!(custom.policy().name(), "round_robin");
    assert_eq!(
        config.to_json(),
        serde_json::json!({"loadBalancingConfig": [{"mine": {"knob": [1, "two"]}}]})
    );
}

#[test]
fn the_fuzz_seed_corpus_is_valid() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/service_config");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(error) = ServiceConfigParser::new().parse(&text) {
            panic!("{}: {error}", path.display());
        }
        seeds += 1;
    }
    assert!(seeds >= 10, "{seeds} seeds");
}

#[test]
fn nesting_is_bounded_by_the_json_reader() {
    let nested = |levels: usize| {
        let open = r#"{"outlier_detection": {"childPolicy": ["#.repeat(levels);
        let close = "]}}".repeat(levels);
        format!(r#"{{"loadBalancingConfig": [{open}{{"round_robin": {{}}}}{close}]}}"#)
    };
    // Twenty policies deep is fine: each level is its own child's parent.
    let mut chosen = lb(&nested(20));
    let mut depth = 0;
    while let LoadBalancingConfig::OutlierDetection { child, .. } = chosen {
        chosen = *child;
        depth += 1;
    }
    assert_eq!((depth, chosen.name()), (20, "round_robin"));
    // Far deeper input is refused by serde_json's recursion limit before the parser sees it.
    let error = ServiceConfigParser::new().parse(&nested(1000)).unwrap_err();
    assert!(
        matches!(error.kind(), ServiceConfigErrorKind::Syntax(message) if message.contains("recursion limit")),
        "{error}"
    );
}
