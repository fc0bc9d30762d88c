//! The comparison's table and picture.

use std::time::Duration;

use croupier_sim::{builtin_routers, compare, draw, Scenario, ScenarioName};

fn short(name: ScenarioName) -> Scenario {
    let mut scenario = Scenario::builtin(name);
    scenario.duration = Duration::from_secs(4);
    scenario.events.retain(|(at, _)| *at < scenario.duration);
    scenario
}

#[test]
fn the_table_has_a_row_per_router_and_does_not_depend_on_threads() {
    let scenario = short(ScenarioName::S2);
    let routers = builtin_routers();
    let one = compare(&scenario, &routers, &[1, 2, 3], 1);
    let two = compare(&scenario, &routers, &[1, 2, 3], 2);
    let table = one.to_string();
    assert_eq!(table, two.to_string());
    assert_eq!(one.rows.len(), routers.len());
    for router in &routers {
        let row = format!("| {} |", router.label());
        assert_eq!(table.matches(&row).count(), 1, "{row} in\n{table}");
    }
    assert!(
        table.starts_with("S2: S1 with backend 0 five times slower"),
        "{table}"
    );
    // The references are labelled as such, and only they.
    assert_eq!(table.matches("[ref]").count(), 2);
    assert!(one.rows.iter().all(|row| row.first_call_back.is_none()));
}

#[test]
fn a_crash_scenario_reports_when_the_backend_was_back() {
    let mut scenario = short(ScenarioName::S5);
    scenario.duration = Duration::from_secs(8);
    scenario.events = vec![
        (
            Duration::from_secs(2),
            croupier_sim::FleetEvent::Crash { backend: 0 },
        ),
        (
            Duration::from_secs(3),
            croupier_sim::FleetEvent::Restart { backend: 0 },
        ),
    ];
    let comparison = compare(&scenario, &builtin_routers(), &[1], 2);
    let table = comparison.to_string();
    assert!(
        table.contains("| first call back | all clients back |"),
        "{table}"
    );
    for row in &comparison.rows {
        let first = row.first_call_back.expect("a restart");
        let every = row.every_client_back.expect("a restart");
        assert!(first <= every, "{}: {first:?} {every:?}", row.router);
    }
}

#[test]
fn the_picture_is_an_svg_with_a_chart_pair_per_router() {
    let scenario = short(ScenarioName::S4);
    let routers = builtin_routers();
    let comparison = compare(&scenario, &routers, &[1], 2);
    let path = std::env::temp_dir().join(format!("croupier-sim-test-{}.svg", std::process::id()));
    draw(&comparison, &path).expect("drawn");
    let svg = std::fs::read_to_string(&path).expect("written");
    // The same runs draw the same picture, byte for byte.
    let again = compare(&scenario, &routers, &[1], 1);
    draw(&again, &path).expect("drawn");
    assert_eq!(std::fs::read_to_string(&path).expect("written"), svg);
    let _ = std::fs::remove_file(&path);
    assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
    assert!(svg.trim_end().ends_with("</svg>"));
    for router in &routers {
        // Text is escaped in SVG: `[ref] ...` stays as is, but check the plain part of the label.
        let label = router.label().trim_start_matches("[ref] ");
        assert!(svg.contains(&format!("{label}: calls/s")), "{label}");
        assert!(svg.contains(&format!("{label}: p99 ms")), "{label}");
    }
    // Backend 0's thick red line is there.
    assert!(svg.contains("#D62728"), "no red line");
    // A directory that does not exist is an error, not a panic.
    let nowhere = std::env::temp_dir().join("croupier-sim-no-such-dir/x/y.svg");
    assert!(draw(&comparison, &nowhere).is_err());
}
