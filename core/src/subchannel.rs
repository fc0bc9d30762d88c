//! Subchannels: one logical connection to one address, with gRPC's states and connection backoff.
//!
//! A subchannel is created by a policy, connected when the policy asks, and removed when the policy
//! is done with it. In between it moves through gRPC's states:
//!
//! ```text
//! IDLE --connect--> CONNECTING --connected--> READY --closed--> IDLE
//!                        |                                    (backoff reset)
//!                        +--failed / timed out--> TRANSIENT_FAILURE --backoff over--> IDLE
//! any state --removed--> SHUTDOWN (final)
//! ```
//!
//! With client-side health checking (gRFC A17) the adapter also reports a READY connection's
//! health: `Unhealthy` makes it TRANSIENT_FAILURE while the connection stays open (no backoff, no
//! new attempt), `Healthy` makes it READY again, and its end makes it IDLE as from READY.
//!
//! As in gRPC-Go and gRPC C-core, a subchannel whose backoff is over goes back to IDLE and the
//! policy decides whether to connect it again, so reconnection policy stays in one place.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Instant;

use crate::address::Address;
use crate::backoff::{Backoff, BackoffConfig};
use crate::policy::PolicyDetails;
use crate::rng::Rng;
use crate::slab::SlabKey;
use crate::status::ConnectivityState;

/// A handle to a subchannel. Handles are never reused within a balancer: a removed subchannel's
/// handle stays meaningless forever, and an event that names it is ignored.
///
/// Never zero, so an `Option<SubchannelId>` takes no more room than the handle itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubchannelId(NonZeroU64);

impl SubchannelId {
    /// The handle's number, unique within its balancer (for logs and maps).
    pub fn as_u64(self) -> u64 {
        self.0.get()
    }

    /// The handle whose number is `value` (from [`SubchannelId::as_u64`]), `None` for 0.
    pub(crate) fn from_raw(value: u64) -> Option<Self> {
        NonZeroU64::new(value).map(SubchannelId)
    }

    /// A handle made up for a test.
    #[cfg(test)]
    pub(crate) fn from_u64(value: u64) -> Self {
        SubchannelId(NonZeroU64::new(value).expect("handles are never 0"))
    }

    /// The handle of the subchannel in slot `key` of the balancer's slab: the slot's generation
    /// in the high 32 bits, its index plus one in the low (so no handle is 0, and a balancer that
    /// never removed a subchannel numbers them 1, 2, 3, ...).
    pub(crate) fn from_key(key: SlabKey) -> Self {
        let value = (u64::from(key.generation) << 32) | (u64::from(key.index) + 1);
        // `index + 1` is at least 1, so the value never is 0.
        SubchannelId(NonZeroU64::new(value).unwrap_or(NonZeroU64::MIN))
    }

    /// The slab slot this handle names, if it names one.
    pub(crate) fn key(self) -> Option<SlabKey> {
        let value = self.0.get();
        Some(SlabKey {
            index: (value as u32).checked_sub(1)?,
            generation: (value >> 32) as u32,
        })
    }
}

impl fmt::Display for SubchannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The slot number, and which reuse of the slot it is when it is not the first.
        let (slot, generation) = (self.0.get() as u32, self.0.get() >> 32);
        if generation == 0 {
            write!(f, "subchannel#{slot}")
        } else {
            write!(f, "subchannel#{slot}.{generation}")
        }
    }
}

/// One connection attempt of a subchannel and, when it succeeds, the connection it made.
///
/// The adapter reports every event of that attempt or connection with this id. An event whose id is
/// not the subchannel's current attempt (it was timed out, cancelled, or superseded) is ignored, so
/// an adapter never has to worry about late reports racing the core's own decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId {
    subchannel: SubchannelId,
    attempt: u32,
}

impl ConnectionId {
    /// The subchannel the connection belongs to.
    pub fn subchannel(self) -> SubchannelId {
        self.subchannel
    }

    /// The attempt's number within its subchannel, counting from 1.
    pub fn attempt(self) -> u32 {
        self.attempt
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/attempt#{}", self.subchannel, self.attempt)
    }
}

