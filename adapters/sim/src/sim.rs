//! The discrete-event engine: one queue of events in virtual time, a simulated fleet, and one
//! croupier balancer per client, driven exactly as a real adapter drives it.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier::{
    Action, Address, Balancer, BalancerConfig, CallOutcome, Code, ConnectionEvent, ConnectionId,
    Endpoint, Pick, PickRequest, Picker, ResolverUpdate, Rng, SubchannelId,
};

use crate::dist::exponential;
use crate::record::{Recorder, RunResult};
use crate::router::Router;
use crate::scenario::{FleetEvent, Scenario};

/// The port of backend 0 on 127.0.0.1; backend `i` listens on `BASE_PORT + i` (in name only:
/// nothing connects for real).
pub const BASE_PORT: u16 = 10_000;

/// How long the simulated resolver takes to answer a re-resolution request.
const RESOLVE_DELAY: Duration = Duration::from_millis(1);

/// The longest run simulated, whatever a scenario asks: a million seconds (11.6 days).
const MAX_DURATION: Duration = Duration::from_secs(1_000_000);

/// How many times one input may re-run the waiting calls against successive pickers.
const MAX_RETRY_ROUNDS: usize = 16;

/// The address backend `index` is known by.
pub fn backend_address(index: usize) -> Address {
    let port = u16::try_from(index)
        .ok()
        .and_then(|i| BASE_PORT.checked_add(i))
        .unwrap_or(u16::MAX);
    Address::Socket(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A backend's load as it could report it with each response (utilization and rate, as ORCA
/// reports do). Nothing consumes it yet: when call outcomes can carry load reports for
/// weighted_round_robin, `Sim::respond` is where it is handed to the balancer.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// Busy slots over all slots, when the response left the backend.
    pub utilization: f64,
    /// Calls the backend finished since it started, per second of its life so far.
    pub qps: f64,
}

/// Runs `scenario` once with `router` and `seed`. The same arguments give the same result, bit
/// for bit: nothing depends on the wall clock.
pub fn simulate(scenario: &Scenario, router: &Router, seed: u64) -> RunResult {
    let mut sim = Sim::new(scenario, router, seed);
    sim.run();
    sim.recorder
        .finish(router.label(), router.is_reference(), seed)
}

type CallId = usize;

/// `x` seconds as a duration; anything negative, not a number, or beyond a million seconds is
/// clamped, so no scenario's numbers can make the conversion panic.
fn seconds(x: f64) -> Duration {
    if x.is_finite() && x > 0.0 {
        Duration::from_secs_f64(x.min(1e6))
    } else {
        Duration::ZERO
    }
}

#[derive(Debug)]
enum Event {
    /// The next call of a client's Poisson process.
    Arrival { client: usize },
    /// A request reaches its backend.
    Deliver { call: CallId },
    /// A backend finishes serving a call (ignored if the backend crashed since: `epoch`).
    Served {
        backend: usize,
        call: CallId,
        epoch: u64,
    },
    /// A response, or the news of a failure, reaches the client.
    Respond { call: CallId },
    /// A connection attempt ends.
    ConnectDone {
        client: usize,
        connection: ConnectionId,
    },
    /// A balancer's timer (ignored unless `generation` is still the client's latest).
    Timer { client: usize, generation: u64 },
    /// The resolver answers a client with the backends listed now.
    Resolve { client: usize },
    /// The scenario's event number `index`.
    Fleet { index: usize },
}

#[derive(Debug)]
struct Scheduled {
    at: Duration,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Debug)]
struct Call {
    client: usize,
    issued: Duration,
    picked: Duration,
    /// Work of mean 1; service time = work x the backend's current mean.
    work: f64,
    backend: usize,
    epoch: u64,
    subchannel: Option<SubchannelId>,
    ok: bool,
    load: LoadReport,
}

