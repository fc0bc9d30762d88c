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
        } else {
            self.calls[call].arrived = Some(b.probed.call_started());
            self.calls[call].delivered = self.now;
            if b.serving.len() < b.slots {
                self.start_service(backend, call);
            } else {
                b.queue.push_back(call);
            }
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
        // The work is counted whole now, and what a crash or a cancel spares is taken back.
        self.calls[call].service_end = at;
        self.recorder
            .worked(self.calls[call].issued, at.saturating_sub(self.now), true);
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
        let at = self.at(self.now);
        let b = &mut self.backends[backend];
        if b.epoch != epoch {
            return;
        }
        let Some(position) = b.serving.iter().position(|&c| c == call) else {
            // Its work was stopped by a cancel.
            return;
        };
        b.meter.account(self.now, b.serving.len(), b.slots);
        b.serving.swap_remove(position);
        b.meter.finished += 1;
        let took = self.now.saturating_sub(self.calls[call].delivered);
        if let Some(arrived) = self.calls[call].arrived.take() {
            b.probed.call_finished(arrived, took, at);
        }
        let load = b.meter.report;
        let next = b.queue.pop_front();
        let rate = b.error_rate;
        // Drawn only for a partial failure rate, so runs without one draw exactly as before.
        let fails = rate >= 1.0 || (rate > 0.0 && self.fleet_rng.unit() < rate);
        let c = &mut self.calls[call];
        c.ok = !fails;
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
            FleetEvent::Errors {
                backend,
                probability,
            } => {
                if let Some(b) = self.backends.get_mut(backend) {
                    b.error_rate = if probability.is_finite() {
                        probability.clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                }
            }
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

    /// Takes back the part of `call`'s service it will not get (it stops now).
    fn spare_work(&mut self, call: CallId) {
        let c = &self.calls[call];
        let spared = c.service_end.saturating_sub(self.now);
        self.recorder.worked(c.issued, spared, false);
    }

    /// A cancel reached `call`'s backend, which drops it: out of the queue, or out of its slot,
    /// which the next queued call takes. A call the backend no longer holds is left alone.
    pub(super) fn stop(&mut self, call: CallId) {
        let backend = self.calls[call].backend;
        let Some(b) = self.backends.get_mut(backend) else {
            return;
        };
        if !b.up || b.epoch != self.calls[call].epoch {
            return;
        }
        // Held, so counted in flight: no longer, and without a sample.
        if let Some(arrived) = self.calls[call].arrived.take() {
            b.probed.call_abandoned(arrived);
        }
        if let Some(position) = b.queue.iter().position(|&c| c == call) {
            b.queue.remove(position);
        } else if let Some(position) = b.serving.iter().position(|&c| c == call) {
            b.meter.account(self.now, b.serving.len(), b.slots);
            b.serving.swap_remove(position);
            let next = b.queue.pop_front();
            self.spare_work(call);
            if let Some(next) = next {
                self.start_service(backend, next);
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
        b.probed = croupier::ServerLoad::new();
        let serving = b.serving.len();
        let lost: Vec<CallId> = b.serving.drain(..).chain(b.queue.drain(..)).collect();
        for &call in &lost[..serving] {
            self.spare_work(call);
        }
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
