//! A simulated adapter and the core's invariant checker, for tests and fuzzing (feature
//! `testing`; with feature `arbitrary`, fuzzers can generate [`Step`]s).
//!
//! [`Harness`] drives a [`Balancer`] in virtual time the way a real adapter would: it carries out
//! every action, tracks the attempts and connections it holds, and after every step checks the
//! invariants the core promises (see DESIGN.md):
//!
//! - a pick names only a subchannel that is READY;
//! - at most one connection attempt is outstanding per subchannel;
//! - every removed subchannel gets exactly one `Shutdown`, and no action names it afterwards;
//! - subchannel ids are never reused;
//! - the channel is READY exactly when some subchannel is;
//! - the subchannels alive never outnumber the addresses of the latest update (memory is bounded),
//!   but during a graceful policy switch, when the replaced policy's stay beside them.
//!
//! A broken invariant panics with a message saying which, so test runners and fuzzers both catch
//! it.

pub mod scale;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::address::{Address, Endpoint};
use crate::balancer::{Action, Balancer, BalancerConfig};
use crate::call::{CallOutcome, LoadReport};
use crate::picker::{Pick, PickRequest, Picker};
use crate::policy::PolicyConfig;
use crate::resolver::{ResolverError, ResolverUpdate};
use crate::status::{Code, ConnectivityState};
use crate::subchannel::{ConnectionEvent, ConnectionId, SubchannelId};

#[cfg(feature = "service-config")]
pub use crate::service_config::check::check_service_config;

