//! Each built-in policy's fields, as gRPC's documents name them, read into croupier's configs.

use std::time::Duration;

use croupier::policy::{RingHashConfig, WeightedRoundRobinConfig};
use croupier::service_config::LoadBalancingConfig;

use super::lb_list;

#[test]
fn pick_first_reads_shuffle_address_list() {
    let LoadBalancingConfig::PickFirst(config) =
        lb_list(r#"[{"pick_first": {"shuffleAddressList": true}}]"#)
    else {
        panic!("pick_first");
    };
    assert!(config.shuffle_address_list);
    let LoadBalancingConfig::PickFirst(config) = lb_list(r#"[{"pick_first": {}}]"#) else {
        panic!("pick_first");
    };
    assert!(!config.shuffle_address_list);
}

#[test]
fn least_request_choice_count_defaults_to_2_and_is_clamped_to_10() {
    let count = |list: &str| match lb_list(list) {
        LoadBalancingConfig::LeastRequest(config) => config.choice_count,
        other => panic!("{other:?}"),
    };
    assert_eq!(count(r#"[{"least_request_experimental": {}}]"#), 2);
    assert_eq!(count(r#"[{"least_request": {"choiceCount": 3}}]"#), 3);
    assert_eq!(
        count(r#"[{"least_request": {"choiceCount": "4"}}]"#),
        4,
        "an integer as a string"
    );
    assert_eq!(
        count(r#"[{"least_request": {"choiceCount": 5.0}}]"#),
        5,
        "an integral float"
    );
    assert_eq!(count(r#"[{"least_request": {"choiceCount": 11}}]"#), 10);
    assert_eq!(
        count(r#"[{"least_request": {"choiceCount": 4000000000}}]"#),
        10
    );
}

#[test]
fn weighted_round_robin_reads_a58_fields_and_floors_the_update_period() {
    let LoadBalancingConfig::WeightedRoundRobin(config) = lb_list(
        r#"[{"weighted_round_robin": {
            "enableOobLoadReport": true, "oobReportingPeriod": "5s",
            "blackoutPeriod": "2.5s", "weightExpirationPeriod": "60s",
            "weightUpdatePeriod": "0.01s", "errorUtilizationPenalty": "1.5"
        }}]"#,
    ) else {
        panic!("weighted_round_robin");
    };
    assert_eq!(config.blackout_period, Duration::from_millis(2500));
    assert_eq!(config.weight_expiration_period, Duration::from_secs(60));
    assert_eq!(config.weight_update_period, Duration::from_millis(100));
    assert_eq!(config.error_utilization_penalty, 1.5);
    let LoadBalancingConfig::WeightedRoundRobin(defaults) =
        lb_list(r#"[{"weighted_round_robin": {}}]"#)
    else {
        panic!("weighted_round_robin");
    };
    assert_eq!(defaults, WeightedRoundRobinConfig::default());
}

#[test]
fn ring_hash_reads_sizes_as_numbers_or_strings_and_the_header() {
    let LoadBalancingConfig::RingHash(config) = lb_list(
        r#"[{"ring_hash_experimental": {"minRingSize": "10", "maxRingSize": 8388608, "requestHashHeader": "X-User"}}]"#,
    ) else {
        panic!("ring_hash");
    };
    assert_eq!(config.min_ring_size, 10);
    assert_eq!(config.max_ring_size, 8_388_608);
    assert_eq!(config.hash_header().map(|h| h.as_str()), Some("x-user"));
    let LoadBalancingConfig::RingHash(config) =
        lb_list(r#"[{"ring_hash": {"requestHashHeader": ""}}]"#)
    else {
        panic!("ring_hash");
    };
    assert_eq!(
        config,
        RingHashConfig::default(),
        "an empty header is no header"
    );
}

#[test]
fn croupiers_own_policies_have_camel_case_fields() {
    let LoadBalancingConfig::PeakEwma(config) =
        lb_list(r#"[{"p2c_ewma": {"decay": "5s", "defaultRtt": "0.002s"}}]"#)
    else {
        panic!("p2c_ewma");
    };
    assert_eq!(config.decay, Duration::from_secs(5));
    assert_eq!(config.default_rtt, Duration::from_millis(2));
    assert_eq!(lb_list(r#"[{"random": {}}]"#).name(), "random");
}

#[test]
fn outlier_detection_reads_a50_fields_and_a_child_list() {
    let LoadBalancingConfig::OutlierDetection { config, child } = lb_list(
        r#"[{"outlier_detection_experimental": {
            "interval": "1s", "baseEjectionTime": "2s", "maxEjectionTime": "20s",
            "maxEjectionPercent": 50,
            "successRateEjection": {"stdevFactor": 1000, "enforcementPercentage": 90, "minimumHosts": 3, "requestVolume": 10},
            "failurePercentageEjection": {"threshold": 60, "minimumHosts": 2, "requestVolume": "20"},
            "childPolicy": [{"unknown_child": {}}, {"least_request_experimental": {"choiceCount": 3}}]
        }}]"#,
    ) else {
        panic!("outlier_detection");
    };
    assert_eq!(config.interval, Duration::from_secs(1));
    assert_eq!(config.base_ejection_time, Duration::from_secs(2));
    assert_eq!(config.max_ejection_time, Duration::from_secs(20));
    assert_eq!(config.max_ejection_percent, 50);
    let success = config.success_rate_ejection.clone().unwrap();
    assert_eq!(
        (
            success.stdev_factor,
            success.enforcement_percentage,
            success.minimum_hosts,
            success.request_volume
        ),
        (1000, 90, 3, 10)
    );
    let failure = config.failure_percentage_ejection.clone().unwrap();
    assert_eq!(
        (
            failure.threshold,
            failure.enforcement_percentage,
            failure.minimum_hosts,
            failure.request_volume
        ),
        (60, 100, 2, 20),
        "enforcement defaults to 100 once the algorithm is configured"
    );
    assert!(matches!(*child, LoadBalancingConfig::LeastRequest(ref c) if c.choice_count == 3));
    assert_eq!(config.child_policy.name(), "least_request");
}

#[test]
fn outlier_detection_algorithms_are_off_unless_configured() {
    let LoadBalancingConfig::OutlierDetection { config, child } = lb_list(
        r#"[{"outlier_detection": {"childPolicy": [{"outlier_detection": {"childPolicy": [{"round_robin": {}}]}}]}}]"#,
    ) else {
        panic!("outlier_detection");
    };
    assert!(config.success_rate_ejection.is_none());
    assert!(config.failure_percentage_ejection.is_none());
    assert_eq!(config.interval, Duration::from_secs(10));
    assert_eq!(config.max_ejection_percent, 10);
    // The child list is a loadBalancingConfig of its own, so it nests.
    let LoadBalancingConfig::OutlierDetection {
        child: grandchild, ..
    } = *child
    else {
        panic!("nested outlier_detection");
    };
    assert_eq!(grandchild.name(), "round_robin");
}
