//! The policy side of a tree level (`priority`, `weighted_target`): what every level does the
//! same way, routing the balancer's inputs to the child they concern and then letting the level
//! sum its children up, so each level writes only what sets it apart.

use std::fmt;
use std::sync::Arc;

use crate::address::Endpoint;
use crate::call::{CallOutcome, LoadReport};
use crate::picker::{FailPicker, Picker};
use crate::policy::children::{Children, Published};
use crate::policy::{Controller, Policy, SubchannelUpdate, TimerToken};
use crate::probe::ProbeResult;
use crate::resolver::ResolverError;
use crate::status::{ConnectivityState, Status};
use crate::subchannel::SubchannelId;

/// One kind of tree level: how it shares the endpoints among its children and how it sums their
/// states and pickers up.
pub(crate) trait TreeLevel: Send + fmt::Debug {
    /// Its name, for the errors it shows.
    fn name(&self) -> &'static str;

    /// Its children.
    fn children(&mut self) -> &mut Children;

    /// Its children, to read.
    fn children_ref(&self) -> &Children;

    /// What it published last.
    fn published(&mut self) -> &mut Published;

    /// Gives each child its share of `endpoints` (the level settles afterwards).
    fn share(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller);

    /// A call queued while the level was IDLE: wakes the children it needs.
    fn exit_idle(&mut self, ctl: &mut dyn Controller);

    /// One of its own timers fired (a child's is routed to the child).
    fn own_timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        let _ = (token, ctl);
    }

    /// Some child may have published: sums the children up and publishes what changed.
    fn settle(&mut self, ctl: &mut dyn Controller);

    /// Whether a child it has or may start learns from call outcomes.
    fn wants_call_outcomes(&self) -> bool;
}

/// A tree level as a [`Policy`]. Before the first resolver update it has no child: a resolver
/// error then fails calls with that error, and other inputs are ignored.
#[derive(Debug)]
pub(crate) struct Tree<T> {
    level: T,
    resolved: bool,
}

impl<T: TreeLevel> Tree<T> {
    pub(crate) fn new(level: T) -> Self {
        Tree {
            level,
            resolved: false,
        }
    }
}

impl<T: TreeLevel> Policy for Tree<T> {
    fn resolver_update(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller) {
        self.resolved = true;
        self.level.share(endpoints, ctl);
        self.level.settle(ctl);
    }

    fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller) {
        if self.resolved {
            self.level.children().resolver_error(error, ctl);
            self.level.settle(ctl);
        } else {
            let message = format!("{}: resolver failed: {error}", self.level.name());
            let picker: Arc<dyn Picker> = Arc::new(FailPicker::new(Status::unavailable(message)));
            let state = ConnectivityState::TransientFailure;
            self.level.published().publish(state, &picker, ctl);
        }
    }

    fn subchannel_update(
        &mut self,
        subchannel: SubchannelId,
        update: &SubchannelUpdate,
        ctl: &mut dyn Controller,
    ) {
        self.level
            .children()
            .subchannel_update(subchannel, update, ctl);
        self.level.settle(ctl);
    }

    fn exit_idle(&mut self, ctl: &mut dyn Controller) {
        if self.resolved {
            self.level.exit_idle(ctl);
            self.level.settle(ctl);
        }
    }

    fn timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        if !self.resolved {
            return;
        }
        match token.split() {
            Some((id, inner)) => self.level.children().timer(id, inner, ctl),
            None => self.level.own_timer(token, ctl),
        }
        self.level.settle(ctl);
    }

    fn wants_call_outcomes(&self) -> bool {
        self.level.wants_call_outcomes()
    }

    fn describe_subchannel(
        &self,
        subchannel: SubchannelId,
        details: &mut crate::policy::PolicyDetails,
    ) {
        self.level
            .children_ref()
            .describe_subchannel(subchannel, details);
    }

    fn call_finished(
        &mut self,
        subchannel: SubchannelId,
        outcome: &CallOutcome,
        ctl: &mut dyn Controller,
    ) {
        self.level
            .children()
            .call_finished(subchannel, outcome, ctl);
        self.level.settle(ctl);
    }

    fn load_report(
        &mut self,
        subchannel: SubchannelId,
        report: &LoadReport,
        ctl: &mut dyn Controller,
    ) {
        self.level.children().load_report(subchannel, report, ctl);
        self.level.settle(ctl);
    }

    fn probe_result(
        &mut self,
        subchannel: SubchannelId,
        result: &ProbeResult,
        ctl: &mut dyn Controller,
    ) {
        self.level.children().probe_result(subchannel, result, ctl);
        self.level.settle(ctl);
    }
}
