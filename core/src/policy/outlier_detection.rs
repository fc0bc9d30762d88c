//! outlier_detection: stops sending calls to backends that fail more than their peers
//! (gRFC A50), as a wrapper around any child policy.
//!
//! The wrapper hands its child a controller of its own and counts every call's outcome
//! ([`Policy::call_finished`], success by [`CallOutcome::is_ok`]) per address, then passes it on.
//! Every `interval` (10 s) it looks at the last interval's counts:
//!
//! - **success rate**: among addresses with at least `request_volume` (100) calls, if there are at
//!   least `minimum_hosts` (5), an address whose success rate is below
//!   `mean - stdev * stdev_factor / 1000` (1.9 standard deviations) is ejected, with probability
//!   `enforcement_percentage` % (100);
//! - **failure percentage**: with at least `minimum_hosts` (5) addresses, an address with at least
//!   `request_volume` (50) calls of which more than `threshold` % (85) failed is ejected, with
//!   probability `enforcement_percentage` %. That probability is **0 by default**, as in Envoy, so
//!   only success-rate ejection acts unless you enable this one (gRPC's default is 100 when the
//!   algorithm is configured): a fixed threshold would eject healthy backends of a service whose
//!   every backend fails alike (a bad deploy, a client bug), which relative detection does not.
//!
//! No more than `max_ejection_percent` (10 %) of the addresses are ejected at once, but one always
//! may be. An ejected address stays out for `min(base_ejection_time * multiplier,
//! max(base_ejection_time, max_ejection_time))` (30 s times the multiplier, at most 300 s),
//! checked at each interval; its multiplier grows by one at each ejection and shrinks by one at
//! each interval it is not ejected, so a backend that keeps failing stays out longer.
//!
//! An ejected subchannel looks TRANSIENT_FAILURE to the child (in its updates and in
//! [`Controller::subchannel_state`]) while its connection stays open; its real state is recorded
//! and given back to the child when it is un-ejected. Random draws come from the balancer's seeded
//! generator, so ejections are deterministic.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::address::{Address, Endpoint};
use crate::backoff::later;
use crate::call::{CallOutcome, LoadReport};
use crate::notice::Notice;
use crate::policy::wrapping::Wrapping;
use crate::policy::{
    Controller, Policy, PolicyDetails, SlotController, SubchannelUpdate, TimerToken,
};
use crate::probe::ProbeResult;
use crate::resolver::ResolverError;
use crate::status::ConnectivityState;
use crate::subchannel::{IdMap, SubchannelId};

mod config;

pub use config::{FailurePercentageEjection, OutlierDetectionConfig, SuccessRateEjection};

/// Successes and failures counted over one interval.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    successes: u64,
    failures: u64,
}

impl Bucket {
    fn total(&self) -> u64 {
        self.successes.saturating_add(self.failures)
    }
}

/// What is known of one address.
#[derive(Debug, Default)]
struct Record {
    /// Counting now.
    active: Bucket,
    /// The last full interval: what ejection decisions read.
    last: Bucket,
    ejected_at: Option<Instant>,
    multiplier: u32,
}

/// A subchannel the child created, and its real state.
#[derive(Debug)]
struct Tracked {
    address: Address,
    real: SubchannelUpdate,
}

/// What the child's controller works on.
#[derive(Debug, Default)]
struct Book {
    records: BTreeMap<Address, Record>,
    subchannels: IdMap<Tracked>,
}

/// The token of the interval timer.
const INTERVAL_TOKEN: TimerToken = TimerToken::new(0);
/// The child's slot in its timer tokens ([`TimerToken::child`]).
const CHILD_SLOT: u32 = 0;

impl Book {
    fn is_ejected(&self, subchannel: SubchannelId) -> bool {
        self.subchannels
            .get(&subchannel)
            .and_then(|tracked| self.records.get(&tracked.address))
            .is_some_and(|record| record.ejected_at.is_some())
    }

