//! The simulated adapter: a [`Balancer`] whose actions are carried out in memory, in virtual
//! time, with what it holds (attempts, connections, removed subchannels) kept for the checks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier::{
    Action, Address, Balancer, BalancerConfig, ConnectionEvent, ConnectionId, ConnectivityState,
    Pick, PickRequest, Picker, PolicyConfig, ProbeResult, ResolverError, ResolverUpdate,
    SubchannelId,
};

use crate::drive::{ConnectOutcome, DEFAULT_DRIVE_LIMIT};

/// What the simulated adapter saw, in order, with times relative to the harness's start.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Seen {
    /// A connection attempt started.
    Connect(ConnectionId, Address, Duration),
    /// An attempt or connection was dropped.
    Disconnect(ConnectionId),
    /// A subchannel was removed.
    Shutdown(SubchannelId),
    /// Re-resolution was asked for.
    ResolveNow(Duration),
    /// The channel's state changed.
    State(ConnectivityState),
    /// A new picker was published.
    Picker,
    /// The backend of a subchannel was to be probed.
    Probe(SubchannelId),
}

/// A simulated adapter around a [`Balancer`], checking invariants after every input.
#[derive(Debug)]
pub struct Harness {
    /// The balancer under test.
    pub lb: Balancer,
    /// The virtual time the harness started at.
    pub start: Instant,
    /// The current virtual time.
    pub now: Instant,
    /// Attempts in flight, by subchannel.
    pub attempts: BTreeMap<SubchannelId, (ConnectionId, Address)>,
    /// Established connections, by subchannel.
    pub connections: BTreeMap<SubchannelId, (ConnectionId, Address)>,
    /// Every subchannel removed so far.
    pub shut: BTreeSet<SubchannelId>,
    /// Every subchannel ever named in a Connect.
    pub known: BTreeSet<SubchannelId>,
    /// Every connection id ever started, oldest first (for stale reports).
    pub history: Vec<ConnectionId>,
    /// Every action seen, in order.
    pub seen: Vec<Seen>,
    /// The subchannels whose probe was asked for and not yet answered
    /// ([`Harness::answer_probe`]).
    pub probes: BTreeSet<SubchannelId>,
    /// How many addresses the latest non-empty update named: the bound on live subchannels.
    pub bound: usize,
    /// During a graceful policy switch, how many addresses the policy being replaced serves
    /// (its subchannels live beside the new policy's): added to the bound.
    pub replaced_bound: usize,
    /// Whether the invariant checks' probe picks report their outcomes (see
    /// [`Harness::check_invariants`]); off by default, so call-counting tests count only theirs.
    pub report_probes: bool,
    /// How attempts to each address end when the harness drives itself ([`Harness::drive`]).
    pub script: BTreeMap<Address, ConnectOutcome>,
    /// How attempts to an address not in [`Harness::script`] end: [`ConnectOutcome::Hang`]
    /// unless set, so that a test reports them itself.
    pub unlisted: ConnectOutcome,
    /// The most rounds [`Harness::drive`] runs at one instant before it reports a livelock.
    pub drive_limit: u32,
}

impl Harness {
    /// A harness around a balancer with `policy` and `seed`.
    pub fn new(policy: PolicyConfig, seed: u64) -> Self {
        Harness::with_config(BalancerConfig::default().policy(policy), seed)
    }