#[derive(Debug)]
struct Backend {
    slots: usize,
    mean: f64,
    link: Duration,
    factor: f64,
    up: bool,
    listed: bool,
    /// Bumped at each crash: what was in flight before belongs to a dead incarnation.
    epoch: u64,
    started: Duration,
    finished: u64,
    queue: VecDeque<CallId>,
    serving: Vec<CallId>,
}

impl Backend {
    fn outstanding(&self) -> usize {
        self.queue.len() + self.serving.len()
    }

    fn current_mean(&self) -> f64 {
        self.mean * self.factor
    }
}

/// What a client's adapter holds for one subchannel.
#[derive(Debug)]
struct Conn {
    connection: ConnectionId,
    backend: usize,
    established: bool,
}

#[derive(Debug)]
struct Client {
    /// `None` under a reference router.
    lb: Option<Balancer>,
    picker: Option<Arc<dyn Picker>>,
    arrivals: Rng,
    hashes: Rng,
    rate: f64,
    conns: BTreeMap<SubchannelId, Conn>,
    waiting: VecDeque<CallId>,
    timer: Option<Duration>,
    generation: u64,
}

struct Sim<'s> {
    scenario: &'s Scenario,
    router: &'s Router,
    origin: Instant,
    now: Duration,
    end: Duration,
    horizon: Duration,
    events: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    /// Connection failures and reference routers' tie-breaks.
    fleet_rng: Rng,
    backends: Vec<Backend>,
    clients: Vec<Client>,
    calls: Vec<Call>,
    /// Calls issued and not yet answered (or failed).
    pending: usize,
    addresses: BTreeMap<Address, usize>,
    recorder: Recorder,
}

impl<'s> Sim<'s> {
    fn new(scenario: &'s Scenario, router: &'s Router, seed: u64) -> Self {
        // The one reading of the clock: an origin for `Instant`s. Results use offsets from it only.
        let origin = Instant::now();
        let mut master = Rng::new(seed);
        let clients_n = scenario.clients.max(1);
        let rate = if scenario.rate.is_finite() {
            scenario.rate.max(0.0) / clients_n as f64
        } else {
            0.0
        };
        let clients = (0..clients_n)
            .map(|_| {
                let lb_seed = master.next_u64();
                let lb = match router {
                    Router::Policy { config, .. } => Some(Balancer::new(
                        BalancerConfig::default().policy(config.clone()),
                        lb_seed,
                        origin,
                    )),
                    _ => None,
                };
                Client {
                    picker: lb.as_ref().map(Balancer::picker),
                    lb,
                    arrivals: master.fork(),
                    hashes: master.fork(),
                    rate,
                    conns: BTreeMap::new(),
                    waiting: VecDeque::new(),
                    timer: None,
                    generation: 0,
                }
            })
            .collect();
        let backends = scenario
            .backends
            .iter()
            .map(|spec| Backend {
                slots: spec.slots.max(1),
                mean: spec.mean_service.as_secs_f64(),
                link: spec.link_delay,
                factor: 1.0,
                up: true,
                listed: spec.listed,
                epoch: 0,
                started: Duration::ZERO,
                finished: 0,
                queue: VecDeque::new(),
                serving: Vec::new(),
            })
            .collect();
        let addresses = (0..scenario.backends.len())
            .map(|i| (backend_address(i), i))
            .collect();
        let end = scenario.duration.min(MAX_DURATION);
        let horizon = end.saturating_add(scenario.grace.min(MAX_DURATION));
        Sim {
            scenario,
            router,
            origin,
            now: Duration::ZERO,
            end,
            horizon,
            events: BinaryHeap::new(),
            seq: 0,
            fleet_rng: master.fork(),
            backends,
            clients,
            calls: Vec::new(),
            pending: 0,
            addresses,
            recorder: Recorder::new(
                clients_n,
                scenario.backends.len(),
                scenario.warmup,
                end,
                horizon,
                scenario.bucket,
            ),
        }
    }

    fn at(&self, offset: Duration) -> Instant {
        // Past what an Instant can hold, time stops (the core ignores time running backwards).
        self.origin.checked_add(offset).unwrap_or(self.origin)
    }