/// What happened to a connection attempt or an established connection, as the adapter reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The attempt succeeded: the connection can carry calls.
    Connected,
    /// The attempt failed; the message says why (`connection refused`, a TLS error, ...).
    Failed(String),
    /// An established connection ended (closed by the peer, reset, GOAWAY); the message says how.
    Closed(String),
    /// An established connection's health check says its server should not get calls (gRFC A17:
    /// any status but SERVING); the message says what it answered. The subchannel shows
    /// TRANSIENT_FAILURE while the connection stays open, until [`ConnectionEvent::Healthy`].
    Unhealthy(String),
    /// An established connection's health check says its server is serving again.
    Healthy,
}

/// A snapshot of one subchannel, for observability.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SubchannelInfo {
    /// The handle.
    pub id: SubchannelId,
    /// The address it connects to.
    pub address: Address,
    /// Its current state.
    pub state: ConnectivityState,
    /// When it entered that state (the `now` of the input that moved it).
    pub since: Instant,
    /// How many connection attempts it started.
    pub connection_attempts: u32,
    /// Why its last attempt failed or its last connection ended, if one did.
    pub last_error: Option<Arc<str>>,
    /// What its policy knows of it: weight, ejection, latency estimate, calls in flight.
    pub policy: PolicyDetails,
}

/// What the balancer must do after a subchannel changed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Nothing changed.
    None,
    /// The state changed; tell the policy.
    Changed,
    /// The state changed and the adapter must drop what it holds for the subchannel.
    ChangedAndDisconnect,
}

/// The core's record of one subchannel (its handle is where [`Subchannels`] keeps it): what
/// its events read and change. Its address is kept apart (see [`Subchannels`]).
#[derive(Debug)]
pub(crate) struct Subchannel {
    state: ConnectivityState,
    /// When it entered `state`; while CONNECTING, when the current attempt started.
    since: Instant,
    backoff: Backoff,
    attempt: u32,
    /// While CONNECTING: when the attempt counts as failed.
    connect_deadline: Option<Instant>,
    /// The end of the current backoff: no attempt may start before it.
    retry_at: Option<Instant>,
    last_error: Option<Arc<str>>,
    /// In TRANSIENT_FAILURE only because its connection's health check failed: the connection
    /// is open, and `Healthy` makes it READY again.
    unhealthy: bool,
}

impl Subchannel {
    pub(crate) fn new(now: Instant) -> Self {
        Subchannel {
            state: ConnectivityState::Idle,
            since: now,
            backoff: Backoff::new(),
            attempt: 0,
            connect_deadline: None,
            retry_at: None,
            last_error: None,
            unhealthy: false,
        }
    }

    pub(crate) fn state(&self) -> ConnectivityState {
        self.state
    }

    pub(crate) fn last_error(&self) -> Option<&Arc<str>> {
        self.last_error.as_ref()
    }

    /// Records that its state changed at `now`.
    pub(crate) fn entered_state(&mut self, now: Instant) {
        self.since = now;
    }

    /// A snapshot of the subchannel, whose handle is `id` and address `address`, with what its
    /// policy knows of it.
    pub(crate) fn info(
        &self,
        id: SubchannelId,
        address: &Address,
        policy: PolicyDetails,
    ) -> SubchannelInfo {
        SubchannelInfo {
            id,
            address: address.clone(),
            state: self.state,
            since: self.since,
            connection_attempts: self.attempt,
            last_error: self.last_error.clone(),
            policy,
        }
    }

    /// The current (or last) attempt of this subchannel, whose handle is `id`.
    pub(crate) fn connection(&self, id: SubchannelId) -> ConnectionId {
        ConnectionId {
            subchannel: id,
            attempt: self.attempt,
        }
    }

