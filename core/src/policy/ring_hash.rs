//! ring_hash: consistent hashing, so calls with the same key reach the same endpoint
//! (gRFC A42, with A61's pick_first children and A76's request header).
//!
//! **The ring.** Each endpoint is placed on a ring of 64-bit hashes, in proportion to its weight
//! ([`Attributes::weight`](crate::Attributes::weight), normalized over all endpoints). The ring
//! has between `min_ring_size` and `max_ring_size` entries (defaults 1024 and 4096, never more
//! than 8M): just enough for the lightest endpoint to get its share. Entry `i` of an endpoint is
//! `XXH64("<key>_<i>", seed 0)`, where the key is the endpoint's `hash_key` label if it has one
//! (A76: an endpoint keeps its place when its address changes) and its first address otherwise
//! (`10.0.0.1:443`, `[::1]:443`). An endpoint listed twice counts once with the weights added.
//!
//! **The request's hash.** [`PickRequest::hash`](crate::PickRequest::hash) if the caller gave
//! one; else the configured [`RingHashConfig::request_hash_header`], its values joined with `,`
//! and hashed with XXH64 (a missing or empty header counts as none); else a random hash (from a
//! seeded counter in the picker: lock-free and deterministic).
//!
//! **The pick.** A binary search finds the first entry at or after the hash (wrapping around).
//! From there the picker walks the ring: a READY endpoint takes the call; a CONNECTING one queues
//! it; an IDLE one is flagged for connection and the call queues (the adapter then calls
//! [`Balancer::exit_idle`](crate::Balancer::exit_idle) and the policy connects every flagged
//! endpoint); endpoints in TRANSIENT_FAILURE are skipped. With a random hash (A76) the walk goes
//! on past the IDLE endpoint it flagged, looking for a READY one, so a call without a key never
//! waits for a connection while another endpoint could serve it. If every endpoint failed, the
//! call fails with the error of the endpoint its hash landed on.
//!
//! **Connections.** Endpoints start IDLE and connect only when a pick needs them; each runs a
//! [`PickFirstList`] over its addresses. A lost connection leaves its endpoint IDLE.
//!
//! **State** (A42): any endpoint READY -> READY; else two or more in TRANSIENT_FAILURE ->
//! TRANSIENT_FAILURE; else any CONNECTING -> CONNECTING; else one in TRANSIENT_FAILURE among
//! several -> CONNECTING; else any IDLE -> IDLE; else TRANSIENT_FAILURE. While the state is
//! TRANSIENT_FAILURE or CONNECTING and no endpoint is connecting, the next IDLE endpoint connects
//! (in the resolver's order, after the one that failed last), so the policy recovers even when no
//! calls come to trigger it.
//!
//! **Publication.** Each endpoint's state sits in a cell that the policy updates in place and
//! every picker reads, so an endpoint that connects or fails is shown by publishing the same
//! picker again (which wakes the calls that wait), at no cost in the number of endpoints. The
//! picker is rebuilt when the endpoints or the ring change, and for a changed failure message as
//! round_robin paces its pickers (at once below 16 endpoints).
//!
//! Where croupier differs: [`Balancer::exit_idle`](crate::Balancer::exit_idle) with no endpoint
//! flagged (a user asking for a connection before the first call) connects the endpoint of one
//! random hash, so the channel leaves IDLE.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::address::{Address, Endpoint};
use crate::picker::FailPicker;
use crate::policy::child::ChildController;
use crate::policy::pacing::{Admit, Pacing};
use crate::policy::pick_first::{PickFirstList, DEFAULT_HAPPY_EYEBALLS_DELAY};
use crate::policy::SlotController;
use crate::policy::{Controller, Policy, SubchannelUpdate, TimerToken};
use crate::resolver::ResolverError;
use crate::status::{ConnectivityState, Status};
use crate::subchannel::{DenseIdMap, SubchannelId};

mod config;
mod ring;