    /// The subchannels of `address`, in creation order.
    fn subchannels_of(&self, address: &Address) -> Vec<SubchannelId> {
        let mut ids: Vec<SubchannelId> = self
            .subchannels
            .iter()
            .filter(|(_, tracked)| tracked.address == *address)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// The controller the child sees: it shows ejected subchannels as TRANSIENT_FAILURE and keeps
/// the child's timers apart from the wrapper's.
struct ChildController<'a> {
    inner: SlotController<'a>,
    book: &'a mut Book,
}

impl Wrapping for ChildController<'_> {
    fn inner(&self) -> &dyn Controller {
        &self.inner
    }

    fn inner_mut(&mut self) -> &mut dyn Controller {
        &mut self.inner
    }

    fn create_subchannel(&mut self, address: &Address) -> SubchannelId {
        let id = self.inner.create_subchannel(address);
        let state = self
            .inner
            .subchannel_state(id)
            .unwrap_or(ConnectivityState::Idle);
        let real = SubchannelUpdate { state, error: None };
        let address = address.clone();
        self.book.subchannels.insert(id, Tracked { address, real });
        id
    }

    fn remove_subchannel(&mut self, subchannel: SubchannelId) {
        self.book.subchannels.remove(&subchannel);
        self.inner.remove_subchannel(subchannel);
    }

    fn subchannel_state(&self, subchannel: SubchannelId) -> Option<ConnectivityState> {
        let state = self.inner.subchannel_state(subchannel)?;
        if self.book.is_ejected(subchannel) {
            Some(ConnectivityState::TransientFailure)
        } else {
            Some(state)
        }
    }
}

/// The outlier_detection policy.
#[derive(Debug)]
pub(crate) struct OutlierDetection {
    config: OutlierDetectionConfig,
    child: Box<dyn Policy>,
    book: Book,
    interval_started: bool,
}

impl OutlierDetection {
    pub(crate) fn new(config: OutlierDetectionConfig) -> Self {
        let child = config.child_policy.build();
        OutlierDetection {
            config,
            child,
            book: Book::default(),
            interval_started: false,
        }
    }

    /// Tells the child that `address`'s subchannels failed (ejection) or what they really are.
    fn tell_child(&mut self, address: &Address, ejected: bool, ctl: &mut dyn Controller) {
        for id in self.book.subchannels_of(address) {
            let update = if ejected {
                SubchannelUpdate {
                    state: ConnectivityState::TransientFailure,
                    error: Some(format!("{address} was ejected by outlier detection").into()),
                }
            } else {
                match self.book.subchannels.get(&id) {
                    Some(tracked) => tracked.real.clone(),
                    None => continue,
                }
            };
            let mut child_ctl = ChildController {
                inner: SlotController::new(&mut *ctl, CHILD_SLOT),
                book: &mut self.book,
            };
            self.child.subchannel_update(id, &update, &mut child_ctl);
        }
    }

    /// Whether one more address may be ejected now.
    fn may_eject(&self) -> bool {
        let total = self.book.records.len() as u64;
        let ejected = self
            .book
            .records
            .values()
            .filter(|record| record.ejected_at.is_some())
            .count() as u64;
        let max = u64::from(self.config.max_ejection_percent.min(100));
        ejected == 0 || ejected * 100 < max * total
    }

    fn eject(&mut self, address: &Address, now: Instant, ctl: &mut dyn Controller) {
        if let Some(record) = self.book.records.get_mut(address) {
            record.ejected_at = Some(now);
            record.multiplier = record.multiplier.saturating_add(1);
            let times = record.multiplier;
            self.announce(address, ctl, |subchannel, address| Notice::Ejected {
                subchannel,
                address,
                times,
            });
            self.tell_child(address, true, ctl);
        }
    }

    /// A notice for each of `address`'s subchannels, if notices are on.
    fn announce(
        &self,
        address: &Address,
        ctl: &mut dyn Controller,
        notice: impl Fn(SubchannelId, Address) -> Notice,
    ) {
        if ctl.notices_enabled() {
            for id in self.book.subchannels_of(address) {
                ctl.notify(notice(id, address.clone()));
            }
        }
    }

    /// Ejects each of `outliers` (in order) with probability `enforcement` %, while allowed.
    fn enforce(
        &mut self,
        outliers: Vec<Address>,
        enforcement: u32,
        now: Instant,
        ctl: &mut dyn Controller,
    ) {
        for address in outliers {
            if !self.may_eject() {
                return;
            }
            if ctl.rng().below(100) < u64::from(enforcement.min(100)) {
                self.eject(&address, now, ctl);
            }
        }
    }

