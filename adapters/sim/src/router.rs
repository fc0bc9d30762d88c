//! Who chooses the backend of each call: one of croupier's policies, run by a real balancer in
//! every client, or a reference router that only a simulator can have.

use croupier::PolicyConfig;

/// The way calls are routed in a run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Router {
    /// Each client runs a croupier balancer with this policy, fed like a real adapter feeds it.
    Policy {
        /// The name shown in tables and pictures.
        label: String,
        /// The policy.
        config: PolicyConfig,
    },
    /// Reference: every call joins the backend with the fewest calls queued or in service, seen
    /// exactly and at once across all clients (ties broken at random).
    JoinShortestQueue,
    /// Reference: every call goes to the backend with the least expected delay
    /// `current mean service time x max(1, (queued + in service + 1) / slots)` (a backend with a
    /// free slot has no wait), known exactly, including slowdowns as they happen; ties go to the
    /// least `(queued + in service + 1) x current mean`, then at random.
    ShortestExpectedDelay,
}

impl Router {
    /// A croupier policy, shown as `label`.
    pub fn policy(label: impl Into<String>, config: PolicyConfig) -> Self {
        Router::Policy {
            label: label.into(),
            config,
        }
    }

    /// The name shown in tables and pictures; references are marked `[ref]`.
    pub fn label(&self) -> &str {
        match self {
            Router::Policy { label, .. } => label,
            Router::JoinShortestQueue => "[ref] join-shortest-queue",
            Router::ShortestExpectedDelay => "[ref] shortest-expected-delay",
        }
    }

    /// Whether this is a full-information reference rather than a croupier policy.
    pub fn is_reference(&self) -> bool {
        !matches!(self, Router::Policy { .. })
    }
}

/// Every router the simulator compares: each built-in policy, then the references. Adding a
/// policy to the comparison is one line here.
pub fn builtin_routers() -> Vec<Router> {
    vec![
        Router::policy("pick_first", PolicyConfig::pick_first()),
        Router::policy("round_robin", PolicyConfig::round_robin()),
        Router::policy("random", PolicyConfig::random()),
        Router::policy("least_request", PolicyConfig::least_request()),
        Router::policy(
            "least_request(with replacement)",
            PolicyConfig::new(
                croupier::policy::LeastRequestConfig::default().distinct_candidates(false),
            ),
        ),
        Router::policy("weighted_round_robin", PolicyConfig::weighted_round_robin()),
        Router::policy(
            "weighted_round_robin(blackout 1 s)",
            PolicyConfig::new(
                croupier::policy::WeightedRoundRobinConfig::default()
                    .blackout_period(std::time::Duration::from_secs(1)),
            ),
        ),
        Router::policy("p2c_ewma", PolicyConfig::p2c_ewma()),
        Router::policy("least_latency", PolicyConfig::least_latency()),
        Router::policy("prequal", PolicyConfig::prequal()),
        Router::policy("ring_hash", PolicyConfig::ring_hash()),
        Router::policy(
            "outlier_detection(round_robin)",
            PolicyConfig::outlier_detection(PolicyConfig::round_robin()),
        ),
        Router::JoinShortestQueue,
        Router::ShortestExpectedDelay,
    ]
}

/// The router of that label, if [`builtin_routers`] has one (`jsq` and `sed` name the references).
pub fn router_named(name: &str) -> Option<Router> {
    let wanted = match name {
        "jsq" => "[ref] join-shortest-queue",
        "sed" => "[ref] shortest-expected-delay",
        other => other,
    };
    builtin_routers().into_iter().find(|r| r.label() == wanted)
}
