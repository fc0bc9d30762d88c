//! The balancer: the whole client-side load-balancing state machine of one channel.
//!
//! It ties the layers below together the way gRPC-Go's `ClientConn` does: it takes the resolver's
//! results, runs the policy, keeps the subchannels with their backoff and deadlines, and publishes
//! the policy's pickers. It does no I/O: every input comes with the time it happened at, and
//! everything it wants done is queued as an [`Action`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::address::{Address, Endpoint};
use crate::call::{CallOutcome, LoadReport};
use crate::notice::{Notice, Notices};
use crate::picker::{Picker, QueuePicker};
use crate::policy::{SubchannelUpdate, TimerToken};
use crate::probe::ProbeResult;
use crate::resolution::Resolution;
use crate::resolver::{ConfigFingerprint, PolicyChoice, ResolverError, ResolverUpdate};
use crate::rng::Rng;
#[cfg(feature = "service-config")]
use crate::service_config::ServiceConfig;
use crate::status::ConnectivityState;
use crate::subchannel::{
    ConnectionEvent, ConnectionId, Effect, Subchannel, SubchannelId, Subchannels,
};

mod actions;
mod config;
mod observe;
mod snapshot;
mod sources;
mod switch;

pub use actions::Action;
use actions::{ActionQueue, Queued};
pub use config::{BalancerConfig, DEFAULT_MAX_ENDPOINTS};
pub use snapshot::{BalancerSnapshot, ResolverResult};
use sources::Selection;
use switch::Switch;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Subchannel(SubchannelId),
    /// A policy's timer, with the generation of the policy that set it (see [`Switch`]).
    Policy(u32, TimerToken),
    Resolution,
}

/// Subchannel state changes not yet told to the policy, in order. A change takes 16 bytes; the
/// errors of the few that carry one wait beside them, in the same order (a fresh update queues a
/// CONNECTING change, with no error, for each of thousands of subchannels).
#[derive(Debug, Default)]
struct Updates {
    changes: VecDeque<(SubchannelId, ConnectivityState, bool)>,
    errors: VecDeque<Arc<str>>,
}

impl Updates {
    fn push(&mut self, id: SubchannelId, state: ConnectivityState, error: Option<Arc<str>>) {
        self.changes.push_back((id, state, error.is_some()));
        self.errors.extend(error);
    }

    fn pop(&mut self) -> Option<(SubchannelId, SubchannelUpdate)> {
        let (id, state, has_error) = self.changes.pop_front()?;
        let error = if has_error {
            self.errors.pop_front()
        } else {
            None
        };
        Some((id, SubchannelUpdate { state, error }))
    }

    fn reserve(&mut self, additional: usize) {
        self.changes.reserve(additional);
    }
}

/// Everything but the policies: what their [`Controller`](crate::Controller)s work on.
struct Core {
    now: Instant,
    config: BalancerConfig,
    rng: Rng,
    subchannels: Subchannels,
    actions: ActionQueue,
    updates: Updates,
    timers: BinaryHeap<Reverse<(Instant, TimerKey)>>,
    state: ConnectivityState,
    /// When the channel entered `state`.
    state_since: Instant,
    picker: Arc<dyn Picker>,
    /// A picker was published since actions were last queued for it.
    published: bool,
    resolution: Resolution,
    /// When the resolver last reported, and its error if it failed (or its update was refused).
    resolved: Option<(Instant, Option<ResolverError>)>,
    notices: Notices,
}

/// The balancer of one channel: resolver results and connection events in, actions and pickers
/// out. See the [crate documentation](crate) for the loop that drives it.
pub struct Balancer {
    /// The policy, and during a graceful switch the one replacing it.
    policies: Switch,
    /// The policy and service config in use.
    in_use: Selection,
    /// Whether a resolver update was ever accepted (gRFC A21: only a channel that never had one
    /// fails on an invalid service config).
    accepted: bool,
    /// The last update applied, to spot repeats.
    last_update: Option<LastUpdate>,
    core: Core,
}

/// A resolver update as applied: its endpoints, and what tells its choices from the next one's.
#[derive(Debug)]
struct LastUpdate {
    endpoints: Vec<Endpoint>,
    policy: Option<PolicyChoice>,
    config: ConfigFingerprint,
}

impl fmt::Debug for Balancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer")
            .field("state", &self.core.state)
            .field("policies", &self.policies)
            .field("subchannels", &self.core.subchannels.len())
            .field("pending_actions", &self.core.actions.len())
            .finish_non_exhaustive()
    }
}