    fn after(&mut self, delay: Duration, event: Event) {
        self.schedule(self.now.saturating_add(delay), event);
    }

    fn schedule(&mut self, at: Duration, event: Event) {
        self.seq += 1;
        self.events.push(Reverse(Scheduled {
            at: at.max(self.now),
            seq: self.seq,
            event,
        }));
    }

    fn run(&mut self) {
        for client in 0..self.clients.len() {
            if self.clients[client].lb.is_some() {
                self.schedule(Duration::ZERO, Event::Resolve { client });
            }
            self.schedule_arrival(client);
        }
        for index in 0..self.scenario.events.len() {
            let at = self.scenario.events[index].0;
            self.schedule(at, Event::Fleet { index });
        }
        while let Some(Reverse(next)) = self.events.pop() {
            // Past the horizon, or past the last call once every call is answered: only the
            // balancers' timers would be left, and they cannot change a figure.
            if next.at > self.horizon || (next.at >= self.end && self.pending == 0) {
                break;
            }
            self.now = next.at;
            self.handle(next.event);
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Arrival { client } => self.arrival(client),
            Event::Deliver { call } => self.deliver(call),
            Event::Served {
                backend,
                call,
                epoch,
            } => self.served(backend, call, epoch),
            Event::Respond { call } => self.respond(call),
            Event::ConnectDone { client, connection } => self.connect_done(client, connection),
            Event::Timer { client, generation } => {
                if self.clients[client].generation == generation {
                    self.clients[client].timer = None;
                    let now = self.at(self.now);
                    if let Some(lb) = self.clients[client].lb.as_mut() {
                        lb.handle_timeout(now);
                    }
                    self.settle(client);
                }
            }
            Event::Resolve { client } => self.resolve(client),
            Event::Fleet { index } => self.fleet(index),
        }
    }

    // --- Calls -------------------------------------------------------------------------------

    fn schedule_arrival(&mut self, client: usize) {
        let rate = self.clients[client].rate;
        if rate <= 0.0 {
            return;
        }
        let gap = exponential(1.0 / rate, &mut self.clients[client].arrivals);
        let at = self.now.saturating_add(seconds(gap));
        if at < self.end {
            self.schedule(at, Event::Arrival { client });
        }
    }

    fn arrival(&mut self, client: usize) {
        let work = self
            .scenario
            .service
            .unit_work(&mut self.clients[client].arrivals);
        let call = self.calls.len();
        self.calls.push(Call {
            client,
            issued: self.now,
            picked: self.now,
            work,
            backend: usize::MAX,
            epoch: 0,
            subchannel: None,
            ok: false,
            load: LoadReport::default(),
        });
        self.recorder.issued(self.now);
        self.pending += 1;
        self.schedule_arrival(client);
        if self.clients[client].lb.is_some() {
            if self.pick(call) {
                self.clients[client].waiting.push_back(call);
                self.exit_idle(client);
            }
            self.settle(client);
        } else {
            self.route_reference(call);
        }
    }

    /// Picks for `call` from its client's newest picker; returns whether the call must wait.
    fn pick(&mut self, call: CallId) -> bool {
        let client = self.calls[call].client;
        let hash = self.clients[client].hashes.next_u64();
        let Some(picker) = self.clients[client].picker.as_ref() else {
            return true;
        };
        match picker.pick(&PickRequest::new().with_hash(hash)) {
            Pick::Ready(subchannel) => {
                let backend = match self.clients[client].conns.get(&subchannel) {
                    Some(conn) if conn.established => conn.backend,
                    // A picker names only READY subchannels, whose connections this adapter
                    // holds; anything else waits for the next picker.
                    _ => return true,
                };
                self.send(call, backend, Some(subchannel));
                false
            }
            Pick::Queue => true,
            // Fail, Drop, and whatever a later core adds: the call fails now.
            _ => {
                self.fail_now(call);
                false
            }
        }
    }

