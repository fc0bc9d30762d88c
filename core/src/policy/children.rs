//! The named children of a tree policy (`priority`, `weighted_target`): each a policy of its own,
//! fed the endpoints its name was chosen for, with a controller that keeps its subchannels, its
//! timers and its pickers apart from its siblings'.
//!
//! A child never publishes to the channel: what it publishes is kept as its state and picker,
//! and the parent, told that something changed, aggregates them its way.

use std::sync::Arc;

use crate::address::{Address, Endpoint};
use crate::call::{CallOutcome, LoadReport};
use crate::picker::{Picker, QueuePicker};
use crate::policy::wrapping::Wrapping;
use crate::policy::{
    Controller, Policy, PolicyConfig, SlotController, SubchannelUpdate, TimerToken,
};
use crate::probe::ProbeResult;
use crate::resolver::ResolverError;
use crate::status::ConnectivityState;
use crate::subchannel::{IdMap, SubchannelId};

/// One child: its policy and what it last published.
#[derive(Debug)]
pub(crate) struct Child {
    /// Names its timers: a child created again in the same slot gets a new id, so the timers
    /// its predecessor left behind never reach it.
    id: u32,
    policy: Box<dyn Policy>,
    state: ConnectivityState,
    picker: Arc<dyn Picker>,
}

impl Child {
    /// What it last published (CONNECTING with a queueing picker until it publishes).
    pub(crate) fn state(&self) -> ConnectivityState {
        self.state
    }

    /// Its newest picker.
    pub(crate) fn picker(&self) -> &Arc<dyn Picker> {
        &self.picker
    }
}

/// The children of one tree policy, by slot (their place in its config).
#[derive(Debug, Default)]
pub(crate) struct Children {
    slots: Vec<Option<Child>>,
    /// Slots whose re-resolution requests are dropped (A56's `ignore_reresolution_requests`).
    quiet: Vec<bool>,
    /// Which child created each subchannel.
    owners: IdMap<u32>,
    /// Slots that published since [`Children::take_changed`] last looked.
    changed: Vec<u32>,
    /// The id the next child created gets.
    next_id: u32,
}

/// What a child's controller works on besides the parent's controller.
struct ChildController<'a> {
    inner: SlotController<'a>,
    owners: &'a mut IdMap<u32>,
    slot: u32,
    quiet: bool,
    state: &'a mut ConnectivityState,
    picker: &'a mut Arc<dyn Picker>,
    changed: &'a mut Vec<u32>,
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
        self.owners.insert(id, self.slot);
        id
    }

    fn remove_subchannel(&mut self, subchannel: SubchannelId) {
        if self.owners.get(&subchannel) == Some(&self.slot) {
            self.owners.remove(&subchannel);
            self.inner.remove_subchannel(subchannel);
        }
    }

    fn publish(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>) {
        *self.state = state;
        *self.picker = picker;
        if !self.changed.contains(&self.slot) {
            self.changed.push(self.slot);
        }
    }

    fn request_resolution(&mut self) {
        if !self.quiet {
            self.inner.request_resolution();
        }
    }
}

impl Children {
    /// Room for `count` children, none created yet; `quiet[i]` drops child `i`'s re-resolution
    /// requests.
    pub(crate) fn new(quiet: Vec<bool>) -> Self {
        Children {
            slots: quiet.iter().map(|_| None).collect(),
            quiet,
            owners: IdMap::default(),
            changed: Vec::new(),
            next_id: 0,
        }
    }