    fn success_rate(
        &mut self,
        settings: &SuccessRateEjection,
        now: Instant,
        ctl: &mut dyn Controller,
    ) {
        let volume = u64::from(settings.request_volume).max(1);
        let judged: Vec<(&Address, f64)> = self
            .book
            .records
            .iter()
            .filter(|(_, record)| record.last.total() >= volume)
            .map(|(address, r)| (address, r.last.successes as f64 / r.last.total() as f64))
            .collect();
        if judged.is_empty() || (judged.len() as u64) < u64::from(settings.minimum_hosts) {
            return;
        }
        let n = judged.len() as f64;
        let mean = judged.iter().map(|(_, rate)| rate).sum::<f64>() / n;
        let variance = judged
            .iter()
            .map(|(_, r)| (r - mean) * (r - mean))
            .sum::<f64>()
            / n;
        let threshold = mean - variance.sqrt() * (f64::from(settings.stdev_factor) / 1000.0);
        let outliers = judged
            .into_iter()
            .filter(|(address, rate)| *rate < threshold && !self.is_ejected(address))
            .map(|(address, _)| address.clone())
            .collect();
        self.enforce(outliers, settings.enforcement_percentage, now, ctl);
    }

    fn failure_percentage(
        &mut self,
        settings: &FailurePercentageEjection,
        now: Instant,
        ctl: &mut dyn Controller,
    ) {
        if (self.book.records.len() as u64) < u64::from(settings.minimum_hosts) {
            return;
        }
        let volume = u64::from(settings.request_volume).max(1);
        let threshold = u64::from(settings.threshold.min(100));
        let outliers = self
            .book
            .records
            .iter()
            .filter(|(_, r)| r.ejected_at.is_none() && r.last.total() >= volume)
            .filter(|(_, r)| {
                u128::from(r.last.failures) * 100
                    > u128::from(threshold) * u128::from(r.last.total())
            })
            .map(|(address, _)| address.clone())
            .collect();
        self.enforce(outliers, settings.enforcement_percentage, now, ctl);
    }

    fn is_ejected(&self, address: &Address) -> bool {
        self.book
            .records
            .get(address)
            .is_some_and(|record| record.ejected_at.is_some())
    }

    /// A50's interval: swap the counters, run both algorithms, age the multipliers, un-eject.
    fn run_interval(&mut self, ctl: &mut dyn Controller) {
        let now = ctl.now();
        for record in self.book.records.values_mut() {
            record.last = std::mem::take(&mut record.active);
        }
        if let Some(settings) = self.config.success_rate_ejection.clone() {
            self.success_rate(&settings, now, ctl);
        }
        if let Some(settings) = self.config.failure_percentage_ejection.clone() {
            self.failure_percentage(&settings, now, ctl);
        }
        let mut returning = Vec::new();
        for (address, record) in &mut self.book.records {
            match record.ejected_at {
                None => record.multiplier = record.multiplier.saturating_sub(1),
                Some(at) if now >= later(at, self.config.ejection_time(record.multiplier)) => {
                    record.ejected_at = None;
                    returning.push(address.clone());
                }
                Some(_) => {}
            }
        }
        for address in returning {
            self.announce(&address, ctl, |subchannel, address| Notice::Restored {
                subchannel,
                address,
            });
            self.tell_child(&address, false, ctl);
        }
        self.schedule_interval(ctl);
    }

    fn schedule_interval(&mut self, ctl: &mut dyn Controller) {
        let interval = self.config.interval.max(Duration::from_millis(1));
        ctl.set_timer(later(ctl.now(), interval), INTERVAL_TOKEN);
        self.interval_started = true;
    }
}

