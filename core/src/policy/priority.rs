//! priority: children in priority order, calls to the highest one that can serve them, with
//! failover to the next when it cannot (gRFC A56).
//!
//! Each child is a policy of its own, fed the endpoints whose hierarchy path
//! ([`Attributes::hierarchy`](crate::Attributes::hierarchy)) names it first; an endpoint whose
//! path names no child goes to none (gRPC's way: its resolvers place every endpoint). Children
//! are created lazily, highest first:
//!
//! - a child is started, and its **failover timer** (10 s) with it, only when every higher child
//!   has failed; the timer starts again whenever a started child goes from READY or IDLE back
//!   to CONNECTING, and stops when it reports READY, IDLE or TRANSIENT_FAILURE;
//! - the **chosen** child is the highest that is READY or IDLE, or CONNECTING with its failover
//!   timer running; a child that reported TRANSIENT_FAILURE counts as failed until it reports
//!   READY or IDLE again, and a CONNECTING one whose timer fired counts as failed too; with every
//!   child failed, the lowest is chosen;
//! - the channel shows the chosen child's state and picker, so a higher child that becomes READY
//!   takes the calls back at once;
//! - children below the chosen one are no longer needed: each is kept, connections and all, for
//!   the **retention** interval (15 min) in case it is needed again, then removed with its
//!   subchannels; children above it keep reconnecting.
//!
//! Every child that exists gets each resolver update (its share of it) and resolver error.

use std::sync::Arc;
use std::time::Instant;

use crate::address::Endpoint;
use crate::backoff::later;
use crate::picker::{FailPicker, Picker};
use crate::policy::children::{any_wants_call_outcomes, group_by_child, Children, Published};
use crate::policy::tree::TreeLevel;
use crate::policy::{Controller, TimerToken};
use crate::status::{ConnectivityState, Status};

mod config;

pub use config::{PriorityChild, PriorityConfig};

/// Timer kinds, in the low bit of a token's kind; the child's slot is in the rest.
const FAILOVER: u32 = 0;
const RETENTION: u32 = 1;

fn token(slot: u32, kind: u32) -> TimerToken {
    TimerToken::new(slot << 1 | kind)
}

/// What priority tracks of each child besides what the child published.
#[derive(Clone, Copy, Debug, Default)]
struct Tracking {
    /// When the failover timer fires, while it runs.
    failover: Option<Instant>,
    /// When the child is removed, while it is not needed.
    retention: Option<Instant>,
    /// It reported TRANSIENT_FAILURE and not READY or IDLE since.
    failed: bool,
    /// The state it last reported.
    seen: Option<ConnectivityState>,
}

/// The priority policy.
#[derive(Debug)]
pub(crate) struct Priority {
    config: PriorityConfig,
    names: Vec<Arc<str>>,
    children: Children,
    tracking: Vec<Tracking>,
    /// Each child's share of the latest update.
    endpoints: Vec<Vec<Endpoint>>,
    /// Endpoints of the latest update that named no child, and how many there were in all.
    unplaced: (usize, usize),
    /// The child chosen last.
    current: Option<u32>,
    /// Whether some configured child learns from call outcomes.
    wants_outcomes: bool,
    published: Published,
}

impl Priority {
    pub(crate) fn new(config: PriorityConfig) -> Self {
        let names: Vec<Arc<str>> = config.children.iter().map(|c| c.name.clone()).collect();
        let quiet = config
            .children
            .iter()
            .map(|c| c.ignore_reresolution_requests)
            .collect();
        Priority {
            tracking: vec![Tracking::default(); names.len()],
            endpoints: vec![Vec::new(); names.len()],
            children: Children::new(quiet),
            names,
            current: None,
            wants_outcomes: any_wants_call_outcomes(config.children.iter().map(|c| &c.policy)),
            unplaced: (0, 0),
            published: Published::default(),
            config,
        }
    }

    /// Updates each child's timers and failure flag from what it published since last time.
    fn note_changes(&mut self, ctl: &mut dyn Controller) {
        let now = ctl.now();
        for slot in self.children.take_changed() {
            let Some(state) = self.children.get(slot).map(|child| child.state()) else {
                continue;
            };
            let timeout = self.config.failover_timeout;
            let track = &mut self.tracking[slot as usize];
            let before = track.seen.replace(state);
            match state {
                ConnectivityState::Ready | ConnectivityState::Idle => {
                    track.failed = false;
                    track.failover = None;
                }
                ConnectivityState::TransientFailure => {
                    track.failed = true;
                    track.failover = None;
                }
                ConnectivityState::Connecting => {
                    let was_up = matches!(
                        before,
                        Some(ConnectivityState::Ready | ConnectivityState::Idle)
                    );
                    if was_up {
                        let at = later(now, timeout);
                        track.failover = Some(at);
                        ctl.set_timer(at, token(slot, FAILOVER));
                    }
                }
                _ => {}
            }
        }
    }

