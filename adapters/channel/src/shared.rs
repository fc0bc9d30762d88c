//! What the driver publishes and every call reads: the newest picker with the connections it may
//! name, swapped atomically so that picks take no lock.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use croupier::retry::RetryThrottle;
use croupier::{ConnectivityState, FailPicker, Picker, QueuePicker, ServiceConfig, Status};
use event_listener::{Event, EventListener};

use crate::connections::Connections;

/// One consistent view: a picker and the connections of the subchannels it can name.
pub(crate) struct Snapshot<T> {
    pub(crate) generation: u64,
    pub(crate) picker: Arc<dyn Picker>,
    pub(crate) connections: Arc<Connections<T>>,
    pub(crate) state: ConnectivityState,
    /// The last connection error the channel saw, with its address.
    pub(crate) last_error: Option<Arc<str>>,
    /// Whether the policy wants call outcomes reported.
    pub(crate) wants_outcomes: bool,
    /// The service config in use: the method settings calls get.
    pub(crate) service_config: Arc<ServiceConfig>,
    /// The channel's retry throttle, if the config sets `retryThrottling`: one bucket shared by
    /// every call, kept across configs with the same settings.
    pub(crate) retry_throttle: Option<Arc<RetryThrottle>>,
}

impl<T> Snapshot<T> {
    /// The retry throttle for `config`: the one in `self` if the settings are the same, else a
    /// full new one (or none).
    pub(crate) fn throttle_for(&self, config: &ServiceConfig) -> Option<Arc<RetryThrottle>> {
        if config.retry_throttling == self.service_config.retry_throttling {
            return self.retry_throttle.clone();
        }
        throttle(config)
    }
}

/// A full throttle with `config`'s `retryThrottling`, if it sets one.
fn throttle(config: &ServiceConfig) -> Option<Arc<RetryThrottle>> {
    let settings = config.retry_throttling.as_ref()?;
    settings.throttle().ok().map(Arc::new)
}

pub(crate) struct Shared<T> {
    snapshot: ArcSwap<Snapshot<T>>,
    /// Notified on every new snapshot.
    changed: Event,
    /// Set while a call's request to leave IDLE waits in the driver's inbox, not yet taken.
    exit_idle_asked: AtomicBool,
    closed: AtomicBool,
    /// The connector's test for a connection a call found dead.
    pub(crate) is_broken: fn(&T) -> bool,
}

impl<T> Shared<T> {
    /// Before the driver's first snapshot, calls wait, under the balancer's first service
    /// config (the default one: it bounds their waits).
    pub(crate) fn new(is_broken: fn(&T) -> bool, service_config: Arc<ServiceConfig>) -> Self {
        Shared {
            snapshot: ArcSwap::from_pointee(Snapshot {
                generation: 0,
                picker: Arc::new(QueuePicker),
                connections: Arc::new(Connections::default()),
                state: ConnectivityState::Connecting,
                last_error: None,
                wants_outcomes: true,
                retry_throttle: throttle(&service_config),
                service_config,
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
        self.snapshot.store(Arc::new(snapshot));
        self.changed.notify(usize::MAX);
    }

    /// A listener for the next snapshot. Take it, then check that the snapshot is still the one
    /// looked at, then wait: a snapshot stored in between is seen by the check.
    pub(crate) fn listen(&self) -> EventListener {
        self.changed.listen()
    }

    /// Whether a caller whose pick just queued must send the driver a request to leave IDLE:
    /// yes, unless one is already waiting in the inbox. Call it after the pick, so that what the
    /// pick recorded (a policy's flag on an IDLE endpoint, say) is seen by the policy when the
    /// driver takes that waiting request (see [`Shared::take_exit_idle_request`]).
    pub(crate) fn first_to_ask_exit_idle(&self) -> bool {
        // Pairs with the fence in `take_exit_idle_request`: either this swap sees the driver's
        // reset (and this caller asks), or the driver's policy sees this caller's pick.
        fence(Ordering::SeqCst);
        !self.exit_idle_asked.swap(true, Ordering::SeqCst)
    }

    /// The driver took a request to leave IDLE: the next pick that queues asks again. Call it
    /// before the policy looks at what the picks recorded.
    ///
    /// The request answers every pick made before it was sent, whether or not the policy then
    /// publishes anything; a picker's queueing alone (a call waiting for an endpoint that is
    /// already connecting) changes nothing, and must not stop a later pick from being heard.
    pub(crate) fn take_exit_idle_request(&self) {
        self.exit_idle_asked.store(false, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Publishes a picker that fails every call: the channel is shut down.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let previous = self.snapshot.load_full();
        let generation = previous.generation + 1;
        self.publish(Snapshot {
            generation,
            picker: Arc::new(FailPicker::new(Status::unavailable(
                "the channel is closed",
            ))),
            connections: Arc::new(Connections::default()),
            state: ConnectivityState::Shutdown,
            last_error: None,
            wants_outcomes: false,
            service_config: Arc::clone(&previous.service_config),
            retry_throttle: previous.retry_throttle.clone(),
        });
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
