//! The actions a balancer queues for its adapter, and the queue that keeps them bounded.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::address::Address;
use crate::hasher::FastSet;
use crate::picker::Picker;
use crate::status::ConnectivityState;
use crate::subchannel::{ConnectionId, SubchannelId};

/// Something the balancer wants the adapter to do, or to know.
#[derive(Clone, Debug)]
#[non_exhaustive]
#[must_use = "every action must be carried out or the channel stalls"]
pub enum Action {
    /// Open a connection to `address`, and report how it went with
    /// [`Balancer::handle_connection_event`](crate::Balancer::handle_connection_event) and `connection`. The core fails the attempt itself
    /// at `deadline` (and then asks for a [`Action::Disconnect`]); an adapter may also give up then.
    Connect {
        /// The attempt; report its events with this id.
        connection: ConnectionId,
        /// Where to connect.
        address: Address,
        /// When the core will count the attempt as failed.
        deadline: Instant,
    },
    /// Drop the attempt or connection `connection` (it timed out, or the policy is done with it).
    /// The subchannel lives on and may connect again later.
    Disconnect {
        /// The attempt or connection to drop.
        connection: ConnectionId,
    },
    /// The subchannel is gone for good: drop whatever it holds and forget it. Sent exactly once per
    /// removed subchannel.
    Shutdown {
        /// The removed subchannel.
        subchannel: SubchannelId,
    },
    /// Ask the resolver for fresh results (already rate-limited: act on every one).
    ResolveNow,
    /// Probe the backend of `subchannel` over its connection, and report its answer with
    /// [`Balancer::handle_probe_result`](crate::Balancer::handle_probe_result). Only policies
    /// that learn from probes ask; an adapter that cannot probe ignores this (the policy then
    /// picks without probes). At most one probe per subchannel waits in the queue.
    Probe {
        /// The subchannel whose backend to probe.
        subchannel: SubchannelId,
    },
    /// The channel's connectivity state changed.
    StateChanged(ConnectivityState),
    /// A new picker: from now on, picks use it (waiting calls should pick again).
    UpdatePicker(Arc<dyn Picker>),
}

/// An action as queued. A connect names only its attempt, and becomes an [`Action::Connect`]
/// with the subchannel's address and deadline when it is polled: a fresh update of thousands of
/// endpoints queues 24 bytes per connect instead of 64 (the memory such an update first touches
/// is most of its cost).
#[derive(Debug)]
pub(super) enum Queued {
    Connect(ConnectionId),
    Disconnect(ConnectionId),
    Shutdown(SubchannelId),
    ResolveNow,
    Probe(SubchannelId),
    StateChanged(ConnectivityState),
    UpdatePicker(Arc<dyn Picker>),
    /// A state change undone before it was taken: nothing to announce.
    Superseded,
}

/// The actions not yet polled, in order, with at most one picker, one state change and one
/// re-resolution request among them: a newer one takes the place of the one still waiting; and
/// at most one probe per subchannel.
///
/// So the queue holds at most a few entries per subchannel however long the adapter waits to
/// drain it (an adapter that reports every event before draining would otherwise keep every
/// superseded picker, each as large as the READY list, until it drained).
#[derive(Debug)]
pub(super) struct ActionQueue {
    queue: VecDeque<Queued>,
    /// How many entries were popped: the position of `queue[0]` counted from the first.
    popped: u64,
    /// Where the waiting picker, state change and re-resolution request are, if one is.
    picker: Option<u64>,
    state: Option<u64>,
    resolve_now: Option<u64>,
    /// The subchannels a probe waits for.
    probes: FastSet<SubchannelId>,
    /// The last state change polled: the adapter's view of the state.
    announced: ConnectivityState,
}

impl Default for ActionQueue {
    fn default() -> Self {
        ActionQueue {
            queue: VecDeque::new(),
            popped: 0,
            picker: None,
            state: None,
            resolve_now: None,
            probes: FastSet::default(),
            // A balancer starts CONNECTING, which it does not announce.
            announced: ConnectivityState::Connecting,
        }
    }
}

impl ActionQueue {
    /// How many entries wait (superseded ones included).
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(super) fn reserve(&mut self, additional: usize) {
        self.queue.reserve(additional);
    }

    /// Queues a connect, disconnect or shutdown (each is about one attempt or subchannel).
    pub(super) fn push(&mut self, action: Queued) {
        self.queue.push_back(action);
    }

    /// The waiting entry at position `at`, if it is still in the queue.
    fn waiting(&mut self, at: Option<u64>) -> Option<&mut Queued> {
        let index = at?.checked_sub(self.popped)?;
        self.queue.get_mut(usize::try_from(index).ok()?)
    }

    /// Queues `action` at the end, and returns its position.
    fn push_back(&mut self, action: Queued) -> u64 {
        self.queue.push_back(action);
        self.popped + self.queue.len() as u64 - 1
    }

    /// Queues a new picker, in place of a picker still waiting.
    pub(super) fn push_picker(&mut self, picker: Arc<dyn Picker>) {
        match self.waiting(self.picker) {
            Some(slot) => *slot = Queued::UpdatePicker(picker),
            None => self.picker = Some(self.push_back(Queued::UpdatePicker(picker))),
        }
    }

    /// Queues a state change, in place of one still waiting; back to the state last polled, it
    /// announces nothing.
    pub(super) fn push_state(&mut self, state: ConnectivityState) {
        let announced = self.announced;
        match self.waiting(self.state) {
            Some(slot) if state == announced => *slot = Queued::Superseded,
            Some(slot) => *slot = Queued::StateChanged(state),
            None => self.state = Some(self.push_back(Queued::StateChanged(state))),
        }
    }

    /// Queues a request to re-resolve, unless one is still waiting.
    pub(super) fn push_resolve_now(&mut self) {
        if self.waiting(self.resolve_now).is_none() {
            self.resolve_now = Some(self.push_back(Queued::ResolveNow));
        }
    }

    /// Queues a probe of `subchannel`, unless one is still waiting for it.
    pub(super) fn push_probe(&mut self, subchannel: SubchannelId) {
        if self.probes.insert(subchannel) {
            self.queue.push_back(Queued::Probe(subchannel));
        }
    }

    /// The next action to announce.
    pub(super) fn pop(&mut self) -> Option<Queued> {
        loop {
            let action = self.queue.pop_front()?;
            self.popped += 1;
            match action {
                Queued::Superseded => continue,
                Queued::StateChanged(state) => self.announced = state,
                Queued::Probe(subchannel) => {
                    self.probes.remove(&subchannel);
                }
                _ => {}
            }
            return Some(action);
        }
    }
}
