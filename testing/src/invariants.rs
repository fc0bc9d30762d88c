//! The invariants the core promises (DESIGN.md), as the harness checks them: each action before
//! it is carried out, and the balancer as a whole after every input.
//!
//! - a pick names only a subchannel that is READY;
//! - at most one connection attempt is outstanding per subchannel, and none while it is
//!   connected; an attempt's deadline is never in the past;
//! - every removed subchannel gets exactly one `Shutdown`, and no action names it afterwards;
//! - subchannel ids are never reused (a removed one is never connected again);
//! - the channel is READY only when some subchannel is; and when a subchannel is READY but the
//!   channel is not, the policy keeps it out of use: its picker hands out no READY subchannel
//!   (outlier detection ejecting one shows this way);
//! - the subchannels alive never outnumber the addresses of the latest update (memory is bounded),
//!   but during a graceful policy switch, when the replaced policy's stay beside them.
//!
//! A broken invariant panics with a message saying which.

use std::time::Duration;

use croupier::{Action, CallOutcome, ConnectivityState, Pick, PickRequest, SubchannelId};

use crate::harness::Harness;

/// The request hashes the checks pick with: both ends and two points between, so a hashing
/// policy's picker is probed across its ring.
const PROBE_HASHES: [u64; 4] = [0, 1, u64::MAX / 3, u64::MAX];

impl Harness {
    /// Checks `action` against what the adapter holds, before it is carried out.
    pub(crate) fn check_action(&self, action: &Action) {
        match action {
            Action::Connect {
                connection,
                deadline,
                ..
            } => {
                let id = connection.subchannel();
                // A handle removed before is caught here: handles are never reused.
                assert!(!self.shut.contains(&id), "connect for removed {id}");
                assert!(
                    !self.attempts.contains_key(&id),
                    "second attempt in flight for {id}"
                );
                assert!(
                    !self.connections.contains_key(&id),
                    "connect for {id} while connected"
                );
                assert!(*deadline >= self.now, "an attempt deadline in the past");
            }
            Action::Disconnect { connection } => {
                let id = connection.subchannel();
                assert!(!self.shut.contains(&id), "disconnect for removed {id}");
            }
            Action::Shutdown { subchannel } => {
                assert!(
                    !self.shut.contains(subchannel),
                    "{subchannel} shut down twice"
                );
            }
            Action::Probe { subchannel } => {
                assert!(
                    !self.shut.contains(subchannel),
                    "probe of removed {subchannel}"
                );
                assert!(
                    self.known.contains(subchannel),
                    "probe of {subchannel}, which never connected"
                );
            }
            _ => {}
        }
    }

    /// Checks what must hold between inputs; panics naming the broken invariant.
    ///
    /// Its probe picks are calls like any other: with [`Harness::report_probes`] set, each
    /// probe's outcome is reported at once to a policy that learns from call outcomes, as a real
    /// adapter's call guard would (a policy that counts calls in flight, like least_request,
    /// needs it).
    pub fn check_invariants(&mut self) {
        let picker = self.lb.picker();
        let mut handed_out: Vec<SubchannelId> = Vec::new();
        for hash in PROBE_HASHES {
            if let Pick::Ready(id) = picker.pick(&PickRequest::new().with_hash(hash)) {
                self.check_pick(id);
                handed_out.push(id);
            }
        }
        if self.report_probes && self.lb.wants_call_outcomes() {
            for &id in &handed_out {
                self.lb
                    .handle_call_outcome(id, CallOutcome::ok(Duration::ZERO), self.now);
            }
        }
        let (mut alive, mut any_ready) = (0, false);
        for (id, state) in self.lb.subchannel_states() {
            alive += 1;
            any_ready |= state == ConnectivityState::Ready;
            assert!(!self.shut.contains(&id), "{id} is shut down but alive");
        }
        let ready = self.lb.state() == ConnectivityState::Ready;
        assert!(
            any_ready || !ready,
            "the channel is READY with no READY subchannel: {:?}",
            self.lb.subchannels()
        );
        // Whether the policy hides its READY subchannels is what its picker shows: a picker
        // that hands one out puts the channel to use, so the channel must say READY.
        assert!(
            ready || handed_out.is_empty(),
            "the channel is {} but its picker hands out READY {:?}: {:?}",
            self.lb.state(),
            handed_out,
            self.lb.subchannels()
        );
        // During a graceful switch, the old policy and the new one hold subchannels each.
        let replaced = if self.lb.is_switching_policy() {
            self.replaced_bound
        } else {
            0
        };
        assert!(
            alive <= self.bound.max(1) + replaced,
            "{alive} subchannels alive for {} addresses",
            self.bound
        );
    }

    /// Checks that a pick's subchannel is READY.
    pub fn check_pick(&self, id: SubchannelId) {
        assert_eq!(
            self.lb.subchannel_state(id),
            Some(ConnectivityState::Ready),
            "picked {id}, which is not READY"
        );
    }
}