impl Policy for OutlierDetection {
    fn resolver_update(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller) {
        let listed: std::collections::BTreeSet<&Address> = endpoints
            .iter()
            .flat_map(|endpoint| endpoint.addresses())
            .collect();
        let gone: Vec<Address> = self
            .book
            .records
            .keys()
            .filter(|address| !listed.contains(address))
            .cloned()
            .collect();
        for address in gone {
            let was_ejected = self.is_ejected(&address);
            self.book.records.remove(&address);
            if was_ejected {
                self.tell_child(&address, false, ctl);
            }
        }
        for address in listed {
            if !self.book.records.contains_key(address) {
                self.book.records.insert(address.clone(), Record::default());
            }
        }
        if self.config.enabled() && !self.interval_started {
            self.schedule_interval(ctl);
        }
        let mut child_ctl = ChildController {
            inner: SlotController::new(ctl, CHILD_SLOT),
            book: &mut self.book,
        };
        self.child.resolver_update(endpoints, &mut child_ctl);
    }

    fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller) {
        let mut child_ctl = ChildController {
            inner: SlotController::new(ctl, CHILD_SLOT),
            book: &mut self.book,
        };
        self.child.resolver_error(error, &mut child_ctl);
    }

    fn subchannel_update(
        &mut self,
        subchannel: SubchannelId,
        update: &SubchannelUpdate,
        ctl: &mut dyn Controller,
    ) {
        if let Some(tracked) = self.book.subchannels.get_mut(&subchannel) {
            tracked.real = update.clone();
        }
        if self.book.is_ejected(subchannel) {
            return; // the child keeps seeing TRANSIENT_FAILURE until the address returns
        }
        let mut child_ctl = ChildController {
            inner: SlotController::new(ctl, CHILD_SLOT),
            book: &mut self.book,
        };
        self.child
            .subchannel_update(subchannel, update, &mut child_ctl);
    }

    fn exit_idle(&mut self, ctl: &mut dyn Controller) {
        let mut child_ctl = ChildController {
            inner: SlotController::new(ctl, CHILD_SLOT),
            book: &mut self.book,
        };
        self.child.exit_idle(&mut child_ctl);
    }

    fn timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        if token == INTERVAL_TOKEN {
            self.run_interval(ctl);
            return;
        }
        if let Some((CHILD_SLOT, child_token)) = token.split() {
            let mut child_ctl = ChildController {
                inner: SlotController::new(ctl, CHILD_SLOT),
                book: &mut self.book,
            };
            self.child.timer(child_token, &mut child_ctl);
        }
    }

    fn wants_call_outcomes(&self) -> bool {
        self.config.enabled() || self.child.wants_call_outcomes()
    }

    fn describe_subchannel(&self, subchannel: SubchannelId, details: &mut PolicyDetails) {
        if self.config.enabled() && self.book.subchannels.contains_key(&subchannel) {
            details.ejected = Some(self.book.is_ejected(subchannel));
        }
        self.child.describe_subchannel(subchannel, details);
    }

    fn call_finished(
        &mut self,
        subchannel: SubchannelId,
        outcome: &CallOutcome,
        ctl: &mut dyn Controller,
    ) {
        // A pick never used is neither a success nor a failure of its endpoint.
        if self.config.enabled() && outcome.sent {
            let record = self
                .book
                .subchannels
                .get(&subchannel)
                .and_then(|tracked| self.book.records.get_mut(&tracked.address));
            if let Some(record) = record {
                let count = if outcome.is_ok() {
                    &mut record.active.successes
                } else {
                    &mut record.active.failures
                };
                *count = count.saturating_add(1);
            }
        }
        let mut child_ctl = ChildController {
            inner: SlotController::new(ctl, CHILD_SLOT),
            book: &mut self.book,
        };
        self.child
            .call_finished(subchannel, outcome, &mut child_ctl);
    }

    fn load_report(
        &mut self,
        subchannel: SubchannelId,
        report: &LoadReport,
        ctl: &mut dyn Controller,
    ) {
        let mut child_ctl = ChildController {
            inner: SlotController::new(ctl, CHILD_SLOT),
            book: &mut self.book,
        };
        self.child.load_report(subchannel, report, &mut child_ctl);
    }

    fn probe_result(
        &mut self,
        subchannel: SubchannelId,
        result: &ProbeResult,
        ctl: &mut dyn Controller,
    ) {
        let mut child_ctl = ChildController {
            inner: SlotController::new(ctl, CHILD_SLOT),
            book: &mut self.book,
        };
        self.child.probe_result(subchannel, result, &mut child_ctl);
    }
}
