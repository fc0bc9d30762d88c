//! [`EndpointPolicy`] as a [`Policy`]: resolver updates, subchannel updates, timers and call
//! outcomes reach the endpoints and the spread.

use crate::address::Endpoint;
use crate::call::{CallOutcome, LoadReport};
use crate::policy::{Controller, Policy, SubchannelUpdate, TimerToken};
use crate::resolver::ResolverError;
use crate::slab::SlabKey;
use crate::subchannel::SubchannelId;

use super::{EndpointKey, EndpointPolicy, Spread};

impl<S: Spread> EndpointPolicy<S> {
    /// The endpoint that owns `subchannel`, with the spread's value for it.
    fn owner(
        &mut self,
        subchannel: SubchannelId,
    ) -> (&mut S, Option<(EndpointKey, &mut S::Endpoint)>) {
        let owner = self.by_subchannel.get(&subchannel).and_then(|&key| {
            let child = self.children.get_mut(key)?;
            Some((EndpointKey(key), &mut child.kept))
        });
        (&mut self.spread, owner)
    }
}

impl<S: Spread> Policy for EndpointPolicy<S> {
    fn wants_call_outcomes(&self) -> bool {
        self.spread.wants_call_outcomes()
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
        self.urgent = true;
        self.updates = self.updates.wrapping_add(1);
        let update = self.updates;
        // Known endpoints are marked as listed; the others are new (or repeats of new ones).
        // With no children yet, every endpoint is new: nothing to look up or collect.
        let all_fresh = self.children.is_empty();
        let mut fresh: Vec<&Endpoint> = Vec::new();
        let mut listed = 0usize;
        let known: &[Endpoint] = if all_fresh { &[] } else { endpoints };
        for endpoint in known {
            let Some(key) = self.find(endpoint.addresses()) else {
                fresh.push(endpoint);
                continue;
            };
            let child = self
                .children
                .get_mut(key)
                .expect("find returns only the key of a live child whose addresses it matched");
            if child.listed == update {
                continue; // the same endpoint twice: the first one counts
            }
            child.listed = update;
            listed += 1;
            if self
                .spread
                .update_endpoint(EndpointKey(key), &mut child.kept, endpoint)
            {
                self.dirty |= child.ready.is_some();
            }
        }
        if listed < self.children.len() {
            let gone: Vec<SlabKey> = self
                .children
                .iter()
                .filter(|(_, child)| child.listed != update)
                .map(|(key, _)| key)
                .collect();
            for key in gone {
                self.remove_child(key, ctl);
            }
        }
        let new = if all_fresh {
            endpoints.len()
        } else {
            fresh.len()
        };
        ctl.reserve_subchannels(new);
        self.children.reserve(new);
        let children = &self.children;
        self.by_addresses
            .reserve(new, |key| super::child_hash(children, *key));
        self.by_subchannel.reserve(new);
        let new_ones: &mut dyn Iterator<Item = &Endpoint> = if all_fresh {
            &mut endpoints.iter()
        } else {
            &mut fresh.into_iter()
        };
        for endpoint in new_ones {
            if !self.add_child(endpoint, update, ctl) {
                break;
            }
        }
        if self.children.is_empty() {
            self.dirty = true;
        }
        self.publish_if_dirty(ctl);
        self.arm_spread_timer(ctl);
    }

    fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller) {
        if self.children.is_empty() {
            self.resolver_error = Some(error.clone());
            self.dirty = true;
            self.urgent = true;
            self.publish_if_dirty(ctl);
        }
    }

    fn subchannel_update(
        &mut self,
        subchannel: SubchannelId,
        update: &SubchannelUpdate,
        ctl: &mut dyn Controller,
    ) {
        let Some(&key) = self.by_subchannel.get(&subchannel) else {
            return;
        };
        self.with_child(key, ctl, |list, ctl| {
            list.subchannel_update(subchannel, update, ctl)
        });
        self.publish_if_dirty(ctl);
    }

    fn timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        let Some((slot, token)) = token.split() else {
            self.own_timer(token, ctl);
            return;
        };
        let Some(key) = self.children.key_at(slot) else {
            return;
        };
        self.with_child(key, ctl, |list, ctl| list.on_timer(token, ctl));
        self.publish_if_dirty(ctl);
    }
}
