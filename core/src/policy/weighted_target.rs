//! weighted_target: calls split by weight across children, each a policy of its own (gRPC's
//! `weighted_target_experimental`, the level of its xDS tree that spreads calls over
//! localities).
//!
//! Each child gets the endpoints whose hierarchy path
//! ([`Attributes::hierarchy`](crate::Attributes::hierarchy)) names it first; an endpoint whose
//! path names no target goes to none. Every child is started with the first resolver update.
//!
//! - **Picks**: a pick draws a READY child with probability its weight over the READY
//!   children's total, then asks that child's picker. The draw is one relaxed atomic add on a
//!   counter seeded from the balancer's generator, mixed (SplitMix64): no lock, no allocation,
//!   and deterministic for a given order of picks.
//! - **State**, gRPC's aggregation: any child READY -> READY; else any CONNECTING -> CONNECTING;
//!   else any IDLE -> IDLE; else TRANSIENT_FAILURE. A child that reported TRANSIENT_FAILURE
//!   counts as failed until it reports READY or IDLE (so the channel does not flap to
//!   CONNECTING while it retries). With no child READY, picks queue (CONNECTING, IDLE: the
//!   adapter's queued call asks every child to leave IDLE) or fail with the first failed
//!   child's error.

use std::sync::Arc;

use crate::address::Endpoint;
use crate::picker::{FailPicker, Pick, PickNote, PickRequest, Picker, QueuePicker};
use crate::policy::children::{any_wants_call_outcomes, group_by_child, Children, Published};
use crate::policy::tree::{Tree, TreeLevel};
use crate::policy::{Controller, Policy, PolicyBuilder, PolicyConfig};
use crate::rng::AtomicRng;
use crate::status::{ConnectivityState, Status};

/// One target of [`WeightedTargetConfig`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WeightedTarget {
    /// The name endpoints' hierarchy paths choose it by.
    pub name: Arc<str>,
    /// Its share of the calls, relative to the other READY targets' (at least 1).
    pub weight: u32,
    /// The policy that balances over its endpoints.
    pub policy: PolicyConfig,
}

/// Settings of `weighted_target`: its targets; see the [policy docs](self).
///
/// ```
/// use croupier::policy::WeightedTargetConfig;
/// use croupier::PolicyConfig;
///
/// // Three calls in four to zone-a's backends, one to zone-b's.
/// let config = WeightedTargetConfig::new()
///     .target("zone-a", 3, PolicyConfig::round_robin())
///     .target("zone-b", 1, PolicyConfig::round_robin());
/// assert_eq!(PolicyConfig::new(config).name(), "weighted_target");
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct WeightedTargetConfig {
    /// The targets. A name given twice: the later target gets no endpoints.
    pub targets: Vec<WeightedTarget>,
}

impl WeightedTargetConfig {
    /// No targets yet.
    pub fn new() -> Self {
        WeightedTargetConfig::default()
    }

    /// Adds target `name` with `weight` (0 is taken as 1) running `policy`.
    pub fn target(mut self, name: &str, weight: u32, policy: PolicyConfig) -> Self {
        self.targets.push(WeightedTarget {
            name: name.into(),
            weight: weight.max(1),
            policy,
        });
        self
    }
}

impl PolicyBuilder for WeightedTargetConfig {
    fn name(&self) -> &str {
        "weighted_target"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(Tree::new(WeightedTargetPolicy::new(self.clone())))
    }
}

/// The picker over the READY targets: a weighted draw, then the target's own picker.
#[derive(Debug)]
struct WeightedPicker {
    /// Each READY target's cumulative weight: target `i` takes draws below `ends[i]`.
    ends: Box<[u64]>,
    pickers: Box<[Arc<dyn Picker>]>,
    draws: AtomicRng,
}

impl WeightedPicker {
    /// The picker of the target a weighted draw chose.
    #[inline]
    fn chosen(&self) -> Option<&Arc<dyn Picker>> {
        let &total = self.ends.last()?;
        let draw = ((u128::from(self.draws.next_u64()) * u128::from(total)) >> 64) as u64;
        let index = self.ends.partition_point(|&end| end <= draw);
        self.pickers.get(index)
    }
}

impl Picker for WeightedPicker {
    fn pick(&self, request: &PickRequest<'_>) -> Pick {
        match self.chosen() {
            Some(picker) => picker.pick(request),
            None => Pick::Queue,
        }
    }

    fn pick_with_note(&self, request: &PickRequest<'_>) -> (Pick, PickNote) {
        match self.chosen() {
            Some(picker) => picker.pick_with_note(request),
            None => (Pick::Queue, PickNote::NONE),
        }
    }
}

