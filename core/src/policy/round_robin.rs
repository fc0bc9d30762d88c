//! round_robin: a connection to every endpoint, calls spread evenly over the READY ones.
//!
//! Each endpoint is run by its own `PickFirstList` (so an endpoint with several addresses
//! connects to the first that answers, with happy eyeballs). An endpoint whose connection is lost
//! reconnects at once; one that fails backs off and retries on its own schedule. The picker cycles
//! over the READY endpoints from a random start, so many clients do not all begin with the same
//! backend (a fixed start skewed load 3-4x in grpc-java #4462).
//!
//! An endpoint is known across updates by its distinct addresses, in order: one listed again
//! keeps its connections (an update that lists `[a, b, a]` keeps the endpoint `[a, b]`), one with
//! the same addresses in another order is a new endpoint.
//!
//! Aggregate state: READY if any endpoint is; else CONNECTING if any is; else IDLE if any is; else
//! TRANSIENT_FAILURE. An endpoint that failed counts as failed until it is READY again ("sticky"
//! TRANSIENT_FAILURE, gRFC A61), so the channel does not flap through CONNECTING while it retries.
//!
//! A picker is a snapshot of the READY endpoints, so building one costs the list. It is rebuilt at
//! once when the state changes, when an endpoint it offers is no longer READY, after a resolver
//! update, when an eighth of the endpoints changed since the last one, or when the last one is
//! older than 100 ms; any other change (an endpoint joining the READY ones, a failure message)
//! waits at most 100 ms, gathered with the next ones. So 200,000 endpoints coming up one
//! connection at a time cost a few rebuilds of the list, not one each (which took 96 s at
//! 100,000); below 16 endpoints an eighth is one change, and every change is published at once.
//! (gRPC rebuilds the picker on every change.)

use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use crate::address::{Address, Endpoint};
use crate::call::{CallOutcome, LoadReport};
use crate::hasher::{FastHasher, FastSet};
use crate::picker::{FailPicker, Picker, QueuePicker, RoundRobinPicker};
use crate::policy::child::ChildController;
use crate::policy::least_request::{self, LeastRequestPicker};
use crate::policy::p2c_ewma::Ewma;
use crate::policy::pacing::{Admit, Pacing};
use crate::policy::pick_first::{dedup, PickFirstList, DEFAULT_HAPPY_EYEBALLS_DELAY};
use crate::policy::random::RandomPicker;
use crate::policy::weighted_round_robin::{WeightedEntry, Weights};
use crate::policy::SlotController;
use crate::policy::{
    describe_failures, Controller, Policy, PolicyBuilder, SubchannelUpdate, TimerToken,
};
use crate::resolver::ResolverError;
use crate::slab::{Slab, SlabKey};
use crate::status::{ConnectivityState, Status};
use crate::subchannel::{DenseIdMap, IdMap, SubchannelId};

use hashbrown::HashTable;

/// How many failed addresses an error message names before it says "and N more".
const ERRORS_SHOWN: usize = 8;

/// The spread's own timer (weight updates, latency decay). Children's timers carry their slot
/// ([`TimerToken::child`]).
const SPREAD_TIMER: TimerToken = TimerToken::new(0);
/// The timer of a picker that waits (see [`Pacing`]).
const PUBLICATION_TIMER: TimerToken = TimerToken::new(1);

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

/// How the READY endpoints share the calls: the one thing round_robin, random, least_request,
/// weighted_round_robin and p2c_ewma do differently (they connect and aggregate endpoints alike).
#[derive(Debug, Default)]
pub(crate) enum Spread {
    /// In turn, from a random start.
    #[default]
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// The least loaded of this many random choices (least_request).
    LeastRequest(usize),
    /// In turn, in proportion to weights (weighted_round_robin).
    Weighted(Box<Weights>),
    /// The cheaper of two by latency estimate and calls in flight (p2c_ewma).
    PeakEwma(Box<Ewma>),
}

