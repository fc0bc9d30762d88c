//! round_robin: a connection to every endpoint, calls spread evenly over the READY ones.
//!
//! Each endpoint is run by its own `PickFirstList` (so an endpoint with several addresses
//! connects to the first that answers, with happy eyeballs). An endpoint whose connection is lost
//! reconnects at once; one that fails backs off and retries on its own schedule. The picker cycles
//! over the READY endpoints from a random start, so many clients do not all begin with the same
//! backend (a fixed start skewed load 3-4x in grpc-java #4462).
//!
//! Aggregate state: READY if any endpoint is; else CONNECTING if any is; else IDLE if any is; else
//! TRANSIENT_FAILURE. An endpoint that failed counts as failed until it is READY again ("sticky"
//! TRANSIENT_FAILURE, gRFC A61), so the channel does not flap through CONNECTING while it retries.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::address::{Address, Endpoint};
use crate::call::CallOutcome;
use crate::hasher::{FastMap, FastSet};
use crate::picker::{FailPicker, Picker, QueuePicker, RoundRobinPicker};
use crate::policy::child::ChildController;
use crate::policy::least_request::{self, LeastRequestPicker};
use crate::policy::pick_first::{PickFirstList, DEFAULT_HAPPY_EYEBALLS_DELAY};
use crate::policy::random::RandomPicker;
use crate::policy::{describe_failures, Controller, Policy, PolicyBuilder, SubchannelUpdate};
use crate::resolver::ResolverError;
use crate::status::{ConnectivityState, Status};
use crate::subchannel::{IdMap, SubchannelId};

/// How many failed addresses an error message names before it says "and N more".
const ERRORS_SHOWN: usize = 8;

/// Settings of round_robin (it has none yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoundRobinConfig {}

impl PolicyBuilder for RoundRobinConfig {
    fn name(&self) -> &str {
        "round_robin"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(RoundRobin::default())
    }
}

/// How the READY endpoints share the calls: the one thing round_robin, random and least_request
/// do differently (they connect and aggregate endpoints alike).
#[derive(Debug, Default)]
pub(crate) enum Spread {
    /// In turn, from a random start.
    #[default]
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// The least loaded of this many random choices (least_request).
    LeastRequest(usize),
}

/// One endpoint and the list that connects it.
#[derive(Debug)]
struct Child {
    addresses: Arc<[Address]>,
    list: PickFirstList,
    /// The state last counted in [`Counts`].
    counted: ConnectivityState,
    /// The READY subchannel last put in the picker.
    ready: Option<SubchannelId>,
}

/// How many children are in each state.
#[derive(Debug, Default)]
struct Counts {
    ready: usize,
    connecting: usize,
    idle: usize,
}

impl Counts {
    fn add(&mut self, state: ConnectivityState, delta: isize) {
        let slot = match state {
            ConnectivityState::Ready => &mut self.ready,
            ConnectivityState::Connecting => &mut self.connecting,
            ConnectivityState::Idle => &mut self.idle,
            _ => return,
        };
        *slot = slot.saturating_add_signed(delta);
    }

    fn aggregate(&self) -> ConnectivityState {
        if self.ready > 0 {
            ConnectivityState::Ready
        } else if self.connecting > 0 {
            ConnectivityState::Connecting
        } else if self.idle > 0 {
            ConnectivityState::Idle
        } else {
            ConnectivityState::TransientFailure
        }
    }
}

/// The round_robin policy.
#[derive(Debug, Default)]
pub(crate) struct RoundRobin {
    /// Children by key; keys grow, so iteration follows creation order (deterministic).
    /// Boxed, so the map moves pointers rather than whole lists as it grows.
    children: BTreeMap<u32, Box<Child>>,
    by_addresses: FastMap<Arc<[Address]>, u32>,
    by_subchannel: IdMap<u32>,
    next_key: u32,
    counts: Counts,
    /// Something the picker shows changed since it was last published.
    dirty: bool,
    published: Option<ConnectivityState>,
    resolver_error: Option<ResolverError>,
    spread: Spread,
    /// least_request's outstanding calls per READY subchannel, kept across pickers.
    outstanding: IdMap<Arc<AtomicUsize>>,
}

impl RoundRobin {
    /// A policy that connects every endpoint and spreads calls as `spread` says.
    pub(crate) fn with_spread(spread: Spread) -> Self {
        RoundRobin {
            spread,
            ..RoundRobin::default()
        }
    }

    /// Runs `f` on child `key` with its own controller, then brings the counts and the picker's
    /// inputs up to date (and reconnects the child if it went IDLE).
    fn with_child(
        &mut self,
        key: u32,
        ctl: &mut dyn Controller,
        f: impl FnOnce(&mut PickFirstList, &mut dyn Controller) -> bool,
    ) {
        let Some(child) = self.children.get_mut(&key) else {
            return;
        };
        let mut child_ctl = ChildController {
            inner: ctl,
            owners: &mut self.by_subchannel,
            key,
        };
        let mut changed = f(&mut child.list, &mut child_ctl);
        if child.list.state() == ConnectivityState::Idle {
            changed |= child.list.exit_idle(&mut child_ctl);
        }
        let state = child.list.state();
        if state != child.counted {
            self.counts.add(child.counted, -1);
            self.counts.add(state, 1);
            child.counted = state;
            self.dirty = true;
        }
        let ready = child
            .list
            .ready_subchannel()
            .filter(|_| state == ConnectivityState::Ready);
        if ready != child.ready {
            child.ready = ready;
            self.dirty = true;
        }
        if changed && state == ConnectivityState::TransientFailure {
            // The failure message names this child's errors.
            self.dirty = true;
        }
    }