pub use config::{
    RingHashConfig, RingHashConfigError, DEFAULT_MAX_RING_SIZE, DEFAULT_MIN_RING_SIZE,
    MAX_RING_SIZE_CAP,
};
use ring::{build_ring, Live, RingEntry, RingHashPicker, Slot};

/// The timer token of a picker that waits (see [`Pacing`]); children's tokens carry their key,
/// which never takes the value `u32::MAX`, as their slot ([`TimerToken::child`]).
const PUBLICATION_TIMER: TimerToken = TimerToken::new(0);

/// One endpoint and the list that connects it.
#[derive(Debug)]
struct Child {
    addresses: Vec<Address>,
    list: PickFirstList,
    /// The state last counted in [`Counts`].
    counted: ConnectivityState,
    /// The READY subchannel last put in the picker.
    ready: Option<SubchannelId>,
    /// Its state as every picker's slot for this endpoint reads it.
    live: Arc<Live>,
}

/// How many endpoints are in each state.
#[derive(Debug, Default)]
struct Counts {
    ready: usize,
    connecting: usize,
    idle: usize,
    failed: usize,
}

impl Counts {
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

    /// A42's aggregation rules, in order.
    fn aggregate(&self, endpoints: usize) -> ConnectivityState {
        if self.ready > 0 {
            ConnectivityState::Ready
        } else if self.failed >= 2 {
            ConnectivityState::TransientFailure
        } else if self.connecting > 0 || (self.failed == 1 && endpoints > 1) {
            ConnectivityState::Connecting
        } else if self.idle > 0 {
            ConnectivityState::Idle
        } else {
            ConnectivityState::TransientFailure
        }
    }
}

/// The ring_hash policy.
#[derive(Debug)]
pub(crate) struct RingHash {
    config: RingHashConfig,
    /// Children by key; keys grow, so iteration follows creation order (deterministic).
    children: BTreeMap<u32, Child>,
    by_addresses: BTreeMap<Vec<Address>, u32>,
    by_subchannel: DenseIdMap<u32>,
    next_key: u32,
    counts: Counts,
    /// Each placed endpoint's ring key, weight and child, in resolver order: the picker's slots.
    placement: Vec<(String, u64, u32)>,
    ring: Arc<[RingEntry]>,
    /// An endpoint's state changed since the picker was last published (its slot shows it
    /// already: the same picker is published again, to wake the calls that wait).
    dirty: bool,
    /// The endpoints or the ring changed: the picker must be rebuilt.
    reshape: bool,
    /// A failure message changed: the picker is rebuilt when [`Pacing`] says.
    failures: bool,
    published: Option<ConnectivityState>,
    /// The picker last published, while there are endpoints.
    current: Option<Arc<RingHashPicker>>,
    /// Whether any endpoint is READY, as every picker reads it.
    any_ready: Arc<AtomicBool>,
    /// Whether a picker flagged an endpoint since the policy last looked.
    any_flagged: Arc<AtomicBool>,
    pacing: Pacing,
    resolver_error: Option<ResolverError>,
    /// The child that last went TRANSIENT_FAILURE: the proactive connection moves on from it.
    last_failed: Option<u32>,
}

/// The key an endpoint is placed on the ring by: its `hash_key` label, else its first address.
fn ring_key(endpoint: &Endpoint) -> String {
    match endpoint.attributes().label("hash_key") {
        Some(key) if !key.is_empty() => key.to_owned(),
        _ => endpoint
            .addresses()
            .first()
            .map(Address::to_string)
            .unwrap_or_default(),
    }
}

