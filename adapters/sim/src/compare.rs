//! Runs every router over a scenario with several seeds, and reports the medians as a table.

use std::fmt::{self, Write as _};
use std::time::Duration;

use crate::record::{Recovery, RunResult, Timeline};
use crate::router::Router;
use crate::scenario::{FleetEvent, Scenario};
use crate::sim::simulate;

/// The seeds every comparison uses unless told otherwise.
pub const DEFAULT_SEEDS: [u64; 3] = [1, 2, 3];

/// One router's figures in a scenario: the median over seeds of each figure.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Row {
    /// The router's label.
    pub router: String,
    /// Whether it is a full-information reference.
    pub reference: bool,
    /// Mean latency.
    pub mean: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Failed calls.
    pub failed: u64,
    /// Calls still unanswered at the end (queued behind an overloaded backend).
    pub unfinished: u64,
    /// Each backend's share of the calls.
    pub shares: Vec<f64>,
    /// After the scenario's first restart, if it has one: until the restarted backend's first
    /// call ([`Duration::MAX`] for never).
    pub first_call_back: Option<Duration>,
    /// After the scenario's first restart: until every client sent it a call again.
    pub every_client_back: Option<Duration>,
    /// Attempts sent per call (1 without retries or hedging).
    pub attempts_per_call: f64,
    /// Backends' slot-time spent per call.
    pub work_per_call: Duration,
    /// Attempts sent to a backend an earlier attempt of their call went to.
    pub repeated_backend: u64,
}

/// A scenario's results for several routers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Comparison {
    /// The scenario.
    pub scenario: Scenario,
    /// The seeds.
    pub seeds: Vec<u64>,
    /// One row per router, in the order given.
    pub rows: Vec<Row>,
    /// Each router's timeline from the first seed (what the pictures draw).
    pub timelines: Vec<(String, Timeline)>,
}

fn median<T: Copy + Ord>(mut values: Vec<T>) -> Option<T> {
    values.sort_unstable();
    values.get(values.len() / 2).copied()
}

fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The median row of several runs of one router.
pub fn summarize(runs: &[RunResult]) -> Option<Row> {
    let first = runs.first()?;
    let pick = |f: &dyn Fn(&RunResult) -> Duration| median(runs.iter().map(f).collect());
    let backends = first.calls_per_backend.len();
    let shares = runs.iter().map(RunResult::shares).collect::<Vec<_>>();
    let has_restart = !first.recoveries.is_empty();
    let recovery = |f: &dyn Fn(&Recovery) -> Option<Duration>| {
        if !has_restart {
            return None;
        }
        // A backend never back counts as the longest possible wait.
        median(
            runs.iter()
                .map(|r| r.recoveries.first().and_then(f).unwrap_or(Duration::MAX))
                .collect(),
        )
    };
    Some(Row {
        router: first.router.clone(),
        reference: first.reference,
        mean: pick(&|r| r.mean())?,
        p50: pick(&|r| r.quantile(0.5))?,
        p99: pick(&|r| r.quantile(0.99))?,
        p999: pick(&|r| r.quantile(0.999))?,
        failed: median(runs.iter().map(|r| r.failed).collect())?,
        unfinished: median(runs.iter().map(|r| r.unfinished).collect())?,
        shares: (0..backends)
            .map(|b| median_f64(shares.iter().map(|s| s[b]).collect()))
            .collect(),
        first_call_back: recovery(&|r| r.first_call),
        every_client_back: recovery(&|r| r.every_client),
        attempts_per_call: median_f64(runs.iter().map(RunResult::attempts_per_call).collect()),
        work_per_call: pick(&RunResult::work_per_call)?,
        repeated_backend: median(runs.iter().map(|r| r.repeated_backend).collect())?,
    })
}

/// Runs `scenario` under each router with each seed, on up to `threads` threads (the results do
/// not depend on how many).
pub fn compare(
    scenario: &Scenario,
    routers: &[Router],
    seeds: &[u64],
    threads: usize,
) -> Comparison {
    let jobs: Vec<(usize, u64)> = (0..routers.len())
        .flat_map(|r| seeds.iter().map(move |&s| (r, s)))
        .collect();
    let threads = threads.clamp(1, jobs.len().max(1));
    let mut results: Vec<Option<RunResult>> = vec![None; jobs.len()];
    std::thread::scope(|scope| {
        let chunks: Vec<_> = results
            .chunks_mut(jobs.len().div_ceil(threads).max(1))
            .enumerate()
            .map(|(chunk_index, chunk)| {
                let jobs = &jobs;
                let size = jobs.len().div_ceil(threads).max(1);
                scope.spawn(move || {
                    for (offset, slot) in chunk.iter_mut().enumerate() {
                        let (router, seed) = jobs[chunk_index * size + offset];
                        *slot = Some(simulate(scenario, &routers[router], seed));
                    }
                })
            })
            .collect();
        for handle in chunks {
            // A panicking run would be a bug in the simulator; its slot stays empty.
            let _ = handle.join();
        }
    });
    let mut rows = Vec::new();
    let mut timelines = Vec::new();
    for (r, router) in routers.iter().enumerate() {
        let runs: Vec<RunResult> = results[r * seeds.len()..(r + 1) * seeds.len()]
            .iter()
            .flatten()
            .cloned()
            .collect();
        if let Some(row) = summarize(&runs) {
            rows.push(row);
        }
        if let Some(first) = runs.first() {
            timelines.push((router.label().to_owned(), first.timeline.clone()));
        }
    }
    Comparison {
        scenario: scenario.clone(),
        seeds: seeds.to_vec(),
        rows,
        timelines,
    }
}

/// Milliseconds, with fewer decimals as they grow.
pub(crate) fn ms(d: Duration) -> String {
    if d == Duration::MAX {
        return "never".to_owned();
    }
    let ms = d.as_secs_f64() * 1e3;
    if ms < 100.0 {
        format!("{ms:.2}")
    } else if ms < 1000.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

impl fmt::Display for Comparison {
    /// A Markdown table: latencies in milliseconds, shares in percent of calls per backend.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.scenario;
        writeln!(
            f,
            "{}: {} ({} clients, {:.0} calls/s, {} s, medians of seeds {:?})",
            s.name,
            s.description,
            s.clients,
            s.rate,
            s.duration.as_secs(),
            self.seeds
        )?;
        writeln!(f)?;
        let restarts = s
            .events
            .iter()
            .any(|(_, e)| matches!(e, FleetEvent::Restart { .. }));
        let mut header =
            String::from("| policy | mean | p50 | p99 | p99.9 | failed | unfinished |");
        let mut rule = String::from("|---|---:|---:|---:|---:|---:|---:|");
        if restarts {
            header.push_str(" first call back | all clients back |");
            rule.push_str("---:|---:|");
        }
        header.push_str(" share per backend, % (b0 b1 ...) |");
        rule.push_str("---|");
        writeln!(f, "{header}")?;
        writeln!(f, "{rule}")?;
        for row in &self.rows {
            let mut line = format!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.router,
                ms(row.mean),
                ms(row.p50),
                ms(row.p99),
                ms(row.p999),
                row.failed,
                row.unfinished
            );
            if restarts {
                let first = row.first_call_back.map_or("-".to_owned(), ms);
                let every = row.every_client_back.map_or("-".to_owned(), ms);
                let _ = write!(line, " {first} | {every} |");
            }
            let shares: Vec<String> = row
                .shares
                .iter()
                .map(|share| format!("{:.1}", share * 100.0))
                .collect();
            let _ = write!(line, " {} |", shares.join(" "));
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}