    fn remove_child(&mut self, key: u32, ctl: &mut dyn Controller) {
        if let Some(mut child) = self.children.remove(&key) {
            let mut child_ctl = ChildController {
                inner: ctl,
                owners: &mut self.by_subchannel,
                key,
            };
            child.list.shutdown(&mut child_ctl);
            self.counts.add(child.counted, -1);
            self.by_addresses.remove(&*child.addresses);
            self.dirty = true;
        }
    }

    fn publish_if_dirty(&mut self, ctl: &mut dyn Controller) {
        let state = self.counts.aggregate();
        if !self.dirty && self.published == Some(state) {
            return;
        }
        self.dirty = false;
        self.published = Some(state);
        let picker: Arc<dyn Picker> = match state {
            ConnectivityState::Ready => {
                let ready: Vec<SubchannelId> = self
                    .children
                    .values()
                    .filter_map(|child| child.ready)
                    .collect();
                match self.spread {
                    Spread::RoundRobin => {
                        let start = ctl.rng().index(ready.len());
                        Arc::new(RoundRobinPicker::new(ready, start))
                    }
                    Spread::Random => Arc::new(RandomPicker::new(ready, ctl.rng().next_u64())),
                    Spread::LeastRequest(choices) => {
                        let live: FastSet<SubchannelId> = ready.iter().copied().collect();
                        self.outstanding.retain(|id, _| live.contains(id));
                        let loaded = ready
                            .iter()
                            .map(|id| (*id, Arc::clone(self.outstanding.entry(*id).or_default())))
                            .collect();
                        let seed = ctl.rng().next_u64();
                        Arc::new(LeastRequestPicker::new(loaded, choices, seed))
                    }
                }
            }
            ConnectivityState::TransientFailure => {
                Arc::new(FailPicker::new(Status::unavailable(self.failure_message())))
            }
            _ => Arc::new(QueuePicker),
        };
        ctl.publish(state, picker);
    }

    fn failure_message(&self) -> String {
        if self.children.is_empty() {
            return match &self.resolver_error {
                Some(error) => error.to_string(),
                None => "the resolver returned no endpoints".to_owned(),
            };
        }
        let failures = self
            .children
            .values()
            .flat_map(|child| child.list.failures());
        format!(
            "all {} endpoints failed to connect: {}",
            self.children.len(),
            describe_failures(failures, ERRORS_SHOWN)
        )
    }
}

impl Policy for RoundRobin {
    fn wants_call_outcomes(&self) -> bool {
        matches!(self.spread, Spread::LeastRequest(_))
    }

    fn call_finished(&mut self, subchannel: SubchannelId, _: &CallOutcome, _: &mut dyn Controller) {
        if let Some(counter) = self.outstanding.get(&subchannel) {
            least_request::call_ended(counter);
        }
    }

    fn resolver_update(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller) {
        self.resolver_error = None;
        let mut wanted: FastSet<&[Address]> = FastSet::default();
        let mut fresh = Vec::new();
        for endpoint in endpoints {
            let addresses = endpoint.addresses();
            if !wanted.insert(addresses) {
                continue; // the same endpoint twice: one child
            }
            if !self.by_addresses.contains_key(addresses) {
                fresh.push(addresses);
            }
        }
        let gone: Vec<u32> = self
            .children
            .iter()
            .filter(|(_, child)| !wanted.contains(&*child.addresses))
            .map(|(key, _)| *key)
            .collect();
        for key in gone {
            self.remove_child(key, ctl);
        }
        self.by_addresses.reserve(fresh.len());
        self.by_subchannel.reserve(fresh.len());
        for addresses in fresh {
            let key = self.next_key;
            self.next_key = self.next_key.wrapping_add(1);
            let shared: Arc<[Address]> = Arc::from(addresses);
            self.by_addresses.insert(Arc::clone(&shared), key);
            self.children.insert(
                key,
                Box::new(Child {
                    addresses: shared,
                    list: PickFirstList::new(key, DEFAULT_HAPPY_EYEBALLS_DELAY),
                    counted: ConnectivityState::Idle,
                    ready: None,
                }),
            );
            self.counts.add(ConnectivityState::Idle, 1);
            self.dirty = true;
            self.with_child(key, ctl, |list, ctl| {
                list.set_addresses(addresses.to_vec(), ctl)
            });
        }
        if self.children.is_empty() {
            self.dirty = true;
        }
        self.publish_if_dirty(ctl);
    }

    fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller) {
        if self.children.is_empty() {
            self.resolver_error = Some(error.clone());
            self.dirty = true;
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

    fn timer(&mut self, token: u64, ctl: &mut dyn Controller) {
        let key = (token >> 32) as u32;
        self.with_child(key, ctl, |list, ctl| list.on_timer(token, ctl));
        self.publish_if_dirty(ctl);
    }
}
