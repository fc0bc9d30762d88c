//! The adapter's side of each client's balancer: carry out its actions, report what happened,
//! re-pick waiting calls after each new picker, and honour its timers.

use croupier::{
    Action, Address, Balancer, ConnectionEvent, ConnectionId, Endpoint, ResolverUpdate,
};

use super::{backend_address, Conn, Event, Sim, MAX_RETRY_ROUNDS, RESOLVE_DELAY};

impl Sim<'_> {
    pub(super) fn exit_idle(&mut self, client: usize) {
        let now = self.at(self.now);
        if let Some(lb) = self.clients[client].lb.as_mut() {
            lb.exit_idle(now);
        }
    }

    /// Carries out what the balancer asks, re-picks waiting calls after each new picker, and
    /// schedules its next timer: what an adapter does after every input.
    pub(super) fn settle(&mut self, client: usize) {
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
            // Every pick that queued is followed by an exit_idle, as in the real adapters: a
            // re-pick may have flagged an endpoint that the last exit_idle did not see.
            if !self.clients[client].waiting.is_empty() {
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
                Action::Probe { subchannel } => self.send_probe(client, subchannel),
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
        let round_trip = self.link(client, backend).saturating_mul(2);
        self.after(
            self.scenario.connect.setup.saturating_add(round_trip),
            Event::ConnectDone { client, connection },
        );
    }

    pub(super) fn connect_done(&mut self, client: usize, connection: ConnectionId) {
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

    pub(super) fn report(
        &mut self,
        client: usize,
        connection: ConnectionId,
        event: ConnectionEvent,
    ) {
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

    pub(super) fn resolve(&mut self, client: usize) {
        let endpoints: Vec<Endpoint> = (0..self.backends.len())
            .filter(|&i| self.backends[i].listed)
            .map(|i| {
                let endpoint = Endpoint::new(backend_address(i));
                match self.scenario.backends.get(i) {
                    Some(spec) if !spec.hierarchy.is_empty() => {
                        endpoint.hierarchy(spec.hierarchy.iter().map(String::as_str))
                    }
                    _ => endpoint,
                }
            })
            .collect();
        let now = self.at(self.now);
        if let Some(lb) = self.clients[client].lb.as_mut() {
            lb.handle_resolver_update(ResolverUpdate::new(endpoints), now);
        }
        self.settle(client);
    }
}
