//! The tree policies' configs: `priority_experimental` (A56), `weighted_target_experimental`
//! and `random_subsetting` (A68), valid and invalid, and printed back.

use croupier::service_config::{LoadBalancingConfig, ServiceConfigParser};

use super::lb_list;

#[test]
fn priority_reads_children_in_the_order_of_priorities() {
    let config = lb_list(
        r#"[{"priority_experimental": {
            "children": {
                "a": {"config": [{"round_robin": {}}]},
                "b": {"config": [{"unknown_policy": {}}, {"pick_first": {}}], "ignoreReresolutionRequests": true}
            },
            "priorities": ["b", "a"]
        }}]"#,
    );
    let LoadBalancingConfig::Priority { config, children } = &config else {
        panic!("priority: {config:?}");
    };
    let names: Vec<&str> = config.children.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["b", "a"]);
    assert!(config.children[0].ignore_reresolution_requests);
    assert!(!config.children[1].ignore_reresolution_requests);
    assert_eq!(config.children[0].policy.name(), "pick_first");
    assert_eq!(children[1].name(), "round_robin");
    let policy = LoadBalancingConfig::Priority {
        config: config.clone(),
        children: children.clone(),
    };
    assert_eq!(policy.policy().name(), "priority");
}

#[test]
fn weighted_target_reads_weights_and_child_policies() {
    let config = lb_list(
        r#"[{"weighted_target_experimental": {"targets": {
            "zone-b": {"weight": "1", "childPolicy": [{"round_robin": {}}]},
            "zone-a": {"weight": 3, "childPolicy": [{"ring_hash": {}}]}
        }}}]"#,
    );
    let LoadBalancingConfig::WeightedTarget { config, targets } = &config else {
        panic!("weighted_target: {config:?}");
    };
    let read: Vec<(&str, u32)> = config
        .targets
        .iter()
        .map(|t| (&*t.name, t.weight))
        .collect();
    assert_eq!(read, [("zone-a", 3), ("zone-b", 1)]);
    assert_eq!(targets[0].name(), "ring_hash");
}

#[test]
fn random_subsetting_reads_the_size_and_the_child() {
    let config = lb_list(
        r#"[{"random_subsetting": {"subsetSize": 8, "childPolicy": [{"least_request_experimental": {}}]}}]"#,
    );
    let LoadBalancingConfig::RandomSubsetting { config, child } = &config else {
        panic!("random_subsetting: {config:?}");
    };
    assert_eq!(config.subset_size, 8);
    assert_eq!(config.child_policy.name(), "least_request");
    assert_eq!(child.name(), "least_request");
}