impl Balancer {
    /// A balancer in CONNECTING (waiting for the resolver), whose every random choice comes from
    /// `seed`.
    pub fn new(config: BalancerConfig, seed: u64, now: Instant) -> Self {
        let in_use = config.fallback();
        let policies = Switch::new(in_use.key.clone(), &in_use.policy);
        let resolution = Resolution::new(config.resolution.clone());
        let notices = Notices::new(config.notice_capacity);
        Balancer {
            policies,
            in_use,
            accepted: false,
            last_update: None,
            core: Core {
                now,
                config,
                rng: Rng::new(seed),
                subchannels: Subchannels::default(),
                actions: ActionQueue::default(),
                updates: Updates::default(),
                timers: BinaryHeap::new(),
                state: ConnectivityState::Connecting,
                state_since: now,
                picker: Arc::new(QueuePicker),
                published: false,
                resolution,
                resolved: None,
                notices,
            },
        }
    }

    /// The channel's connectivity state.
    pub fn state(&self) -> ConnectivityState {
        self.core.state
    }

    /// Whether the current policy learns from call outcomes: if not, an adapter may skip
    /// [`Balancer::handle_call_outcome`] (it would do nothing). Can change when the policy does.
    pub fn wants_call_outcomes(&self) -> bool {
        self.policies.wants_call_outcomes()
    }

    /// The service config in use (gRFC A21): the resolver's last valid one, or the channel's
    /// default, or an empty one. Its method settings are what calls get; it changes with
    /// resolver updates, so an adapter reads it again after each (a new config is a new `Arc`).
    #[cfg(feature = "service-config")]
    pub fn service_config(&self) -> &Arc<ServiceConfig> {
        &self.in_use.service_config
    }

    /// Whether a graceful policy switch is under way: a new policy is being built beside the one
    /// serving calls, and both hold subchannels until it is READY.
    pub fn is_switching_policy(&self) -> bool {
        self.policies.is_switching()
    }

    /// The newest picker (also announced by [`Action::UpdatePicker`]).
    pub fn picker(&self) -> Arc<dyn Picker> {
        Arc::clone(&self.core.picker)
    }

    /// The next action to carry out. Drain it after every `handle_*` call, until `None`.
    ///
    /// Actions come out in the order they were queued, with one exception that keeps the queue
    /// bounded however late it is drained: a newer [`Action::UpdatePicker`] takes the place of
    /// one not yet polled, and so does a newer [`Action::StateChanged`] (one that returns to the
    /// state last polled announces nothing), and a second [`Action::ResolveNow`] joins one still
    /// waiting. An adapter that handles many inputs before draining thus sees only the newest
    /// picker and state, never an older one after a newer, at the place of the first one queued
    /// since it last drained; the queue holds at most a few actions per subchannel.
    ///
    /// A connection attempt is announced as it stands when polled: one that ended before (its
    /// subchannel was removed by the same input) is left out, with nothing to connect.
    pub fn poll_action(&mut self) -> Option<Action> {
        loop {
            let action = match self.core.actions.pop()? {
                Queued::Connect(connection) => {
                    let Some((subchannel, address)) = self
                        .core
                        .subchannels
                        .get_with_address(&connection.subchannel())
                    else {
                        continue;
                    };
                    let Some(deadline) = subchannel.pending_attempt(connection) else {
                        continue;
                    };
                    Action::Connect {
                        connection,
                        address: address.clone(),
                        deadline,
                    }
                }
                Queued::Disconnect(connection) => Action::Disconnect { connection },
                Queued::Shutdown(subchannel) => Action::Shutdown { subchannel },
                Queued::ResolveNow => Action::ResolveNow,
                Queued::Probe(subchannel) => {
                    if !self.core.subchannels.contains_key(&subchannel) {
                        continue; // removed since: nothing to probe
                    }
                    Action::Probe { subchannel }
                }
                Queued::StateChanged(state) => Action::StateChanged(state),
                Queued::UpdatePicker(picker) => Action::UpdatePicker(picker),
                Queued::Superseded => continue,
            };
            return Some(action);
        }
    }

