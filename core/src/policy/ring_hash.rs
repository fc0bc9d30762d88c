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
//! call fails with the error of the endpoint its hash landed on. A retry
//! ([`PickRequest::tried`](crate::PickRequest::tried)) walks on past READY endpoints its call
//! already tried, to the next READY one along the ring; where it would queue, or finds none, it
//! goes to the first tried one it passed rather than wait.
//!
//! **Connections.** Endpoints are kept as every policy over endpoints keeps them (one
//! [`PickFirstList`](crate::policy::PickFirstList) each, known across updates by their distinct
//! addresses), but start IDLE and connect only when a pick needs them. A lost connection leaves
//! its endpoint IDLE.
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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::address::{Address, Endpoint};
use crate::hasher::FastMap;
use crate::picker::FailPicker;
use crate::policy::endpoints::set::{Change, Child, EndpointSet, Owner, StateCounts};
use crate::policy::endpoints::EndpointKey;
use crate::policy::pacing::{Admit, Pacing};
use crate::policy::{Controller, Policy, SubchannelUpdate, TimerToken};
use crate::resolver::ResolverError;
use crate::status::{ConnectivityState, Status};
use crate::subchannel::SubchannelId;

mod config;
mod ring;

pub use config::{
    RingHashConfig, RingHashConfigError, DEFAULT_MAX_RING_SIZE, DEFAULT_MIN_RING_SIZE,
    MAX_RING_SIZE_CAP,
};
use ring::{build_ring, Live, RingEntry, RingHashPicker, Slot};

/// The timer token of a picker that waits (see [`Pacing`]); endpoints' tokens carry their slot
/// ([`TimerToken::child`]).
const PUBLICATION_TIMER: TimerToken = TimerToken::new(0);

/// A42's aggregation rules, in order, over `endpoints` endpoints.
fn aggregate(counts: &StateCounts, endpoints: usize) -> ConnectivityState {
    if counts.ready > 0 {
        ConnectivityState::Ready
    } else if counts.failed >= 2 {
        ConnectivityState::TransientFailure
    } else if counts.connecting > 0 || (counts.failed == 1 && endpoints > 1) {
        ConnectivityState::Connecting
    } else if counts.idle > 0 {
        ConnectivityState::Idle
    } else {
        ConnectivityState::TransientFailure
    }
}

/// What changed since the picker was last published. Beside each endpoint ring_hash keeps its
/// state as every picker's slot for it reads it ([`Live`]).
#[derive(Debug, Default)]
struct Marks {
    /// An endpoint's state changed since the picker was last published (its slot shows it
    /// already: the same picker is published again, to wake the calls that wait).
    dirty: bool,
    /// The endpoints or the ring changed: the picker must be rebuilt.
    reshape: bool,
    /// A failure message changed: the picker is rebuilt when [`Pacing`] says.
    failures: bool,
    /// The endpoint that last went TRANSIENT_FAILURE: the proactive connection moves on from it.
    last_failed: Option<EndpointKey>,
}

impl Owner<Arc<Live>> for Marks {
    fn add(&mut self, _: EndpointKey, _: &Endpoint) -> Arc<Live> {
        self.reshape = true;
        Arc::new(Live::default())
    }

    fn relisted(&mut self, _: EndpointKey, _: &mut Arc<Live>, _: bool, _: &Endpoint) {}

    fn changed(&mut self, key: EndpointKey, live: &mut Arc<Live>, change: &Change) {
        if change.state_changed() {
            self.dirty = true;
            if change.state == ConnectivityState::TransientFailure {
                self.last_failed = Some(key);
            }
            // A slot carries a failure message only while its endpoint is failed.
            self.failures |=
                [change.was, change.state].contains(&ConnectivityState::TransientFailure);
        }
        self.dirty |= change.ready_changed();
        if self.dirty {
            live.set(change.state, change.ready);
        }
        // The failure message names this endpoint's errors.
        self.failures |= change.failure_changed();
    }

    fn removed(&mut self, _: EndpointKey, _: Child<Arc<Live>>, _: bool) {
        self.reshape = true;
    }
}

