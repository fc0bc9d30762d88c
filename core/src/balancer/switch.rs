//! The graceful switch between policies (grpc-go's `balancer/gracefulswitch`): a config that
//! names another policy builds it beside the running one, which keeps serving calls until the new
//! one is READY; only then are the old policy's subchannels shut down.
//!
//! The running policy is the *current* one, the one being built the *pending* one. The pending
//! policy takes the current one's place when it publishes READY (or IDLE: an IDLE policy waits
//! for a call to connect, and none reaches it while it is pending), or as soon as the current
//! one is not READY (it has nothing worth keeping). Until then the pending policy's pickers are
//! kept, not published. A config for the policy already current drops the pending one; a config
//! for the pending one changes nothing.
//!
//! Resolver updates and errors go to the policy the channel is moving to (the pending one during a
//! switch), so the current one serves on with the endpoints it has, as in grpc-go; calls to leave
//! IDLE go to both (a call may wait on either's picker); a subchannel's changes, calls and load
//! reports go to the policy that created it. Only the pending policy's
//! subchannels are tracked (a set that exists only during a switch): every other subchannel is the
//! current one's. Timers are told apart by the policy's generation, which the balancer keeps
//! beside each token, so the policies' own tokens keep every level of
//! [`TimerToken::MAX_DEPTH`] for their children.

use std::sync::Arc;
use std::time::Instant;

use crate::address::{Address, Endpoint};
use crate::call::{CallOutcome, LoadReport};
use crate::hasher::FastSet;
use crate::notice::Notice;
use crate::picker::{Picker, QueuePicker};
use crate::policy::{
    Controller, Policy, PolicyConfig, PolicyDetails, SubchannelUpdate, TimerToken,
};
use crate::probe::ProbeResult;
use crate::resolver::ResolverError;
use crate::rng::Rng;
use crate::status::ConnectivityState;
use crate::subchannel::SubchannelId;

use super::sources::PolicyKey;
use super::Core;

/// One of the two policies, with what it last published.
#[derive(Debug)]
struct Side {
    policy: Box<dyn Policy>,
    /// The policy's name: a config naming it again may be taken in place.
    name: String,
    key: PolicyKey,
    /// Names its timers: a timer of a generation no longer running is ignored.
    generation: u32,
    state: ConnectivityState,
    picker: Option<Arc<dyn Picker>>,
}

/// Which policy an input goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Current,
    Pending,
}

/// The current policy and, during a switch, the pending one.
#[derive(Debug)]
pub(super) struct Switch {
    current: Side,
    pending: Option<Side>,
    /// The pending policy's subchannels; empty outside a switch.
    pending_owned: FastSet<SubchannelId>,
    next_generation: u32,
}

impl Switch {
    /// Runs `policy` from the start.
    pub(super) fn new(key: PolicyKey, policy: &PolicyConfig) -> Self {
        Switch {
            current: Side::new(key, policy, 0),
            pending: None,
            pending_owned: FastSet::default(),
            next_generation: 1,
        }
    }

    /// Whether a switch is under way.
    pub(super) fn is_switching(&self) -> bool {
        self.pending.is_some()
    }

    /// Runs the policy `key` names: the current one stays (taking new settings in place when
    /// it names the same policy and [`Policy::reconfigure`] accepts them), or a switch to it
    /// starts (and ends at once if the current one is not READY).
    pub(super) fn configure(&mut self, key: &PolicyKey, policy: &PolicyConfig, core: &mut Core) {
        if *key == self.current.key {
            self.abandon_pending(core);
            return;
        }
        if self.pending.as_ref().is_some_and(|side| side.key == *key) {
            return;
        }
        self.abandon_pending(core);
        // The same policy with other settings: in place, if it can take them.
        if policy.name() == self.current.name {
            let mut taken = false;
            self.run(Which::Current, core, |current, ctl| {
                taken = current.reconfigure(policy, ctl);
            });
            if taken {
                self.current.key = key.clone();
                return;
            }
        }
        let generation = self.next_generation;
        // u32::MAX never comes round in practice; wrapping keeps it panic-free if it did.
        self.next_generation = self.next_generation.wrapping_add(1);
        self.pending = Some(Side::new(key.clone(), policy, generation));
        if core.notices.enabled() {
            core.notices.push(Notice::PolicySwitchStarted {
                from: self.current.name.clone(),
                to: policy.name().to_owned(),
            });
        }
        if self.current.state != ConnectivityState::Ready {
            self.promote(core);
        }
    }

