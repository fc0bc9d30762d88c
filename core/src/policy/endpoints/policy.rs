//! [`EndpointPolicy`] as a [`Policy`]: resolver updates, subchannel updates, timers and call
//! outcomes reach the endpoints and the spread.

use crate::address::Endpoint;
use crate::call::{CallOutcome, LoadReport};
use crate::policy::{
    Controller, Policy, PolicyConfig, PolicyDetails, SubchannelUpdate, TimerToken,
};
use crate::probe::ProbeResult;
use crate::resolver::ResolverError;
use crate::subchannel::SubchannelId;

use super::{EndpointKey, EndpointPolicy, Spread};

impl<S: Spread> EndpointPolicy<S> {
    /// The spread, and the endpoint that owns `subchannel` with the spread's value for it.
    fn owner(
        &mut self,
        subchannel: SubchannelId,
    ) -> (&mut S, Option<(EndpointKey, &mut S::Endpoint)>) {
        let owner = self.endpoints.owner(subchannel).and_then(|key| {
            let child = self.endpoints.get_mut(key)?;
            Some((key, &mut child.kept))
        });
        (&mut self.shown.spread, owner)
    }
}

impl<S: Spread> Policy for EndpointPolicy<S> {
    fn wants_call_outcomes(&self) -> bool {
        self.shown.spread.wants_call_outcomes()
    }

    fn describe_subchannel(&self, subchannel: SubchannelId, details: &mut PolicyDetails) {
        let owner = self.endpoints.owner(subchannel).and_then(|key| {
            let child = self.endpoints.get(key)?;
            Some((key, &child.kept))
        });
        self.shown
            .spread
            .describe_subchannel(subchannel, owner, details);
    }

    fn call_finished(
        &mut self,
        subchannel: SubchannelId,
        outcome: &CallOutcome,
        ctl: &mut dyn Controller,
    ) {
        let now = ctl.now();
        let (spread, owner) = self.owner(subchannel);
        // Only when the spread learned something can its timer become needed. (Asking on every
        // call would scan every endpoint's weight on every call once reports have lapsed.)
        if spread.call_finished(subchannel, owner, outcome, now) {
            self.arm_spread_timer(ctl);
        }
        self.request_probes(ctl);
    }

    fn probe_result(
        &mut self,
        subchannel: SubchannelId,
        result: &ProbeResult,
        ctl: &mut dyn Controller,
    ) {
        let now = ctl.now();
        let (spread, owner) = self.owner(subchannel);
        if spread.probe_result(subchannel, owner, result, now) {
            self.arm_spread_timer(ctl);
        }
        self.request_probes(ctl);
    }

    fn load_report(
        &mut self,
        subchannel: SubchannelId,
        report: &LoadReport,
        ctl: &mut dyn Controller,
    ) {
        let now = ctl.now();
        let (spread, owner) = self.owner(subchannel);
        if spread.load_report(subchannel, owner, report, now) {
            self.arm_spread_timer(ctl);
        }
    }

    fn resolver_update(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller) {
        self.resolver_error = None;
        // A new list is published at once (its cost is the update's own).
        self.shown.urgent = true;
        self.endpoints.update(endpoints, ctl, &mut self.shown);
        if self.endpoints.is_empty() {
            self.shown.dirty = true;
        }
        self.publish_if_dirty(ctl);
        self.arm_spread_timer(ctl);
    }

    fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller) {
        if self.endpoints.is_empty() {
            self.resolver_error = Some(error.clone());
            self.shown.dirty = true;
            self.shown.urgent = true;
            self.publish_if_dirty(ctl);
        }
    }

    fn subchannel_update(
        &mut self,
        subchannel: SubchannelId,
        update: &SubchannelUpdate,
        ctl: &mut dyn Controller,
    ) {
        if self
            .endpoints
            .subchannel_update(subchannel, update, ctl, &mut self.shown)
            .is_some()
        {
            self.publish_if_dirty(ctl);
        }
    }

    fn reconfigure(&mut self, config: &PolicyConfig, ctl: &mut dyn Controller) -> bool {
        if !self.shown.spread.reconfigure(config) {
            return false;
        }
        self.shown.dirty = true;
        self.shown.urgent = true;
        self.publish_if_dirty(ctl);
        self.arm_spread_timer(ctl);
        true
    }

    fn timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        let Some((slot, token)) = token.split() else {
            self.own_timer(token, ctl);
            return;
        };
        self.endpoints.timer(slot, token, ctl, &mut self.shown);
        self.publish_if_dirty(ctl);
    }
}
