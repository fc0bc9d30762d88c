//! The instruments of load-balancing policies (gRFC A78), counted from the core's notices: the
//! core says what a policy did ([`Notice::SchedulerUpdated`] of weighted_round_robin,
//! [`Notice::PickFirst`]), and the driver records it here.

use std::sync::Arc;

use croupier::{EndpointLoad, LoadWeight, Notice, PickFirstEvent};
use metrics::{Counter, Histogram, Label};

use super::{counter, histogram};

/// Scheduler updates of weighted_round_robin in which fewer than two endpoints had a usable
/// weight, so that it fell back from load reports (A78; `grpc.target`, `grpc.lb.locality`).
pub const WRR_RR_FALLBACK: &str = "grpc.lb.wrr.rr_fallback";
/// Endpoints of each scheduler update whose weight is not yet usable: no load report yet, or
/// still in the blackout period (A78; `grpc.target`, `grpc.lb.locality`).
pub const WRR_NOT_YET_USABLE: &str = "grpc.lb.wrr.endpoint_weight_not_yet_usable";
/// Endpoints of each scheduler update whose last load report is older than the weight
/// expiration period (A78; `grpc.target`, `grpc.lb.locality`).
pub const WRR_STALE: &str = "grpc.lb.wrr.endpoint_weight_stale";
/// Each endpoint's weight at each scheduler update, 0 for one without a usable weight (A78;
/// `grpc.target`, `grpc.lb.locality`).
pub const WRR_WEIGHTS: &str = "grpc.lb.wrr.endpoint_weights";

/// Times pick_first's chosen connection was lost (A78; `grpc.target`).
pub const PICK_FIRST_DISCONNECTIONS: &str = "grpc.lb.pick_first.disconnections";
/// Times pick_first connected a subchannel (A78; `grpc.target`).
pub const PICK_FIRST_SUCCEEDED: &str = "grpc.lb.pick_first.connection_attempts_succeeded";
/// pick_first's connection attempts that failed (A78; `grpc.target`).
pub const PICK_FIRST_FAILED: &str = "grpc.lb.pick_first.connection_attempts_failed";

/// A channel's policy instruments, registered when its policy first does what they count.
pub(crate) struct PolicyMetrics {
    target: Arc<str>,
    wrr: Option<WrrInstruments>,
    pick_first: Option<PickFirstInstruments>,
}

struct PickFirstInstruments {
    disconnections: Counter,
    succeeded: Counter,
    failed: Counter,
}

impl std::fmt::Debug for PolicyMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyMetrics")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

struct WrrInstruments {
    rr_fallback: Counter,
    not_yet_usable: Counter,
    stale: Counter,
    weights: Histogram,
}

impl PolicyMetrics {
    /// The policy instruments of the channel to `target`.
    pub(crate) fn new(target: Arc<str>) -> Self {
        PolicyMetrics {
            target,
            wrr: None,
            pick_first: None,
        }
    }

    /// Counts what `notice` tells, if it is a notice these instruments count.
    pub(crate) fn notice(&mut self, notice: &Notice) {
        match notice {
            Notice::SchedulerUpdated {
                endpoints,
                fallback,
            } => self.scheduler_updated(endpoints, *fallback),
            Notice::PickFirst { event, .. } => self.pick_first(*event),
            _ => {}
        }
    }

    fn pick_first(&mut self, event: PickFirstEvent) {
        let target = &self.target;
        let instruments = self.pick_first.get_or_insert_with(|| {
            let labels = || vec![Label::new("grpc.target", Arc::clone(target))];
            PickFirstInstruments {
                disconnections: counter(PICK_FIRST_DISCONNECTIONS, labels()),
                succeeded: counter(PICK_FIRST_SUCCEEDED, labels()),
                failed: counter(PICK_FIRST_FAILED, labels()),
            }
        });
        match event {
            PickFirstEvent::Connected => instruments.succeeded.increment(1),
            PickFirstEvent::AttemptFailed => instruments.failed.increment(1),
            PickFirstEvent::Disconnected => instruments.disconnections.increment(1),
            _ => {}
        }
    }

    fn scheduler_updated(&mut self, endpoints: &[EndpointLoad], fallback: bool) {
        let target = &self.target;
        let wrr = self.wrr.get_or_insert_with(|| {
            // The policy's locality is known only under xDS, which croupier does not speak:
            // A78's label is then empty.
            let labels = || {
                vec![
                    Label::new("grpc.target", Arc::clone(target)),
                    Label::new("grpc.lb.locality", ""),
                ]
            };
            WrrInstruments {
                rr_fallback: counter(WRR_RR_FALLBACK, labels()),
                not_yet_usable: counter(WRR_NOT_YET_USABLE, labels()),
                stale: counter(WRR_STALE, labels()),
                weights: histogram(WRR_WEIGHTS, labels()),
            }
        });
        wrr.rr_fallback.increment(u64::from(fallback));
        let count = |of: LoadWeight| {
            endpoints
                .iter()
                .filter(|endpoint| endpoint.weight == of)
                .count() as u64
        };
        wrr.not_yet_usable
            .increment(count(LoadWeight::NotYetUsable));
        wrr.stale.increment(count(LoadWeight::Stale));
        for endpoint in endpoints {
            wrr.weights.record(endpoint.weight.value());
        }
    }
}

/// Describes the instruments to the recorder (once per process, with the others).
pub(super) fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        WRR_RR_FALLBACK,
        Unit::Count,
        "Scheduler updates of weighted_round_robin with fewer than two usable endpoint weights, \
         which fell back from load reports."
    );
    describe_counter!(
        WRR_NOT_YET_USABLE,
        Unit::Count,
        "Endpoints, counted at each scheduler update, whose weight is not usable yet (no load \
         report, or in the blackout period)."
    );
    describe_counter!(
        WRR_STALE,
        Unit::Count,
        "Endpoints, counted at each scheduler update, whose last load report is older than the \
         weight expiration period."
    );
    describe_counter!(
        PICK_FIRST_DISCONNECTIONS,
        Unit::Count,
        "Times the connection pick_first chose was lost."
    );
    describe_counter!(
        PICK_FIRST_SUCCEEDED,
        Unit::Count,
        "Connection attempts of pick_first that succeeded."
    );
    describe_counter!(
        PICK_FIRST_FAILED,
        Unit::Count,
        "Connection attempts of pick_first that failed."
    );
    describe_histogram!(
        WRR_WEIGHTS,
        Unit::Count,
        "Each endpoint's weight at each scheduler update, 0 without a usable one."
    );
}
