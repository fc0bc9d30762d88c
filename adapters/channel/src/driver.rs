//! The driver: one task per channel that owns the core's `Balancer`, carries out its actions and
//! feeds it what happens. It makes no decision of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use croupier::{
    Action, Address, Balancer, ConnectionEvent, ConnectionId, ConnectivityState, LoadReport,
    Picker, ProbeResult, SubchannelId, SubchannelInfo,
};
use futures_lite::future;

use crate::connections::Connections;
use crate::connector::{Addressed, Connected, Connector, Health, HealthWatch, Watch};
use crate::inbox::Input;
use crate::names::Names;
use crate::records::Records;
use crate::resolver::ResolveNow;
use crate::runtime::{BoxFuture, Runtime, Task};
use crate::shared::{Shared, Snapshot};
use crate::snapshot::ChannelSnapshot;
use crate::trace::Trace;

/// The most reports and inputs the driver hands the balancer before it carries out the actions
/// they caused (each round takes one of each kind).
const BATCH_LIMIT: usize = 65_536;

/// What connection tasks report.
enum ConnectionReport<T> {
    /// Connected, with the health reports that came before the connection was handed over.
    Established(ConnectionId, T, Vec<Health>),
    Health(ConnectionId, Health),
    /// The server's out-of-band load report.
    Load(ConnectionId, LoadReport),
    /// The server's answer to a probe, or why there is none.
    Probe(ConnectionId, Result<ProbeResult, String>),
    Failed(ConnectionId, String),
    Closed(ConnectionId, String),
}

/// Both ends of the channel connection tasks report on.
type Reports<T> = (
    async_channel::Sender<ConnectionReport<T>>,
    async_channel::Receiver<ConnectionReport<T>>,
);

/// Why the driver woke up.
enum Wake<T> {
    Input(Option<Input>),
    Connection(ConnectionReport<T>),
    Timer,
}

pub(crate) struct Driver<C: Connector> {
    pub(crate) balancer: Balancer,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) connector: Arc<C>,
    pub(crate) shared: Arc<Shared<Addressed<C::Connection>>>,
    pub(crate) inbox: async_channel::Receiver<Input>,
    pub(crate) resolve_now: Arc<ResolveNow>,
    pub(crate) resolver: Option<Task>,
    /// The names connection attempts are made under.
    pub(crate) names: Names,
    reports: Reports<C::Connection>,
    /// Connection attempts (and the watchers of the connections they made), by subchannel.
    tasks: HashMap<SubchannelId, (ConnectionId, Address, Task)>,
    /// Which connection is established, by subchannel.
    established: HashMap<SubchannelId, ConnectionId>,
    /// Probes in flight, at most one per subchannel (dropping one cancels it).
    probes: HashMap<SubchannelId, Task>,
    /// The established connections, as the next snapshot offers them to calls.
    offered: Connections<Addressed<C::Connection>>,
    connections_changed: bool,
    picker: Option<Arc<dyn Picker>>,
    state: Option<ConnectivityState>,
    last_error: Option<Arc<str>>,
    /// `subchannels()` queries to answer after the next publication.
    queries: Vec<async_channel::Sender<Vec<SubchannelInfo>>>,
    /// `snapshot()` queries, likewise.
    snapshots: Vec<async_channel::Sender<ChannelSnapshot>>,
    /// What the snapshot and the metrics need that the core does not keep.
    records: Records,
    /// Where the core's notices are logged.
    pub(crate) trace: Trace,
    /// What the core's notices of its policy count (gRFC A78).
    #[cfg(feature = "metrics")]
    policy_metrics: crate::metrics::PolicyMetrics,
}

/// Notices a channel keeps for its logs and metrics, enough for a burst of thousands of
/// endpoints connecting between two drains; none when neither is built in.
pub(crate) const NOTICE_CAPACITY: usize = if cfg!(any(feature = "tracing", feature = "metrics")) {
    65_536
} else {
    0
};

impl<C: Connector> Driver<C> {
    pub(crate) fn new(
        balancer: Balancer,
        runtime: Arc<dyn Runtime>,
        connector: Arc<C>,
        shared: Arc<Shared<Addressed<C::Connection>>>,
        inbox: async_channel::Receiver<Input>,
        resolve_now: Arc<ResolveNow>,
        target: Arc<str>,
    ) -> Self {
        let now = runtime.now();
        Driver {
            balancer,
            runtime,
            connector,
            shared,
            inbox,
            resolve_now,
            resolver: None,
            names: Names::default(),
            reports: async_channel::unbounded(),
            tasks: HashMap::new(),
            established: HashMap::new(),
            probes: HashMap::new(),
            offered: Connections::default(),
            connections_changed: false,
            picker: None,
            state: None,
            last_error: None,
            queries: Vec::new(),
            snapshots: Vec::new(),
            #[cfg(feature = "metrics")]
            policy_metrics: crate::metrics::PolicyMetrics::new(Arc::clone(&target)),
            records: Records::new(target, now),
            trace: Trace::new(""),
        }
    }

