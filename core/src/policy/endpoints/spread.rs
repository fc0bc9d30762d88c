//! The one thing policies over [`EndpointPolicy`](super::EndpointPolicy) do differently: how
//! the READY endpoints share the calls.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::address::Endpoint;
use crate::call::{CallOutcome, LoadReport};
use crate::picker::Picker;
use crate::policy::{Controller, PolicyConfig, PolicyDetails};
use crate::probe::ProbeResult;
use crate::slab::{Slab, SlabKey};
use crate::subchannel::SubchannelId;

use super::Child;

/// Names one endpoint of an [`EndpointPolicy`](super::EndpointPolicy) for as long as it is
/// listed: the same endpoint keeps its key across resolver updates, and a removed endpoint's key
/// never names another. Cheap to copy, hash and compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey(pub(crate) SlabKey);

/// How the READY endpoints share the calls: round robin, at random, by load, by weight, by a
/// zone of one's own...
///
/// [`EndpointPolicy`](super::EndpointPolicy) does everything else: it connects every endpoint,
/// knows an endpoint across updates, counts states and publishes pickers (paced, so thousands
/// of endpoints coming up cost a few rebuilds). A spread builds the picker from the READY
/// endpoints when asked, and may keep what it learns on the way: a value of its own per endpoint
/// ([`Spread::Endpoint`]), call outcomes, load reports, a periodic timer.
///
/// Every method but [`Spread::picker`] has a default that does nothing.
pub trait Spread: Send + fmt::Debug {
    /// What the spread keeps per endpoint (`()` for nothing): a weight, a label read from the
    /// endpoint's attributes. Its `Default` is what [`Spread::add_endpoint`] keeps unless a
    /// spread says otherwise.
    type Endpoint: Default + Send + fmt::Debug;

    /// An endpoint is new: the value kept beside it. The default keeps
    /// `Self::Endpoint::default()` (nothing, for `()`).
    fn add_endpoint(&mut self, key: EndpointKey, endpoint: &Endpoint) -> Self::Endpoint {
        let _ = (key, endpoint);
        Self::Endpoint::default()
    }

    /// A resolver update listed the endpoint again, perhaps with new attributes. Return `true`
    /// if a picker should show the change (it is rebuilt if the endpoint is READY).
    fn update_endpoint(
        &mut self,
        key: EndpointKey,
        kept: &mut Self::Endpoint,
        endpoint: &Endpoint,
    ) -> bool {
        let _ = (key, kept, endpoint);
        false
    }

    /// The endpoint's READY subchannel changed: `Some` when it became READY (again), `None`
    /// when it stopped being READY.
    fn ready_changed(
        &mut self,
        key: EndpointKey,
        kept: &mut Self::Endpoint,
        ready: Option<SubchannelId>,
    ) {
        let _ = (key, kept, ready);
    }

    /// The endpoint is gone (no longer listed, or the policy shut down).
    fn remove_endpoint(&mut self, key: EndpointKey, kept: Self::Endpoint) {
        let _ = (key, kept);
    }

    /// The picker over `ready` (never empty), published with the state READY. Called only when
    /// something it shows changed. Randomness comes from [`Controller::rng`].
    fn picker(
        &mut self,
        ready: &ReadyEndpoints<'_, Self::Endpoint>,
        ctl: &mut dyn Controller,
    ) -> Arc<dyn Picker>;

    /// A service config gave the policy new settings (`config` names the same policy): take
    /// them and return `true`, and the picker is built again; or return `false`, the default,
    /// and a policy built from `config` replaces this one by a graceful switch
    /// ([`Policy::reconfigure`](crate::Policy::reconfigure)).
    fn reconfigure(&mut self, config: &PolicyConfig) -> bool {
        let _ = config;
        false
    }

    /// Whether the spread learns from call outcomes ([`Spread::call_finished`]); `false` by
    /// default, which spares the channel a message per call.
    fn wants_call_outcomes(&self) -> bool {
        false
    }

    /// A call routed to `subchannel` ended; `endpoint` is the endpoint that owns it, if it is
    /// still there. Return `true` if the spread's timer may be needed now
    /// ([`Spread::tick_period`] is asked).
    fn call_finished(
        &mut self,
        subchannel: SubchannelId,
        endpoint: Option<(EndpointKey, &mut Self::Endpoint)>,
        outcome: &CallOutcome,
        now: Instant,
    ) -> bool {
        let _ = (subchannel, endpoint, outcome, now);
        false
    }