#[test]
fn a_tree_prints_back_under_grpcs_names_and_parses_to_itself() {
    let json = r#"{"loadBalancingConfig": [{"priority_experimental": {
        "children": {
            "p0": {"config": [{"weighted_target_experimental": {"targets": {
                "a": {"weight": 2, "childPolicy": [{"random_subsetting": {"subsetSize": 3, "childPolicy": [{"round_robin": {}}]}}]}
            }}}]},
            "p1": {"config": [{"pick_first": {}}]}
        },
        "priorities": ["p0", "p1"]
    }}]}"#;
    let parser = ServiceConfigParser::new();
    let config = parser.parse(json).unwrap();
    let printed = config.to_json();
    let text = printed.to_string();
    assert!(text.contains(r#""priority_experimental""#), "{text}");
    assert!(text.contains(r#""weighted_target_experimental""#), "{text}");
    assert!(text.contains(r#""subsetSize":3"#), "{text}");
    let again = parser.parse_value(&printed).unwrap();
    assert_eq!(again.to_json(), printed);
}

/// Each invalid tree config, with its exact error.
const INVALID: &[(&str, &str)] = &[
    (
        r#"[{"priority_experimental": {"priorities": []}}]"#,
        "loadBalancingConfig[0].priority_experimental: children is required",
    ),
    (
        r#"[{"priority_experimental": {"children": {}}}]"#,
        "loadBalancingConfig[0].priority_experimental: priorities is required",
    ),
    (
        r#"[{"priority_experimental": {"children": {"a": {"config": [{"round_robin": {}}]}}, "priorities": ["a", "b"]}}]"#,
        r#"loadBalancingConfig[0].priority_experimental.priorities[1]: names "b", which is not in children"#,
    ),
    (
        r#"[{"priority_experimental": {"children": {"a": {"config": [{"round_robin": {}}]}}, "priorities": ["a", "a"]}}]"#,
        r#"loadBalancingConfig[0].priority_experimental.priorities[1]: names "a" a second time"#,
    ),
    (
        r#"[{"priority_experimental": {"children": {"a": {"config": [{"round_robin": {}}]}, "b": {"config": []}}, "priorities": ["a"]}}]"#,
        r#"loadBalancingConfig[0].priority_experimental.children.b: child "b" is not in priorities"#,
    ),
    (
        r#"[{"priority_experimental": {"children": {"a": {}}, "priorities": ["a"]}}]"#,
        "loadBalancingConfig[0].priority_experimental.children.a: config is required",
    ),
    (
        r#"[{"priority_experimental": {"children": {"a": {"config": [{"round_robin": {}}], "ignoreReresolutionRequests": 1}}, "priorities": ["a"]}}]"#,
        "loadBalancingConfig[0].priority_experimental.children.a.ignoreReresolutionRequests: expected true or false, got 1",
    ),
    (
        r#"[{"priority_experimental": {"children": {"a": {"config": [{"ring_hash": {"minRingSize": 0}}]}}, "priorities": ["a"]}}]"#,
        "loadBalancingConfig[0].priority_experimental.children.a.config[0].ring_hash.minRingSize: must be from 1 to 8388608, got 0",
    ),
    (
        r#"[{"weighted_target_experimental": {}}]"#,
        "loadBalancingConfig[0].weighted_target_experimental: targets is required",
    ),
    (
        r#"[{"weighted_target_experimental": {"targets": {"a": {"weight": 0, "childPolicy": [{"round_robin": {}}]}}}}]"#,
        "loadBalancingConfig[0].weighted_target_experimental.targets.a.weight: must be at least 1, got 0",
    ),
    (
        r#"[{"weighted_target_experimental": {"targets": {"a": {"weight": 1}}}}]"#,
        "loadBalancingConfig[0].weighted_target_experimental.targets.a: childPolicy is required",
    ),
    (
        r#"[{"weighted_target_experimental": {"targets": {"a": {"childPolicy": []}}}}]"#,
        "loadBalancingConfig[0].weighted_target_experimental.targets.a: weight is required",
    ),
    (
        r#"[{"random_subsetting": {"childPolicy": [{"round_robin": {}}]}}]"#,
        "loadBalancingConfig[0].random_subsetting: subsetSize is required",
    ),
    (
        r#"[{"random_subsetting": {"subsetSize": 0, "childPolicy": [{"round_robin": {}}]}}]"#,
        "loadBalancingConfig[0].random_subsetting.subsetSize: must be at least 1, got 0",
    ),
    (
        r#"[{"random_subsetting": {"subsetSize": 2}}]"#,
        "loadBalancingConfig[0].random_subsetting: childPolicy is required",
    ),
    (
        r#"[{"random_subsetting": {"subsetSize": 2, "childPolicy": [{"grpclb": {}}]}}]"#,
        r#"loadBalancingConfig[0].random_subsetting.childPolicy: no known load-balancing policy among "grpclb""#,
    ),
];

#[test]
fn invalid_tree_configs_name_the_path_and_the_problem() {
    let parser = ServiceConfigParser::new();
    for (list, expected) in INVALID {
        let json = format!(r#"{{"loadBalancingConfig": {list}}}"#);
        match parser.parse(&json) {
            Ok(config) => panic!("{json} parsed: {config:?}"),
            Err(error) => assert_eq!(error.to_string(), *expected, "{json}"),
        }
    }
}