impl RingHash {
    pub(crate) fn new(config: RingHashConfig) -> Self {
        RingHash {
            config,
            children: BTreeMap::new(),
            by_addresses: BTreeMap::new(),
            by_subchannel: DenseIdMap::default(),
            next_key: 0,
            counts: Counts::default(),
            placement: Vec::new(),
            ring: Arc::from(Vec::new()),
            dirty: false,
            reshape: false,
            failures: false,
            published: None,
            current: None,
            any_ready: Arc::new(AtomicBool::new(false)),
            any_flagged: Arc::new(AtomicBool::new(false)),
            pacing: Pacing::default(),
            resolver_error: None,
            last_failed: None,
        }
    }

    fn state(&self) -> ConnectivityState {
        self.counts.aggregate(self.children.len())
    }

    /// Runs `f` on child `key` with its own controller, then brings the counts and the picker's
    /// inputs up to date.
    fn with_child(
        &mut self,
        key: u32,
        ctl: &mut dyn Controller,
        f: impl FnOnce(&mut Child, &mut dyn Controller) -> bool,
    ) {
        let Some(child) = self.children.get_mut(&key) else {
            return;
        };
        let mut child_ctl = ChildController {
            inner: SlotController::new(ctl, key),
            owners: &mut self.by_subchannel,
            key,
        };
        let changed = f(child, &mut child_ctl);
        let state = child.list.state();
        let was = child.counted;
        if state != was {
            self.counts.add(was, -1);
            self.counts.add(state, 1);
            child.counted = state;
            self.dirty = true;
            if state == ConnectivityState::TransientFailure {
                self.last_failed = Some(key);
            }
            // A slot carries a failure message only while its endpoint is failed.
            self.failures |= [was, state].contains(&ConnectivityState::TransientFailure);
        }
        let ready = child
            .list
            .ready_subchannel()
            .filter(|_| state == ConnectivityState::Ready);
        if ready != child.ready {
            child.ready = ready;
            self.dirty = true;
        }
        if self.dirty {
            child.live.set(state, ready);
        }
        if changed && state == ConnectivityState::TransientFailure {
            self.failures = true; // the failure message names this child's errors
        }
    }

    /// Starts connecting child `key` if it is IDLE (its first connection gives it its addresses).
    fn connect_child(&mut self, key: u32, ctl: &mut dyn Controller) {
        self.with_child(key, ctl, |child, ctl| {
            if child.list.state() != ConnectivityState::Idle {
                false
            } else if child.list.is_empty() {
                child.list.set_addresses(child.addresses.clone(), ctl)
            } else {
                child.list.exit_idle(ctl)
            }
        });
    }

    /// The next IDLE child in the resolver's order, starting after the one that failed last (as
    /// gRPC C-core does), then any IDLE child.
    fn next_idle_child(&self) -> Option<u32> {
        let is_idle = |key: &u32| {
            self.children
                .get(key)
                .is_some_and(|child| child.counted == ConnectivityState::Idle)
        };
        let start = self
            .last_failed
            .and_then(|failed| self.placement.iter().position(|p| p.2 == failed))
            .map_or(0, |i| i + 1);
        let (before, after) = self.placement.split_at(start.min(self.placement.len()));
        after
            .iter()
            .chain(before)
            .map(|p| p.2)
            .find(is_idle)
            .or_else(|| self.children.keys().copied().find(is_idle))
    }

    /// A42: while TRANSIENT_FAILURE or CONNECTING with no attempt under way, connect the next
    /// IDLE endpoint, so the policy recovers without calls to trigger it.
    fn keep_connecting(&mut self, ctl: &mut dyn Controller) {
        while matches!(
            self.state(),
            ConnectivityState::TransientFailure | ConnectivityState::Connecting
        ) && self.counts.connecting == 0
            && self.counts.idle > 0
        {
            let Some(key) = self.next_idle_child() else {
                return;
            };
            self.connect_child(key, ctl);
            if self.children.get(&key).map(|c| c.counted) == Some(ConnectivityState::Idle) {
                return; // it could not leave IDLE; do not spin
            }
        }
    }