    /// The backend behind `subchannel` (of `endpoint`) reported its load out of band. Return
    /// `true` if the spread's timer may be needed now.
    fn load_report(
        &mut self,
        subchannel: SubchannelId,
        endpoint: Option<(EndpointKey, &mut Self::Endpoint)>,
        report: &LoadReport,
        now: Instant,
    ) -> bool {
        let _ = (subchannel, endpoint, report, now);
        false
    }

    /// The backend behind `subchannel` (of `endpoint`) answered a probe the spread asked for
    /// ([`Spread::poll_probe`]). Return `true` if the spread's timer may be needed now.
    fn probe_result(
        &mut self,
        subchannel: SubchannelId,
        endpoint: Option<(EndpointKey, &mut Self::Endpoint)>,
        result: &ProbeResult,
        now: Instant,
    ) -> bool {
        let _ = (subchannel, endpoint, result, now);
        false
    }

    /// The next subchannel whose backend the spread wants probed, if any: the policy asks until
    /// `None` after every call outcome, probe answer, tick and picker, and passes each on
    /// ([`Controller::request_probe`]). The default wants none.
    fn poll_probe(&mut self) -> Option<SubchannelId> {
        None
    }

    /// How soon the spread's timer should fire after `now`, if it needs one now: the policy asks
    /// after the spread was created, after a call outcome or load report it returned `true` for,
    /// and after each tick.
    fn tick_period(&self, now: Instant) -> Option<Duration> {
        let _ = now;
        None
    }

    /// Fills in what the spread knows of `subchannel` (of `endpoint`, if it is still there),
    /// for a snapshot: a weight, a latency estimate, calls in flight. The default knows nothing.
    fn describe_subchannel(
        &self,
        subchannel: SubchannelId,
        endpoint: Option<(EndpointKey, &Self::Endpoint)>,
        details: &mut PolicyDetails,
    ) {
        let _ = (subchannel, endpoint, details);
    }

    /// The spread's timer fired. `ready` is the READY endpoints if the policy's published state
    /// is READY. Return `true` if the picker should be rebuilt.
    fn tick(&mut self, ready: Option<&ReadyEndpoints<'_, Self::Endpoint>>, now: Instant) -> bool {
        let _ = (ready, now);
        false
    }
}

/// The READY endpoints of an [`EndpointPolicy`](super::EndpointPolicy), in a stable order
/// (the order endpoints were added, until removed ones' places are reused).
pub struct ReadyEndpoints<'a, E> {
    pub(super) children: &'a Slab<Child<E>>,
    /// Each slot's READY subchannel (see `EndpointSet::ready`).
    pub(super) ready: &'a [Option<SubchannelId>],
    pub(super) len: usize,
}

impl<E> fmt::Debug for ReadyEndpoints<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadyEndpoints")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// One READY endpoint: its key, its READY subchannel and what the spread keeps beside it.
#[derive(Debug)]
#[non_exhaustive]
pub struct ReadyEndpoint<'a, E> {
    /// The endpoint.
    pub key: EndpointKey,
    /// Its READY subchannel: where a pick sends calls.
    pub subchannel: SubchannelId,
    /// The spread's value for it ([`Spread::add_endpoint`]).
    pub kept: &'a E,
}

impl<'a, E> ReadyEndpoints<'a, E> {
    /// How many endpoints are READY.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is (never, when [`Spread::picker`] is called).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The READY endpoints, in order.
    pub fn iter(&self) -> impl Iterator<Item = ReadyEndpoint<'a, E>> + 'a {
        let children = self.children;
        self.slots().filter_map(move |(slot, subchannel)| {
            let (key, child) = children.get_at(slot)?;
            Some(ReadyEndpoint {
                key: EndpointKey(key),
                subchannel,
                kept: &child.kept,
            })
        })
    }

    /// Their READY subchannels, in order.
    pub fn subchannels(&self) -> impl Iterator<Item = SubchannelId> + 'a {
        self.ready.iter().flatten().copied()
    }

    /// The slots of the READY endpoints, with their READY subchannels, in order.
    fn slots(&self) -> impl Iterator<Item = (u32, SubchannelId)> + 'a {
        (0u32..)
            .zip(self.ready)
            .filter_map(|(slot, ready)| ready.map(|subchannel| (slot, subchannel)))
    }
}