    /// The next instant at which [`Subchannel::on_timeout`] has something to do.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            ConnectivityState::Connecting => self.connect_deadline,
            ConnectivityState::TransientFailure => self.retry_at,
            _ => None,
        }
    }

    /// The deadline of `connection` (an attempt of this subchannel) if it is the one under way.
    pub(crate) fn pending_attempt(&self, connection: ConnectionId) -> Option<Instant> {
        match self.state {
            ConnectivityState::Connecting if connection.attempt == self.attempt => {
                self.connect_deadline
            }
            _ => None,
        }
    }

    /// Starts an attempt if the subchannel (whose handle is `id`) is IDLE; returns the attempt
    /// and its deadline.
    pub(crate) fn connect(
        &mut self,
        id: SubchannelId,
        config: &BackoffConfig,
        now: Instant,
        rng: &mut Rng,
    ) -> Option<(ConnectionId, Instant)> {
        if self.state != ConnectivityState::Idle {
            return None;
        }
        let times = self.backoff.start_attempt(config, now, rng);
        self.attempt = self.attempt.wrapping_add(1);
        self.state = ConnectivityState::Connecting;
        self.connect_deadline = Some(times.connect_deadline);
        self.retry_at = Some(times.retry_at);
        self.since = now;
        Some((self.connection(id), times.connect_deadline))
    }

    /// Applies an adapter's report about `connection` (an attempt of this subchannel).
    pub(crate) fn on_event(
        &mut self,
        connection: ConnectionId,
        event: ConnectionEvent,
        now: Instant,
    ) -> Effect {
        if connection.attempt != self.attempt {
            return Effect::None;
        }
        match (self.state, event) {
            (ConnectivityState::Connecting, ConnectionEvent::Connected) => {
                self.state = ConnectivityState::Ready;
                self.connect_deadline = None;
                self.retry_at = None;
                self.backoff.reset();
                Effect::Changed
            }
            (
                ConnectivityState::Connecting,
                ConnectionEvent::Failed(reason) | ConnectionEvent::Closed(reason),
            ) => {
                self.fail(reason.into(), now);
                Effect::Changed
            }
            (
                ConnectivityState::Ready,
                ConnectionEvent::Closed(reason) | ConnectionEvent::Failed(reason),
            ) => {
                self.last_error = Some(reason.into());
                self.state = ConnectivityState::Idle;
                Effect::Changed
            }
            (ConnectivityState::Ready, ConnectionEvent::Unhealthy(reason)) => {
                self.last_error = Some(reason.into());
                self.state = ConnectivityState::TransientFailure;
                self.unhealthy = true;
                Effect::Changed
            }
            (ConnectivityState::TransientFailure, event) if self.unhealthy => match event {
                ConnectionEvent::Healthy => {
                    self.state = ConnectivityState::Ready;
                    self.unhealthy = false;
                    Effect::Changed
                }
                ConnectionEvent::Unhealthy(reason) => {
                    self.last_error = Some(reason.into());
                    Effect::None
                }
                ConnectionEvent::Closed(reason) | ConnectionEvent::Failed(reason) => {
                    self.last_error = Some(reason.into());
                    self.state = ConnectivityState::Idle;
                    self.unhealthy = false;
                    Effect::Changed
                }
                ConnectionEvent::Connected => Effect::None,
            },
            _ => Effect::None,
        }
    }

    fn fail(&mut self, reason: Arc<str>, now: Instant) {
        self.last_error = Some(reason);
        self.connect_deadline = None;
        self.state = ConnectivityState::TransientFailure;
        if self.retry_at.is_none_or(|at| at <= now) {
            // The backoff already ran out while the attempt was in flight: the policy sees the
            // failure now and the subchannel is idle again at once (see `finish_backoff`).
            self.retry_at = Some(now);
        }
    }

    /// After a failure whose backoff is already over, moves TRANSIENT_FAILURE -> IDLE.
    pub(crate) fn finish_backoff(&mut self, now: Instant) -> bool {
        if self.state == ConnectivityState::TransientFailure
            && self.retry_at.is_some_and(|at| at <= now)
        {
            self.state = ConnectivityState::Idle;
            self.retry_at = None;
            return true;
        }
        false
    }

    /// Acts on the subchannel's own timers: an attempt past its deadline fails (with a message
    /// that names `address`, the subchannel's), a finished backoff returns to IDLE.
    pub(crate) fn on_timeout(&mut self, now: Instant, address: &Address) -> Effect {
        match self.state {
            ConnectivityState::Connecting if self.connect_deadline.is_some_and(|at| at <= now) => {
                // Still CONNECTING: `since` is when the attempt started.
                let waited = now.saturating_duration_since(self.since);
                let message = format!(
                    "connection attempt to {} timed out after {:.3?}",
                    address, waited
                );
                self.fail(message.into(), now);
                Effect::ChangedAndDisconnect
            }
            ConnectivityState::TransientFailure => {
                if self.finish_backoff(now) {
                    Effect::Changed
                } else {
                    Effect::None
                }
            }
            _ => Effect::None,
        }
    }

    /// Removes the subchannel for good.
    pub(crate) fn shutdown(&mut self) {
        self.state = ConnectivityState::Shutdown;
        self.unhealthy = false;
        self.connect_deadline = None;
        self.retry_at = None;
    }
}