    /// The child in `slot`, if it exists.
    pub(crate) fn get(&self, slot: u32) -> Option<&Child> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Every child that exists, with its slot.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Child)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, child)| Some((slot as u32, child.as_ref()?)))
    }

    /// The slots that published since the last call, in the order they first did.
    pub(crate) fn take_changed(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.changed)
    }

    /// Runs `f` on the child in `slot` with its controller; nothing if there is none.
    fn with(
        &mut self,
        slot: u32,
        ctl: &mut dyn Controller,
        f: impl FnOnce(&mut dyn Policy, &mut dyn Controller),
    ) {
        let Some(Some(child)) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Child {
            id,
            policy,
            state,
            picker,
        } = child;
        let mut child_ctl = ChildController {
            inner: SlotController::new(ctl, *id),
            owners: &mut self.owners,
            slot,
            quiet: self.quiet.get(slot as usize).copied().unwrap_or(false),
            state,
            picker,
            changed: &mut self.changed,
        };
        f(policy.as_mut(), &mut child_ctl);
    }

    /// Creates the child in `slot` (replacing none) and gives it `endpoints`.
    pub(crate) fn create(
        &mut self,
        slot: u32,
        policy: Box<dyn Policy>,
        endpoints: &[Endpoint],
        ctl: &mut dyn Controller,
    ) {
        let Some(place) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let id = self.next_id;
        // Ids below u32::MAX name timers (SlotController's reserved slot sets none); after four
        // billion children they wrap, long after any timer of the first is gone.
        self.next_id = self.next_id.wrapping_add(1) % u32::MAX;
        *place = Some(Child {
            id,
            policy,
            state: ConnectivityState::Connecting,
            picker: Arc::new(QueuePicker),
        });
        self.with(slot, ctl, |policy, ctl| {
            policy.resolver_update(endpoints, ctl)
        });
    }

    /// Removes the child in `slot` and every subchannel it made.
    pub(crate) fn remove(&mut self, slot: u32, ctl: &mut dyn Controller) {
        if let Some(place) = self.slots.get_mut(slot as usize) {
            *place = None;
        }
        let mut owned: Vec<SubchannelId> = self
            .owners
            .iter()
            .filter(|(_, owner)| **owner == slot)
            .map(|(id, _)| *id)
            .collect();
        owned.sort_unstable();
        for id in owned {
            self.owners.remove(&id);
            ctl.remove_subchannel(id);
        }
        self.changed.retain(|changed| *changed != slot);
    }

    /// Gives the child in `slot` its endpoints.
    pub(crate) fn resolver_update(
        &mut self,
        slot: u32,
        endpoints: &[Endpoint],
        ctl: &mut dyn Controller,
    ) {
        self.with(slot, ctl, |policy, ctl| {
            policy.resolver_update(endpoints, ctl)
        });
    }

    /// Tells every child of the resolver's failure.
    pub(crate) fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller) {
        for slot in 0..self.slots.len() as u32 {
            self.with(slot, ctl, |policy, ctl| policy.resolver_error(error, ctl));
        }
    }

    /// Asks the child in `slot` to leave IDLE.
    pub(crate) fn exit_idle(&mut self, slot: u32, ctl: &mut dyn Controller) {
        self.with(slot, ctl, |policy, ctl| policy.exit_idle(ctl));
    }

    /// Routes a subchannel's update to the child that made it.
    pub(crate) fn subchannel_update(
        &mut self,
        subchannel: SubchannelId,
        update: &SubchannelUpdate,
        ctl: &mut dyn Controller,
    ) {
        if let Some(&slot) = self.owners.get(&subchannel) {
            self.with(slot, ctl, |policy, ctl| {
                policy.subchannel_update(subchannel, update, ctl)
            });
        }
    }

    /// Routes a child's timer (`token` split off its parent's, `id` the child's) to it; a timer
    /// of a child since removed goes nowhere.
    pub(crate) fn timer(&mut self, id: u32, token: TimerToken, ctl: &mut dyn Controller) {
        let found = self
            .slots
            .iter()
            .position(|child| child.as_ref().is_some_and(|child| child.id == id));
        if let Some(slot) = found {
            self.with(slot as u32, ctl, |policy, ctl| policy.timer(token, ctl));
        }
    }

    /// What the child that owns `subchannel` knows of it.
    pub(crate) fn describe_subchannel(
        &self,
        subchannel: SubchannelId,
        details: &mut crate::policy::PolicyDetails,
    ) {
        let child = self
            .owners
            .get(&subchannel)
            .and_then(|&slot| self.slots.get(slot as usize)?.as_ref());
        if let Some(child) = child {
            child.policy.describe_subchannel(subchannel, details);
        }
    }

    /// Routes a call's outcome to the child whose subchannel it used.
    pub(crate) fn call_finished(
        &mut self,
        subchannel: SubchannelId,
        outcome: &CallOutcome,
        ctl: &mut dyn Controller,
    ) {
        if let Some(&slot) = self.owners.get(&subchannel) {
            self.with(slot, ctl, |policy, ctl| {
                policy.call_finished(subchannel, outcome, ctl)
            });
        }
    }

    /// Routes an out-of-band load report to the child whose subchannel it is about.
    pub(crate) fn load_report(
        &mut self,
        subchannel: SubchannelId,
        report: &LoadReport,
        ctl: &mut dyn Controller,
    ) {
        if let Some(&slot) = self.owners.get(&subchannel) {
            self.with(slot, ctl, |policy, ctl| {
                policy.load_report(subchannel, report, ctl)
            });
        }
    }
}

impl Children {
    /// Passes a probe's answer to the child that owns `subchannel`.
    pub(crate) fn probe_result(
        &mut self,
        subchannel: SubchannelId,
        result: &ProbeResult,
        ctl: &mut dyn Controller,
    ) {
        if let Some(&slot) = self.owners.get(&subchannel) {
            self.with(slot, ctl, |policy, ctl| {
                policy.probe_result(subchannel, result, ctl)
            });
        }
    }
}

/// Whether any of `policies` learns from call outcomes: a tree policy asks for them if a child
/// it may start would.
pub(crate) fn any_wants_call_outcomes<'a>(
    mut policies: impl Iterator<Item = &'a PolicyConfig>,
) -> bool {
    policies.any(|policy| policy.build().wants_call_outcomes())
}

/// What a tree policy last published, so that it publishes only what changed.
#[derive(Debug, Default)]
pub(crate) struct Published(Option<(ConnectivityState, Arc<dyn Picker>)>);