    /// The name of the policy the channel is moving to: the pending one during a switch.
    pub(super) fn latest_name(&self) -> &str {
        match &self.pending {
            Some(side) => &side.name,
            None => &self.current.name,
        }
    }

    /// What the policy that owns `id` knows of it.
    pub(super) fn describe_subchannel(&self, id: SubchannelId, details: &mut PolicyDetails) {
        let side = match self.owner(id) {
            Which::Pending => self.pending.as_ref(),
            Which::Current => Some(&self.current),
        };
        if let Some(side) = side {
            side.policy.describe_subchannel(id, details);
        }
    }

    /// Whether either policy learns from call outcomes.
    pub(super) fn wants_call_outcomes(&self) -> bool {
        self.current.policy.wants_call_outcomes()
            || self
                .pending
                .as_ref()
                .is_some_and(|side| side.policy.wants_call_outcomes())
    }

    /// Whether timers of `generation` still have a policy to go to.
    pub(super) fn is_running(&self, generation: u32) -> bool {
        self.current.generation == generation
            || self
                .pending
                .as_ref()
                .is_some_and(|side| side.generation == generation)
    }

    pub(super) fn resolver_update(&mut self, endpoints: &[Endpoint], core: &mut Core) {
        self.latest(core, |policy, ctl| policy.resolver_update(endpoints, ctl));
    }

    pub(super) fn resolver_error(&mut self, error: &ResolverError, core: &mut Core) {
        self.latest(core, |policy, ctl| policy.resolver_error(error, ctl));
    }

    /// Both policies: a call queued on the current one's picker (ring_hash's on an IDLE
    /// endpoint) must have it connect, as a call on the pending one's would.
    pub(super) fn exit_idle(&mut self, core: &mut Core) {
        self.run(Which::Current, core, |policy, ctl| policy.exit_idle(ctl));
        self.run(Which::Pending, core, |policy, ctl| policy.exit_idle(ctl));
    }

    pub(super) fn subchannel_update(
        &mut self,
        id: SubchannelId,
        update: &SubchannelUpdate,
        core: &mut Core,
    ) {
        let owner = self.owner(id);
        self.run(owner, core, |policy, ctl| {
            policy.subchannel_update(id, update, ctl)
        });
    }

    pub(super) fn call_finished(
        &mut self,
        id: SubchannelId,
        outcome: &CallOutcome,
        core: &mut Core,
    ) {
        let owner = self.owner(id);
        self.run(owner, core, |policy, ctl| {
            policy.call_finished(id, outcome, ctl)
        });
    }

    pub(super) fn load_report(&mut self, id: SubchannelId, report: &LoadReport, core: &mut Core) {
        let owner = self.owner(id);
        self.run(owner, core, |policy, ctl| {
            policy.load_report(id, report, ctl)
        });
    }

    pub(super) fn probe_result(&mut self, id: SubchannelId, result: &ProbeResult, core: &mut Core) {
        let owner = self.owner(id);
        self.run(owner, core, |policy, ctl| {
            policy.probe_result(id, result, ctl)
        });
    }

    /// A timer of the policy of `generation` fired; one of a policy gone is ignored.
    pub(super) fn timer(&mut self, generation: u32, token: TimerToken, core: &mut Core) {
        let which = if generation == self.current.generation {
            Which::Current
        } else if self.is_running(generation) {
            Which::Pending
        } else {
            return;
        };
        self.run(which, core, |policy, ctl| policy.timer(token, ctl));
    }

    fn owner(&self, id: SubchannelId) -> Which {
        if self.pending_owned.contains(&id) {
            Which::Pending
        } else {
            Which::Current
        }
    }

    /// `f` on the policy the channel is moving to: the pending one during a switch.
    fn latest(&mut self, core: &mut Core, f: impl FnOnce(&mut dyn Policy, &mut dyn Controller)) {
        let which = if self.pending.is_some() {
            Which::Pending
        } else {
            Which::Current
        };
        self.run(which, core, f);
    }

    /// `f` on one policy, then what its publication calls for. Outside a switch, what the
    /// current policy publishes goes to the channel as it comes.
    fn run(
        &mut self,
        which: Which,
        core: &mut Core,
        f: impl FnOnce(&mut dyn Policy, &mut dyn Controller),
    ) {
        let switching = self.pending.is_some();
        let (side, owned) = match which {
            Which::Current => (&mut self.current, None),
            Which::Pending => match self.pending.as_mut() {
                Some(side) => (side, Some(&mut self.pending_owned)),
                None => return,
            },
        };
        let mut ctl = SideController {
            core: &mut *core,
            generation: side.generation,
            owned,
            forward: !switching,
            published: None,
        };
        f(&mut *side.policy, &mut ctl);
        let Some((state, picker)) = ctl.published else {
            return;
        };
        side.state = state;
        side.picker = Some(Arc::clone(&picker));
        if !switching {
            return; // published already
        }
        match which {
            Which::Current if state != ConnectivityState::Ready => self.promote(core),
            Which::Current => core.publish(state, picker),
            Which::Pending => {
                let ready_or_idle =
                    matches!(state, ConnectivityState::Ready | ConnectivityState::Idle);
                if ready_or_idle || self.current.state != ConnectivityState::Ready {
                    self.promote(core);
                }
            }
        }
    }