/// The ring_hash policy.
#[derive(Debug)]
pub(crate) struct RingHash {
    config: RingHashConfig,
    endpoints: EndpointSet<Arc<Live>>,
    marks: Marks,
    /// Each placed endpoint's ring key, weight and key, in resolver order: the picker's slots.
    placement: Vec<(String, u64, EndpointKey)>,
    ring: Arc<[RingEntry]>,
    published: Option<ConnectivityState>,
    /// The picker last published, while there are endpoints.
    current: Option<Arc<RingHashPicker>>,
    /// Whether any endpoint is READY, as every picker reads it.
    any_ready: Arc<AtomicBool>,
    /// Whether a picker flagged an endpoint since the policy last looked.
    any_flagged: Arc<AtomicBool>,
    pacing: Pacing,
    resolver_error: Option<ResolverError>,
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
            endpoints: EndpointSet::new(true),
            marks: Marks::default(),
            placement: Vec::new(),
            ring: Arc::from(Vec::new()),
            published: None,
            current: None,
            any_ready: Arc::new(AtomicBool::new(false)),
            any_flagged: Arc::new(AtomicBool::new(false)),
            pacing: Pacing::default(),
            resolver_error: None,
        }
    }

    fn state(&self) -> ConnectivityState {
        aggregate(self.endpoints.counts(), self.endpoints.len())
    }

    fn counted(&self, key: EndpointKey) -> Option<ConnectivityState> {
        self.endpoints.get(key).map(|child| child.counted)
    }

    /// The next IDLE endpoint in the resolver's order, starting after the one that failed last
    /// (as gRPC C-core does), then any IDLE endpoint.
    fn next_idle_endpoint(&self) -> Option<EndpointKey> {
        let is_idle = |key: &EndpointKey| self.counted(*key) == Some(ConnectivityState::Idle);
        let start = self
            .marks
            .last_failed
            .and_then(|failed| self.placement.iter().position(|p| p.2 == failed))
            .map_or(0, |i| i + 1);
        let (before, after) = self.placement.split_at(start.min(self.placement.len()));
        after
            .iter()
            .chain(before)
            .map(|p| p.2)
            .find(is_idle)
            .or_else(|| {
                self.endpoints
                    .children()
                    .iter()
                    .map(|(key, _)| EndpointKey(key))
                    .find(is_idle)
            })
    }

    /// A42: while TRANSIENT_FAILURE or CONNECTING with no attempt under way, connect the next
    /// IDLE endpoint, so the policy recovers without calls to trigger it.
    fn keep_connecting(&mut self, ctl: &mut dyn Controller) {
        while matches!(
            self.state(),
            ConnectivityState::TransientFailure | ConnectivityState::Connecting
        ) && self.endpoints.counts().connecting == 0
            && self.endpoints.counts().idle > 0
        {
            let Some(key) = self.next_idle_endpoint() else {
                return;
            };
            self.endpoints.connect(key, ctl, &mut self.marks);
            if self.counted(key) == Some(ConnectivityState::Idle) {
                return; // it could not leave IDLE; do not spin
            }
        }
    }

    /// Publishes what changed: a rebuilt picker when the endpoints did (or, as [`Pacing`] says,
    /// their failure messages), else the same picker again when an endpoint's state did.
    fn settle(&mut self, ctl: &mut dyn Controller) {
        self.keep_connecting(ctl);
        let state = self.state();
        let marks = &mut self.marks;
        if self.endpoints.is_empty() {
            if !marks.dirty && !marks.reshape && self.published == Some(state) {
                return;
            }
            marks.dirty = false;
            marks.reshape = false;
            marks.failures = false;
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
        let mut rebuild = marks.reshape || self.current.is_none();
        if rebuild || marks.failures {
            match self.pacing.admit(rebuild, self.placement.len(), ctl.now()) {
                Admit::Now => rebuild = true,
                Admit::Later(Some(at)) => ctl.set_timer(at, PUBLICATION_TIMER),
                Admit::Later(None) => {}
            }
        }
        if !rebuild && !marks.dirty && self.published == Some(state) {
            return;
        }
        marks.dirty = false;
        self.published = Some(state);
        self.any_ready
            .store(self.endpoints.counts().ready > 0, Ordering::Relaxed);
        let seed = ctl.rng().next_u64();
        let picker = match &self.current {
            Some(current) if !rebuild => {
                // As a new picker would, the same one starts its random hashes afresh.
                current.random.store(seed, Ordering::Relaxed);
                Arc::clone(current)
            }
            _ => {
                self.marks.reshape = false;
                self.marks.failures = false;
                let picker = Arc::new(self.build_picker(seed));
                self.current = Some(Arc::clone(&picker));
                picker
            }
        };
        ctl.publish(state, picker);
    }

    /// A picker over the current placement, its random hashes seeded with `seed`.
    fn build_picker(&self, seed: u64) -> RingHashPicker {
        let endpoints = self.endpoints.len();
        // Slot i is placement[i], the endpoint ring entries with `slot == i` belong to.
        let slots: Box<[Slot]> = self
            .placement
            .iter()
            .map(|(_, _, key)| match self.endpoints.get(*key) {
                Some(child) => Slot {
                    live: Arc::clone(&child.kept),
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
        self.endpoints.update(endpoints, ctl, &mut self.marks);
        // One entry per distinct endpoint, in the resolver's order, weights of repeats added (A42).
        let mut placement: Vec<(String, u64, EndpointKey)> = Vec::with_capacity(endpoints.len());
        let mut index: FastMap<EndpointKey, usize> = FastMap::default();
        let mut guess = 0;
        for endpoint in endpoints {
            let Some(key) = self.endpoints.find_next(endpoint.addresses(), &mut guess) else {
                continue; // not kept: no room for more endpoints
            };
            let weight = u64::from(endpoint.attributes().weight());
            match index.get(&key) {
                Some(&i) => placement[i].1 = placement[i].1.saturating_add(weight),
                None => {
                    index.insert(key, placement.len());
                    placement.push((ring_key(endpoint), weight, key));
                }
            }
        }
        if placement != self.placement {
            let (min, max) = self.config.ring_sizes();
            let keyed: Vec<(String, u64)> =
                placement.iter().map(|(k, w, _)| (k.clone(), *w)).collect();
            self.ring = Arc::from(build_ring(&keyed, min, max));
            self.placement = placement;
            self.marks.reshape = true;
        }
        if self.endpoints.is_empty() {
            self.marks.dirty = true;
        }
        self.settle(ctl);
    }

    fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller) {
        if self.endpoints.is_empty() {
            self.resolver_error = Some(error.clone());
            self.marks.dirty = true;
            self.settle(ctl);
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
            .subchannel_update(subchannel, update, ctl, &mut self.marks)
            .is_some()
        {
            self.settle(ctl);
        }
    }

    fn exit_idle(&mut self, ctl: &mut dyn Controller) {
        // Every call that queued asks for this: look through the endpoints only if a pick
        // flagged one since the last look (a pick raises its endpoint's flag first).
        let flagged: Vec<EndpointKey> = if self.any_flagged.swap(false, Ordering::Acquire) {
            self.endpoints
                .children()
                .iter()
                .filter(|(_, child)| child.kept.connect.swap(false, Ordering::Relaxed))
                .map(|(key, _)| EndpointKey(key))
                .collect()
        } else {
            Vec::new()
        };
        for &key in &flagged {
            self.endpoints.connect(key, ctl, &mut self.marks);
        }
        if flagged.is_empty() && self.state() == ConnectivityState::Idle && !self.ring.is_empty() {
            // Nobody asked for an endpoint: connect the one a random hash lands on.
            let hash = ctl.rng().next_u64();
            let at = self.ring.partition_point(|entry| entry.hash < hash) % self.ring.len();
            if let Some(&(_, _, key)) = self.placement.get(self.ring[at].slot as usize) {
                self.endpoints.connect(key, ctl, &mut self.marks);
            }
        }
        self.settle(ctl);
    }

    fn wants_call_outcomes(&self) -> bool {
        false
    }

    fn timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        let Some((slot, token)) = token.split() else {
            if token == PUBLICATION_TIMER {
                self.pacing.timer_fired();
                self.settle(ctl);
            }
            return;
        };
        self.endpoints.timer(slot, token, ctl, &mut self.marks);
        self.settle(ctl);
    }
}
