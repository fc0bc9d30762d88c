//! One layer under every policy that connects each endpoint: [`EndpointPolicy`] runs a
//! [`PickFirstList`] per endpoint and publishes pickers; a [`Spread`] says how the READY
//! endpoints share the calls. round_robin, random, least_request, weighted_round_robin and
//! p2c_ewma are spreads, and so can a user's own policy be.
//!
//! **Endpoints.** Each endpoint is run by its own `PickFirstList` (so an endpoint with several
//! addresses connects to the first that answers, with happy eyeballs). An endpoint whose
//! connection is lost reconnects at once; one that fails backs off and retries on its own
//! schedule. An endpoint is known across updates by its distinct addresses, in order: one listed
//! again keeps its connections (an update that lists `[a, b, a]` keeps the endpoint `[a, b]`),
//! one with the same addresses in another order is a new endpoint; listed twice, the first
//! counts.
//!
//! **State.** READY if any endpoint is; else CONNECTING if any is; else IDLE if any is; else
//! TRANSIENT_FAILURE. An endpoint that failed counts as failed until it is READY again ("sticky"
//! TRANSIENT_FAILURE, gRFC A61), so the channel does not flap through CONNECTING while it
//! retries. In TRANSIENT_FAILURE calls fail with a message naming the endpoints' errors.
//!
//! **Pickers.** A picker is a snapshot of the READY endpoints, so building one costs the list.
//! It is rebuilt at once when the state changes, when an endpoint it offers is no longer READY,
//! after a resolver update, when an eighth of the endpoints changed since the last one, or when
//! the last one is older than 100 ms; any other change (an endpoint joining the READY ones, a
//! failure message) waits at most 100 ms, gathered with the next ones. So 200,000 endpoints
//! coming up one connection at a time cost a few rebuilds of the list, not one each (which took
//! 96 s at 100,000); below 16 endpoints an eighth is one change, and every change is published
//! at once. (gRPC rebuilds the picker on every change.)
//!
//! This is grpc-go's `endpointsharding` with the picker over it made pluggable.
//!
//! # A policy of one's own
//!
//! A spread that sends every call to the READY endpoint added first:
//!
//! ```
//! use std::sync::Arc;
//! use croupier::policy::endpoints::{EndpointKey, EndpointPolicy, ReadyEndpoints, Spread};
//! use croupier::{Controller, Endpoint, Picker, Policy, PolicyBuilder, SinglePicker};
//!
//! #[derive(Debug)]
//! struct Oldest;
//!
//! impl Spread for Oldest {
//!     type Endpoint = ();
//!
//!     fn add_endpoint(&mut self, _: EndpointKey, _: &Endpoint) {}
//!
//!     fn picker(&mut self, ready: &ReadyEndpoints<'_, ()>, _: &mut dyn Controller) -> Arc<dyn Picker> {
//!         let first = ready.subchannels().next().expect("a picker is asked for over READY endpoints");
//!         Arc::new(SinglePicker::new(first))
//!     }
//! }
//!
//! #[derive(Debug)]
//! struct OldestConfig;
//!
//! impl PolicyBuilder for OldestConfig {
//!     fn name(&self) -> &str {
//!         "oldest"
//!     }
//!
//!     fn build(&self) -> Box<dyn Policy> {
//!         Box::new(EndpointPolicy::new(Oldest))
//!     }
//! }
//!
//! let config = croupier::PolicyConfig::new(OldestConfig);
//! assert_eq!(config.name(), "oldest");
//! ```

use std::sync::Arc;

use crate::address::{Address, Endpoint};
use crate::picker::{FailPicker, Picker, QueuePicker};
use crate::policy::child::ChildController;
use crate::policy::pacing::{Admit, Pacing};
use crate::policy::pick_first::{dedup, PickFirstList, DEFAULT_HAPPY_EYEBALLS_DELAY};
use crate::policy::{describe_failures, Controller, SlotController, TimerToken};
use crate::resolver::ResolverError;
use crate::slab::{Slab, SlabKey};
use crate::status::{ConnectivityState, Status};
use crate::subchannel::{DenseIdMap, SubchannelId};

use hashbrown::HashTable;

mod index;
mod policy;
mod spread;

pub use spread::{EndpointKey, ReadyEndpoint, ReadyEndpoints, Spread};

use index::{addresses_hash, child_hash, holds};

/// How many failed addresses an error message names before it says "and N more".
const ERRORS_SHOWN: usize = 8;

/// The spread's own timer. Children's timers carry their slot ([`TimerToken::child`]).
const SPREAD_TIMER: TimerToken = TimerToken::new(0);
/// The timer of a picker that waits (see [`Pacing`]).
const PUBLICATION_TIMER: TimerToken = TimerToken::new(1);

/// One endpoint, the list that connects it, and what the spread keeps beside it.
#[derive(Debug)]
pub(crate) struct Child<E> {
    /// The last resolver update that listed it. (Every update lists a child or removes it, so
    /// the count wrapping around does no harm.)
    listed: u32,
    list: PickFirstList,
    /// The state last counted in [`Counts`].
    counted: ConnectivityState,
    /// The READY subchannel last put in the picker.
    ready: Option<SubchannelId>,
    kept: E,
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

/// A policy that connects every endpoint and spreads calls over the READY ones as its
/// [`Spread`] says (see the [module documentation](self)).
#[derive(Debug)]
pub struct EndpointPolicy<S: Spread> {
    /// The children, densely, in slot order.
    children: Slab<Child<S::Endpoint>>,
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
    spread: S,
    /// The spread's timer is set.
    ticking: bool,
}

impl<S: Spread> EndpointPolicy<S> {
    /// A policy that connects every endpoint and spreads calls as `spread` says.
    pub fn new(spread: S) -> Self {
        EndpointPolicy {
            children: Slab::default(),
            by_addresses: HashTable::new(),
            updates: 0,
            by_subchannel: DenseIdMap::default(),
            counts: Counts::default(),
            dirty: false,
            urgent: false,
            published: None,
            pacing: Pacing::default(),
            resolver_error: None,
            spread,
            ticking: false,
        }
    }

    /// The spread.
    pub fn spread(&self) -> &S {
        &self.spread
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
            self.spread
                .ready_changed(EndpointKey(key), &mut child.kept, ready);
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
        let kept = self.spread.add_endpoint(EndpointKey(key), endpoint);
        let inserted = self.children.insert(Child {
            listed: update,
            list,
            counted: ConnectivityState::Idle,
            ready: None,
            kept,
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
            self.spread.remove_endpoint(EndpointKey(key), child.kept);
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
                let ready = ReadyEndpoints {
                    children: &self.children,
                    len: self.counts.ready,
                };
                self.spread.picker(&ready, ctl)
            }
            ConnectivityState::TransientFailure => {
                Arc::new(FailPicker::new(Status::unavailable(self.failure_message())))
            }
            _ => Arc::new(QueuePicker),
        };
        ctl.publish(state, picker);
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

    /// The spread's timer fired.
    fn spread_tick(&mut self, ctl: &mut dyn Controller) {
        self.ticking = false;
        let now = ctl.now();
        let ready = ReadyEndpoints {
            children: &self.children,
            len: self.counts.ready,
        };
        let shown = (self.published == Some(ConnectivityState::Ready)).then_some(&ready);
        self.dirty |= self.spread.tick(shown, now);
        self.publish_if_dirty(ctl);
        self.arm_spread_timer(ctl);
    }

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
