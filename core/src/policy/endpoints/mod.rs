//! One layer under every policy that connects each endpoint: [`EndpointPolicy`] runs a
//! [`PickFirstList`](crate::policy::PickFirstList) per endpoint and publishes pickers; a
//! [`Spread`] says how the READY endpoints share the calls. round_robin, random, least_request,
//! weighted_round_robin and p2c_ewma are spreads, and so can a user's own policy be. (ring_hash
//! keeps its endpoints in the same set, connecting them only when a pick needs one, and
//! publishes its own ring.)
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
//! **Pickers.** A picker is a snapshot of the READY endpoints, so building one costs the list
//! (read from a dense array of each slot's READY subchannel, 8 bytes an endpoint, not from the
//! endpoints themselves). It is rebuilt at once when the state changes, when an endpoint it offers is no longer READY,
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
//! use croupier::policy::endpoints::{EndpointPolicy, ReadyEndpoints, Spread};
//! use croupier::{Controller, Picker, Policy, PolicyBuilder, SinglePicker};
//!
//! #[derive(Debug)]
//! struct Oldest;
//!
//! impl Spread for Oldest {
//!     type Endpoint = ();
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

use crate::address::Endpoint;
use crate::picker::{FailPicker, Picker, QueuePicker};
use crate::policy::pacing::{Admit, Pacing};
use crate::policy::{Controller, TimerToken};
use crate::resolver::ResolverError;
use crate::status::{ConnectivityState, Status};

mod index;
mod policy;
mod ready_values;
pub(crate) mod set;
mod spread;

pub use spread::{EndpointKey, ReadyEndpoint, ReadyEndpoints, Spread};

pub(crate) use ready_values::ReadyValues;
pub(crate) use set::Child;
use set::{Change, EndpointSet, Owner};

/// The spread's own timer. Children's timers carry their slot ([`TimerToken::child`]).
const SPREAD_TIMER: TimerToken = TimerToken::new(0);
/// The timer of a picker that waits (see [`Pacing`]).
const PUBLICATION_TIMER: TimerToken = TimerToken::new(1);

/// The spread, and whether what its picker shows changed.
#[derive(Debug)]
struct Shown<S> {
    spread: S,
    /// Something the picker shows changed since it was last published.
    dirty: bool,
    /// ...and it cannot wait: the picker offers an endpoint that is no longer READY.
    urgent: bool,
}

impl<S: Spread> Owner<S::Endpoint> for Shown<S> {
    fn add(&mut self, key: EndpointKey, endpoint: &Endpoint) -> S::Endpoint {
        self.dirty = true;
        self.spread.add_endpoint(key, endpoint)
    }

    fn relisted(
        &mut self,
        key: EndpointKey,
        kept: &mut S::Endpoint,
        ready: bool,
        endpoint: &Endpoint,
    ) {
        if self.spread.update_endpoint(key, kept, endpoint) {
            self.dirty |= ready;
        }
    }

    fn changed(&mut self, key: EndpointKey, kept: &mut S::Endpoint, change: &Change) {
        if change.ready_changed() {
            self.spread.ready_changed(key, kept, change.ready);
            self.urgent |= change.was_ready.is_some();
        }
        // A failure message names this endpoint's errors.
        self.dirty |= change.state_changed() || change.ready_changed() || change.failure_changed();
    }

    fn removed(&mut self, key: EndpointKey, child: Child<S::Endpoint>, was_ready: bool) {
        self.urgent |= was_ready;
        self.spread.remove_endpoint(key, child.kept);
        self.dirty = true;
    }
}

/// A policy that connects every endpoint and spreads calls over the READY ones as its
/// [`Spread`] says (see the [module documentation](self)).
#[derive(Debug)]
pub struct EndpointPolicy<S: Spread> {
    endpoints: EndpointSet<S::Endpoint>,
    shown: Shown<S>,
    published: Option<ConnectivityState>,
    /// When pickers are rebuilt.
    pacing: Pacing,
    resolver_error: Option<ResolverError>,
    /// The spread's timer is set.
    ticking: bool,
}