    /// The next [`Notice`], if notices are on ([`BalancerConfig::notices`]): what the inputs
    /// handled so far did, oldest first. Drain it when convenient (after the actions, say);
    /// notices wait in a bounded queue, and when it overflows the next one polled is a
    /// [`Notice::Dropped`] that counts what was lost. Polling with nothing queued costs two
    /// compares.
    #[inline]
    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.core.notices.pop()
    }

    /// When [`Balancer::handle_timeout`] should next be called, if ever. Ask again after every
    /// `handle_*` call: inputs move it.
    #[must_use = "an adapter that does not wake at this instant leaves backoffs, connection \
                  deadlines and waiting pickers stalled"]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, key))) = self.core.timers.peek().copied() {
            let live = match key {
                TimerKey::Subchannel(id) => self
                    .core
                    .subchannels
                    .get(&id)
                    .is_some_and(|sc| sc.deadline() == Some(at)),
                TimerKey::Policy(generation, _) => self.policies.is_running(generation),
                TimerKey::Resolution => self.core.resolution.due() == Some(at),
            };
            if live {
                return Some(at);
            }
            self.core.timers.pop();
        }
        None
    }

    /// The resolver produced `update`. Applying the same update again changes nothing. An update
    /// with more endpoints than [`BalancerConfig::max_endpoints`] is refused as a resolver error
    /// that says how many came and what the limit is: the last good list stays in use.
    ///
    /// Its service config (or policy choice) is taken by gRFC A21's rules (see
    /// [`ResolverUpdate`]): an invalid one keeps the config in use, else the default, and with
    /// neither the update is refused as a resolver error that says why, so a channel that never
    /// had a valid config fails its calls with that reason. A config that names another policy
    /// switches to it gracefully: the running policy serves until the new one is READY.
    pub fn handle_resolver_update(&mut self, update: ResolverUpdate, now: Instant) {
        self.core.advance(now);
        if let Err(error) = self.core.config.check_size(&update.endpoints) {
            self.reject(error, Some(update.endpoints.len()), now);
            return;
        }
        let config = update.config_fingerprint();
        let repeat = self.last_update.as_ref().is_some_and(|last| {
            last.endpoints == update.endpoints
                && last.policy == update.policy
                && last.config == config
        });
        if repeat {
            self.core.resolved = Some((self.core.now, None));
            self.core.resolution.on_success(now, &mut self.core.rng);
            self.core.schedule_resolution();
            return;
        }
        let selection = match self.core.config.requested(&update) {
            Ok(Some(selection)) => selection,
            Ok(None) => self.core.config.fallback(),
            Err(_) if self.accepted => self.in_use.clone(),
            Err(_) if self.core.config.has_default() => self.core.config.fallback(),
            Err(reason) => {
                let count = Some(update.endpoints.len());
                self.reject(ResolverError::new(reason), count, now);
                return;
            }
        };
        self.policies
            .configure(&selection.key, &selection.policy, &mut self.core);
        self.in_use = selection;
        self.accepted = true;
        let ResolverUpdate {
            endpoints, policy, ..
        } = update;
        if endpoints.is_empty() {
            self.core.resolution.on_failure(now, &mut self.core.rng);
        } else {
            self.core.resolution.on_success(now, &mut self.core.rng);
        }
        self.core.schedule_resolution();
        self.core.resolved = Some((self.core.now, None));
        if self.core.notices.enabled() {
            self.core.notices.push(Notice::ResolverApplied {
                endpoints: endpoints.len(),
                policy: self.policies.latest_name().to_owned(),
            });
        }
        self.policies.resolver_update(&endpoints, &mut self.core);
        self.last_update = Some(LastUpdate {
            endpoints,
            policy,
            config,
        });
        self.settle();
    }

    /// The resolver failed. The endpoints already known stay in use; with none, calls fail with
    /// `error`. A retry is planned with backoff.
    pub fn handle_resolver_error(&mut self, error: ResolverError, now: Instant) {
        self.reject(error, None, now);
    }

    /// The resolver failed (`endpoints: None`), or its update of `endpoints` was refused.
    fn reject(&mut self, error: ResolverError, endpoints: Option<usize>, now: Instant) {
        self.core.advance(now);
        self.core.resolved = Some((self.core.now, Some(error.clone())));
        if self.core.notices.enabled() {
            let error = error.clone();
            self.core
                .notices
                .push(Notice::ResolverRejected { endpoints, error });
        }
        self.core.resolution.on_failure(now, &mut self.core.rng);
        self.core.schedule_resolution();
        self.policies.resolver_error(&error, &mut self.core);
        self.settle();
    }

    /// The adapter reports what happened to `connection`. Reports about attempts the core has
    /// given up on, or about removed subchannels, are ignored.
    pub fn handle_connection_event(
        &mut self,
        connection: ConnectionId,
        event: ConnectionEvent,
        now: Instant,
    ) {
        self.core.advance(now);
        let id = connection.subchannel();
        if let Some(subchannel) = self.core.subchannels.get_mut(&id) {
            let from = subchannel.state();
            if subchannel.on_event(connection, event, self.core.now) == Effect::Changed {
                self.core.subchannel_changed(id, from);
            }
        }
        self.settle();
    }

    /// The backend behind `subchannel` reported its load out of band (ORCA's stream, gRFC A51),
    /// not with a call; weighted_round_robin weighs by it when `enable_oob_load_report` is set.
    /// A report for an unknown or removed subchannel is ignored. Drain
    /// [`Balancer::poll_action`] after it.
    pub fn handle_load_report(
        &mut self,
        subchannel: SubchannelId,
        report: LoadReport,
        now: Instant,
    ) {
        self.core.advance(now);
        if self.core.subchannels.contains_key(&subchannel) {
            self.policies
                .load_report(subchannel, &report, &mut self.core);
            self.settle();
        }
    }

    /// The backend of `subchannel` answered a probe ([`Action::Probe`]). An answer for an
    /// unknown or removed subchannel is ignored.
    pub fn handle_probe_result(
        &mut self,
        subchannel: SubchannelId,
        result: ProbeResult,
        now: Instant,
    ) {
        self.core.advance(now);
        if self.core.subchannels.contains_key(&subchannel) {
            self.policies
                .probe_result(subchannel, &result, &mut self.core);
            self.settle();
        }
    }

    /// A call that a pick sent to `subchannel` ended.
    pub fn handle_call_outcome(
        &mut self,
        subchannel: SubchannelId,
        outcome: CallOutcome,
        now: Instant,
    ) {
        self.core.advance(now);
        if self.core.subchannels.contains_key(&subchannel) {
            self.policies
                .call_finished(subchannel, &outcome, &mut self.core);
            self.settle();
        }
    }

    /// A call is waiting (a pick returned [`Pick::Queue`](crate::Pick::Queue)): an IDLE policy
    /// starts connecting, and a policy whose picker flagged an endpoint for a call connects it.
    /// Cheap to call when nothing is idle.
    ///
    /// An adapter calls this after every pick that queued; one call may answer many such picks,
    /// but never one made after it, so a pick that queues after a call that changed nothing
    /// (say, while another call waits for an endpoint already connecting) leads to another.
    pub fn exit_idle(&mut self, now: Instant) {
        self.core.advance(now);
        self.policies.exit_idle(&mut self.core);
        self.settle();
    }

    /// Runs the timers that are due at `now` (see [`Balancer::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.advance(now);
        let mut due = Vec::new();
        while let Some(Reverse((at, key))) = self.core.timers.peek().copied() {
            if at > self.core.now {
                break;
            }
            self.core.timers.pop();
            due.push(key);
        }
        for key in due {
            match key {
                TimerKey::Subchannel(id) => {
                    let Some((subchannel, address)) =
                        self.core.subchannels.get_mut_with_address(&id)
                    else {
                        continue;
                    };
                    let attempt = subchannel.connection(id);
                    let from = subchannel.state();
                    match subchannel.on_timeout(self.core.now, address) {
                        Effect::None => {}
                        Effect::Changed => self.core.subchannel_changed(id, from),
                        Effect::ChangedAndDisconnect => {
                            self.core.actions.push(Queued::Disconnect(attempt));
                            self.core.subchannel_changed(id, from);
                        }
                    }
                }
                TimerKey::Policy(generation, token) => {
                    self.policies.timer(generation, token, &mut self.core)
                }
                TimerKey::Resolution => {
                    if self
                        .core
                        .resolution
                        .on_timeout(self.core.now, &mut self.core.rng)
                    {
                        self.core.actions.push_resolve_now();
                        self.core.schedule_resolution();
                    }
                }
            }
            self.settle();
        }
    }

    /// Tells the policy every queued subchannel change, then queues the picker actions.
    fn settle(&mut self) {
        while let Some((id, update)) = self.core.updates.pop() {
            if self.core.subchannels.contains_key(&id) {
                self.policies.subchannel_update(id, &update, &mut self.core);
            }
        }
        if std::mem::take(&mut self.core.published) {
            self.core.actions.push_picker(Arc::clone(&self.core.picker));
        }
    }
}

