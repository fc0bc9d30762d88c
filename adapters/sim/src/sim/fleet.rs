//! The backends: FIFO servers with slots, and what happens to them over time.

use croupier::{ConnectionEvent, ConnectionId};

use super::{backend_address, seconds, CallId, Event, LoadMeter, Sim};
use crate::scenario::FleetEvent;

impl Sim<'_> {
    pub(super) fn deliver(&mut self, call: CallId) {
        let backend = self.calls[call].backend;
        let b = &mut self.backends[backend];
        if !b.up || b.epoch != self.calls[call].epoch {
            // The connection it travelled on died with the backend.
            self.calls[call].ok = false;
            self.send_back(call);
        } else if b.serving.len() < b.slots {
            self.start_service(backend, call);
        } else {
            b.queue.push_back(call);
        }
    }

    /// The response (or the news of a failure) travels back over the call's link.
    fn send_back(&mut self, call: CallId) {
        let delay = self.link(self.calls[call].client, self.calls[call].backend);
        self.after(delay, Event::Respond { call });
    }

    fn start_service(&mut self, backend: usize, call: CallId) {
        let b = &mut self.backends[backend];
        b.meter.account(self.now, b.serving.len(), b.slots);
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

    pub(super) fn served(&mut self, backend: usize, call: CallId, epoch: u64) {
        let b = &mut self.backends[backend];
        if b.epoch != epoch {
            return;
        }
        b.meter.account(self.now, b.serving.len(), b.slots);
        if let Some(position) = b.serving.iter().position(|&c| c == call) {
            b.serving.swap_remove(position);
        }
        b.meter.finished += 1;
        let load = b.meter.report;
        let next = b.queue.pop_front();
        let c = &mut self.calls[call];
        c.ok = true;
        c.load = load;
        self.send_back(call);
        if let Some(next) = next {
            self.start_service(backend, next);
        }
    }

    pub(super) fn fleet(&mut self, index: usize) {
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
                        b.meter = LoadMeter::restart(self.now);
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
        b.meter.account(self.now, b.serving.len(), b.slots);
        b.up = false;
        b.epoch += 1;
        let lost: Vec<CallId> = b.serving.drain(..).chain(b.queue.drain(..)).collect();
        for call in lost {
            self.calls[call].ok = false;
            self.send_back(call);
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