impl<S: Spread> EndpointPolicy<S> {
    /// A policy that connects every endpoint and spreads calls as `spread` says.
    pub fn new(spread: S) -> Self {
        EndpointPolicy {
            endpoints: EndpointSet::new(false),
            shown: Shown {
                spread,
                dirty: false,
                urgent: false,
            },
            published: None,
            pacing: Pacing::default(),
            resolver_error: None,
            ticking: false,
        }
    }

    /// The spread.
    pub fn spread(&self) -> &S {
        &self.shown.spread
    }

    /// Publishes a new picker if something it shows changed, at once or when [`Pacing`] says.
    fn publish_if_dirty(&mut self, ctl: &mut dyn Controller) {
        let state = self.endpoints.counts().aggregate();
        if !self.shown.dirty && self.published == Some(state) {
            self.shown.urgent = false;
            return;
        }
        let urgent = std::mem::take(&mut self.shown.urgent) || self.published != Some(state);
        match self.pacing.admit(urgent, self.endpoints.len(), ctl.now()) {
            Admit::Now => {}
            Admit::Later(timer) => {
                if let Some(at) = timer {
                    ctl.set_timer(at, PUBLICATION_TIMER);
                }
                return;
            }
        }
        self.shown.dirty = false;
        self.published = Some(state);
        let picker: Arc<dyn Picker> = match state {
            ConnectivityState::Ready => {
                let ready = ReadyEndpoints {
                    children: self.endpoints.children(),
                    ready: self.endpoints.ready(),
                    len: self.endpoints.counts().ready,
                };
                let picker = self.shown.spread.picker(&ready, ctl);
                self.request_probes(ctl);
                picker
            }
            ConnectivityState::TransientFailure => {
                Arc::new(FailPicker::new(Status::unavailable(self.failure_message())))
            }
            _ => Arc::new(QueuePicker),
        };
        ctl.publish(state, picker);
    }

    /// Passes on every probe the spread wants.
    fn request_probes(&mut self, ctl: &mut dyn Controller) {
        while let Some(subchannel) = self.shown.spread.poll_probe() {
            ctl.request_probe(subchannel);
        }
    }

    /// Sets the spread's timer if it needs one and none is set.
    fn arm_spread_timer(&mut self, ctl: &mut dyn Controller) {
        if self.ticking {
            return;
        }
        if let Some(period) = self.shown.spread.tick_period(ctl.now()) {
            self.ticking = true;
            ctl.set_timer(crate::backoff::later(ctl.now(), period), SPREAD_TIMER);
        }
    }

    /// The spread's timer fired.
    fn spread_tick(&mut self, ctl: &mut dyn Controller) {
        self.ticking = false;
        let now = ctl.now();
        let ready = ReadyEndpoints {
            children: self.endpoints.children(),
            ready: self.endpoints.ready(),
            len: self.endpoints.counts().ready,
        };
        let shown = (self.published == Some(ConnectivityState::Ready)).then_some(&ready);
        self.shown.dirty |= self.shown.spread.tick(shown, now);
        self.publish_if_dirty(ctl);
        self.arm_spread_timer(ctl);
        self.request_probes(ctl);
    }

    /// The spread's or the pacing's timer fired.
    fn own_timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        if token == SPREAD_TIMER {
            self.spread_tick(ctl);
            return;
        }
        if token == PUBLICATION_TIMER {
            self.pacing.timer_fired();
            self.shown.urgent = true;
            self.publish_if_dirty(ctl);
        }
    }

    fn failure_message(&self) -> String {
        if self.endpoints.is_empty() {
            return match &self.resolver_error {
                Some(error) => error.to_string(),
                None => "the resolver returned no endpoints".to_owned(),
            };
        }
        self.endpoints.failure_message()
    }
}