impl Spread {
    /// How often the spread's timer should fire at `now`, if it needs one now.
    fn tick_period(&self, now: Instant) -> Option<std::time::Duration> {
        match self {
            Spread::Weighted(weights) if weights.ticking(now) => Some(weights.period()),
            Spread::PeakEwma(ewma) if ewma.ticking() => Some(ewma.period()),
            _ => None,
        }
    }
}

/// The hash an endpoint's (deduplicated) address list is found by in
/// [`RoundRobin::by_addresses`]: the same whether the list comes from an endpoint or from the
/// child that holds it.
fn addresses_hash<'a>(addresses: impl ExactSizeIterator<Item = &'a Address>) -> u64 {
    let mut hasher = FastHasher::default();
    hasher.write_usize(addresses.len());
    for address in addresses {
        address.hash(&mut hasher);
    }
    hasher.finish()
}

/// Whether child `key` walks exactly `addresses` (deduplicated).
fn holds(children: &Slab<Child>, key: SlabKey, addresses: &[Address]) -> bool {
    children
        .get(key)
        .is_some_and(|child| child.list.has_addresses(addresses))
}

/// The hash child `key` is found by (0 for a key with no child: the table holds none).
fn child_hash(children: &Slab<Child>, key: SlabKey) -> u64 {
    children
        .get(key)
        .map_or(0, |child| addresses_hash(child.list.addresses()))
}