    /// A harness around a balancer with `config` and `seed`.
    pub fn with_config(config: BalancerConfig, seed: u64) -> Self {
        // A fixed origin would be nicer, but Instant has no constructor; only differences matter.
        let start = Instant::now();
        Harness {
            lb: Balancer::new(config, seed, start),
            start,
            now: start,
            attempts: BTreeMap::new(),
            connections: BTreeMap::new(),
            shut: BTreeSet::new(),
            known: BTreeSet::new(),
            history: Vec::new(),
            seen: Vec::new(),
            probes: BTreeSet::new(),
            bound: 0,
            replaced_bound: 0,
            report_probes: false,
            script: BTreeMap::new(),
            unlisted: ConnectOutcome::Hang,
            drive_limit: DEFAULT_DRIVE_LIMIT,
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Carries out every queued action, checking the invariants about them, then the rest.
    pub fn drain(&mut self) -> Vec<Seen> {
        let mut out = Vec::new();
        while let Some(action) = self.lb.poll_action() {
            out.push(self.perform(action));
        }
        self.check_invariants();
        // Reporting the probes' outcomes may itself have asked for something.
        while let Some(action) = self.lb.poll_action() {
            out.push(self.perform(action));
        }
        self.seen.extend(out.iter().cloned());
        out
    }

    /// Carries out one action as an adapter would, after checking it.
    fn perform(&mut self, action: Action) -> Seen {
        self.check_action(&action);
        match action {
            Action::Connect {
                connection,
                address,
                ..
            } => {
                let id = connection.subchannel();
                self.known.insert(id);
                self.history.push(connection);
                self.attempts.insert(id, (connection, address.clone()));
                Seen::Connect(connection, address, self.elapsed())
            }
            Action::Disconnect { connection } => {
                let id = connection.subchannel();
                if self.attempt_of(id) == Some(connection) {
                    self.attempts.remove(&id);
                }
                if self.connection_of(id) == Some(connection) {
                    self.connections.remove(&id);
                }
                Seen::Disconnect(connection)
            }
            Action::Shutdown { subchannel } => {
                self.shut.insert(subchannel);
                self.attempts.remove(&subchannel);
                self.connections.remove(&subchannel);
                Seen::Shutdown(subchannel)
            }
            Action::ResolveNow => Seen::ResolveNow(self.elapsed()),
            Action::StateChanged(state) => Seen::State(state),
            Action::UpdatePicker(_) => Seen::Picker,
            Action::Probe { subchannel } => {
                self.probes.insert(subchannel);
                Seen::Probe(subchannel)
            }
            // Carrying out an action it does not know would make every later check a guess.
            other => panic!("the simulated adapter cannot carry out {other:?}"),
        }
    }

    /// The attempt in flight for `subchannel`, if any.
    fn attempt_of(&self, subchannel: SubchannelId) -> Option<ConnectionId> {
        self.attempts.get(&subchannel).map(|(c, _)| *c)
    }

    /// The established connection of `subchannel`, if any.
    fn connection_of(&self, subchannel: SubchannelId) -> Option<ConnectionId> {
        self.connections.get(&subchannel).map(|(c, _)| *c)
    }

    /// Feeds a resolver update.
    pub fn resolve(&mut self, update: ResolverUpdate) -> Vec<Seen> {
        let count: usize = update.endpoints.iter().map(|e| e.addresses().len()).sum();
        let was_switching = self.lb.is_switching_policy();
        let before = self.bound;
        if count > 0 {
            self.bound = count;
        }
        self.lb.handle_resolver_update(update, self.now);
        if self.lb.is_switching_policy() && !was_switching {
            self.replaced_bound = before;
        }
        self.drain()
    }

    /// The backend of `subchannel` answers its probe with `result` (whether or not one was
    /// asked for: a late answer must be harmless too).
    pub fn answer_probe(&mut self, subchannel: SubchannelId, result: ProbeResult) -> Vec<Seen> {
        self.probes.remove(&subchannel);
        self.lb.handle_probe_result(subchannel, result, self.now);
        self.drain()
    }

    /// Feeds a resolver error.
    pub fn resolver_error(&mut self, message: &str) -> Vec<Seen> {
        self.lb
            .handle_resolver_error(ResolverError::new(message), self.now);
        self.drain()
    }

    fn attempt_for(&self, address: &Address) -> ConnectionId {
        self.attempts
            .values()
            .find(|(_, a)| a == address)
            .map(|(c, _)| *c)
            .unwrap_or_else(|| panic!("no attempt in flight to {address}: {:?}", self.attempts))
    }

    /// Whether an attempt to `address` is in flight.
    pub fn has_attempt(&self, address: &Address) -> bool {
        self.attempts.values().any(|(_, a)| a == address)
    }

    /// The attempts in flight, by subchannel.
    pub fn attempts_in_flight(&self) -> Vec<ConnectionId> {
        self.attempts.values().map(|(c, _)| *c).collect()
    }

    /// The established connections, by subchannel.
    pub fn open_connections(&self) -> Vec<ConnectionId> {
        self.connections.values().map(|(c, _)| *c).collect()
    }

    /// Reports `event` for `connection` as the adapter would, updating what it holds.
    pub fn report(&mut self, connection: ConnectionId, event: ConnectionEvent) -> Vec<Seen> {
        let id = connection.subchannel();
        let current_attempt = self.attempt_of(id) == Some(connection);
        let current_connection = self.connection_of(id) == Some(connection);
        match &event {
            ConnectionEvent::Connected if current_attempt => {
                if let Some((_, address)) = self.attempts.remove(&id) {
                    self.connections.insert(id, (connection, address));
                }
            }
            // The core reads a failure of an established connection as its end.
            ConnectionEvent::Failed(_) | ConnectionEvent::Closed(_)
                if current_attempt || current_connection =>
            {
                self.attempts.remove(&id);
                self.connections.remove(&id);
            }
            _ => {}
        }
        self.lb.handle_connection_event(connection, event, self.now);
        self.drain()
    }

    /// The attempt to `address` succeeds.
    pub fn connected(&mut self, address: &Address) -> Vec<Seen> {
        let connection = self.attempt_for(address);
        self.report(connection, ConnectionEvent::Connected)
    }

    /// The attempt to `address` fails.
    pub fn failed(&mut self, address: &Address) -> Vec<Seen> {
        let connection = self.attempt_for(address);
        let reason = format!("connection refused by {address}");
        self.report(connection, ConnectionEvent::Failed(reason))
    }

    /// The connection to `address` closes.
    pub fn closed(&mut self, address: &Address) -> Vec<Seen> {
        let connection = self
            .connections
            .values()
            .find(|(_, a)| a == address)
            .map(|(c, _)| *c)
            .unwrap_or_else(|| panic!("no connection to {address}"));
        self.report(connection, ConnectionEvent::Closed("peer went away".into()))
    }

    /// A queued call asks the policy to leave IDLE.
    pub fn exit_idle(&mut self) -> Vec<Seen> {
        self.lb.exit_idle(self.now);
        self.drain()
    }

    /// The newest picker.
    pub fn picker(&self) -> Arc<dyn Picker> {
        self.lb.picker()
    }

    /// One pick with no request information.
    pub fn pick(&self) -> Pick {
        self.lb.picker().pick(&PickRequest::new())
    }

    /// The address of subchannel `id`, if it is alive.
    pub fn address_of(&self, id: SubchannelId) -> Option<Address> {
        self.lb
            .subchannels()
            .into_iter()
            .find(|s| s.id == id)
            .map(|s| s.address)
    }

    /// The address a pick lands on, if it lands.
    pub fn pick_address(&self) -> Option<Address> {
        match self.pick() {
            Pick::Ready(id) => self.address_of(id),
            _ => None,
        }
    }

    /// The channel's state.
    pub fn state(&self) -> ConnectivityState {
        self.lb.state()
    }
}
