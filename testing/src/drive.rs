//! Running the simulated adapter by itself: attempts to connect end as the harness's script says,
//! timers fire in virtual time, and a policy that never settles is reported as a livelock.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use croupier::{ConnectionEvent, ConnectionId};

use crate::harness::{Harness, Seen};

/// How many rounds [`Harness::drive`] runs at one instant, by default, before it calls the
/// balancer livelocked: far more than any built-in policy needs to settle after one input.
pub const DEFAULT_DRIVE_LIMIT: u32 = 10_000;

/// How many of the last actions a [`DriveError::Livelock`] quotes.
const QUOTED: usize = 8;

/// How an attempt to connect ends when the harness drives itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectOutcome {
    /// The attempt connects at once.
    Connect,
    /// The attempt is refused at once.
    Refuse,
    /// The attempt stays in flight: the test reports how it ends, or its deadline passes.
    Hang,
}

impl ConnectOutcome {
    /// The event the adapter reports for an attempt to `address` ending so, if it ends.
    fn event(self, address: &croupier::Address) -> Option<ConnectionEvent> {
        match self {
            ConnectOutcome::Connect => Some(ConnectionEvent::Connected),
            ConnectOutcome::Refuse => Some(ConnectionEvent::Failed(format!(
                "connection refused by {address} (scripted)"
            ))),
            ConnectOutcome::Hang => None,
        }
    }
}

/// Why the harness stopped driving the balancer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriveError {
    /// The balancer still had something to do after this many rounds at one instant: a policy
    /// that reacts to its own actions forever, or a timer that keeps coming due.
    Livelock {
        /// The rounds run at that instant.
        rounds: u32,
        /// The instant, as virtual time since the harness's start.
        at: Duration,
        /// The last actions seen, oldest first.
        recent: Vec<Seen>,
    },
}

impl fmt::Display for DriveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriveError::Livelock { rounds, at, recent } => write!(
                f,
                "the balancer is livelocked: still busy after {rounds} rounds at {at:?} of \
                 virtual time; its last actions: {recent:?}"
            ),
        }
    }
}

impl Error for DriveError {}

impl Harness {
    /// Scripts how attempts to `address` end when the harness drives itself.
    pub fn script(&mut self, address: croupier::Address, outcome: ConnectOutcome) {
        self.script.insert(address, outcome);
    }

    /// Scripts how attempts to every address not given its own script end.
    pub fn script_unlisted(&mut self, outcome: ConnectOutcome) {
        self.unlisted = outcome;
    }

    /// How an attempt to `address` ends, by the script.
    pub fn outcome_for(&self, address: &croupier::Address) -> ConnectOutcome {
        self.script.get(address).copied().unwrap_or(self.unlisted)
    }

    /// Runs the simulated adapter at the current instant until nothing is left to do: carries
    /// out every queued action, ends every attempt in flight as scripted, fires every timer due,
    /// and again, until no action is queued, no scripted attempt is in flight and no timer is
    /// due. Virtual time stands still (see [`Harness::drive_for`]).
    ///
    /// After [`Harness::drive_limit`] rounds with something still to do it stops with
    /// [`DriveError::Livelock`].
    pub fn drive(&mut self) -> Result<Vec<Seen>, DriveError> {
        let mut out = self.drain();
        self.settle(&mut out)?;
        Ok(out)
    }

    /// Runs the simulated adapter for `by` of virtual time: [`Harness::drive`] now, then at each
    /// instant a timer comes due on the way, then the clock stands at the end.
    pub fn drive_for(&mut self, by: Duration) -> Result<Vec<Seen>, DriveError> {
        let mut out = self.drain();
        self.settle(&mut out)?;
        self.run_timers_for(by, &mut out)?;
        Ok(out)
    }

    /// Moves the clock forward by `by`, running every timer that comes due on the way (and
    /// ending attempts as scripted, if the script says how).
    ///
    /// # Panics
    ///
    /// If the balancer livelocks at an instant on the way (see [`DriveError::Livelock`]).
    pub fn advance(&mut self, by: Duration) -> Vec<Seen> {
        let mut out = Vec::new();
        if let Err(error) = self.run_timers_for(by, &mut out) {
            panic!("{error}");
        }
        out
    }

    /// Moves the clock to each instant a timer comes due within `by`, settling at each.
    fn run_timers_for(&mut self, by: Duration, out: &mut Vec<Seen>) -> Result<(), DriveError> {
        let end = self.now.checked_add(by).unwrap_or(self.now);
        while let Some(at) = self.lb.poll_timeout() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.settle(out)?;
        }
        self.now = end;
        Ok(())
    }

    /// Ends scripted attempts and fires due timers at the current instant until neither is left,
    /// each followed by the actions it queued (every input here drains them).
    fn settle(&mut self, out: &mut Vec<Seen>) -> Result<(), DriveError> {
        let mut rounds = 0;
        loop {
            let ending = self.scripted_endings();
            let due = self.lb.poll_timeout().is_some_and(|at| at <= self.now);
            if ending.is_empty() && !due {
                return Ok(());
            }
            if rounds == self.drive_limit {
                let from = out.len().saturating_sub(QUOTED);
                return Err(DriveError::Livelock {
                    rounds,
                    at: self.elapsed(),
                    recent: out[from..].to_vec(),
                });
            }
            rounds += 1;
            for (connection, event) in ending {
                // An earlier ending may have cancelled this attempt (happy eyeballs does).
                if self.attempts_in_flight().contains(&connection) {
                    out.extend(self.report(connection, event));
                }
            }
            if due {
                self.lb.handle_timeout(self.now);
                out.extend(self.drain());
            }
        }
    }

    /// The attempts in flight that the script ends, with the event that ends each.
    fn scripted_endings(&self) -> Vec<(ConnectionId, ConnectionEvent)> {
        self.attempts
            .values()
            .filter_map(|(connection, address)| {
                let event = self.outcome_for(address).event(address)?;
                Some((*connection, event))
            })
            .collect()
    }
}
