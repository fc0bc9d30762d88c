//! A scenario run without and with retries or hedging, router by router: what the policy gains
//! in latency and failures, and what it costs the fleet in attempts and server work.

use std::fmt::{self, Write as _};
use std::time::Duration;

use croupier::retry::{CallPolicy, CodeSet, HedgingPolicy, RetryPolicy};
use croupier::{Code, PolicyConfig};

use crate::compare::{compare, ms, Comparison, Row};
use crate::retry::{Cancellation, RetrySpec};
use crate::router::Router;
use crate::scenario::{FleetEvent, Scenario, ScenarioName};

/// The `hedgingDelay` of the built-in studies: the p95 of call latency in S1 (the healthy fleet
/// that S2 and S4 damage) under round_robin without hedging, 32.6 ms (the median over seeds 1
/// to 3), rounded to the millisecond. A hedge then goes out for about one call in twenty on a
/// good day, and for every call held up past a good day's p95 on a bad one.
pub const HEDGING_DELAY: Duration = Duration::from_millis(33);

/// A scenario, the routers to run it with, and the retry or hedging specs to run it under, each
/// compared with the scenario as it is (every call one attempt).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RetryStudy {
    /// The scenario, whose own `retry` is ignored: the study sets it.
    pub scenario: Scenario,
    /// The routers.
    pub routers: Vec<Router>,
    /// The specs, each run beside the scenario without one.
    pub specs: Vec<RetrySpec>,
}

/// `UNAVAILABLE`: what a crashed or failing backend answers, the code every built-in policy
/// retries or hedges past.
fn unavailable() -> CodeSet {
    CodeSet::new().with(Code::Unavailable)
}

/// Hedging by `max_attempts` copies every [`HEDGING_DELAY`], past `UNAVAILABLE`.
pub fn hedging(max_attempts: u32) -> RetrySpec {
    let policy = HedgingPolicy::new(max_attempts.max(2), HEDGING_DELAY, unavailable())
        .map_or(CallPolicy::None, CallPolicy::Hedging);
    RetrySpec::new(policy)
}

/// Retries of `UNAVAILABLE`, up to `max_attempts`, with the backoff of gRFC A6's example
/// (initial 100 ms, multiplier 2, at most 1 s).
pub fn retries(max_attempts: u32) -> RetrySpec {
    let policy = RetryPolicy::new(
        max_attempts.max(2),
        Duration::from_millis(100),
        Duration::from_secs(1),
        2.0,
        unavailable(),
    )
    .map_or(CallPolicy::None, CallPolicy::Retry);
    RetrySpec::new(policy)
}

impl RetryStudy {
    /// The built-in study of a scenario, if it has one: hedging (2 attempts) over round_robin
    /// and p2c_ewma in S2 and S4 (in S2 also with backends that finish cancelled copies);
    /// retries (3 attempts) in S5 over round_robin, least_request and p2c_ewma.
    pub fn builtin(name: ScenarioName) -> Option<RetryStudy> {
        let policy = |label: &str, config| Router::policy(label, config);
        let (routers, specs) = match name {
            ScenarioName::S2 => (
                vec![
                    policy("round_robin", PolicyConfig::round_robin()),
                    policy("p2c_ewma", PolicyConfig::p2c_ewma()),
                ],
                vec![
                    hedging(2),
                    hedging(2).cancellation(Cancellation::FinishesWork),
                ],
            ),
            ScenarioName::S4 => (
                vec![
                    policy("round_robin", PolicyConfig::round_robin()),
                    policy("p2c_ewma", PolicyConfig::p2c_ewma()),
                ],
                vec![hedging(2)],
            ),
            ScenarioName::S5 => (
                vec![
                    policy("round_robin", PolicyConfig::round_robin()),
                    policy("least_request", PolicyConfig::least_request()),
                    policy("p2c_ewma", PolicyConfig::p2c_ewma()),
                ],
                vec![retries(3)],
            ),
            _ => return None,
        };
        Some(RetryStudy {
            scenario: Scenario::builtin(name),
            routers,
            specs,
        })
    }