    fn fail_now(&mut self, call: CallId) {
        self.pending = self.pending.saturating_sub(1);
        self.calls[call].ok = false;
        let issued = self.calls[call].issued;
        self.recorder.failed(issued);
    }

    fn route_reference(&mut self, call: CallId) {
        let by_delay = matches!(self.router, Router::ShortestExpectedDelay);
        let mut best: Option<(f64, usize)> = None;
        let mut ties = 0u64;
        for (index, backend) in self.backends.iter().enumerate() {
            if !backend.up || !backend.listed {
                continue;
            }
            let cost = if by_delay {
                (backend.outstanding() + 1) as f64 / backend.slots as f64 * backend.current_mean()
            } else {
                backend.outstanding() as f64
            };
            match best {
                Some((least, _)) if cost > least => {}
                Some((least, _)) if cost == least => {
                    // Reservoir sampling: each of the tied backends is kept with equal chance.
                    ties += 1;
                    if self.fleet_rng.below(ties) == 0 {
                        best = Some((cost, index));
                    }
                }
                _ => {
                    best = Some((cost, index));
                    ties = 1;
                }
            }
        }
        match best {
            Some((_, backend)) => self.send(call, backend, None),
            None => self.fail_now(call),
        }
    }

    fn send(&mut self, call: CallId, backend: usize, subchannel: Option<SubchannelId>) {
        let epoch = self.backends[backend].epoch;
        let link = self.backends[backend].link;
        let c = &mut self.calls[call];
        c.backend = backend;
        c.epoch = epoch;
        c.subchannel = subchannel;
        c.picked = self.now;
        let (client, issued) = (c.client, c.issued);
        self.recorder.sent(client, backend, issued, self.now);
        self.after(link, Event::Deliver { call });
    }

    fn deliver(&mut self, call: CallId) {
        let backend = self.calls[call].backend;
        let b = &mut self.backends[backend];
        if !b.up || b.epoch != self.calls[call].epoch {
            // The connection it travelled on died with the backend.
            self.calls[call].ok = false;
            let link = b.link;
            self.after(link, Event::Respond { call });
        } else if b.serving.len() < b.slots {
            self.start_service(backend, call);
        } else {
            b.queue.push_back(call);
        }
    }

    fn start_service(&mut self, backend: usize, call: CallId) {
        let b = &mut self.backends[backend];
        b.serving.push(call);
        let time = self.calls[call].work * b.current_mean();
        let epoch = b.epoch;
        let at = self.now.saturating_add(seconds(time));
        self.schedule(
            at,
            Event::Served {
                backend,
                call,
                epoch,
            },
        );
    }

    fn served(&mut self, backend: usize, call: CallId, epoch: u64) {
        let b = &mut self.backends[backend];
        if b.epoch != epoch {
            return;
        }
        if let Some(position) = b.serving.iter().position(|&c| c == call) {
            b.serving.swap_remove(position);
        }
        b.finished += 1;
        let alive = self.now.saturating_sub(b.started).as_secs_f64();
        let load = LoadReport {
            utilization: b.serving.len() as f64 / b.slots as f64,
            qps: if alive > 0.0 {
                b.finished as f64 / alive
            } else {
                0.0
            },
        };
        let link = b.link;
        let next = b.queue.pop_front();
        let c = &mut self.calls[call];
        c.ok = true;
        c.load = load;
        self.after(link, Event::Respond { call });
        if let Some(next) = next {
            self.start_service(backend, next);
        }
    }

    fn respond(&mut self, call: CallId) {
        let c = &self.calls[call];
        let (client, issued, ok, backend) = (c.client, c.issued, c.ok, c.backend);
        let latency = self.now.saturating_sub(issued);
        self.pending = self.pending.saturating_sub(1);
        if ok {
            self.recorder.succeeded(backend, issued, latency);
        } else {
            self.recorder.failed(issued);
        }
        let (Some(subchannel), picked) = (c.subchannel, c.picked) else {
            return;
        };
        // Here a load report (`self.calls[call].load`) would go along once the core takes one.
        let now = self.at(self.now);
        let Some(lb) = self.clients[client].lb.as_mut() else {
            return;
        };
        if lb.wants_call_outcomes() {
            let code = if ok { Code::Ok } else { Code::Unavailable };
            let outcome = CallOutcome::new(code, self.now.saturating_sub(picked));
            lb.handle_call_outcome(subchannel, outcome, now);
            self.settle(client);
        }
    }

