//! Call outcomes: what the adapter reports when a call that a pick routed has ended.

use std::time::Duration;

use crate::picker::PickNote;
use crate::status::Code;

/// How a call ended: its status code, how long it took and, if the backend sent one, its load
/// report. Policies that weigh backends by their behaviour (least request, latency EWMA, outlier
/// detection, weighted round robin) learn from these.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CallOutcome {
    /// The call's final status code (`Code::Ok` for success).
    pub code: Code,
    /// The time from the pick to the end of the call.
    pub latency: Duration,
    /// The backend's load, as it reported it with this call's response (gRPC's ORCA per-call
    /// reports carry these figures), if it did.
    pub load: Option<LoadReport>,
    /// What the picker noted when it picked the call's subchannel
    /// ([`Picker::pick_with_note`](crate::Picker::pick_with_note)); [`PickNote::NONE`] if the
    /// adapter has none.
    pub note: PickNote,
    /// Whether the call was sent at all. A pick the adapter could not use (its connection had
    /// just gone) is reported [`CallOutcome::unsent`]: policies that count calls in flight
    /// count it as ended, and none learns a latency or a failure from it.
    pub sent: bool,
}

impl CallOutcome {
    /// A call that ended with `code` after `latency`.
    pub fn new(code: Code, latency: Duration) -> Self {
        CallOutcome {
            code,
            latency,
            load: None,
            note: PickNote::NONE,
            sent: true,
        }
    }

    /// A pick that was never used: the adapter found its subchannel's connection gone and
    /// picked again. It ends the pick's call in flight and teaches nothing else.
    pub fn unsent() -> Self {
        CallOutcome {
            sent: false,
            ..CallOutcome::new(Code::Unavailable, Duration::ZERO)
        }
    }

    /// A successful call.
    pub fn ok(latency: Duration) -> Self {
        CallOutcome::new(Code::Ok, latency)
    }

    /// The same outcome, carrying the backend's load report.
    pub fn with_load(mut self, report: LoadReport) -> Self {
        self.load = Some(report);
        self
    }

    /// The same outcome, carrying the note its pick made.
    pub fn with_note(mut self, note: PickNote) -> Self {
        self.note = note;
        self
    }

    /// Whether the call succeeded.
    pub fn is_ok(&self) -> bool {
        self.code == Code::Ok
    }
}

/// A backend's report of its own load: the figures weighted_round_robin turns into a weight.
///
/// Utilizations are fractions (1.0 is one core, or the application's whole capacity); rates are
/// per second. A figure the backend did not report is 0. Values that are negative or not finite
/// are treated as 0.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct LoadReport {
    /// The backend's CPU utilization.
    pub cpu_utilization: f64,
    /// The utilization the application itself measures; when above 0 it is used instead of
    /// `cpu_utilization`.
    pub application_utilization: f64,
    /// Queries per second the backend served.
    pub qps: f64,
    /// Errors per second the backend returned.
    pub eps: f64,
}

impl LoadReport {
    /// A report of `qps` queries per second at `utilization`, and no errors.
    pub fn new(qps: f64, utilization: f64) -> Self {
        LoadReport {
            cpu_utilization: utilization,
            qps,
            ..LoadReport::default()
        }
    }

    /// Sets [`LoadReport::eps`].
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets [`LoadReport::application_utilization`].
    pub fn application_utilization(mut self, utilization: f64) -> Self {
        self.application_utilization = utilization;
        self
    }

    /// The utilization that counts: the application's if it reported one, else the CPU's.
    pub(crate) fn utilization(&self) -> f64 {
        let app = sanitize(self.application_utilization);
        if app > 0.0 {
            app
        } else {
            sanitize(self.cpu_utilization)
        }
    }

    /// The weight gRFC A58 derives from this report, with errors costing `penalty` utilization
    /// per unit of error ratio: `qps / (utilization + eps / qps * penalty)`; 0 (no weight) when
    /// the report has no queries or no utilization.
    pub fn weight(&self, penalty: f64) -> f64 {
        let qps = sanitize(self.qps);
        let mut utilization = self.utilization();
        if qps > 0.0 && utilization > 0.0 {
            utilization += sanitize(self.eps) / qps * sanitize(penalty);
        }
        if utilization > 0.0 {
            let weight = qps / utilization;
            if weight.is_finite() {
                return weight;
            }
        }
        0.0
    }
}

fn sanitize(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 {
        value
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_is_qps_over_utilization_with_an_error_penalty() {
        assert_eq!(LoadReport::new(100.0, 0.5).weight(1.0), 200.0);
        // 10 errors per 100 queries add 0.1 utilization at penalty 1, 0.2 at penalty 2.
        let erring = LoadReport::new(100.0, 0.5).eps(10.0);
        assert!((erring.weight(1.0) - 100.0 / 0.6).abs() < 1e-9);
        assert!((erring.weight(2.0) - 100.0 / 0.7).abs() < 1e-9);
        assert_eq!(erring.weight(0.0), 200.0);
    }

    #[test]
    fn application_utilization_wins_when_reported() {
        let report = LoadReport::new(100.0, 0.5).application_utilization(0.25);
        assert_eq!(report.weight(1.0), 400.0);
    }

    #[test]
    fn empty_or_nonsense_reports_give_no_weight() {
        assert_eq!(LoadReport::new(0.0, 0.5).weight(1.0), 0.0);
        assert_eq!(LoadReport::new(100.0, 0.0).weight(1.0), 0.0);
        assert_eq!(LoadReport::new(f64::NAN, 0.5).weight(1.0), 0.0);
        assert_eq!(LoadReport::new(100.0, -1.0).weight(1.0), 0.0);
        assert_eq!(LoadReport::new(f64::INFINITY, 0.5).weight(1.0), 0.0);
        assert_eq!(LoadReport::new(1e300, 1e-300).weight(1.0), 0.0);
        assert_eq!(LoadReport::new(100.0, 0.5).eps(f64::NAN).weight(1.0), 200.0);
    }
}
