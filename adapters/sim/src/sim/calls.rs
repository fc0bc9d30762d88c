//! Calls: issued by each client's Poisson process, routed by its balancer's picker (or by a
//! reference router), and answered.

use std::time::Duration;

use croupier::{CallOutcome, Code, Pick, PickRequest, SubchannelId};

use super::{seconds, Call, CallId, Event, LoadReport, Sim};
use crate::dist::exponential;
use crate::router::Router;

impl Sim<'_> {
    pub(super) fn schedule_arrival(&mut self, client: usize) {
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

    pub(super) fn arrival(&mut self, client: usize) {
        let work = self
            .scenario
            .service
            .unit_work(&mut self.clients[client].arrivals);
        let scenario = self.scenario;
        if let Some(spec) = scenario.retry.as_ref() {
            return self.arrival_retried(client, work, spec.policy());
        }
        let call = self.calls.len();
        self.calls.push(Call {
            client,
            issued: self.now,
            picked: self.now,
            work,
            backend: usize::MAX,
            epoch: 0,
            subchannel: None,
            note: croupier::PickNote::NONE,
            ok: false,
            load: LoadReport::default(),
            retry: None,
            cancelled: false,
            service_end: Duration::ZERO,
            delivered: Duration::ZERO,
            arrived: None,
        });
        self.recorder.issued(self.now);
        self.pending += 1;
        self.schedule_arrival(client);
        self.dispatch(client, call);
    }

    /// Sends `call` of `client` on its way: picked from the client's balancer (waiting for the
    /// next picker if it must), or routed by the reference router.
    pub(super) fn dispatch(&mut self, client: usize, call: CallId) {
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
    pub(super) fn pick(&mut self, call: CallId) -> bool {
        let client = self.calls[call].client;
        if self.calls[call].cancelled {
            // A hedge cancelled while it waited for a picker: it is dropped unsent.
            return false;
        }
        let (hash, tried) = match self.calls[call].retry {
            // Every attempt of a call carries the call's hash, and the subchannels tried so far.
            Some((retried, _)) => (self.retried[retried].hash, self.retried[retried].tried()),
            None => (self.clients[client].hashes.next_u64(), &[][..]),
        };
        let Some(picker) = self.clients[client].picker.as_ref() else {
            return true;
        };
        let (pick, note) =
            picker.pick_with_note(&PickRequest::new().with_hash(hash).with_tried(tried));
        self.calls[call].note = note;
        match pick {
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
        if self.calls[call].retry.is_some() {
            // An attempt that finds no backend ends at once, a failure its policy may go past.
            self.calls[call].ok = false;
            self.schedule(self.now, Event::Respond { call });
            return;
        }
        self.pending = self.pending.saturating_sub(1);
        self.calls[call].ok = false;
        let issued = self.calls[call].issued;
        self.recorder.failed(issued);
    }

    pub(super) fn route_reference(&mut self, call: CallId) {
        let by_delay = matches!(self.router, Router::ShortestExpectedDelay);
        let mut best: Option<((f64, f64), usize)> = None;
        let mut ties = 0u64;
        for (index, backend) in self.backends.iter().enumerate() {
            if !backend.up || !backend.listed {
                continue;
            }
            let cost = if by_delay {
                // A backend with a free slot starts the call at once: its expected delay is one
                // service time. Ties go to the least work held with the call, (n + 1) x mean.
                let with_call = (backend.outstanding() + 1) as f64;
                let mean = backend.current_mean();
                (
                    mean * (with_call / backend.slots as f64).max(1.0),
                    with_call * mean,
                )
            } else {
                (backend.outstanding() as f64, 0.0)
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
        let c = &mut self.calls[call];
        c.backend = backend;
        c.epoch = epoch;
        c.subchannel = subchannel;
        c.picked = self.now;
        let (client, issued) = (c.client, c.issued);
        self.recorder.sent(client, backend, issued, self.now);
        if self.calls[call].retry.is_some() {
            self.attempt_sent(call);
        }
        self.after(self.link(client, backend), Event::Deliver { call });
    }

    pub(super) fn respond(&mut self, call: CallId) {
        if self.calls[call].retry.is_some() {
            return self.attempt_responded(call);
        }
        let c = &self.calls[call];
        let (issued, ok, backend) = (c.issued, c.ok, c.backend);
        let latency = self.now.saturating_sub(issued);
        self.pending = self.pending.saturating_sub(1);
        if ok {
            self.recorder.succeeded(backend, issued, latency);
        } else {
            self.recorder.failed(issued);
        }
        let code = if ok { Code::Ok } else { Code::Unavailable };
        self.report_outcome(call, code);
    }

    /// Tells the call's balancer, if it wants call outcomes, that the call (or attempt) picked
    /// from it ended now with `code`; the latency runs from its pick.
    pub(super) fn report_outcome(&mut self, call: CallId, code: Code) {
        let c = &self.calls[call];
        let (Some(subchannel), picked, client) = (c.subchannel, c.picked, c.client) else {
            return;
        };
        let (load, note) = (c.load, c.note);
        let now = self.at(self.now);
        let Some(lb) = self.clients[client].lb.as_mut() else {
            return;
        };
        if lb.wants_call_outcomes() {
            let ok = code == Code::Ok;
            let mut outcome =
                CallOutcome::new(code, self.now.saturating_sub(picked)).with_note(note);
            if ok && load.qps > 0.0 {
                // The backend's load report rides on its response (weighted_round_robin).
                let report = croupier::LoadReport::new(load.qps, load.utilization);
                outcome = outcome.with_load(report);
            }
            lb.handle_call_outcome(subchannel, outcome, now);
            self.settle(client);
        }
    }
}