/// The weighted_target policy.
#[derive(Debug)]
struct WeightedTargetPolicy {
    config: WeightedTargetConfig,
    names: Vec<Arc<str>>,
    children: Children,
    /// Per target that reported TRANSIENT_FAILURE and not READY or IDLE since: the picker it
    /// failed with, which keeps failing calls while it retries.
    failed: Vec<Option<Arc<dyn Picker>>>,
    started: bool,
    /// Whether some target's policy learns from call outcomes.
    wants_outcomes: bool,
    published: Published,
}

impl WeightedTargetPolicy {
    fn new(config: WeightedTargetConfig) -> Self {
        let names: Vec<Arc<str>> = config.targets.iter().map(|t| t.name.clone()).collect();
        WeightedTargetPolicy {
            children: Children::new(vec![false; names.len()]),
            failed: vec![None; names.len()],
            wants_outcomes: any_wants_call_outcomes(config.targets.iter().map(|t| &t.policy)),
            names,
            config,
            started: false,
            published: Published::default(),
        }
    }

    /// The state each target counts as.
    fn effective(&self, slot: u32, state: ConnectivityState) -> ConnectivityState {
        if self.failed[slot as usize].is_some() && state == ConnectivityState::Connecting {
            ConnectivityState::TransientFailure
        } else {
            state
        }
    }

    /// Aggregates the targets' states and publishes, if anything changed.
    fn update(&mut self, ctl: &mut dyn Controller) {
        let changed = self.children.take_changed();
        for &slot in &changed {
            let Some(child) = self.children.get(slot) else {
                continue;
            };
            match child.state() {
                ConnectivityState::TransientFailure => {
                    self.failed[slot as usize] = Some(Arc::clone(child.picker()));
                }
                ConnectivityState::Ready | ConnectivityState::Idle => {
                    self.failed[slot as usize] = None;
                }
                _ => {}
            }
        }
        if changed.is_empty() && self.started {
            return;
        }
        let states: Vec<(u32, ConnectivityState)> = self
            .children
            .iter()
            .map(|(slot, child)| (slot, self.effective(slot, child.state())))
            .collect();
        let any = |wanted| states.iter().any(|(_, state)| *state == wanted);
        let state = if any(ConnectivityState::Ready) {
            ConnectivityState::Ready
        } else if any(ConnectivityState::Connecting) {
            ConnectivityState::Connecting
        } else if any(ConnectivityState::Idle) {
            ConnectivityState::Idle
        } else {
            ConnectivityState::TransientFailure
        };
        let picker: Arc<dyn Picker> = match state {
            ConnectivityState::Ready => {
                let mut ends = Vec::new();
                let mut pickers = Vec::new();
                let mut total = 0u64;
                for (slot, child) in self.children.iter() {
                    if child.state() == ConnectivityState::Ready {
                        total += u64::from(self.config.targets[slot as usize].weight.max(1));
                        ends.push(total);
                        pickers.push(Arc::clone(child.picker()));
                    }
                }
                Arc::new(WeightedPicker {
                    ends: ends.into(),
                    pickers: pickers.into(),
                    draws: AtomicRng::new(ctl.rng().next_u64()),
                })
            }
            ConnectivityState::TransientFailure => {
                let failed = states
                    .iter()
                    .find(|(_, state)| *state == ConnectivityState::TransientFailure)
                    .and_then(|(slot, _)| self.failed[*slot as usize].as_ref());
                match failed {
                    Some(picker) => Arc::clone(picker),
                    None => Arc::new(FailPicker::new(Status::unavailable(
                        "weighted_target has no targets configured",
                    ))),
                }
            }
            _ => Arc::new(QueuePicker),
        };
        self.published.publish(state, &picker, ctl);
    }
}

impl TreeLevel for WeightedTargetPolicy {
    fn name(&self) -> &'static str {
        "weighted_target"
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
        let (groups, _) = group_by_child(endpoints, &self.names);
        for (slot, share) in groups.iter().enumerate() {
            let slot = slot as u32;
            if self.children.get(slot).is_some() {
                self.children.resolver_update(slot, share, ctl);
            } else {
                let policy = self.config.targets[slot as usize].policy.build();
                self.children.create(slot, policy, share, ctl);
            }
        }
    }

    fn exit_idle(&mut self, ctl: &mut dyn Controller) {
        for slot in 0..self.names.len() as u32 {
            self.children.exit_idle(slot, ctl);
        }
    }

    fn settle(&mut self, ctl: &mut dyn Controller) {
        self.update(ctl);
        self.started = true;
    }

    fn wants_call_outcomes(&self) -> bool {
        self.wants_outcomes
    }
}