/// A map keyed by subchannel handle.
pub(crate) type IdMap<V> = crate::hasher::SequentialMap<SubchannelId, V>;

/// A map from the handles of one balancer's subchannels, in a vector indexed by their slots:
/// those slots are dense, so where a policy has a value for nearly every subchannel (which
/// endpoint owns it), this takes 16 bytes a subchannel for 8-byte values where a hash map takes
/// about 28, and a lookup is an index and a compare.
#[derive(Debug)]
pub(crate) struct DenseIdMap<V> {
    slots: Vec<Option<(SubchannelId, V)>>,
}

impl<V> Default for DenseIdMap<V> {
    fn default() -> Self {
        DenseIdMap { slots: Vec::new() }
    }
}

impl<V> DenseIdMap<V> {
    fn index(id: SubchannelId) -> Option<usize> {
        id.key().map(|key| key.index as usize)
    }

    /// Sets the value for `id` (a handle the balancer made: its slot is at most one past the
    /// highest in use).
    pub(crate) fn insert(&mut self, id: SubchannelId, value: V) {
        let Some(index) = Self::index(id) else {
            return;
        };
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some((id, value));
    }

    pub(crate) fn get(&self, id: &SubchannelId) -> Option<&V> {
        match self.slots.get(Self::index(*id)?)? {
            Some((held, value)) if held == id => Some(value),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, id: &SubchannelId) -> Option<&mut V> {
        match self.slots.get_mut(Self::index(*id)?)? {
            Some((held, value)) if held == id => Some(value),
            _ => None,
        }
    }

    /// The value for `id`, made by `make` if it has none (in place of a value left in its slot
    /// by an earlier handle).
    pub(crate) fn get_or_insert_with(
        &mut self,
        id: SubchannelId,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        let index = Self::index(id).expect("a handle the balancer made names a slot");
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        let slot = &mut self.slots[index];
        if !matches!(slot, Some((held, _)) if *held == id) {
            *slot = Some((id, make()));
        }
        &mut slot.as_mut().expect("the slot holds a value for `id`").1
    }

    /// Keeps only the values `keep` says to keep.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&mut V) -> bool) {
        for slot in &mut self.slots {
            if slot.as_mut().is_some_and(|(_, value)| !keep(value)) {
                *slot = None;
            }
        }
    }

    /// Every value, in slot order.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.slots.iter_mut().flatten().map(|(_, value)| value)
    }

    pub(crate) fn remove(&mut self, id: &SubchannelId) -> Option<V> {
        let slot = self.slots.get_mut(Self::index(*id)?)?;
        match slot {
            Some((held, _)) if held == id => slot.take().map(|(_, value)| value),
            _ => None,
        }
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
    }
}

/// The balancer's subchannels, in a [`Slab`](crate::slab::Slab) whose slots the handles name:
/// finding one is an index and a generation check, and a removed one's handle never finds its
/// slot's next occupant.
///
/// Each one's address and creation number sit apart, by slot: an event reads and changes only
/// the slab's record (80 bytes, where with them it was 128: at 100,000 subchannels becoming
/// READY in a random order, the record is a cache miss per event, and fewer lines are fewer
/// misses); the address is read when an attempt is announced and for snapshots.
#[derive(Debug, Default)]
pub(crate) struct Subchannels {
    slab: crate::slab::Slab<Subchannel>,
    /// By slot: the address and creation number of the subchannel in it.
    cold: Vec<Option<(u64, Address)>>,
    /// How many were ever created: the creation number of the next.
    created: u64,
}

impl Subchannels {
    /// Creates an IDLE subchannel for `address`.
    pub(crate) fn create(&mut self, address: Address, now: Instant) -> SubchannelId {
        let key = self.slab.insert(Subchannel::new(now));
        self.created += 1;
        let slot = key.index as usize;
        if slot >= self.cold.len() {
            self.cold.resize_with(slot + 1, || None);
        }
        self.cold[slot] = Some((self.created, address));
        SubchannelId::from_key(key)
    }

    pub(crate) fn get(&self, id: &SubchannelId) -> Option<&Subchannel> {
        self.slab.get(id.key()?)
    }

    pub(crate) fn get_mut(&mut self, id: &SubchannelId) -> Option<&mut Subchannel> {
        self.slab.get_mut(id.key()?)
    }

