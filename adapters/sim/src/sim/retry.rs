//! Calls under a retry or hedging policy: each runs the core's [`RetryCall`] and carries out what
//! it asks, as a real channel would. Every attempt is a call of its own to the fleet: picked from
//! the client's newest picker (naming the subchannels its call already tried), served by its
//! backend, and reported to the balancer when it ends or is cancelled.
//!
//! A hedge is the same request again: it carries the call's amount of work, so hedging gains only
//! what a slow or crowded backend costs, never a luckier draw of the work itself.

use std::time::Duration;

use croupier::retry::{AttemptId, CallPolicy, Pushback, RetryAction, RetryCall};
use croupier::{Code, SubchannelId};

use super::{Call, CallId, Event, LoadReport, Sim};
use crate::retry::Cancellation;

/// One call run under the scenario's policy.
#[derive(Debug)]
pub(super) struct Retried {
    /// `None` once the call finished.
    machine: Option<RetryCall>,
    client: usize,
    issued: Duration,
    work: f64,
    /// The request hash every attempt carries (ring_hash sends them to the same backend).
    pub(super) hash: u64,
    /// Its attempts so far, each with the call record that carries it to a backend.
    attempts: Vec<(AttemptId, CallId)>,
    /// The subchannels its attempts were sent on, oldest first.
    tried: Vec<SubchannelId>,
    /// The backends its attempts were sent to.
    backends: Vec<usize>,
    /// When its machine's timeout is scheduled.
    timer: Option<Duration>,
}

impl Retried {
    pub(super) fn tried(&self) -> &[SubchannelId] {
        &self.tried
    }
}

