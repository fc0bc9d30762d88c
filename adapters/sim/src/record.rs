//! What a run measures: latencies, where calls went, failures, and per-backend timelines.

use std::time::Duration;

/// The measurements of one run (one scenario, one router, one seed).
///
/// Counted calls are those issued after the scenario's warm-up and before its end. Latency runs
/// from the call's issue at the client (including any wait for a picker) to its response.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunResult {
    /// The router's label.
    pub router: String,
    /// Whether the router is a full-information reference.
    pub reference: bool,
    /// The seed.
    pub seed: u64,
    /// Counted calls issued.
    pub issued: u64,
    /// Counted calls that succeeded.
    pub completed: u64,
    /// Counted calls that failed (a pick failed, or the backend crashed while holding the call).
    pub failed: u64,
    /// Counted calls still unanswered when the run stopped (an overloaded backend's queue).
    pub unfinished: u64,
    /// Counted calls sent to each backend (attempts, when calls are retried or hedged).
    pub calls_per_backend: Vec<u64>,
    /// The backends' slot-time spent on counted calls: every attempt's service, or the part of
    /// it served before a cancel or a crash stopped it.
    pub work: Duration,
    /// Attempts of counted calls sent to a backend that an earlier attempt of the same call was
    /// sent to.
    pub repeated_backend: u64,
    /// For each restart in the scenario, how long the restarted backend took to get calls again.
    pub recoveries: Vec<Recovery>,
    /// Per-backend request rates and p99 latencies over time.
    pub timeline: Timeline,
    /// Successful counted latencies in nanoseconds, sorted.
    latencies: Vec<u64>,
}

impl RunResult {
    /// The mean latency of successful counted calls (zero if there were none).
    pub fn mean(&self) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let sum: u128 = self.latencies.iter().map(|&l| u128::from(l)).sum();
        nanos((sum / self.latencies.len() as u128) as u64)
    }

    /// The `q` quantile (0..=1, nearest rank) of successful counted latencies (zero if none).
    pub fn quantile(&self, q: f64) -> Duration {
        nanos(nearest_rank(&self.latencies, q).unwrap_or(0))
    }

    /// Successful counted latencies in nanoseconds, sorted ascending.
    pub fn latencies(&self) -> &[u64] {
        &self.latencies
    }

    /// Attempts sent to a backend per counted call (1 without retries or hedging, less if some
    /// calls found no backend).
    pub fn attempts_per_call(&self) -> f64 {
        let sent: u64 = self.calls_per_backend.iter().sum();
        sent as f64 / self.issued.max(1) as f64
    }

    /// Backends' slot-time spent per counted call.
    pub fn work_per_call(&self) -> Duration {
        self.work
            .checked_div(u32::try_from(self.issued.max(1)).unwrap_or(u32::MAX))
            .unwrap_or_default()
    }

    /// Each backend's share of counted calls (fractions that add up to 1, or all 0).
    pub fn shares(&self) -> Vec<f64> {
        let total: u64 = self.calls_per_backend.iter().sum();
        self.calls_per_backend
            .iter()
            .map(|&n| {
                if total == 0 {
                    0.0
                } else {
                    n as f64 / total as f64
                }
            })
            .collect()
    }
}

/// How long after its restart a backend was back in use (`None`: not within the run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Until the first call reached it from any client.
    pub first_call: Option<Duration>,
    /// Until every client had sent it a call: each client's balancer had reconnected.
    pub every_client: Option<Duration>,
}

/// Per-backend series over time, in buckets of equal width.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Timeline {
    /// Width of a bucket.
    pub bucket: Duration,
    /// `rate[backend][bucket]`: calls sent to the backend in that bucket, per second.
    pub rate: Vec<Vec<f64>>,
    /// `p99[backend][bucket]`: p99 latency in milliseconds of successful calls to the backend
    /// issued in that bucket (`None` with fewer than 20 calls).
    pub p99: Vec<Vec<Option<f64>>>,
    /// `mean[bucket]`: mean latency in milliseconds of successful calls issued in that bucket,
    /// over all backends (`None` if there were none). Successive buckets are nearly independent
    /// samples, which gives the standard error of a run's mean (batch means).
    pub mean: Vec<Option<f64>>,
}

fn nanos(n: u64) -> Duration {
    Duration::from_nanos(n)
}

/// Nearest-rank quantile of sorted values.
fn nearest_rank(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
}

/// Collects a run's measurements as it goes.
#[derive(Debug)]
pub(crate) struct Recorder {
    warmup: Duration,
    end: Duration,
    bucket: Duration,
    issued: u64,
    failed: u64,
    latencies: Vec<u64>,
    calls_per_backend: Vec<u64>,
    work: Duration,
    repeated_backend: u64,
    sent: Vec<Vec<u64>>,
    bucket_latencies: Vec<Vec<Vec<u64>>>,
    clients: usize,
    /// (backend, restart time, each client's first call after it).
    restarts: Vec<(usize, Duration, Vec<Option<Duration>>)>,
}