    /// A full outage: S1 with every backend failing every call it serves with `UNAVAILABLE`
    /// from 10 s to 15 s, its connections up, under round_robin and p2c_ewma, retried (3
    /// attempts) without a throttle and with gRFC A6's example one (10 tokens, ratio 0.1).
    pub fn outage() -> RetryStudy {
        let mut scenario = Scenario::builtin(ScenarioName::S1);
        scenario.name = "outage".to_owned();
        scenario.description =
            "S1, with every backend failing every call it serves from 10 s to 15 s".to_owned();
        for backend in 0..scenario.backends.len() {
            for (at, probability) in [(10, 1.0), (15, 0.0)] {
                let event = FleetEvent::Errors {
                    backend,
                    probability,
                };
                scenario.events.push((Duration::from_secs(at), event));
            }
        }
        let throttled = retries(3).throttle(10, 0.1);
        RetryStudy {
            scenario,
            routers: vec![
                Router::policy("round_robin", PolicyConfig::round_robin()),
                Router::policy("p2c_ewma", PolicyConfig::p2c_ewma()),
            ],
            specs: std::iter::once(retries(3)).chain(throttled).collect(),
        }
    }

    /// Runs the study with each seed, on up to `threads` threads (which never changes a figure).
    pub fn run(&self, seeds: &[u64], threads: usize) -> RetryComparison {
        let mut plain = self.scenario.clone();
        plain.retry = None;
        let without = compare(&plain, &self.routers, seeds, threads);
        let with = self
            .specs
            .iter()
            .map(|spec| {
                let mut scenario = plain.clone();
                scenario.retry = Some(spec.clone());
                (
                    spec.clone(),
                    compare(&scenario, &self.routers, seeds, threads),
                )
            })
            .collect();
        RetryComparison { without, with }
    }
}

/// A [`RetryStudy`]'s results: the scenario without a policy, and under each spec.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RetryComparison {
    /// Every call one attempt.
    pub without: Comparison,
    /// Under each spec.
    pub with: Vec<(RetrySpec, Comparison)>,
}

impl RetryComparison {
    /// The row of `router` under `spec` (`None`: without a policy).
    pub fn row(&self, router: &str, spec: Option<usize>) -> Option<&Row> {
        let comparison = match spec {
            None => &self.without,
            Some(index) => &self.with.get(index)?.1,
        };
        comparison.rows.iter().find(|row| row.router == router)
    }
}

impl fmt::Display for RetryComparison {
    /// A Markdown table: latencies in milliseconds; the work relative to the same router's run
    /// without a policy.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.without.scenario;
        writeln!(
            f,
            "{} with and without {}: {} ({} clients, {:.0} calls/s, {} s, medians of seeds {:?})",
            s.name,
            self.with
                .iter()
                .map(|(spec, _)| spec.to_string())
                .collect::<Vec<_>>()
                .join("; "),
            s.description,
            s.clients,
            s.rate,
            s.duration.as_secs(),
            self.without.seeds
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| policy | calls | p50 | p99 | p99.9 | failed | unfinished | attempts per call | \
             server work per call | attempts on a backend already tried |"
        )?;
        writeln!(f, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for base in &self.without.rows {
            let runs = std::iter::once(("as they are".to_owned(), base)).chain(
                self.with.iter().filter_map(|(spec, comparison)| {
                    let row = comparison.rows.iter().find(|r| r.router == base.router)?;
                    Some((spec.to_string(), row))
                }),
            );
            for (label, row) in runs {
                let work = row.work_per_call.as_secs_f64() / base.work_per_call.as_secs_f64();
                let mut line = format!(
                    "| {} | {label} | {} | {} | {} | {} | {} | {:.3} |",
                    row.router,
                    ms(row.p50),
                    ms(row.p99),
                    ms(row.p999),
                    row.failed,
                    row.unfinished,
                    row.attempts_per_call
                );
                let _ = write!(
                    line,
                    " {} ms, {:.3} x | {} |",
                    ms(row.work_per_call),
                    if work.is_finite() { work } else { 0.0 },
                    row.repeated_backend
                );
                writeln!(f, "{line}")?;
            }
        }
        Ok(())
    }
}
