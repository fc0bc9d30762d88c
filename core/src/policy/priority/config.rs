//! priority's settings: its children in priority order, and its two timers.

use std::sync::Arc;
use std::time::Duration;

use super::Priority;
use crate::policy::tree::Tree;
use crate::policy::{Policy, PolicyBuilder, PolicyConfig};

/// One child of [`PriorityConfig`]: its name (what endpoints' hierarchy paths choose it by),
/// its policy, and whether its re-resolution requests are dropped.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PriorityChild {
    /// The name endpoints' hierarchy paths choose it by.
    pub name: Arc<str>,
    /// The policy that balances over its endpoints.
    pub policy: PolicyConfig,
    /// Whether its requests to re-resolve are dropped (A56's `ignore_reresolution_requests`;
    /// `false`).
    pub ignore_reresolution_requests: bool,
}

impl PriorityChild {
    /// Child `name` running `policy`.
    pub fn new(name: &str, policy: PolicyConfig) -> Self {
        PriorityChild {
            name: name.into(),
            policy,
            ignore_reresolution_requests: false,
        }
    }

    /// Sets [`PriorityChild::ignore_reresolution_requests`].
    pub fn ignore_reresolution_requests(mut self, ignore: bool) -> Self {
        self.ignore_reresolution_requests = ignore;
        self
    }
}

/// Settings of `priority` (gRFC A56); see the [policy docs](super).
///
/// ```
/// use croupier::policy::PriorityConfig;
/// use croupier::PolicyConfig;
///
/// // Calls go to zone-a's backends while it can serve them, else to zone-b's.
/// let config = PriorityConfig::new()
///     .child("zone-a", PolicyConfig::round_robin())
///     .child("zone-b", PolicyConfig::round_robin());
/// assert_eq!(config.children[1].name.as_ref(), "zone-b");
/// let policy = PolicyConfig::new(config);
/// assert_eq!(policy.name(), "priority");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PriorityConfig {
    /// The children, highest priority first. A name given twice: the later child gets no
    /// endpoints.
    pub children: Vec<PriorityChild>,
    /// How long a child that is connecting may take before the next priority is started too
    /// (10 s).
    pub failover_timeout: Duration,
    /// How long a child no longer needed is kept, connections and all, in case it is needed
    /// again (15 min).
    pub retention: Duration,
}

impl PriorityConfig {
    /// No children yet, A56's timers.
    pub fn new() -> Self {
        PriorityConfig {
            children: Vec::new(),
            failover_timeout: Duration::from_secs(10),
            retention: Duration::from_secs(15 * 60),
        }
    }

    /// Adds child `name` running `policy`, below those already added.
    pub fn child(self, name: &str, policy: PolicyConfig) -> Self {
        self.push(PriorityChild::new(name, policy))
    }

    /// Adds `child` below those already added.
    pub fn push(mut self, child: PriorityChild) -> Self {
        self.children.push(child);
        self
    }

    /// Sets [`PriorityConfig::failover_timeout`].
    pub fn failover_timeout(mut self, timeout: Duration) -> Self {
        self.failover_timeout = timeout;
        self
    }

    /// Sets [`PriorityConfig::retention`].
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }
}

impl Default for PriorityConfig {
    fn default() -> Self {
        PriorityConfig::new()
    }
}

impl PolicyBuilder for PriorityConfig {
    fn name(&self) -> &str {
        "priority"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(Tree::new(Priority::new(self.clone())))
    }
}
