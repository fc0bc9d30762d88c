//! The endpoints themselves: a [`PickFirstList`] per endpoint, found by its addresses, by its
//! subchannels and by its timer slot, with the count of endpoints in each state. What
//! [`EndpointPolicy`](super::EndpointPolicy) and ring_hash publish is built on this.

use crate::address::{Address, Endpoint};
use crate::policy::child::ChildController;
use crate::policy::pick_first::{dedup, PickFirstList, DEFAULT_HAPPY_EYEBALLS_DELAY};
use crate::policy::{describe_failures, Controller, SlotController, TimerToken};
use crate::slab::{Slab, SlabKey};
use crate::status::ConnectivityState;
use crate::subchannel::{DenseIdMap, SubchannelId};

use hashbrown::HashTable;

use super::index::{addresses_hash, holds, holds_at, slot_hash};
use super::EndpointKey;

/// How many failed addresses an error message names before it says "and N more".
const ERRORS_SHOWN: usize = 8;

/// How many endpoints are in each state.
#[derive(Debug, Default)]
pub(crate) struct StateCounts {
    pub(crate) ready: usize,
    pub(crate) connecting: usize,
    pub(crate) idle: usize,
    pub(crate) failed: usize,
}

impl StateCounts {
    fn add(&mut self, state: ConnectivityState, delta: isize) {
        let slot = match state {
            ConnectivityState::Ready => &mut self.ready,
            ConnectivityState::Connecting => &mut self.connecting,
            ConnectivityState::Idle => &mut self.idle,
            ConnectivityState::TransientFailure => &mut self.failed,
            ConnectivityState::Shutdown => return,
        };
        *slot = slot.saturating_add_signed(delta);
    }

    /// gRPC's aggregation: READY if any is; else CONNECTING if any is; else IDLE if any is;
    /// else TRANSIENT_FAILURE.
    pub(crate) fn aggregate(&self) -> ConnectivityState {
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

/// One endpoint, the list that connects it, and what its owner keeps beside it.
#[derive(Debug)]
pub(crate) struct Child<E> {
    /// The last resolver update that listed it. (Every update lists a child or removes it, so
    /// the count wrapping around does no harm.)
    listed: u32,
    pub(crate) list: PickFirstList,
    /// The state last counted in the [`StateCounts`].
    pub(crate) counted: ConnectivityState,
    pub(crate) kept: E,
}

/// What one input did to an endpoint.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Change {
    /// Its state before, and now.
    pub(crate) was: ConnectivityState,
    pub(crate) state: ConnectivityState,
    /// Its READY subchannel before, and now.
    pub(crate) was_ready: Option<SubchannelId>,
    pub(crate) ready: Option<SubchannelId>,
    /// Its list said its state, READY subchannel or failure message changed.
    pub(crate) list_changed: bool,
}

impl Change {
    pub(crate) fn state_changed(&self) -> bool {
        self.was != self.state
    }

    pub(crate) fn ready_changed(&self) -> bool {
        self.was_ready != self.ready
    }