    /// The subchannel and its address.
    pub(crate) fn get_with_address(&self, id: &SubchannelId) -> Option<(&Subchannel, &Address)> {
        let key = id.key()?;
        let subchannel = self.slab.get(key)?;
        Some((subchannel, self.address_at(key.index)?))
    }

    /// The subchannel, to change, and its address.
    pub(crate) fn get_mut_with_address(
        &mut self,
        id: &SubchannelId,
    ) -> Option<(&mut Subchannel, &Address)> {
        let key = id.key()?;
        let subchannel = self.slab.get_mut(key)?;
        let (_, address) = self.cold.get(key.index as usize)?.as_ref()?;
        Some((subchannel, address))
    }

    fn address_at(&self, slot: u32) -> Option<&Address> {
        let (_, address) = self.cold.get(slot as usize)?.as_ref()?;
        Some(address)
    }

    pub(crate) fn contains_key(&self, id: &SubchannelId) -> bool {
        id.key().is_some_and(|key| self.slab.contains(key))
    }

    /// Removes the subchannel, handing back its record and its address.
    pub(crate) fn remove(&mut self, id: &SubchannelId) -> Option<(Subchannel, Option<Address>)> {
        let key = id.key()?;
        let subchannel = self.slab.remove(key)?;
        let address = self
            .cold
            .get_mut(key.index as usize)
            .and_then(Option::take)
            .map(|(_, address)| address);
        Some((subchannel, address))
    }

    /// The subchannel, to change, and its address only if `with_address` (the address is kept
    /// apart, and an event that does not need it should not touch it).
    pub(crate) fn get_mut_noting(
        &mut self,
        id: &SubchannelId,
        with_address: bool,
    ) -> Option<(&mut Subchannel, Option<&Address>)> {
        let key = id.key()?;
        let subchannel = self.slab.get_mut(key)?;
        let address = if with_address {
            self.cold
                .get(key.index as usize)
                .and_then(Option::as_ref)
                .map(|(_, address)| address)
        } else {
            None
        };
        Some((subchannel, address))
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        self.slab.reserve(additional);
        self.cold.reserve(additional);
    }

    /// Every subchannel with its handle, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SubchannelId, &Subchannel)> {
        self.slab
            .iter()
            .map(|(key, subchannel)| (SubchannelId::from_key(key), subchannel))
    }

    /// Every subchannel with its address, oldest first.
    pub(crate) fn in_creation_order(&self) -> Vec<(SubchannelId, &Subchannel, &Address)> {
        let mut all: Vec<(u64, SubchannelId, &Subchannel, &Address)> = self
            .slab
            .iter()
            .filter_map(|(key, subchannel)| {
                let (created, address) = self.cold.get(key.index as usize)?.as_ref()?;
                Some((*created, SubchannelId::from_key(key), subchannel, address))
            })
            .collect();
        all.sort_unstable_by_key(|(created, ..)| *created);
        all.into_iter()
            .map(|(_, id, subchannel, address)| (id, subchannel, address))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slab::SlabKey;

    fn id(index: u32, generation: u32) -> SubchannelId {
        SubchannelId::from_key(SlabKey { index, generation })
    }

    #[test]
    fn a_dense_map_finds_only_the_handle_it_was_given() {
        let mut map = DenseIdMap::default();
        map.insert(id(3, 0), 'a');
        map.insert(id(0, 0), 'b');
        assert_eq!(map.get(&id(3, 0)), Some(&'a'));
        assert_eq!(map.get(&id(0, 0)), Some(&'b'));
        assert_eq!(map.get(&id(1, 0)), None, "an empty slot below the highest");
        assert_eq!(map.get(&id(9, 0)), None, "a slot past the end");
        // A later occupant of slot 3 is another subchannel: neither finds the other's value.
        assert_eq!(map.get(&id(3, 1)), None);
        assert_eq!(map.remove(&id(3, 1)), None);
        assert_eq!(map.get(&id(3, 0)), Some(&'a'));
        map.insert(id(3, 1), 'c');
        assert_eq!(map.get(&id(3, 0)), None);
        assert_eq!(map.remove(&id(3, 1)), Some('c'));
        assert_eq!(map.get(&id(3, 1)), None);
        assert_eq!(map.remove(&id(0, 0)), Some('b'));
        assert_eq!(map.remove(&id(0, 0)), None);
    }
}