    // --- The adapter's side of each balancer -------------------------------------------------

    fn exit_idle(&mut self, client: usize) {
        let now = self.at(self.now);
        if let Some(lb) = self.clients[client].lb.as_mut() {
            lb.exit_idle(now);
        }
    }

    /// Carries out what the balancer asks, re-picks waiting calls after each new picker, and
    /// schedules its next timer: what an adapter does after every input.
    fn settle(&mut self, client: usize) {
        let mut asked_exit_idle = false;
        for _ in 0..MAX_RETRY_ROUNDS {
            let new_picker = self.perform_actions(client);
            if !new_picker || self.clients[client].waiting.is_empty() {
                break;
            }
            let waiting = std::mem::take(&mut self.clients[client].waiting);
            for call in waiting {
                if self.pick(call) {
                    self.clients[client].waiting.push_back(call);
                }
            }
            if !self.clients[client].waiting.is_empty() && !asked_exit_idle {
                asked_exit_idle = true;
                self.exit_idle(client);
            }
        }
        self.perform_actions(client);
        self.update_timer(client);
    }

    /// Drains the balancer's actions; returns whether a new picker came.
    fn perform_actions(&mut self, client: usize) -> bool {
        let mut new_picker = false;
        loop {
            let Some(action) = self.clients[client]
                .lb
                .as_mut()
                .and_then(Balancer::poll_action)
            else {
                return new_picker;
            };
            match action {
                Action::Connect {
                    connection,
                    address,
                    ..
                } => self.start_connect(client, connection, &address),
                Action::Disconnect { connection } => {
                    let conns = &mut self.clients[client].conns;
                    if conns
                        .get(&connection.subchannel())
                        .is_some_and(|c| c.connection == connection)
                    {
                        conns.remove(&connection.subchannel());
                    }
                }
                Action::Shutdown { subchannel } => {
                    self.clients[client].conns.remove(&subchannel);
                }
                Action::ResolveNow => {
                    self.after(RESOLVE_DELAY, Event::Resolve { client });
                }
                Action::UpdatePicker(picker) => {
                    self.clients[client].picker = Some(picker);
                    new_picker = true;
                }
                // StateChanged, and whatever a later core adds.
                _ => {}
            }
        }
    }

    fn start_connect(&mut self, client: usize, connection: ConnectionId, address: &Address) {
        let Some(&backend) = self.addresses.get(address) else {
            // Not a backend of this fleet: the attempt fails after the usual setup time.
            self.after(
                self.scenario.connect.setup,
                Event::ConnectDone { client, connection },
            );
            return;
        };
        self.clients[client].conns.insert(
            connection.subchannel(),
            Conn {
                connection,
                backend,
                established: false,
            },
        );
        let round_trip = self.backends[backend].link.saturating_mul(2);
        self.after(
            self.scenario.connect.setup.saturating_add(round_trip),
            Event::ConnectDone { client, connection },
        );
    }

    fn connect_done(&mut self, client: usize, connection: ConnectionId) {
        let subchannel = connection.subchannel();
        let backend = match self.clients[client].conns.get(&subchannel) {
            Some(conn) if conn.connection == connection && !conn.established => conn.backend,
            // Dropped or superseded meanwhile, or never a backend: report a failure, which the
            // core ignores unless the attempt is still its current one.
            _ => {
                let conns = &mut self.clients[client].conns;
                if conns
                    .get(&subchannel)
                    .is_some_and(|c| c.connection == connection)
                {
                    conns.remove(&subchannel);
                }
                self.report(
                    client,
                    connection,
                    ConnectionEvent::Failed("no such backend".to_owned()),
                );
                return;
            }
        };
        let p = self.scenario.connect.failure_probability;
        let refused = !self.backends[backend].up || (p > 0.0 && self.fleet_rng.unit() < p);
        let event = if refused {
            self.clients[client].conns.remove(&subchannel);
            ConnectionEvent::Failed(format!(
                "connection refused by {}",
                backend_address(backend)
            ))
        } else {
            if let Some(conn) = self.clients[client].conns.get_mut(&subchannel) {
                conn.established = true;
            }
            ConnectionEvent::Connected
        };
        self.report(client, connection, event);
    }