    fn remove_child(&mut self, key: u32, ctl: &mut dyn Controller) {
        if let Some(mut child) = self.children.remove(&key) {
            let mut child_ctl = ChildController {
                inner: SlotController::new(ctl, key),
                owners: &mut self.by_subchannel,
                key,
            };
            child.list.shutdown(&mut child_ctl);
            self.counts.add(child.counted, -1);
            self.by_addresses.remove(&child.addresses);
            self.reshape = true;
        }
    }

    /// Publishes what changed: a rebuilt picker when the endpoints did (or, as [`Pacing`] says,
    /// their failure messages), else the same picker again when an endpoint's state did.
    fn settle(&mut self, ctl: &mut dyn Controller) {
        self.keep_connecting(ctl);
        let state = self.state();
        if self.children.is_empty() {
            if !self.dirty && !self.reshape && self.published == Some(state) {
                return;
            }
            self.dirty = false;
            self.reshape = false;
            self.failures = false;
            self.current = None;
            self.published = Some(state);
            let message = match &self.resolver_error {
                Some(error) => error.to_string(),
                None => "the resolver returned no endpoints".to_owned(),
            };
            let picker = FailPicker::new(Status::unavailable(message));
            ctl.publish(ConnectivityState::TransientFailure, Arc::new(picker));
            return;
        }
        let mut rebuild = self.reshape || self.current.is_none();
        if rebuild || self.failures {
            match self.pacing.admit(rebuild, self.placement.len(), ctl.now()) {
                Admit::Now => rebuild = true,
                Admit::Later(Some(at)) => ctl.set_timer(at, PUBLICATION_TIMER),
                Admit::Later(None) => {}
            }
        }
        if !rebuild && !self.dirty && self.published == Some(state) {
            return;
        }
        self.dirty = false;
        self.published = Some(state);
        self.any_ready
            .store(self.counts.ready > 0, Ordering::Relaxed);
        let seed = ctl.rng().next_u64();
        let picker = match &self.current {
            Some(current) if !rebuild => {
                // As a new picker would, the same one starts its random hashes afresh.
                current.random.store(seed, Ordering::Relaxed);
                Arc::clone(current)
            }
            _ => {
                self.reshape = false;
                self.failures = false;
                let picker = Arc::new(self.build_picker(seed));
                self.current = Some(Arc::clone(&picker));
                picker
            }
        };
        ctl.publish(state, picker);
    }

    /// A picker over the current placement, its random hashes seeded with `seed`.
    fn build_picker(&self, seed: u64) -> RingHashPicker {
        let endpoints = self.children.len();
        // Slot i is placement[i], the endpoint ring entries with `slot == i` belong to.
        let slots: Box<[Slot]> = self
            .placement
            .iter()
            .map(|(_, _, key)| match self.children.get(key) {
                Some(child) => Slot {
                    live: Arc::clone(&child.live),
                    failure: (child.counted == ConnectivityState::TransientFailure).then(|| {
                        Status::unavailable(format!(
                            "ring_hash: none of {endpoints} endpoints is reachable; the one the \
                             call hashed to: {}",
                            child.list.failure_message()
                        ))
                    }),
                },
                None => Slot {
                    live: Arc::new(Live::gone()),
                    failure: None,
                },
            })
            .collect();
        RingHashPicker {
            any_ready: Arc::clone(&self.any_ready),
            any_flagged: Arc::clone(&self.any_flagged),
            ring: Arc::clone(&self.ring),
            slots,
            header: self.config.hash_header().cloned(),
            random: AtomicU64::new(seed),
            fallback: Status::unavailable(format!(
                "ring_hash: none of {endpoints} endpoints is reachable"
            )),
        }
    }
}