impl Core {
    fn advance(&mut self, now: Instant) {
        // Time never runs backwards inside the core, whatever the caller passes.
        self.now = self.now.max(now);
    }

    fn schedule_resolution(&mut self) {
        if let Some(at) = self.resolution.due() {
            self.timers.push(Reverse((at, TimerKey::Resolution)));
        }
    }

    fn schedule_subchannel(&mut self, id: SubchannelId) {
        if let Some(at) = self.subchannels.get(&id).and_then(Subchannel::deadline) {
            self.timers.push(Reverse((at, TimerKey::Subchannel(id))));
        }
    }

    /// Queues the policy's view of a subchannel change from `from`, and its consequences (a
    /// backoff that is already over ends at once; a new deadline gets a timer).
    fn subchannel_changed(&mut self, id: SubchannelId, from: ConnectivityState) {
        let noting = self.notices.enabled();
        let Some((subchannel, address)) = self.subchannels.get_mut_noting(&id, noting) else {
            return;
        };
        subchannel.entered_state(self.now);
        self.updates
            .push(id, subchannel.state(), subchannel.last_error().cloned());
        observe::state_changed(&mut self.notices, id, subchannel, address, from);
        if subchannel.finish_backoff(self.now) {
            self.updates.push(id, ConnectivityState::Idle, None);
            let failed = ConnectivityState::TransientFailure;
            observe::state_changed(&mut self.notices, id, subchannel, address, failed);
        }
        self.schedule_subchannel(id);
    }
}

