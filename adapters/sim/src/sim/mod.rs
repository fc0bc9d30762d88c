//! The discrete-event engine: one queue of events in virtual time, a simulated fleet, and one
//! croupier balancer per client, driven exactly as a real adapter drives it.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier::retry::{AttemptId, ChannelRetry};
use croupier::{
    Address, Balancer, BalancerConfig, ConnectionId, Picker, ProbeResult, Rng, ServerLoad,
    SubchannelId,
};

use crate::record::{Recorder, RunResult};
use crate::router::Router;
use crate::scenario::Scenario;

mod adapter;
mod calls;
mod fleet;
mod probes;
mod retry;

use retry::Retried;

/// The port of backend 0 on 127.0.0.1; backend `i` listens on `BASE_PORT + i` (in name only:
/// nothing connects for real).
pub const BASE_PORT: u16 = 10_000;

/// How long the simulated resolver takes to answer a re-resolution request.
const RESOLVE_DELAY: Duration = Duration::from_millis(1);

/// The longest run simulated, whatever a scenario asks: a million seconds (11.6 days).
const MAX_DURATION: Duration = Duration::from_secs(1_000_000);

/// Mixed into a client's seed for its calls' backoff jitter, so that stream is its own.
const RETRY_SEEDS: u64 = 0x7265_7472_795f_6a69;

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

/// A backend's load as it reports it with each response (utilization and rate, as ORCA reports
/// do), over its last whole second. `Sim::respond` hands it to the balancer with the call's
/// outcome, where weighted_round_robin turns it into a weight.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// The share of slot-time that was busy.
    pub utilization: f64,
    /// Calls finished, per second.
    pub qps: f64,
}

/// How long a backend measures before its load report changes.
const REPORT_WINDOW: Duration = Duration::from_secs(1);

/// A backend's measurement of its own load: busy slot-time and calls finished, per window of
/// [`REPORT_WINDOW`], as a server computing its figures once per reporting interval would.
#[derive(Debug, Default)]
struct LoadMeter {
    window_start: Duration,
    last_change: Duration,
    busy_slot_seconds: f64,
    finished: u64,
    report: LoadReport,
}

impl LoadMeter {
    /// Counts the time since the last change with `serving` slots busy, closing every window
    /// that ended by `now`.
    fn account(&mut self, now: Duration, serving: usize, slots: usize) {
        let window = REPORT_WINDOW.as_secs_f64();
        // A long quiet spell: only the last whole window before `now` matters.
        if now.saturating_sub(self.window_start) > REPORT_WINDOW * 2 {
            let end = self.window_start + REPORT_WINDOW;
            self.busy_slot_seconds +=
                serving as f64 * end.saturating_sub(self.last_change).as_secs_f64();
            self.close(window, slots);
            let behind =
                now.saturating_sub(self.window_start).as_nanos() % REPORT_WINDOW.as_nanos();
            let start = now.saturating_sub(Duration::from_nanos(behind as u64));
            self.busy_slot_seconds = serving as f64 * window;
            self.window_start = start.saturating_sub(REPORT_WINDOW);
            self.last_change = start;
            self.close(window, slots);
            self.window_start = start;
            self.last_change = start;
        }
        loop {
            let end = self.window_start + REPORT_WINDOW;
            let upto = now.min(end);
            self.busy_slot_seconds +=
                serving as f64 * upto.saturating_sub(self.last_change).as_secs_f64();
            self.last_change = upto;
            if now < end {
                break;
            }
            self.close(window, slots);
            self.window_start = end;
        }
    }

    fn close(&mut self, window: f64, slots: usize) {
        self.report = LoadReport {
            utilization: self.busy_slot_seconds / (slots.max(1) as f64 * window),
            qps: self.finished as f64 / window,
        };
        self.busy_slot_seconds = 0.0;
        self.finished = 0;
    }

    /// A fresh meter for a backend (re)started at `now`: nothing to report yet.
    fn restart(now: Duration) -> Self {
        LoadMeter {
            window_start: now,
            last_change: now,
            ..LoadMeter::default()
        }
    }
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
    /// A retried call's machine wants its timeout (ignored unless still its latest).
    RetryTimer { retried: usize },
    /// A cancelled attempt's `RST_STREAM` reaches its backend.
    CancelArrives { call: CallId },
    /// A client's probe of a subchannel reaches its backend.
    ProbeArrives {
        client: usize,
        subchannel: SubchannelId,
        backend: usize,
    },
    /// The backend's answer to a probe reaches the client.
    ProbeAnswered {
        client: usize,
        subchannel: SubchannelId,
        result: ProbeResult,
    },
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
    /// What the picker noted when it picked the subchannel; its outcome carries it back.
    note: croupier::PickNote,
    ok: bool,
    load: LoadReport,
    /// For an attempt of a retried call: the call (an index of `Sim::retried`) and the attempt.
    retry: Option<(usize, AttemptId)>,
    /// The client cancelled it (a losing hedge): its response, if any, is dropped.
    cancelled: bool,
    /// When its service ends, once it started.
    service_end: Duration,
    /// When it reached its backend: the start of the latency the backend measures.
    delivered: Duration,
    /// The load it arrived at, as its backend's probe answers count it.
    arrived: Option<croupier::ArrivedAt>,
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
    meter: LoadMeter,
    /// The share of served calls it fails (`FleetEvent::Errors`).
    error_rate: f64,
    queue: VecDeque<CallId>,
    serving: Vec<CallId>,
    /// What it answers probes with: its calls in flight and their latency.
    probed: ServerLoad,
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
    /// The throttle and buffer its calls share, when the scenario retries or hedges.
    retry: Option<Arc<ChannelRetry>>,
    /// Seeds of its calls' backoff jitter.
    retry_seeds: Rng,
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
    /// Calls run under the scenario's retry or hedging policy.
    retried: Vec<Retried>,
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
                    retry: scenario.retry.as_ref().map(|spec| {
                        let mut channel = ChannelRetry::new();
                        channel.throttle = spec.new_throttle().map(std::sync::Arc::new);
                        Arc::new(channel)
                    }),
                    retry_seeds: Rng::new(lb_seed ^ RETRY_SEEDS),
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
                meter: LoadMeter::default(),
                error_rate: 0.0,
                queue: VecDeque::new(),
                serving: Vec::new(),
                probed: ServerLoad::new(),
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
            retried: Vec::new(),
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

    /// The one-way delay between `client` and `backend`.
    fn link(&self, client: usize, backend: usize) -> Duration {
        let extra = self.scenario.client_delays.get(client).copied();
        self.backends
            .get(backend)
            .map_or(Duration::ZERO, |b| b.link)
            .saturating_add(extra.unwrap_or(Duration::ZERO))
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
            Event::RetryTimer { retried } => self.retry_timer(retried),
            Event::CancelArrives { call } => self.cancel_arrives(call),
            Event::ProbeArrives {
                client,
                subchannel,
                backend,
            } => self.probe_arrives(client, subchannel, backend),
            Event::ProbeAnswered {
                client,
                subchannel,
                result,
            } => self.probe_answered(client, subchannel, result),
        }
    }
}