/// `127.0.0.1:<port>`.
pub fn addr(port: u16) -> Address {
    Address::Socket(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// An update with one endpoint per port on 127.0.0.1.
pub fn update(ports: &[u16]) -> ResolverUpdate {
    ResolverUpdate::new(ports.iter().map(|&p| Endpoint::new(addr(p))))
}

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

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
}

/// A simulated adapter around a [`Balancer`], checking invariants after every step.
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
    /// How many addresses the latest non-empty update named: the bound on live subchannels.
    pub bound: usize,
    /// During a graceful policy switch, how many addresses the policy being replaced serves
    /// (its subchannels live beside the new policy's): added to the bound.
    pub replaced_bound: usize,
    /// Whether the policy may hide a READY subchannel (outlier detection ejects some): then a
    /// READY subchannel does not make the channel READY.
    pub hides_ready: bool,
    /// Whether the invariant checks' probe picks report their outcomes (see
    /// [`Harness::check_invariants`]); off by default, so call-counting tests count only theirs.
    pub report_probes: bool,
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
            bound: 0,
            replaced_bound: 0,
            hides_ready: false,
            report_probes: false,
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

    fn perform(&mut self, action: Action) -> Seen {
        match action {
            Action::Connect {
                connection,
                address,
                deadline,
            } => {
                let id = connection.subchannel();
                assert!(!self.shut.contains(&id), "connect for removed {id}");
                assert!(
                    !self.attempts.contains_key(&id),
                    "second attempt in flight for {id}"
                );
                assert!(
                    !self.connections.contains_key(&id),
                    "connect for {id} while connected"
                );
                assert!(deadline >= self.now, "an attempt deadline in the past");
                // A handle seen before and shut down is caught above: handles are never reused.
                self.known.insert(id);
                self.history.push(connection);
                self.attempts.insert(id, (connection, address.clone()));
                Seen::Connect(connection, address, self.elapsed())
            }
            Action::Disconnect { connection } => {
                let id = connection.subchannel();
                assert!(!self.shut.contains(&id), "disconnect for removed {id}");
                if self
                    .attempts
                    .get(&id)
                    .is_some_and(|(c, _)| *c == connection)
                {
                    self.attempts.remove(&id);
                }
                if self
                    .connections
                    .get(&id)
                    .is_some_and(|(c, _)| *c == connection)
                {
                    self.connections.remove(&id);
                }
                Seen::Disconnect(connection)
            }
            Action::Shutdown { subchannel } => {
                assert!(self.shut.insert(subchannel), "{subchannel} shut down twice");
                self.attempts.remove(&subchannel);
                self.connections.remove(&subchannel);
                Seen::Shutdown(subchannel)
            }
            Action::ResolveNow => Seen::ResolveNow(self.elapsed()),
            Action::StateChanged(state) => Seen::State(state),
            Action::UpdatePicker(_) => Seen::Picker,
        }
    }

    /// Checks what must hold between inputs; panics naming the broken invariant.
    ///
    /// Its probe picks are calls like any other: with [`Harness::report_probes`] set (for
    /// policies that count calls, like least_request), each probe's outcome is reported at once,
    /// as a real adapter's call guard would.
    pub fn check_invariants(&mut self) {
        let picker = self.lb.picker();
        let mut probes = Vec::new();
        for hash in [0, 1, u64::MAX / 3, u64::MAX] {
            if let Pick::Ready(id) = picker.pick(&PickRequest::new().with_hash(hash)) {
                assert_eq!(
                    self.lb.subchannel_state(id),
                    Some(ConnectivityState::Ready),
                    "picked {id}, which is not READY"
                );
                probes.push(id);
            }
        }
        if self.report_probes {
            for id in probes {
                self.lb
                    .handle_call_outcome(id, CallOutcome::ok(Duration::ZERO), self.now);
            }
        }
        let (mut alive, mut any_ready) = (0, false);
        for (id, state) in self.lb.subchannel_states() {
            alive += 1;
            any_ready |= state == ConnectivityState::Ready;
            assert!(!self.shut.contains(&id), "{id} is shut down but alive");
        }
        let ready = self.lb.state() == ConnectivityState::Ready;
        assert!(
            any_ready || !ready,
            "the channel is READY with no READY subchannel: {:?}",
            self.lb.subchannels()
        );
        assert!(
            ready || !any_ready || self.hides_ready,
            "a subchannel is READY but the channel is {}: {:?}",
            self.lb.state(),
            self.lb.subchannels()
        );
        // During a graceful switch, the old policy and the new one hold subchannels each.
        let replaced = if self.lb.is_switching_policy() {
            self.replaced_bound
        } else {
            0
        };
        assert!(
            alive <= self.bound.max(1) + replaced,
            "{alive} subchannels alive for {} addresses",
            self.bound
        );
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

    /// Reports `event` for `connection` as the adapter would, updating what it holds.
    pub fn report(&mut self, connection: ConnectionId, event: ConnectionEvent) -> Vec<Seen> {
        let id = connection.subchannel();
        let current_attempt = self
            .attempts
            .get(&id)
            .is_some_and(|(c, _)| *c == connection);
        let current_connection = self
            .connections
            .get(&id)
            .is_some_and(|(c, _)| *c == connection);
        match &event {
            ConnectionEvent::Connected if current_attempt => {
                let (_, address) = self.attempts.remove(&id).expect("checked");
                self.connections.insert(id, (connection, address));
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

    /// Moves the clock forward by `by`, running every timer that comes due on the way.
    pub fn advance(&mut self, by: Duration) -> Vec<Seen> {
        let end = self.now.checked_add(by).unwrap_or(self.now);
        let mut out = Vec::new();
        while let Some(at) = self.lb.poll_timeout() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.lb.handle_timeout(self.now);
            out.extend(self.drain());
        }
        self.now = end;
        out
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

    /// The address a pick lands on, if it lands.
    pub fn pick_address(&self) -> Option<Address> {
        match self.pick() {
            Pick::Ready(id) => self
                .lb
                .subchannels()
                .into_iter()
                .find(|s| s.id == id)
                .map(|s| s.address),
            _ => None,
        }
    }

    /// The channel's state.
    pub fn state(&self) -> ConnectivityState {
        self.lb.state()
    }

    /// Applies one generated step (see [`Step`]).
    pub fn apply(&mut self, step: &Step) {
        match step {
            Step::Resolve(endpoints) => {
                let endpoints = endpoints.iter().map(|e| e.endpoint()).collect::<Vec<_>>();
                self.resolve(ResolverUpdate::new(endpoints));
            }
            Step::ResolveMany(count) => {
                let count = usize::from(*count % 256);
                self.resolve(ResolverUpdate::new(
                    (0..count).map(|i| Endpoint::new(addr(10_000 + i as u16))),
                ));
            }
            Step::ResolverError => {
                self.resolver_error("generated resolver failure");
            }
            Step::Connected(index) => self.report_nth(*index, |_| ConnectionEvent::Connected),
            Step::Failed(index) => self.report_nth(*index, |_| {
                ConnectionEvent::Failed("generated failure".into())
            }),
            Step::Closed(index) => {
                let open: Vec<ConnectionId> = self.connections.values().map(|(c, _)| *c).collect();
                if let Some(connection) = nth(&open, *index) {
                    self.report(
                        connection,
                        ConnectionEvent::Closed("generated close".into()),
                    );
                }
            }
            Step::Health(index, serving) => {
                let open: Vec<ConnectionId> = self.connections.values().map(|(c, _)| *c).collect();
                if let Some(connection) = nth(&open, *index) {
                    let event = if *serving {
                        ConnectionEvent::Healthy
                    } else {
                        ConnectionEvent::Unhealthy("generated health check failure".into())
                    };
                    self.report(connection, event);
                }
            }
            Step::Stale(index, kind) => {
                if let Some(connection) = nth(&self.history, *index) {
                    let event = match kind % 3 {
                        0 => ConnectionEvent::Connected,
                        1 => ConnectionEvent::Failed("late failure".into()),
                        _ => ConnectionEvent::Closed("late close".into()),
                    };
                    self.report(connection, event);
                }
            }
            Step::CallEnded(index, ok, latency_ms) => {
                let known: Vec<SubchannelId> = self.known.iter().copied().collect();
                if let Some(id) = nth(&known, *index) {
                    let code = if *ok { Code::Ok } else { Code::Unavailable };
                    // Some calls carry a load report, its figures drawn from the latency.
                    let mut outcome = CallOutcome::new(code, ms(u64::from(*latency_ms)));
                    if latency_ms % 4 != 0 {
                        let qps = f64::from(latency_ms % 97);
                        let utilization = f64::from(latency_ms % 13) / 10.0;
                        let report = LoadReport::new(qps, utilization).eps(f64::from(!*ok as u8));
                        outcome = outcome.with_load(report);
                    }
                    self.lb.handle_call_outcome(id, outcome, self.now);
                    self.drain();
                }
            }
            Step::Advance(millis) if *millis > 60_000 => {
                // A long jump, as when a suspended process wakes: one timeout at the end.
                self.now = self
                    .now
                    .checked_add(ms(u64::from(*millis)))
                    .unwrap_or(self.now);
                self.lb.handle_timeout(self.now);
                self.drain();
            }
            Step::Advance(millis) => {
                self.advance(ms(u64::from(*millis)));
            }
            Step::ExitIdle => {
                self.exit_idle();
            }
            Step::Pick(hash) => {
                let request = match hash {
                    Some(hash) => PickRequest::new().with_hash(*hash),
                    None => PickRequest::new(),
                };
                if let Pick::Ready(id) = self.lb.picker().pick(&request) {
                    assert_eq!(self.lb.subchannel_state(id), Some(ConnectivityState::Ready));
                }
            }
        }
    }

    fn report_nth(&mut self, index: u8, event: impl FnOnce(ConnectionId) -> ConnectionEvent) {
        let in_flight: Vec<ConnectionId> = self.attempts.values().map(|(c, _)| *c).collect();
        if let Some(connection) = nth(&in_flight, index) {
            let event = event(connection);
            self.report(connection, event);
        }
    }
}

fn nth<T: Copy>(items: &[T], index: u8) -> Option<T> {
    (!items.is_empty()).then(|| items[usize::from(index) % items.len()])
}

/// One generated input to a [`Harness`]: the alphabet of fuzzing and random-sequence tests.
///
/// Indices pick among what the harness holds at that moment (attempts in flight, open
/// connections, every attempt ever made, every subchannel ever seen), modulo their number.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Step {
    /// A resolver update with these endpoints (possibly none, possibly repeated).
    Resolve(Vec<GenEndpoint>),
    /// A resolver update with this many distinct endpoints (modulo 256).
    ResolveMany(u16),
    /// A resolver error.
    ResolverError,
    /// The n-th attempt in flight connects.
    Connected(u8),
    /// The n-th attempt in flight fails.
    Failed(u8),
    /// The n-th open connection closes.
    Closed(u8),
    /// A late report (kind modulo 3: connected, failed, closed) for the n-th attempt ever made.
    Stale(u8, u8),
    /// The n-th open connection's health check says it is serving (`true`) or not (`false`).
    Health(u8, bool),
    /// A call on the n-th subchannel ever seen ends (successfully or not) after this many ms; three
    /// latencies in four also carry a load report drawn from them.
    CallEnded(u8, bool, u16),
    /// Virtual time moves forward this many milliseconds: up to a minute timer by timer, longer
    /// in one jump (as a process that was suspended sees it).
    Advance(u32),
    /// A queued call asks an idle policy to connect.
    ExitIdle,
    /// A pick, with an optional hash.
    Pick(Option<u64>),
}

/// A generated endpoint: one or more addresses from a small pool, so that updates overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct GenEndpoint {
    /// Indices into the address pool (modulo its size); none gives an endpoint with no address.
    pub addresses: Vec<u8>,
    /// The endpoint's weight.
    pub weight: u8,
}

impl GenEndpoint {
    /// The pool: eight IPv4 and four IPv6 loopback-range addresses, a unix path, an opaque name.
    fn address(index: u8) -> Address {
        match index % 14 {
            i @ 0..=7 => addr(50_000 + u16::from(i)),
            i @ 8..=11 => Address::Socket(SocketAddr::from((
                std::net::Ipv6Addr::LOCALHOST,
                50_000 + u16::from(i),
            ))),
            12 => Address::Unix("/tmp/croupier-test.sock".into()),
            _ => Address::Opaque("backend.internal:443".into()),
        }
    }

    /// The endpoint this describes.
    pub fn endpoint(&self) -> Endpoint {
        let addresses = self
            .addresses
            .iter()
            .take(4)
            .map(|&i| GenEndpoint::address(i));
        Endpoint::with_addresses(addresses).weight(u32::from(self.weight))
    }
}

/// Runs `steps` against a fresh harness with `policy`, checking invariants after every step.
pub fn run(policy: PolicyConfig, seed: u64, steps: &[Step]) -> Harness {
    let mut harness = Harness::new(policy, seed);
    for step in steps {
        harness.apply(step);
    }
    harness
}

/// Every built-in policy, in the configurations fuzzing and random-sequence tests cover.
pub fn builtin_policies() -> Vec<PolicyConfig> {
    vec![
        PolicyConfig::pick_first(),
        PolicyConfig::new(crate::policy::PickFirstConfig::default().shuffle_address_list(true)),
        PolicyConfig::round_robin(),
        PolicyConfig::random(),
        PolicyConfig::least_request(),
        PolicyConfig::ring_hash(),
        PolicyConfig::outlier_detection(PolicyConfig::round_robin()),
        PolicyConfig::outlier_detection(PolicyConfig::pick_first()),
        PolicyConfig::weighted_round_robin(),
        PolicyConfig::new(
            crate::policy::WeightedRoundRobinConfig::default()
                .blackout_period(Duration::ZERO)
                .weight_update_period(Duration::from_millis(100)),
        ),
        PolicyConfig::p2c_ewma(),
    ]
}

/// A whole generated run: which built-in policy, the balancer's seed, and the steps.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Scenario {
    /// Index into [`builtin_policies`] (modulo its length).
    pub policy: u8,
    /// The balancer's seed.
    pub seed: u64,
    /// The inputs, in order.
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Runs the scenario, checking the invariants after every step (panics on a violation), then
    /// checks that the balancer still works: with every attempt succeeding, it becomes READY.
    pub fn run(&self) -> Harness {
        let policies = builtin_policies();
        let policy = policies[usize::from(self.policy) % policies.len()].clone();
        let mut harness = Harness::new(policy.clone(), self.seed);
        harness.hides_ready = policy.name() == "outlier_detection";
        harness.report_probes = matches!(policy.name(), "least_request" | "p2c_ewma");
        for step in &self.steps {
            harness.apply(step);
        }
        harness.recover();
        harness
    }
}

impl Harness {
    /// Liveness: after whatever came before, a good update and connections that succeed bring
    /// the channel to READY within a bounded number of rounds.
    pub fn recover(&mut self) {
        self.resolve(update(&[40_001, 40_002]));
        for _ in 0..64 {
            if self.state() == ConnectivityState::Ready {
                break;
            }
            self.exit_idle();
            let in_flight: Vec<ConnectionId> = self.attempts.values().map(|(c, _)| *c).collect();
            for connection in in_flight {
                self.report(connection, ConnectionEvent::Connected);
            }
            self.advance(Duration::from_secs(5));
        }
        assert_eq!(
            self.state(),
            ConnectivityState::Ready,
            "the channel never recovered"
        );
        assert!(
            matches!(self.pick(), Pick::Ready(_)),
            "READY but the pick fails"
        );
    }
}

impl Scenario {
    /// A random scenario of `len` steps drawn from `rng`: mostly small time steps and connection
    /// events, with updates that overlap, repeat, contain duplicates, or are empty.
    pub fn random(rng: &mut crate::rng::Rng, len: usize) -> Scenario {
        let policy = rng.below(256) as u8;
        let seed = rng.next_u64();
        let steps = (0..len).map(|_| Step::random(rng)).collect();
        Scenario {
            policy,
            seed,
            steps,
        }
    }
}

impl Step {
    /// One random step.
    pub fn random(rng: &mut crate::rng::Rng) -> Step {
        let byte = |rng: &mut crate::rng::Rng| rng.below(256) as u8;
        match rng.below(100) {
            0..=11 => {
                let count = rng.index(7);
                let endpoints = (0..count)
                    .map(|_| GenEndpoint {
                        addresses: (0..1 + rng.index(2)).map(|_| rng.below(16) as u8).collect(),
                        weight: byte(rng),
                    })
                    .collect();
                Step::Resolve(endpoints)
            }
            12 => Step::ResolveMany(rng.below(300) as u16),
            13..=15 => Step::ResolverError,
            16..=33 => Step::Connected(byte(rng)),
            34..=45 => Step::Failed(byte(rng)),
            46..=50 => Step::Closed(byte(rng)),
            51..=53 => Step::Health(byte(rng), rng.below(2) == 0),
            54..=58 => Step::Stale(byte(rng), byte(rng)),
            59..=65 => Step::CallEnded(byte(rng), rng.below(2) == 0, rng.below(1000) as u16),
            66..=85 => {
                let millis = match rng.below(10) {
                    0 => rng.below(200_000),
                    1..=3 => rng.below(5_000),
                    _ => rng.below(300),
                };
                Step::Advance(millis as u32)
            }
            86..=90 => Step::ExitIdle,
            _ => Step::Pick((rng.below(2) == 0).then(|| rng.next_u64())),
        }
    }
}

/// The check of the `target_parse` fuzz target: bytes as a target never panic, and a target that
/// parses prints back to an equal target, whose static endpoints and host/port split never
/// panic either.
pub fn check_target(bytes: &[u8]) {
    let Ok(input) = std::str::from_utf8(bytes) else {
        return;
    };
    let registered =
        |scheme: &str| crate::target::BUILTIN_SCHEMES.contains(&scheme) || scheme == "example";
    if let Ok(target) = crate::target::Target::parse(input, registered) {
        let printed = target.to_string();
        let again = crate::target::Target::parse(&printed, registered).unwrap_or_else(|error| {
            panic!("{input:?} printed as {printed:?}, which fails: {error}")
        });
        assert_eq!(again, target, "{input:?} printed as {printed:?}");
        let _ = target.static_endpoints();
        let _ = target.host_port(crate::target::DEFAULT_PORT);
    }
}

/// The check of the `policy_params` fuzz target: a resolver's policy choice, whatever its name
/// and parameters, either switches the policy or is reported as a resolver error; the balancer
/// keeps its invariants and still recovers.
pub fn check_policy_choice(name: &str, params: &[(String, String)]) {
    let mut choice = crate::resolver::PolicyChoice::new(name);
    for (key, value) in params.iter().take(8) {
        choice = choice.param(key.clone(), value.clone());
    }
    let mut harness = Harness::new(PolicyConfig::pick_first(), 1);
    harness.resolve(update(&[1, 2]).with_policy(choice));
    harness.recover();
}

/// A ring_hash balancer hashing on header `x-user`, with eight READY endpoints, for
/// [`check_request_hash`]. Build it once and reuse it: it is the expensive part.
pub fn request_hash_fixture() -> Harness {
    let config = crate::policy::RingHashConfig::default()
        .request_hash_header("x-user")
        .expect("a valid header name");
    let mut harness = Harness::new(PolicyConfig::new(config), 11);
    harness.resolve(update(&[1, 2, 3, 4, 5, 6, 7, 8]));
    for round in 0..64u64 {
        let picker = harness.picker();
        for i in 0..256u64 {
            picker.pick(
                &PickRequest::new().with_hash((round << 8 | i).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            );
        }
        harness.exit_idle();
        let attempts: Vec<ConnectionId> = harness.attempts.values().map(|(c, _)| *c).collect();
        if attempts.is_empty() && harness.state() == ConnectivityState::Ready {
            break;
        }
        for connection in attempts {
            harness.report(connection, ConnectionEvent::Connected);
        }
    }
    harness
}

/// The check of the `request_hash` fuzz target: any header name is accepted or refused by the
/// config without a panic, and any values of the hashed header give a pick that names a READY
/// subchannel, the same one every time for the same values.
pub fn check_request_hash(fixture: &Harness, name: &str, values: &[Vec<u8>]) {
    let _ = crate::policy::RingHashConfig::default().request_hash_header(name);
    let mut headers = http::HeaderMap::new();
    for value in values.iter().take(8) {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            headers.append("x-user", value);
        }
    }
    let picker = fixture.picker();
    let request = PickRequest::new().with_headers(&headers);
    let first = picker.pick(&request);
    if let Pick::Ready(id) = &first {
        assert_eq!(
            fixture.lb.subchannel_state(*id),
            Some(ConnectivityState::Ready)
        );
    }
    // A header with one empty value counts as absent (a random hash); otherwise the hash is
    // the values', and so is the endpoint.
    let values: Vec<_> = headers.get_all("x-user").iter().collect();
    let hashed = values.len() > 1 || values.first().is_some_and(|v| !v.is_empty());
    if hashed {
        assert_eq!(
            picker.pick(&request),
            first,
            "the same header values, another endpoint"
        );
    }
}