/// What the policies' controllers do (see [`switch`]).
impl Core {
    fn create_subchannel(&mut self, address: &Address) -> SubchannelId {
        self.subchannels.create(address.clone(), self.now)
    }

    fn reserve_subchannels(&mut self, additional: usize) {
        self.subchannels.reserve(additional);
        // Each new subchannel typically brings a connect action, a deadline and an update; the
        // actions end with the state change and the picker that follow (without those two slots,
        // the queue would double, copying every connect action, for the last one or two).
        self.actions.reserve(additional + 2);
        self.updates.reserve(additional);
        self.timers.reserve(additional);
    }

    fn connect(&mut self, id: SubchannelId) {
        let noting = self.notices.enabled();
        let Some((subchannel, address)) = self.subchannels.get_mut_noting(&id, noting) else {
            return;
        };
        if let Some((connection, deadline)) =
            subchannel.connect(id, &self.config.backoff, self.now, &mut self.rng)
        {
            self.actions.push(Queued::Connect(connection));
            self.updates.push(id, ConnectivityState::Connecting, None);
            observe::connecting(&mut self.notices, connection, address);
            // The attempt's deadline is the subchannel's next one.
            debug_assert_eq!(subchannel.deadline(), Some(deadline));
            self.timers
                .push(Reverse((deadline, TimerKey::Subchannel(id))));
        }
    }

    fn remove_subchannel(&mut self, id: SubchannelId) {
        if let Some((mut subchannel, address)) = self.subchannels.remove(&id) {
            let from = subchannel.state();
            subchannel.shutdown();
            self.actions.push(Queued::Shutdown(id));
            observe::state_changed(&mut self.notices, id, &subchannel, address.as_ref(), from);
        }
    }

    fn subchannel_state(&self, id: SubchannelId) -> Option<ConnectivityState> {
        self.subchannels.get(&id).map(Subchannel::state)
    }

    fn publish(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>) {
        let state = match state {
            // A channel is never SHUTDOWN while it runs; treat it as failed.
            ConnectivityState::Shutdown => ConnectivityState::TransientFailure,
            other => other,
        };
        if state != self.state {
            if self.notices.enabled() {
                let from = self.state;
                self.notices.push(Notice::ChannelState { from, to: state });
            }
            self.state = state;
            self.state_since = self.now;
            self.actions.push_state(state);
        }
        self.picker = picker;
        self.published = true;
    }

    fn request_resolution(&mut self) {
        if self.resolution.request(self.now) {
            self.actions.push_resolve_now();
        }
        self.schedule_resolution();
    }

    fn request_probe(&mut self, id: SubchannelId) {
        if self.subchannels.contains_key(&id) {
            self.actions.push_probe(id);
        }
    }

    fn set_timer(&mut self, at: Instant, generation: u32, token: TimerToken) {
        self.timers
            .push(Reverse((at, TimerKey::Policy(generation, token))));
    }
}
