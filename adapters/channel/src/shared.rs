//! What the driver publishes and every call reads: the newest picker with the connections it may
//! name, swapped atomically so that picks take no lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use croupier::{ConnectivityState, FailPicker, Picker, QueuePicker, Status, SubchannelId};
use event_listener::{Event, EventListener};

/// One consistent view: a picker and the connections of the subchannels it can name.
pub(crate) struct Snapshot<T> {
    pub(crate) generation: u64,
    pub(crate) picker: Arc<dyn Picker>,
    pub(crate) connections: Arc<HashMap<SubchannelId, T>>,
    pub(crate) state: ConnectivityState,
    /// The last connection error the channel saw, with its address.
    pub(crate) last_error: Option<Arc<str>>,
    /// Whether the policy wants call outcomes reported.
    pub(crate) wants_outcomes: bool,
}

pub(crate) struct Shared<T> {
    snapshot: ArcSwap<Snapshot<T>>,
    /// Notified on every new snapshot.
    changed: Event,
    /// Set once a call asked the driver to leave IDLE for the current generation.
    exit_idle_asked: AtomicBool,
    closed: AtomicBool,
    /// The connector's test for a connection a call found dead.
    pub(crate) is_broken: fn(&T) -> bool,
}

impl<T> Shared<T> {
    pub(crate) fn new(is_broken: fn(&T) -> bool) -> Self {
        Shared {
            snapshot: ArcSwap::from_pointee(Snapshot {
                generation: 0,
                picker: Arc::new(QueuePicker),
                connections: Arc::new(HashMap::new()),
                state: ConnectivityState::Connecting,
                last_error: None,
                wants_outcomes: true,
            }),
            changed: Event::new(),
            exit_idle_asked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            is_broken,
        }
    }

    /// The newest snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot<T>> {
        self.snapshot.load_full()
    }

    /// The newest snapshot, without touching its reference count (the pick path).
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<Snapshot<T>>> {
        self.snapshot.load()
    }

    pub(crate) fn publish(&self, snapshot: Snapshot<T>) {
        // The flag first: a caller that finds it set after this has asked the driver since, and
        // the driver hears that after this snapshot, so it answers for this one.
        self.exit_idle_asked.store(false, Ordering::Release);
        self.snapshot.store(Arc::new(snapshot));
        self.changed.notify(usize::MAX);
    }

    /// A listener for the next snapshot. Take it, then check that the snapshot is still the one
    /// looked at, then wait: a snapshot stored in between is seen by the check.
    pub(crate) fn listen(&self) -> EventListener {
        self.changed.listen()
    }

    /// Whether this caller is the first to ask for leaving IDLE since the last snapshot.
    pub(crate) fn first_to_ask_exit_idle(&self) -> bool {
        !self.exit_idle_asked.swap(true, Ordering::AcqRel)
    }

    /// Publishes a picker that fails every call: the channel is shut down.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let generation = self.snapshot.load().generation + 1;
        self.publish(Snapshot {
            generation,
            picker: Arc::new(FailPicker::new(Status::unavailable(
                "the channel is closed",
            ))),
            connections: Arc::new(HashMap::new()),
            state: ConnectivityState::Shutdown,
            last_error: None,
            wants_outcomes: false,
        });
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