    /// Runs until every handle to the channel is gone, then drops every connection and task.
    pub(crate) async fn run(mut self) {
        let mut timer: Option<(Instant, BoxFuture<'static, ()>)> = None;
        loop {
            self.perform_actions();
            self.report_notices();
            self.publish();
            if !self.queries.is_empty() {
                let subchannels = self.balancer.subchannels();
                for reply in self.queries.drain(..) {
                    let _ = reply.try_send(subchannels.clone());
                }
            }
            if !self.snapshots.is_empty() {
                let snapshot = self.records.snapshot(
                    self.balancer.subchannels(),
                    self.balancer.endpoints(),
                    self.runtime.now(),
                );
                for reply in self.snapshots.drain(..) {
                    let _ = reply.try_send(snapshot.clone());
                }
            }
            let deadline = self.balancer.poll_timeout();
            if timer.as_ref().map(|(at, _)| Some(*at)) != Some(deadline) {
                timer = deadline.map(|at| (at, self.runtime.sleep_until(at)));
            }
            let wake = {
                let inbox = async { Wake::Input(self.inbox.recv().await.ok()) };
                let reports = async {
                    match self.reports.1.recv().await {
                        Ok(report) => Wake::Connection(report),
                        Err(_) => future::pending().await,
                    }
                };
                let sleep = async {
                    match timer.as_mut() {
                        Some((_, sleep)) => {
                            sleep.await;
                            Wake::Timer
                        }
                        None => future::pending().await,
                    }
                };
                future::or(inbox, future::or(reports, sleep)).await
            };
            let now = self.runtime.now();
            match wake {
                Wake::Input(None) => break,
                Wake::Input(Some(input)) => self.handle_input(input, now),
                Wake::Connection(report) => self.handle_report(report, now),
                Wake::Timer => {
                    timer = None;
                    self.balancer.handle_timeout(now);
                }
            }
            if self.take_waiting(now).is_err() {
                break;
            }
        }
        self.shutdown();
    }

    /// Hands the balancer every report and input already waiting, before any action is carried
    /// out, so a burst (thousands of connections completing at once) costs one drain of the
    /// actions and one published snapshot, not one per event. A batch takes at most
    /// [`BATCH_LIMIT`] inputs, so a flood cannot hold back the actions for ever. `Err` once every
    /// handle is gone.
    fn take_waiting(&mut self, now: Instant) -> Result<(), ()> {
        let mut taken = 0;
        while taken < BATCH_LIMIT {
            let mut took = false;
            if let Ok(report) = self.reports.1.try_recv() {
                self.handle_report(report, now);
                took = true;
            }
            match self.inbox.try_recv() {
                Ok(input) => {
                    self.handle_input(input, now);
                    took = true;
                }
                Err(async_channel::TryRecvError::Empty) => {}
                Err(async_channel::TryRecvError::Closed) => return Err(()),
            }
            if !took {
                break;
            }
            taken += 1;
        }
        Ok(())
    }

    fn shutdown(&mut self) {
        self.resolver = None;
        self.tasks.clear();
        self.probes.clear();
        for _ in self.established.drain() {
            self.records.disconnected("subchannel shutdown");
        }
        self.offered = Connections::default();
        self.shared.close();
    }

    fn handle_input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Resolved(update) => {
                self.records.resolved(&update, now);
                self.balancer.handle_resolver_update(update, now);
                // The names of the list in use: a refused list leaves them as they were.
                self.names.learn(self.balancer.endpoints());
            }
            Input::ResolverFailed(error) => {
                self.records.resolver_failed(&error, now);
                self.balancer.handle_resolver_error(error, now)
            }
            Input::CallEnded(subchannel, outcome) => {
                self.balancer.handle_call_outcome(subchannel, outcome, now)
            }
            Input::ExitIdle => {
                self.shared.take_exit_idle_request();
                self.balancer.exit_idle(now);
            }
            // Answered once the picker that reflects the same state is published.
            Input::Subchannels(reply) => self.queries.push(reply),
            Input::Snapshot(reply) => self.snapshots.push(reply),
        }
    }

    fn is_current(&self, connection: ConnectionId) -> bool {
        self.tasks
            .get(&connection.subchannel())
            .is_some_and(|(current, _, _)| *current == connection)
    }

    fn handle_report(&mut self, report: ConnectionReport<C::Connection>, now: Instant) {
        let subchannel = match &report {
            ConnectionReport::Established(connection, ..)
            | ConnectionReport::Health(connection, _)
            | ConnectionReport::Load(connection, _)
            | ConnectionReport::Probe(connection, _)
            | ConnectionReport::Failed(connection, _)
            | ConnectionReport::Closed(connection, _) => connection.subchannel(),
        };
        self.take_report(report, now);
        let state = self.balancer.subchannel_state(subchannel);
        self.records.observe(subchannel, state, now);
    }

    fn take_report(&mut self, report: ConnectionReport<C::Connection>, now: Instant) {
        match report {
            ConnectionReport::Established(connection, established, health) => {
                if !self.is_current(connection) {
                    return; // an attempt the core has given up on: drop what it made
                }
                self.offer(connection, established, now);
                self.balancer
                    .handle_connection_event(connection, ConnectionEvent::Connected, now);
                // Applied before the next picker is published: an unhealthy connection is
                // never offered to a call.
                for health in health {
                    self.handle_health(connection, health, now);
                }
            }
            ConnectionReport::Health(connection, health) => {
                if self.is_current(connection) {
                    self.handle_health(connection, health, now);
                }
            }
            ConnectionReport::Load(connection, report) => {
                if self.is_current(connection) {
                    self.balancer
                        .handle_load_report(connection.subchannel(), report, now);
                }
            }
            ConnectionReport::Probe(connection, answer) => {
                let subchannel = connection.subchannel();
                self.probes.remove(&subchannel);
                if let (Ok(result), Some(&current)) = (answer, self.established.get(&subchannel)) {
                    if current == connection {
                        self.balancer.handle_probe_result(subchannel, result, now);
                    }
                }
            }
            ConnectionReport::Failed(connection, reason) => {
                if !self.is_current(connection) {
                    return;
                }
                let reason = self.record_error(connection, &reason);
                self.tasks.remove(&connection.subchannel());
                self.records.attempt_failed();
                self.balancer.handle_connection_event(
                    connection,
                    ConnectionEvent::Failed(reason),
                    now,
                );
            }
            ConnectionReport::Closed(connection, reason) => {
                if !self.is_current(connection) {
                    return;
                }
                let reason = self.record_error(connection, &reason);
                self.tasks.remove(&connection.subchannel());
                self.withdraw(connection.subchannel(), &reason);
                self.balancer.handle_connection_event(
                    connection,
                    ConnectionEvent::Closed(reason),
                    now,
                );
            }
        }
    }

    fn handle_health(&mut self, connection: ConnectionId, health: Health, now: Instant) {
        let event = match health {
            Health::NotServing(reason) => {
                ConnectionEvent::Unhealthy(self.record_error(connection, &reason))
            }
            _ => ConnectionEvent::Healthy,
        };
        self.balancer
            .handle_connection_event(connection, event, now);
    }

    /// Records `reason` as the channel's last connection error, naming the address, and returns
    /// it for the balancer.
    fn record_error(&mut self, connection: ConnectionId, reason: &str) -> String {
        if let Some((_, address, _)) = self.tasks.get(&connection.subchannel()) {
            self.last_error = Some(format!("{address}: {reason}").into());
        }
        reason.to_owned()
    }

    fn perform_actions(&mut self) {
        let now = self.runtime.now();
        while let Some(action) = self.balancer.poll_action() {
            match action {
                Action::Connect {
                    connection,
                    address,
                    ..
                } => {
                    self.records
                        .attempt_started(connection.subchannel(), &address, now);
                    self.connect(connection, address);
                }
                Action::Disconnect { connection } => {
                    let subchannel = connection.subchannel();
                    let open = self.established.get(&subchannel) == Some(&connection);
                    let state = self.balancer.subchannel_state(subchannel);
                    if self.is_current(connection) {
                        self.tasks.remove(&subchannel);
                        if !open && state == Some(ConnectivityState::TransientFailure) {
                            // The core gave up on the attempt: its connect deadline passed (an
                            // attempt merely discarded is not counted, as gRFC A94 says).
                            self.records.attempt_failed();
                        }
                    }
                    if open {
                        self.withdraw(subchannel, "subchannel shutdown");
                    }
                    self.records.observe(subchannel, state, now);
                }
                Action::Shutdown { subchannel } => {
                    self.tasks.remove(&subchannel);
                    self.withdraw(subchannel, "subchannel shutdown");
                    self.records.observe(subchannel, None, now);
                    self.trace.forget(subchannel);
                }
                Action::ResolveNow => self.resolve_now.request(),
                Action::Probe { subchannel } => self.probe(subchannel),
                Action::StateChanged(state) => {
                    self.records.channel_state(state, now);
                    self.state = Some(state);
                }
                Action::UpdatePicker(picker) => self.picker = Some(picker),
                _ => {}
            }
        }
    }

    /// Hands every notice the balancer queued to what reports them.
    fn report_notices(&mut self) {
        while let Some(notice) = self.balancer.poll_notice() {
            self.trace.notice(&notice);
            #[cfg(feature = "metrics")]
            self.policy_metrics.notice(&notice);
        }
    }

    fn connect(&mut self, connection: ConnectionId, address: Address) {
        let attempt = self
            .connector
            .connect_with(&address, &self.names.context(&address));
        let reports = self.reports.0.clone();
        let task = Task::spawn(&self.runtime, async move {
            match attempt.await {
                Ok(Connected {
                    connection: established,
                    closed,
                    health,
                    load_reports,
                }) => {
                    let early = health
                        .as_ref()
                        .map(HealthWatch::pending)
                        .unwrap_or_default();
                    if reports
                        .send(ConnectionReport::Established(
                            connection,
                            established,
                            early,
                        ))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let forward = future::zip(
                        forward(health, &reports, |h| {
                            ConnectionReport::Health(connection, h)
                        }),
                        forward(load_reports, &reports, |l| {
                            ConnectionReport::Load(connection, l)
                        }),
                    );
                    let reason = future::or(closed, async {
                        forward.await;
                        future::pending().await
                    })
                    .await;
                    let _ = reports
                        .send(ConnectionReport::Closed(connection, reason))
                        .await;
                }
                Err(error) => {
                    let _ = reports
                        .send(ConnectionReport::Failed(connection, error.to_string()))
                        .await;
                }
            }
        });
        self.tasks
            .insert(connection.subchannel(), (connection, address, task));
    }

    /// Probes the server of `subchannel`'s established connection, unless a probe of it is
    /// still in flight or the connector cannot probe.
    fn probe(&mut self, subchannel: SubchannelId) {
        if self.probes.contains_key(&subchannel) {
            return;
        }
        let (Some(&connection), Some(established)) = (
            self.established.get(&subchannel),
            self.offered.get(&subchannel),
        ) else {
            return;
        };
        let Some(answer) = self.connector.probe(&established.connection) else {
            return;
        };
        let reports = self.reports.0.clone();
        let task = Task::spawn(&self.runtime, async move {
            let answer = answer.await;
            let _ = reports
                .send(ConnectionReport::Probe(connection, answer))
                .await;
        });
        self.probes.insert(subchannel, task);
    }

    /// Keeps the connection `connection` established, offered to calls from the next snapshot.
    fn offer(&mut self, connection: ConnectionId, established: C::Connection, now: Instant) {
        let subchannel = connection.subchannel();
        let Some((_, address, _)) = self.tasks.get(&subchannel) else {
            return;
        };
        let backend = Arc::clone(self.records.backend(subchannel, address, now));
        self.records.connected();
        let established = Addressed {
            connection: established,
            backend,
        };
        self.offered.insert(subchannel, established);
        self.established.insert(subchannel, connection);
        self.connections_changed = true;
    }

    /// Drops the connection of `subchannel`, if it has one, which ended because of `reason`.
    fn withdraw(&mut self, subchannel: SubchannelId, reason: &str) {
        self.probes.remove(&subchannel);
        if self.established.remove(&subchannel).is_some() {
            self.records.disconnected(reason);
            self.offered.remove(subchannel);
            self.connections_changed = true;
        }
    }

    /// Publishes a new snapshot if the picker, the state or the connections changed.
    fn publish(&mut self) {
        let picker = self.picker.take();
        let state = self.state.take();
        let wants_outcomes = self.balancer.wants_call_outcomes();
        let previous = self.shared.snapshot();
        let service_config = self.balancer.service_config();
        if picker.is_none()
            && state.is_none()
            && !self.connections_changed
            && wants_outcomes == previous.wants_outcomes
            && Arc::ptr_eq(service_config, &previous.service_config)
        {
            return;
        }
        let connections = if std::mem::take(&mut self.connections_changed) {
            // Shares every part of the map with the last snapshot but those that changed.
            Arc::new(self.offered.clone())
        } else {
            Arc::clone(&previous.connections)
        };
        self.shared.publish(Snapshot {
            generation: previous.generation + 1,
            picker: picker.unwrap_or_else(|| Arc::clone(&previous.picker)),
            connections,
            state: state.unwrap_or(previous.state),
            last_error: self.last_error.clone(),
            wants_outcomes,
            retry_throttle: previous.throttle_for(service_config),
            service_config: Arc::clone(service_config),
        });
    }
}

/// Passes each report of `watch` (if there is one) to the driver as `report` makes it, until
/// the watch or the driver ends.
async fn forward<R, T>(
    watch: Option<Watch<R>>,
    reports: &async_channel::Sender<ConnectionReport<T>>,
    report: impl Fn(R) -> ConnectionReport<T>,
) {
    let Some(watch) = watch else {
        return;
    };
    while let Some(next) = watch.next().await {
        if reports.send(report(next)).await.is_err() {
            return;
        }
    }
}