    /// The pending policy becomes the current one: the old one's subchannels are shut down and
    /// the new one's last picker is published.
    fn promote(&mut self, core: &mut Core) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let old = std::mem::replace(&mut self.current, pending);
        let owned = std::mem::take(&mut self.pending_owned);
        let old_subchannels: Vec<SubchannelId> = core
            .subchannels
            .in_creation_order()
            .into_iter()
            .map(|(id, ..)| id)
            .filter(|id| !owned.contains(id))
            .collect();
        for id in old_subchannels {
            core.remove_subchannel(id);
        }
        if core.notices.enabled() {
            core.notices.push(Notice::PolicySwitched {
                from: old.name.clone(),
                to: self.current.name.clone(),
            });
        }
        drop(old);
        let picker = self
            .current
            .picker
            .clone()
            .unwrap_or_else(|| Arc::new(QueuePicker));
        core.publish(self.current.state, picker);
    }

    /// Drops the pending policy, if any, and its subchannels.
    fn abandon_pending(&mut self, core: &mut Core) {
        if self.pending.take().is_none() {
            return;
        }
        let mut owned: Vec<SubchannelId> = self.pending_owned.drain().collect();
        owned.sort();
        for id in owned {
            core.remove_subchannel(id);
        }
    }
}

impl Side {
    fn new(key: PolicyKey, policy: &PolicyConfig, generation: u32) -> Self {
        Side {
            policy: policy.build(),
            name: policy.name().to_owned(),
            key,
            generation,
            // What a fresh policy is until it says otherwise.
            state: ConnectivityState::Connecting,
            picker: None,
        }
    }
}

/// The balancer as one of the two policies sees it: subchannels the pending policy creates are
/// recorded as its own, its timers carry its generation, and what it publishes is kept for
/// [`Switch`] to decide on (and, outside a switch, published at once).
struct SideController<'a> {
    core: &'a mut Core,
    generation: u32,
    owned: Option<&'a mut FastSet<SubchannelId>>,
    forward: bool,
    published: Option<(ConnectivityState, Arc<dyn Picker>)>,
}

impl Controller for SideController<'_> {
    fn now(&self) -> Instant {
        self.core.now
    }

    fn create_subchannel(&mut self, address: &Address) -> SubchannelId {
        let id = self.core.create_subchannel(address);
        if let Some(owned) = self.owned.as_mut() {
            owned.insert(id);
        }
        id
    }

    fn reserve_subchannels(&mut self, additional: usize) {
        self.core.reserve_subchannels(additional);
    }

    fn connect(&mut self, subchannel: SubchannelId) {
        self.core.connect(subchannel);
    }

    fn remove_subchannel(&mut self, subchannel: SubchannelId) {
        self.core.remove_subchannel(subchannel);
        if let Some(owned) = self.owned.as_mut() {
            owned.remove(&subchannel);
        }
    }

    fn subchannel_state(&self, subchannel: SubchannelId) -> Option<ConnectivityState> {
        self.core.subchannel_state(subchannel)
    }

    fn publish(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>) {
        if self.forward {
            self.core.publish(state, Arc::clone(&picker));
        }
        self.published = Some((state, picker));
    }

    fn request_resolution(&mut self) {
        self.core.request_resolution();
    }

    fn request_probe(&mut self, subchannel: SubchannelId) {
        self.core.request_probe(subchannel);
    }

    fn set_timer(&mut self, at: Instant, token: TimerToken) {
        self.core.set_timer(at, self.generation, token);
    }

    fn rng(&mut self) -> &mut Rng {
        &mut self.core.rng
    }

    fn notices_enabled(&self) -> bool {
        self.core.notices.enabled()
    }

    fn notify(&mut self, notice: Notice) {
        self.core.notices.push(notice);
    }

    fn subchannel_address(&self, subchannel: SubchannelId) -> Option<Address> {
        self.core
            .subchannels
            .get_with_address(&subchannel)
            .map(|(_, address)| address.clone())
    }
}