impl Policy for RingHash {
    fn resolver_update(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller) {
        self.resolver_error = None;
        // One entry per distinct address list, weights of repeats added (A42).
        let mut wanted: Vec<(&[Address], u64, String)> = Vec::new();
        let mut index: BTreeMap<&[Address], usize> = BTreeMap::new();
        for endpoint in endpoints {
            let weight = u64::from(endpoint.attributes().weight());
            match index.get(endpoint.addresses()) {
                Some(&i) => wanted[i].1 = wanted[i].1.saturating_add(weight),
                None => {
                    index.insert(endpoint.addresses(), wanted.len());
                    wanted.push((endpoint.addresses(), weight, ring_key(endpoint)));
                }
            }
        }
        let gone: Vec<u32> = self
            .children
            .iter()
            .filter(|(_, child)| !index.contains_key(child.addresses.as_slice()))
            .map(|(key, _)| *key)
            .collect();
        for key in gone {
            self.remove_child(key, ctl);
        }
        let mut placement = Vec::with_capacity(wanted.len());
        for (addresses, weight, ring_key) in wanted {
            let key = match self.by_addresses.get(addresses) {
                Some(&key) => key,
                None => {
                    let key = self.next_key;
                    // (Keys skip `u32::MAX`, which is no timer slot.)
                    self.next_key = self
                        .next_key
                        .checked_add(1)
                        .filter(|k| *k != u32::MAX)
                        .unwrap_or(0);
                    self.by_addresses.insert(addresses.to_vec(), key);
                    self.children.insert(
                        key,
                        Child {
                            addresses: addresses.to_vec(),
                            list: PickFirstList::new(DEFAULT_HAPPY_EYEBALLS_DELAY),
                            counted: ConnectivityState::Idle,
                            ready: None,
                            live: Arc::new(Live::default()),
                        },
                    );
                    self.counts.add(ConnectivityState::Idle, 1);
                    self.reshape = true;
                    key
                }
            };
            placement.push((ring_key, weight, key));
        }
        if placement != self.placement {
            let (min, max) = self.config.ring_sizes();
            let keyed: Vec<(String, u64)> =
                placement.iter().map(|(k, w, _)| (k.clone(), *w)).collect();
            self.ring = Arc::from(build_ring(&keyed, min, max));
            self.placement = placement;
            self.reshape = true;
        }
        if self.children.is_empty() {
            self.dirty = true;
        }
        self.settle(ctl);
    }

    fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller) {
        if self.children.is_empty() {
            self.resolver_error = Some(error.clone());
            self.dirty = true;
            self.settle(ctl);
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
        self.with_child(key, ctl, |child, ctl| {
            child.list.subchannel_update(subchannel, update, ctl)
        });
        self.settle(ctl);
    }

    fn exit_idle(&mut self, ctl: &mut dyn Controller) {
        // Every call that queued asks for this: look through the endpoints only if a pick
        // flagged one since the last look (a pick raises its endpoint's flag first).
        let flagged: Vec<u32> = if self.any_flagged.swap(false, Ordering::Acquire) {
            self.children
                .iter()
                .filter(|(_, child)| child.live.connect.swap(false, Ordering::Relaxed))
                .map(|(key, _)| *key)
                .collect()
        } else {
            Vec::new()
        };
        for &key in &flagged {
            self.connect_child(key, ctl);
        }
        if flagged.is_empty() && self.state() == ConnectivityState::Idle && !self.ring.is_empty() {
            // Nobody asked for an endpoint: connect the one a random hash lands on.
            let hash = ctl.rng().next_u64();
            let at = self.ring.partition_point(|entry| entry.hash < hash) % self.ring.len();
            if let Some(&(_, _, key)) = self.placement.get(self.ring[at].slot as usize) {
                self.connect_child(key, ctl);
            }
        }
        self.settle(ctl);
    }

    fn wants_call_outcomes(&self) -> bool {
        false
    }

    fn timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        let Some((key, token)) = token.split() else {
            if token == PUBLICATION_TIMER {
                self.pacing.timer_fired();
                self.settle(ctl);
            }
            return;
        };
        self.with_child(key, ctl, |child, ctl| child.list.on_timer(token, ctl));
        self.settle(ctl);
    }
}