impl Recorder {
    pub(crate) fn new(
        clients: usize,
        backends: usize,
        warmup: Duration,
        end: Duration,
        horizon: Duration,
        bucket: Duration,
    ) -> Self {
        // At most 100,000 buckets, whatever the scenario asks.
        let bucket = bucket.max(Duration::from_millis(1)).max(horizon / 100_000);
        let buckets = usize::try_from(horizon.as_nanos() / bucket.as_nanos()).unwrap_or(0) + 1;
        Recorder {
            warmup,
            end,
            bucket,
            issued: 0,
            failed: 0,
            latencies: Vec::new(),
            calls_per_backend: vec![0; backends],
            work: Duration::ZERO,
            repeated_backend: 0,
            sent: vec![vec![0; buckets]; backends],
            bucket_latencies: vec![vec![Vec::new(); buckets]; backends],
            clients,
            restarts: Vec::new(),
        }
    }

    fn counted(&self, issued: Duration) -> bool {
        issued >= self.warmup && issued < self.end
    }

    fn bucket_of(&self, at: Duration) -> usize {
        usize::try_from(at.as_nanos() / self.bucket.as_nanos()).unwrap_or(usize::MAX)
    }

    pub(crate) fn issued(&mut self, at: Duration) {
        if self.counted(at) {
            self.issued += 1;
        }
    }

    pub(crate) fn restarted(&mut self, backend: usize, at: Duration) {
        self.restarts.push((backend, at, vec![None; self.clients]));
    }

    pub(crate) fn sent(&mut self, client: usize, backend: usize, issued: Duration, now: Duration) {
        if self.counted(issued) {
            if let Some(n) = self.calls_per_backend.get_mut(backend) {
                *n += 1;
            }
        }
        let bucket = self.bucket_of(now);
        if let Some(n) = self.sent.get_mut(backend).and_then(|s| s.get_mut(bucket)) {
            *n += 1;
        }
        for (b, at, firsts) in &mut self.restarts {
            if let Some(first @ None) = firsts.get_mut(client).filter(|_| *b == backend) {
                *first = Some(now.saturating_sub(*at));
            }
        }
    }

    pub(crate) fn succeeded(&mut self, backend: usize, issued: Duration, latency: Duration) {
        let latency = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        if self.counted(issued) {
            self.latencies.push(latency);
        }
        let bucket = self.bucket_of(issued);
        if let Some(cell) = self
            .bucket_latencies
            .get_mut(backend)
            .and_then(|s| s.get_mut(bucket))
        {
            cell.push(latency);
        }
    }

    /// A counted call's attempt took `time` of a backend's slot (`more`), or was spared it.
    pub(crate) fn worked(&mut self, issued: Duration, time: Duration, more: bool) {
        if self.counted(issued) {
            self.work = if more {
                self.work.saturating_add(time)
            } else {
                self.work.saturating_sub(time)
            };
        }
    }

    /// A counted call's attempt went to a backend an earlier attempt of it went to.
    pub(crate) fn repeated_backend(&mut self, issued: Duration) {
        if self.counted(issued) {
            self.repeated_backend += 1;
        }
    }

    pub(crate) fn failed(&mut self, issued: Duration) {
        if self.counted(issued) {
            self.failed += 1;
        }
    }

    pub(crate) fn finish(mut self, router: &str, reference: bool, seed: u64) -> RunResult {
        self.latencies.sort_unstable();
        let per_second = 1.0 / self.bucket.as_secs_f64();
        let rate = self
            .sent
            .iter()
            .map(|s| s.iter().map(|&n| n as f64 * per_second).collect())
            .collect();
        let p99 = self
            .bucket_latencies
            .iter_mut()
            .map(|cells| {
                cells
                    .iter_mut()
                    .map(|cell| {
                        if cell.len() < 20 {
                            return None;
                        }
                        cell.sort_unstable();
                        nearest_rank(cell, 0.99).map(|ns| ns as f64 / 1e6)
                    })
                    .collect()
            })
            .collect();
        let buckets = self.sent.first().map_or(0, Vec::len);
        let mean = (0..buckets)
            .map(|bucket| {
                let cells = self.bucket_latencies.iter().filter_map(|s| s.get(bucket));
                let (count, sum) = cells.fold((0u64, 0u128), |(n, sum), cell| {
                    let total: u128 = cell.iter().map(|&l| u128::from(l)).sum();
                    (n + cell.len() as u64, sum + total)
                });
                (count > 0).then(|| sum as f64 / count as f64 / 1e6)
            })
            .collect();
        let completed = self.latencies.len() as u64;
        RunResult {
            router: router.to_owned(),
            reference,
            seed,
            issued: self.issued,
            completed,
            failed: self.failed,
            unfinished: self.issued.saturating_sub(completed + self.failed),
            calls_per_backend: self.calls_per_backend,
            work: self.work,
            repeated_backend: self.repeated_backend,
            recoveries: self
                .restarts
                .iter()
                .map(|(_, _, firsts)| Recovery {
                    first_call: firsts.iter().flatten().min().copied(),
                    every_client: firsts
                        .iter()
                        .copied()
                        .collect::<Option<Vec<Duration>>>()
                        .and_then(|all| all.into_iter().max()),
                })
                .collect(),
            timeline: Timeline {
                bucket: self.bucket,
                rate,
                p99,
                mean,
            },
            latencies: self.latencies,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&values, 0.5), Some(50));
        assert_eq!(nearest_rank(&values, 0.99), Some(99));
        assert_eq!(nearest_rank(&values, 0.999), Some(100));
        assert_eq!(nearest_rank(&values, 0.0), Some(1));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }
}