/// One endpoint and the list that connects it.
#[derive(Debug)]
struct Child {
    /// The last resolver update that listed it. (Every update lists a child or removes it, so
    /// the count wrapping around does no harm.)
    listed: u32,
    list: PickFirstList,
    /// The state last counted in [`Counts`].
    counted: ConnectivityState,
    /// The READY subchannel last put in the picker.
    ready: Option<SubchannelId>,
    /// The static weight the resolver gave.
    weight: u32,
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
    /// The children, densely, in slot order.
    children: Slab<Child>,
    /// The children by their address lists (deduplicated, as their lists hold them). The table
    /// holds only slab keys, 9 bytes a slot: the addresses it is searched by are the children's
    /// own, so indexing an endpoint copies none.
    by_addresses: HashTable<SlabKey>,
    /// How many resolver updates were applied (children listed by the last have it as `listed`).
    updates: u32,
    by_subchannel: DenseIdMap<SlabKey>,
    counts: Counts,
    /// Something the picker shows changed since it was last published.
    dirty: bool,
    /// ...and it cannot wait: the picker offers an endpoint that is no longer READY.
    urgent: bool,
    published: Option<ConnectivityState>,
    /// When pickers are rebuilt.
    pacing: Pacing,
    resolver_error: Option<ResolverError>,
    spread: Spread,
    /// least_request's outstanding calls per READY subchannel, kept across pickers.
    outstanding: IdMap<Arc<AtomicUsize>>,
    /// The spread's timer is set.
    ticking: bool,
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
        key: SlabKey,
        ctl: &mut dyn Controller,
        f: impl FnOnce(&mut PickFirstList, &mut dyn Controller) -> bool,
    ) {
        let Some(child) = self.children.get_mut(key) else {
            return;
        };
        let mut child_ctl = ChildController {
            inner: SlotController::new(ctl, key.index),
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
            if let (Some(_), Spread::Weighted(weights)) = (ready, &mut self.spread) {
                weights.ready_again(key);
            }
            self.urgent |= child.ready.is_some();
            child.ready = ready;
            self.dirty = true;
        }
        if changed && state == ConnectivityState::TransientFailure {
            // The failure message names this child's errors.
            self.dirty = true;
        }
    }

    /// Creates the child for `endpoint`, new in update number `update`, and starts connecting
    /// it (nothing if the same addresses were just made a child). `false`: no room for more.
    fn add_child(&mut self, endpoint: &Endpoint, update: u32, ctl: &mut dyn Controller) -> bool {
        let key = self.children.next_key();
        if key.index == u32::MAX {
            return false; // four billion endpoints, and no timer slot left: the rest are not served
        }
        let deduped = dedup(endpoint.addresses());
        let addresses = deduped.as_deref().unwrap_or(endpoint.addresses());
        let hash = addresses_hash(addresses.iter());
        let children = &self.children;
        match self.by_addresses.entry(
            hash,
            |known| holds(children, *known, addresses),
            |known| child_hash(children, *known),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => return true, // a repeat of a new one
            hashbrown::hash_table::Entry::Vacant(vacant) => vacant.insert(key),
        };
        // The slot number is the list's slot in its timer tokens; a list in a reused slot counts
        // its timers from where the slot's earlier lists cannot have reached.
        let list = PickFirstList::new(DEFAULT_HAPPY_EYEBALLS_DELAY)
            .with_timer_seq_base(key.generation.wrapping_shl(16));
        let inserted = self.children.insert(Child {
            listed: update,
            list,
            counted: ConnectivityState::Idle,
            ready: None,
            weight: endpoint.attributes().weight(),
        });
        debug_assert_eq!(inserted, key);
        self.counts.add(ConnectivityState::Idle, 1);
        self.dirty = true;
        self.with_child(key, ctl, |list, ctl| list.set_address_slice(addresses, ctl));
        true
    }

    /// The child whose list holds `addresses` (deduplicated).
    fn find(&self, addresses: &[Address]) -> Option<SlabKey> {
        let deduped = dedup(addresses);
        let addresses = deduped.as_deref().unwrap_or(addresses);
        let children = &self.children;
        self.by_addresses
            .find(addresses_hash(addresses.iter()), |key| {
                holds(children, *key, addresses)
            })
            .copied()
    }

    fn remove_child(&mut self, key: SlabKey, ctl: &mut dyn Controller) {
        let hash = child_hash(&self.children, key);
        if let Ok(entry) = self.by_addresses.find_entry(hash, |known| *known == key) {
            entry.remove();
        }
        if let Some(mut child) = self.children.remove(key) {
            let mut child_ctl = ChildController {
                inner: SlotController::new(ctl, key.index),
                owners: &mut self.by_subchannel,
                key,
            };
            child.list.shutdown(&mut child_ctl);
            self.counts.add(child.counted, -1);
            self.urgent |= child.ready.is_some();
            if let Spread::Weighted(weights) = &mut self.spread {
                weights.remove(key);
            }
            self.dirty = true;
        }
    }

    /// Publishes a new picker if something it shows changed, at once or when [`Pacing`] says.
    fn publish_if_dirty(&mut self, ctl: &mut dyn Controller) {
        let state = self.counts.aggregate();
        if !self.dirty && self.published == Some(state) {
            self.urgent = false;
            return;
        }
        let urgent = std::mem::take(&mut self.urgent) || self.published != Some(state);
        match self.pacing.admit(urgent, self.children.len(), ctl.now()) {
            Admit::Now => {}
            Admit::Later(timer) => {
                if let Some(at) = timer {
                    ctl.set_timer(at, PUBLICATION_TIMER);
                }
                return;
            }
        }
        self.dirty = false;
        self.published = Some(state);
        let picker: Arc<dyn Picker> = match state {
            ConnectivityState::Ready => {
                if let Spread::Weighted(weights) = &mut self.spread {
                    let ready = weighted_entries(&self.children);
                    let start = ctl.rng().next_u64() as u32;
                    Arc::new(weights.picker(&ready, ctl.now(), start))
                } else {
                    let ready: Vec<SubchannelId> = self
                        .children
                        .values()
                        .filter_map(|child| child.ready)
                        .collect();
                    self.unweighted_picker(ready, ctl)
                }
            }
            ConnectivityState::TransientFailure => {
                Arc::new(FailPicker::new(Status::unavailable(self.failure_message())))
            }
            _ => Arc::new(QueuePicker),
        };
        ctl.publish(state, picker);
    }

    /// The picker over `ready` for the spreads without weights.
    fn unweighted_picker(
        &mut self,
        ready: Vec<SubchannelId>,
        ctl: &mut dyn Controller,
    ) -> Arc<dyn Picker> {
        match &mut self.spread {
            // (weighted_round_robin builds its own picker before this; were it to come here, it
            // would be plain round robin.)
            Spread::RoundRobin | Spread::Weighted(_) => {
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
                Arc::new(LeastRequestPicker::new(loaded, *choices, seed))
            }
            Spread::PeakEwma(ewma) => {
                let seed = ctl.rng().next_u64();
                Arc::new(ewma.picker(&ready, ctl.now(), seed))
            }
        }
    }

    /// Sets the spread's timer if it needs one and none is set.
    fn arm_spread_timer(&mut self, ctl: &mut dyn Controller) {
        if self.ticking {
            return;
        }
        if let Some(period) = self.spread.tick_period(ctl.now()) {
            self.ticking = true;
            ctl.set_timer(crate::backoff::later(ctl.now(), period), SPREAD_TIMER);
        }
    }

    /// The spread's timer fired: weights are recomputed, or latency estimates decay.
    fn spread_tick(&mut self, ctl: &mut dyn Controller) {
        self.ticking = false;
        let now = ctl.now();
        match &mut self.spread {
            Spread::Weighted(weights) => {
                let ready = self.published == Some(ConnectivityState::Ready);
                self.dirty |= ready && weights.changed(&weighted_entries(&self.children), now);
            }
            Spread::PeakEwma(ewma) => ewma.tick(now),
            _ => {}
        }
        self.publish_if_dirty(ctl);
        self.arm_spread_timer(ctl);
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

/// The READY children as the weighted picker is built from them.
fn weighted_entries(children: &Slab<Child>) -> Vec<WeightedEntry> {
    children
        .iter()
        .filter_map(|(key, child)| child.ready.map(|id| (key, id, child.weight)))
        .collect()
}

impl Policy for RoundRobin {
    fn wants_call_outcomes(&self) -> bool {
        !matches!(self.spread, Spread::RoundRobin | Spread::Random)
    }

    fn call_finished(
        &mut self,
        subchannel: SubchannelId,
        outcome: &CallOutcome,
        ctl: &mut dyn Controller,
    ) {
        match &mut self.spread {
            Spread::LeastRequest(_) => {
                if let Some(counter) = self.outstanding.get(&subchannel) {
                    least_request::call_ended(counter);
                }
            }
            Spread::Weighted(weights) => {
                let recorded = self
                    .by_subchannel
                    .get(&subchannel)
                    .is_some_and(|&key| weights.call_finished(key, outcome, ctl.now()));
                if !recorded {
                    // Nothing new: the timer, if needed, is already set. (Checking again would
                    // scan every endpoint's weight on every call once reports have lapsed.)
                    return;
                }
            }
            Spread::PeakEwma(ewma) => ewma.call_finished(subchannel, outcome, ctl.now()),
            Spread::RoundRobin | Spread::Random => return,
        }
        self.arm_spread_timer(ctl);
    }

    fn load_report(
        &mut self,
        subchannel: SubchannelId,
        report: &LoadReport,
        ctl: &mut dyn Controller,
    ) {
        let Spread::Weighted(weights) = &mut self.spread else {
            return;
        };
        let recorded = self
            .by_subchannel
            .get(&subchannel)
            .is_some_and(|&key| weights.out_of_band(key, report, ctl.now()));
        if recorded {
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
        let weighted = matches!(self.spread, Spread::Weighted(_));
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
            let weight = endpoint.attributes().weight();
            if weighted && child.weight != weight {
                child.weight = weight;
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
            .reserve(new, |key| child_hash(children, *key));
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

impl RoundRobin {
    /// The spread's or the pacing's timer fired.
    fn own_timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        if token == SPREAD_TIMER {
            self.spread_tick(ctl);
            return;
        }
        if token == PUBLICATION_TIMER {
            self.pacing.timer_fired();
            self.urgent = true;
            self.publish_if_dirty(ctl);
        }
    }
}