impl Sim<'_> {
    /// A call issued under the scenario's policy: its machine starts the first attempt.
    pub(super) fn arrival_retried(&mut self, client: usize, work: f64, policy: &CallPolicy) {
        let channel = self.clients[client].retry.clone().unwrap_or_default();
        let seed = self.clients[client].retry_seeds.next_u64();
        let machine = RetryCall::new(policy.clone(), channel, seed, self.at(self.now));
        let hash = self.clients[client].hashes.next_u64();
        let retried = self.retried.len();
        self.retried.push(Retried {
            machine: Some(machine),
            client,
            issued: self.now,
            work,
            hash,
            attempts: Vec::new(),
            tried: Vec::new(),
            backends: Vec::new(),
            timer: None,
        });
        self.recorder.issued(self.now);
        self.pending += 1;
        self.schedule_arrival(client);
        self.drive(retried);
    }

    /// Carries out what the call's machine asks, then schedules its timeout.
    fn drive(&mut self, retried: usize) {
        while let Some(action) = self.retried[retried]
            .machine
            .as_mut()
            .and_then(RetryCall::poll_action)
        {
            match action {
                RetryAction::Start { attempt, .. } => self.start_attempt(retried, attempt),
                // An attempt past its perAttemptRecvTimeout is cancelled as a losing hedge is;
                // a simulated answer comes whole, so the timeout bounds the whole attempt.
                RetryAction::Cancel(attempt) | RetryAction::TimedOut(attempt) => {
                    self.cancel_attempt(retried, attempt)
                }
                RetryAction::Finish { attempt, code } => self.finish(retried, attempt, code),
                // Commit: nothing to free, the simulated request is not buffered.
                _ => {}
            }
        }
        let r = &mut self.retried[retried];
        let due = r.machine.as_ref().and_then(RetryCall::poll_timeout);
        let due = due.map(|at| at.saturating_duration_since(self.origin).max(self.now));
        if due != r.timer {
            r.timer = due;
            if let Some(at) = due {
                self.schedule(at, Event::RetryTimer { retried });
            }
        }
    }

    pub(super) fn retry_timer(&mut self, retried: usize) {
        let now = self.at(self.now);
        let Some(r) = self.retried.get_mut(retried) else {
            return;
        };
        if r.timer != Some(self.now) {
            return;
        }
        r.timer = None;
        if let Some(machine) = r.machine.as_mut() {
            machine.handle_timeout(now);
        }
        self.drive(retried);
    }

    fn attempt_call(&self, retried: usize, attempt: AttemptId) -> Option<CallId> {
        let attempts = &self.retried[retried].attempts;
        attempts
            .iter()
            .find(|(a, _)| *a == attempt)
            .map(|&(_, call)| call)
    }

    fn start_attempt(&mut self, retried: usize, attempt: AttemptId) {
        let r = &self.retried[retried];
        let (client, issued, work) = (r.client, r.issued, r.work);
        let call = self.calls.len();
        self.calls.push(Call {
            client,
            issued,
            picked: self.now,
            work,
            backend: usize::MAX,
            epoch: 0,
            subchannel: None,
            note: croupier::PickNote::NONE,
            ok: false,
            load: LoadReport::default(),
            retry: Some((retried, attempt)),
            cancelled: false,
            service_end: Duration::ZERO,
            delivered: Duration::ZERO,
            arrived: None,
        });
        self.retried[retried].attempts.push((attempt, call));
        self.dispatch(client, call);
    }

    /// An attempt left for its backend: later attempts of its call learn where it went.
    pub(super) fn attempt_sent(&mut self, call: CallId) {
        let c = &self.calls[call];
        let Some((retried, _)) = c.retry else {
            return;
        };
        let (backend, subchannel, issued) = (c.backend, c.subchannel, c.issued);
        let r = &mut self.retried[retried];
        let repeated = r.backends.contains(&backend);
        r.backends.push(backend);
        if let Some(subchannel) = subchannel {
            if !r.tried.contains(&subchannel) {
                r.tried.push(subchannel);
            }
        }
        if repeated {
            self.recorder.repeated_backend(issued);
        }
    }

    /// The client resets the attempt's stream: the balancer hears it ended `CANCELLED` (as a
    /// real channel's call guard reports it), and the cancel travels to the backend.
    fn cancel_attempt(&mut self, retried: usize, attempt: AttemptId) {
        let Some(call) = self.attempt_call(retried, attempt) else {
            return;
        };
        if std::mem::replace(&mut self.calls[call].cancelled, true) {
            return;
        }
        let (client, backend) = (self.calls[call].client, self.calls[call].backend);
        if backend == usize::MAX {
            // Still waiting for a picker: it is dropped when the waiting calls are next picked.
            return;
        }
        self.report_outcome(call, Code::Cancelled);
        self.after(self.link(client, backend), Event::CancelArrives { call });
    }

    pub(super) fn cancel_arrives(&mut self, call: CallId) {
        let stops = self
            .scenario
            .retry
            .as_ref()
            .is_some_and(|spec| spec.cancels() == Cancellation::StopsWork);
        if stops {
            self.stop(call);
        }
    }

    /// An attempt's answer reached the client (or it found no backend): the balancer hears of it
    /// and the machine decides what comes next. A cancelled attempt's answer is dropped.
    pub(super) fn attempt_responded(&mut self, call: CallId) {
        let c = &self.calls[call];
        let Some((retried, attempt)) = c.retry else {
            return;
        };
        if c.cancelled {
            return;
        }
        let code = if c.ok { Code::Ok } else { Code::Unavailable };
        self.report_outcome(call, code);
        let now = self.at(self.now);
        if let Some(machine) = self.retried[retried].machine.as_mut() {
            machine.handle_attempt_end(attempt, code, Pushback::None, now);
        }
        self.drive(retried);
    }

    /// The call is over, with `attempt`'s answer: counted from its issue to now.
    fn finish(&mut self, retried: usize, attempt: AttemptId, code: Code) {
        let r = &mut self.retried[retried];
        r.machine = None;
        r.timer = None;
        let issued = r.issued;
        self.pending = self.pending.saturating_sub(1);
        let backend = self
            .attempt_call(retried, attempt)
            .map_or(usize::MAX, |call| self.calls[call].backend);
        if code == Code::Ok {
            let latency = self.now.saturating_sub(issued);
            self.recorder.succeeded(backend, issued, latency);
        } else {
            self.recorder.failed(issued);
        }
    }
}