    /// Its failure message changed (it failed again, or differently).
    pub(crate) fn failure_changed(&self) -> bool {
        self.list_changed && self.state == ConnectivityState::TransientFailure
    }
}

/// What an owner of an [`EndpointSet`] does as endpoints come, change and go.
pub(crate) trait Owner<E> {
    /// Endpoint `key` is new: the value kept beside it.
    fn add(&mut self, key: EndpointKey, endpoint: &Endpoint) -> E;
    /// A resolver update listed `key` again; `ready` if it is READY.
    fn relisted(&mut self, key: EndpointKey, kept: &mut E, ready: bool, endpoint: &Endpoint);
    /// An input changed (or did not change) endpoint `key`.
    fn changed(&mut self, key: EndpointKey, kept: &mut E, change: &Change);
    /// Endpoint `key` is gone; its subchannels are removed. `was_ready` if it was READY.
    fn removed(&mut self, key: EndpointKey, child: Child<E>, was_ready: bool);
}

/// The endpoints and their lists.
#[derive(Debug)]
pub(crate) struct EndpointSet<E> {
    /// The children, densely, in slot order.
    children: Slab<Child<E>>,
    /// Each slot's READY subchannel (the one a picker offers), by slot: what a picker is built
    /// from. Apart from the children, so building one reads 8 bytes an endpoint, not a whole
    /// child each (at 100,000 endpoints a child's 120 bytes came to 12 MB read per picker).
    ready: Vec<Option<SubchannelId>>,
    /// The children's slots by their address lists (deduplicated, as their lists hold them).
    /// The table holds only slot numbers, 5 bytes a bucket (small enough that at 100,000
    /// endpoints it fits a core's cache, where slab keys did not): the addresses it is searched
    /// by are the children's own, so indexing an endpoint copies none.
    by_addresses: HashTable<u32>,
    /// How many resolver updates were applied (children listed by the last have it as `listed`).
    updates: u32,
    by_subchannel: DenseIdMap<SlabKey>,
    counts: StateCounts,
    /// Endpoints connect when asked ([`EndpointSet::connect`]), not at once, and stay IDLE
    /// when their connection is lost.
    on_demand: bool,
}

impl<E> EndpointSet<E> {
    pub(crate) fn new(on_demand: bool) -> Self {
        EndpointSet {
            children: Slab::default(),
            ready: Vec::new(),
            by_addresses: HashTable::new(),
            updates: 0,
            by_subchannel: DenseIdMap::default(),
            counts: StateCounts::default(),
            on_demand,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.children.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    pub(crate) fn counts(&self) -> &StateCounts {
        &self.counts
    }

    pub(crate) fn children(&self) -> &Slab<Child<E>> {
        &self.children
    }

    /// Each slot's READY subchannel, by slot (`None` for an endpoint that is not READY, and
    /// for an empty slot).
    pub(crate) fn ready(&self) -> &[Option<SubchannelId>] {
        &self.ready
    }

    pub(crate) fn get(&self, key: EndpointKey) -> Option<&Child<E>> {
        self.children.get(key.0)
    }

    pub(crate) fn get_mut(&mut self, key: EndpointKey) -> Option<&mut Child<E>> {
        self.children.get_mut(key.0)
    }

    /// The endpoint that owns `subchannel`.
    pub(crate) fn owner(&self, subchannel: SubchannelId) -> Option<EndpointKey> {
        self.by_subchannel
            .get(&subchannel)
            .copied()
            .map(EndpointKey)
    }

    /// The endpoint listed with `addresses`, for endpoints read in the resolver's order: `guess` is the slot the
    /// next one is most likely in (start at 0), moved on past each found (or, for one not
    /// found, by one: most likely it took the place of the one there).
    pub(crate) fn find_next(&self, addresses: &[Address], guess: &mut u32) -> Option<EndpointKey> {
        let deduped = dedup(addresses);
        let addresses = deduped.as_deref().unwrap_or(addresses);
        let found = self.find_distinct(addresses, Some(*guess));
        *guess = found.map_or(*guess, |key| key.0.index).wrapping_add(1);
        found
    }

    /// The endpoint whose list holds `addresses` (already without repeats): the one in slot
    /// `guess` if it does, else the one the table finds.
    ///
    /// A resolver lists its endpoints in much the same order each time, the order their slots
    /// were filled in, so a guess of the slot after the last one found is nearly always right:
    /// the update then reads the slots in order, where looking every endpoint up in the table
    /// reads it at random, a cache miss each once the table outgrows the cache (at 100,000
    /// endpoints a 1% change took 23 times as long as at 10,000, most of it waiting on them).
    fn find_distinct(&self, addresses: &[Address], guess: Option<u32>) -> Option<EndpointKey> {
        let children = &self.children;
        if let Some(key) = guess.and_then(|slot| children.key_at(slot)) {
            if holds(children, key, addresses) {
                return Some(EndpointKey(key));
            }
        }
        let slot = self
            .by_addresses
            .find(addresses_hash(addresses.iter()), |slot| {
                holds_at(children, *slot, addresses)
            })?;
        children.key_at(*slot).map(EndpointKey)
    }

    /// Runs `f` on endpoint `key`'s list with its own controller, then brings the counts up to
    /// date (and, unless endpoints connect on demand, reconnects a list that went IDLE), and
    /// tells `owner` what changed.
    pub(crate) fn with_child(
        &mut self,
        key: EndpointKey,
        ctl: &mut dyn Controller,
        owner: &mut impl Owner<E>,
        f: impl FnOnce(&mut PickFirstList, &mut dyn Controller) -> bool,
    ) {
        let Some(child) = self.children.get_mut(key.0) else {
            return;
        };
        let mut child_ctl = ChildController {
            inner: SlotController::new(ctl, key.0.index),
            owners: &mut self.by_subchannel,
            key: key.0,
        };
        let mut list_changed = f(&mut child.list, &mut child_ctl);
        if !self.on_demand && child.list.state() == ConnectivityState::Idle {
            list_changed |= child.list.exit_idle(&mut child_ctl);
        }
        let state = child.list.state();
        let was = child.counted;
        if state != was {
            self.counts.add(was, -1);
            self.counts.add(state, 1);
            child.counted = state;
        }
        let ready = child
            .list
            .ready_subchannel()
            .filter(|_| state == ConnectivityState::Ready);
        let was_ready = match self.ready.get_mut(key.0.index as usize) {
            Some(slot) => std::mem::replace(slot, ready),
            None => None, // every child's slot has an entry (see `add`)
        };
        let change = Change {
            was,
            state,
            was_ready,
            ready,
            list_changed,
        };
        owner.changed(key, &mut child.kept, &change);
    }

    /// Starts connecting endpoint `key` if it is IDLE.
    pub(crate) fn connect(
        &mut self,
        key: EndpointKey,
        ctl: &mut dyn Controller,
        owner: &mut impl Owner<E>,
    ) {
        self.with_child(key, ctl, owner, |list, ctl| list.exit_idle(ctl));
    }

    /// A subchannel's state changed: its endpoint's list hears of it. The endpoint, if one
    /// owns it.
    pub(crate) fn subchannel_update(
        &mut self,
        subchannel: SubchannelId,
        update: &crate::policy::SubchannelUpdate,
        ctl: &mut dyn Controller,
        owner: &mut impl Owner<E>,
    ) -> Option<EndpointKey> {
        let key = self.owner(subchannel)?;
        self.with_child(key, ctl, owner, |list, ctl| {
            list.subchannel_update(subchannel, update, ctl)
        });
        Some(key)
    }

    /// A timer of the endpoint in slot `slot` fired.
    pub(crate) fn timer(
        &mut self,
        slot: u32,
        token: TimerToken,
        ctl: &mut dyn Controller,
        owner: &mut impl Owner<E>,
    ) {
        if let Some(key) = self.children.key_at(slot) {
            self.with_child(EndpointKey(key), ctl, owner, |list, ctl| {
                list.on_timer(token, ctl)
            });
        }
    }

    /// Applies a resolver update: endpoints listed again are kept (the first of repeats counts),
    /// the others removed, new ones added (and, unless on demand, connected).
    pub(crate) fn update(
        &mut self,
        endpoints: &[Endpoint],
        ctl: &mut dyn Controller,
        owner: &mut impl Owner<E>,
    ) {
        self.updates = self.updates.wrapping_add(1);
        let update = self.updates;
        // Known endpoints are marked as listed; the others are new (or repeats of new ones).
        // With no children yet, every endpoint is new: nothing to look up or collect.
        let all_fresh = self.children.is_empty();
        let mut fresh: Vec<&Endpoint> = Vec::new();
        let mut listed = 0usize;
        let known: &[Endpoint] = if all_fresh { &[] } else { endpoints };
        // The slot the next endpoint is most likely in (see `find_distinct`).
        let mut guess = 0u32;
        for endpoint in known {
            let Some(key) = self.find_next(endpoint.addresses(), &mut guess) else {
                fresh.push(endpoint);
                continue;
            };
            let child = self
                .children
                .get_mut(key.0)
                .expect("find returns only the key of a live child whose addresses it matched");
            if child.listed == update {
                continue; // the same endpoint twice: the first one counts
            }
            child.listed = update;
            listed += 1;
            let ready = self
                .ready
                .get(key.0.index as usize)
                .is_some_and(Option::is_some);
            owner.relisted(key, &mut child.kept, ready, endpoint);
        }
        if listed < self.children.len() {
            let gone: Vec<SlabKey> = self
                .children
                .iter()
                .filter(|(_, child)| child.listed != update)
                .map(|(key, _)| key)
                .collect();
            for key in gone {
                self.remove(EndpointKey(key), ctl, owner);
            }
        }
        let new = if all_fresh {
            endpoints.len()
        } else {
            fresh.len()
        };
        ctl.reserve_subchannels(new);
        self.children.reserve(new);
        self.ready.reserve(new);
        let children = &self.children;
        self.by_addresses
            .reserve(new, |slot| slot_hash(children, *slot));
        self.by_subchannel.reserve(new);
        let new_ones: &mut dyn Iterator<Item = &Endpoint> = if all_fresh {
            &mut endpoints.iter()
        } else {
            &mut fresh.into_iter()
        };
        for endpoint in new_ones {
            if !self.add(endpoint, update, ctl, owner) {
                break;
            }
        }
    }

    /// Creates the child for `endpoint`, new in update number `update`, and starts connecting
    /// it (nothing if the same addresses were just made a child). `false`: no room for more.
    fn add(
        &mut self,
        endpoint: &Endpoint,
        update: u32,
        ctl: &mut dyn Controller,
        owner: &mut impl Owner<E>,
    ) -> bool {
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
            |known| holds_at(children, *known, addresses),
            |known| slot_hash(children, *known),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => return true, // a repeat of a new one
            hashbrown::hash_table::Entry::Vacant(vacant) => vacant.insert(key.index),
        };
        // The slot number is the list's slot in its timer tokens; a list in a reused slot counts
        // its timers from where the slot's earlier lists cannot have reached.
        let mut list = PickFirstList::new(DEFAULT_HAPPY_EYEBALLS_DELAY)
            .with_timer_seq_base(key.generation.wrapping_shl(16));
        if self.on_demand {
            list.hold_addresses(addresses);
        }
        let kept = owner.add(EndpointKey(key), endpoint);
        let inserted = self.children.insert(Child {
            listed: update,
            list,
            counted: ConnectivityState::Idle,
            kept,
        });
        debug_assert_eq!(inserted, key);
        let slot = key.index as usize;
        if slot >= self.ready.len() {
            self.ready.resize(slot + 1, None);
        }
        self.counts.add(ConnectivityState::Idle, 1);
        let on_demand = self.on_demand;
        self.with_child(EndpointKey(key), ctl, owner, |list, ctl| {
            !on_demand && list.set_address_slice(addresses, ctl)
        });
        true
    }

    /// Removes endpoint `key` and its subchannels.
    pub(crate) fn remove(
        &mut self,
        key: EndpointKey,
        ctl: &mut dyn Controller,
        owner: &mut impl Owner<E>,
    ) {
        if !self.children.contains(key.0) {
            return;
        }
        let hash = slot_hash(&self.children, key.0.index);
        if let Ok(entry) = self
            .by_addresses
            .find_entry(hash, |known| *known == key.0.index)
        {
            entry.remove();
        }
        if let Some(mut child) = self.children.remove(key.0) {
            let mut child_ctl = ChildController {
                inner: SlotController::new(ctl, key.0.index),
                owners: &mut self.by_subchannel,
                key: key.0,
            };
            child.list.shutdown(&mut child_ctl);
            self.counts.add(child.counted, -1);
            let was_ready = self
                .ready
                .get_mut(key.0.index as usize)
                .and_then(Option::take);
            owner.removed(key, child, was_ready.is_some());
        }
    }

    /// Why every endpoint failed, for calls to fail with.
    pub(crate) fn failure_message(&self) -> String {
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