    fn report(&mut self, client: usize, connection: ConnectionId, event: ConnectionEvent) {
        let now = self.at(self.now);
        if let Some(lb) = self.clients[client].lb.as_mut() {
            lb.handle_connection_event(connection, event, now);
        }
        self.settle(client);
    }

    fn update_timer(&mut self, client: usize) {
        let Some(lb) = self.clients[client].lb.as_mut() else {
            return;
        };
        let due = lb
            .poll_timeout()
            .map(|at| at.saturating_duration_since(self.origin).max(self.now));
        let c = &mut self.clients[client];
        if due != c.timer {
            c.timer = due;
            c.generation += 1;
            if let Some(at) = due {
                let generation = c.generation;
                self.schedule(at, Event::Timer { client, generation });
            }
        }
    }

    fn resolve(&mut self, client: usize) {
        let endpoints: Vec<Endpoint> = (0..self.backends.len())
            .filter(|&i| self.backends[i].listed)
            .map(|i| Endpoint::new(backend_address(i)))
            .collect();
        let now = self.at(self.now);
        if let Some(lb) = self.clients[client].lb.as_mut() {
            lb.handle_resolver_update(ResolverUpdate::new(endpoints), now);
        }
        self.settle(client);
    }

    // --- The fleet ---------------------------------------------------------------------------

    fn fleet(&mut self, index: usize) {
        let Some(&(_, event)) = self.scenario.events.get(index) else {
            return;
        };
        match event {
            FleetEvent::Slowdown { backend, factor } => {
                if let Some(b) = self.backends.get_mut(backend) {
                    b.factor = if factor.is_finite() && factor > 0.0 {
                        factor
                    } else {
                        1.0
                    };
                }
            }
            FleetEvent::Crash { backend } => self.crash(backend),
            FleetEvent::Restart { backend } => {
                if let Some(b) = self.backends.get_mut(backend) {
                    if !b.up {
                        b.up = true;
                        b.started = self.now;
                        b.finished = 0;
                        self.recorder.restarted(backend, self.now);
                    }
                }
            }
            FleetEvent::Add { backend } | FleetEvent::Remove { backend } => {
                let listed = matches!(event, FleetEvent::Add { .. });
                if let Some(b) = self.backends.get_mut(backend) {
                    b.listed = listed;
                    for client in 0..self.clients.len() {
                        if self.clients[client].lb.is_some() {
                            self.schedule(self.now, Event::Resolve { client });
                        }
                    }
                }
            }
        }
    }

    fn crash(&mut self, backend: usize) {
        let Some(b) = self.backends.get_mut(backend) else {
            return;
        };
        if !b.up {
            return;
        }
        b.up = false;
        b.epoch += 1;
        let link = b.link;
        let lost: Vec<CallId> = b.serving.drain(..).chain(b.queue.drain(..)).collect();
        for call in lost {
            self.calls[call].ok = false;
            self.after(link, Event::Respond { call });
        }
        let reason = format!("connection reset by {}", backend_address(backend));
        for client in 0..self.clients.len() {
            let closed: Vec<ConnectionId> = self.clients[client]
                .conns
                .values()
                .filter(|c| c.backend == backend && c.established)
                .map(|c| c.connection)
                .collect();
            for connection in closed {
                self.clients[client].conns.remove(&connection.subchannel());
                self.report(client, connection, ConnectionEvent::Closed(reason.clone()));
            }
        }
    }
}