impl Published {
    /// Publishes `state` and `picker` unless they are what was published last.
    pub(crate) fn publish(
        &mut self,
        state: ConnectivityState,
        picker: &Arc<dyn Picker>,
        ctl: &mut dyn Controller,
    ) {
        let same = self
            .0
            .as_ref()
            .is_some_and(|(last, shown)| *last == state && Arc::ptr_eq(shown, picker));
        if !same {
            self.0 = Some((state, Arc::clone(picker)));
            ctl.publish(state, Arc::clone(picker));
        }
    }
}

/// `endpoints` grouped by the first name of their hierarchy path, one list per name of `names`
/// (in its order), that name consumed; and how many endpoints named no child (or had no path
/// left): they go to none.
pub(crate) fn group_by_child(
    endpoints: &[Endpoint],
    names: &[Arc<str>],
) -> (Vec<Vec<Endpoint>>, usize) {
    let mut groups: Vec<Vec<Endpoint>> = names.iter().map(|_| Vec::new()).collect();
    let mut unplaced = 0;
    for endpoint in endpoints {
        let first = endpoint.attributes().hierarchy().first();
        match first.and_then(|name| names.iter().position(|n| n == name)) {
            Some(index) => {
                let mut placed = endpoint.clone();
                placed.attributes_mut().descend_hierarchy();
                groups[index].push(placed);
            }
            None => unplaced += 1,
        }
    }
    (groups, unplaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use std::time::Instant;

    /// Records the timers it is given.
    #[derive(Debug, Default)]
    struct Timers(Arc<std::sync::Mutex<Vec<u32>>>);

    impl Policy for Timers {
        fn resolver_update(&mut self, _: &[Endpoint], _: &mut dyn Controller) {}
        fn resolver_error(&mut self, _: &ResolverError, _: &mut dyn Controller) {}
        fn subchannel_update(
            &mut self,
            _: SubchannelId,
            _: &SubchannelUpdate,
            _: &mut dyn Controller,
        ) {
        }
        fn timer(&mut self, token: TimerToken, _: &mut dyn Controller) {
            self.0.lock().unwrap().push(token.kind());
        }
    }

    /// A controller that sets timers into a list and does nothing else.
    struct Bare(Rng, Vec<TimerToken>, Instant);

    impl Controller for Bare {
        fn now(&self) -> Instant {
            self.2
        }
        fn create_subchannel(&mut self, _: &Address) -> SubchannelId {
            SubchannelId::from_u64(1)
        }
        fn connect(&mut self, _: SubchannelId) {}
        fn remove_subchannel(&mut self, _: SubchannelId) {}
        fn subchannel_state(&self, _: SubchannelId) -> Option<ConnectivityState> {
            None
        }
        fn publish(&mut self, _: ConnectivityState, _: Arc<dyn Picker>) {}
        fn request_resolution(&mut self) {}
        fn set_timer(&mut self, _: Instant, token: TimerToken) {
            self.1.push(token);
        }
        fn rng(&mut self) -> &mut Rng {
            &mut self.0
        }
    }

    #[test]
    fn a_child_created_again_never_gets_its_predecessors_timers() {
        let mut ctl = Bare(Rng::new(1), Vec::new(), Instant::now());
        let mut children = Children::new(vec![false]);
        let first = Timers::default();
        let first_seen = Arc::clone(&first.0);
        children.create(0, Box::new(first), &[], &mut ctl);
        children.with(0, &mut ctl, |_, ctl| {
            ctl.set_timer(ctl.now(), TimerToken::new(7))
        });
        children.remove(0, &mut ctl);
        let second = Timers::default();
        let second_seen = Arc::clone(&second.0);
        children.create(0, Box::new(second), &[], &mut ctl);
        children.with(0, &mut ctl, |_, ctl| {
            ctl.set_timer(ctl.now(), TimerToken::new(8))
        });
        for token in std::mem::take(&mut ctl.1) {
            let (id, inner) = token.split().expect("a child's timer");
            children.timer(id, inner, &mut ctl);
        }
        assert_eq!(*second_seen.lock().unwrap(), [8]);
        assert!(first_seen.lock().unwrap().is_empty());
    }

    #[test]
    fn endpoints_go_to_the_child_their_path_names() {
        let names: Vec<Arc<str>> = vec!["a".into(), "b".into()];
        let endpoint = |name: &str, path: &[&str]| {
            Endpoint::new(Address::Opaque(name.into())).hierarchy(path.iter().copied())
        };
        let endpoints = [
            endpoint("1", &["b", "x"]),
            endpoint("2", &["a"]),
            endpoint("3", &["c"]),
            endpoint("4", &[]),
            endpoint("5", &["b"]),
        ];
        let (groups, unplaced) = group_by_child(&endpoints, &names);
        let shown: Vec<Vec<String>> = groups
            .iter()
            .map(|group| group.iter().map(ToString::to_string).collect())
            .collect();
        assert_eq!(shown, [vec!["2"], vec!["1", "5"]]);
        assert_eq!(unplaced, 2);
        assert_eq!(&*groups[1][0].attributes().hierarchy()[0], "x");
        assert!(groups[1][1].attributes().hierarchy().is_empty());
    }
}
