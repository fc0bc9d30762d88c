//! A policy that records every call outcome it hears of, around any other: what a test reads to
//! see what the balancer learned of its calls.

use std::sync::{Arc, Mutex};

use croupier::{
    CallOutcome, Controller, Endpoint, Policy, PolicyBuilder, PolicyConfig, ResolverError,
    SubchannelId, SubchannelUpdate, TimerToken,
};

/// The outcomes a [`recording`] policy has heard, in order.
#[derive(Clone, Debug, Default)]
pub struct Outcomes(Arc<Mutex<Vec<CallOutcome>>>);

impl Outcomes {
    /// Every outcome heard so far.
    pub fn heard(&self) -> Vec<CallOutcome> {
        self.0.lock().map(|heard| heard.clone()).unwrap_or_default()
    }
}

/// `policy`, recording each call outcome it is given into the returned [`Outcomes`]; it
/// chooses and connects exactly as `policy` does.
pub fn recording(policy: PolicyConfig) -> (PolicyConfig, Outcomes) {
    let outcomes = Outcomes::default();
    let builder = Recording {
        name: format!("recording_{}", policy.builder().name()),
        inner: policy,
        outcomes: outcomes.clone(),
    };
    (PolicyConfig::new(builder), outcomes)
}

#[derive(Debug)]
struct Recording {
    name: String,
    inner: PolicyConfig,
    outcomes: Outcomes,
}

impl PolicyBuilder for Recording {
    fn name(&self) -> &str {
        &self.name
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(RecordingPolicy {
            inner: self.inner.builder().build(),
            outcomes: self.outcomes.clone(),
        })
    }
}

#[derive(Debug)]
struct RecordingPolicy {
    inner: Box<dyn Policy>,
    outcomes: Outcomes,
}

impl Policy for RecordingPolicy {
    fn resolver_update(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller) {
        self.inner.resolver_update(endpoints, ctl);
    }

    fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller) {
        self.inner.resolver_error(error, ctl);
    }

    fn subchannel_update(
        &mut self,
        subchannel: SubchannelId,
        update: &SubchannelUpdate,
        ctl: &mut dyn Controller,
    ) {
        self.inner.subchannel_update(subchannel, update, ctl);
    }

    fn exit_idle(&mut self, ctl: &mut dyn Controller) {
        self.inner.exit_idle(ctl);
    }

    fn timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        self.inner.timer(token, ctl);
    }

    fn call_finished(
        &mut self,
        subchannel: SubchannelId,
        outcome: &CallOutcome,
        ctl: &mut dyn Controller,
    ) {
        if let Ok(mut heard) = self.outcomes.0.lock() {
            heard.push(outcome.clone());
        }
        self.inner.call_finished(subchannel, outcome, ctl);
    }
}