    /// Starts the child in `slot`, its failover timer running.
    fn start(&mut self, slot: u32, ctl: &mut dyn Controller) {
        let at = later(ctl.now(), self.config.failover_timeout);
        self.tracking[slot as usize] = Tracking {
            failover: Some(at),
            ..Tracking::default()
        };
        ctl.set_timer(at, token(slot, FAILOVER));
        let policy = self.config.children[slot as usize].policy.build();
        self.children
            .create(slot, policy, &self.endpoints[slot as usize], ctl);
        self.note_changes(ctl);
    }

    /// Whether the child in `slot` (which exists) can be chosen.
    fn usable(&self, slot: u32) -> bool {
        let track = &self.tracking[slot as usize];
        match self.children.get(slot).map(|child| child.state()) {
            Some(ConnectivityState::Ready) => true,
            Some(ConnectivityState::Idle) => !track.failed,
            Some(ConnectivityState::Connecting) => !track.failed && track.failover.is_some(),
            _ => false,
        }
    }

    /// A56's choice of priority, then the lower children's retention, then the publication.
    fn choose(&mut self, ctl: &mut dyn Controller) {
        self.note_changes(ctl);
        let count = self.names.len() as u32;
        if count == 0 {
            let status = Status::unavailable("priority has no children configured");
            let picker: Arc<dyn Picker> = Arc::new(FailPicker::new(status));
            self.published
                .publish(ConnectivityState::TransientFailure, &picker, ctl);
            return;
        }
        let mut chosen = count - 1;
        for slot in 0..count {
            if self.children.get(slot).is_none() {
                self.start(slot, ctl);
            }
            self.tracking[slot as usize].retention = None;
            if self.usable(slot) {
                chosen = slot;
                break;
            }
        }
        let now = ctl.now();
        for slot in chosen + 1..count {
            let track = &mut self.tracking[slot as usize];
            if self.children.get(slot).is_some() && track.retention.is_none() {
                let at = later(now, self.config.retention);
                track.retention = Some(at);
                ctl.set_timer(at, token(slot, RETENTION));
            }
        }
        self.current = Some(chosen);
        self.publish(chosen, ctl);
    }

    /// Shows the chosen child's state and picker (in TRANSIENT_FAILURE with an update that
    /// placed no endpoint anywhere, a picker that says why).
    fn publish(&mut self, chosen: u32, ctl: &mut dyn Controller) {
        let Some(child) = self.children.get(chosen) else {
            return;
        };
        let state = child.state();
        let (unplaced, total) = self.unplaced;
        if state == ConnectivityState::TransientFailure && total > 0 && unplaced == total {
            let message = format!(
                "priority: none of the {total} endpoints has a hierarchy path naming one of its \
                 children ({})",
                self.names.join(", ")
            );
            let picker: Arc<dyn Picker> = Arc::new(FailPicker::new(Status::unavailable(message)));
            self.published.publish(state, &picker, ctl);
        } else {
            let picker = Arc::clone(child.picker());
            self.published.publish(state, &picker, ctl);
        }
    }
}

impl TreeLevel for Priority {
    fn name(&self) -> &'static str {
        "priority"
    }

    fn children(&mut self) -> &mut Children {
        &mut self.children
    }

    fn children_ref(&self) -> &Children {
        &self.children
    }

    fn published(&mut self) -> &mut Published {
        &mut self.published
    }

    fn share(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller) {
        let (groups, unplaced) = group_by_child(endpoints, &self.names);
        self.unplaced = (unplaced, endpoints.len());
        self.endpoints = groups;
        for slot in 0..self.names.len() as u32 {
            let share = &self.endpoints[slot as usize];
            self.children.resolver_update(slot, share, ctl);
        }
    }

    fn exit_idle(&mut self, ctl: &mut dyn Controller) {
        if let Some(slot) = self.current {
            self.children.exit_idle(slot, ctl);
        }
    }

    fn own_timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        let (slot, kind) = (token.kind() >> 1, token.kind() & 1);
        let now = ctl.now();
        let Some(track) = self.tracking.get_mut(slot as usize) else {
            return;
        };
        match kind {
            FAILOVER if track.failover.is_some_and(|at| at <= now) => track.failover = None,
            RETENTION if track.retention.is_some_and(|at| at <= now) => {
                *track = Tracking::default();
                self.children.remove(slot, ctl);
            }
            _ => {}
        }
    }

    fn settle(&mut self, ctl: &mut dyn Controller) {
        self.choose(ctl);
    }

    fn wants_call_outcomes(&self) -> bool {
        // A child started later may want them: ask for them if any configured child would.
        self.wants_outcomes
    }
}
