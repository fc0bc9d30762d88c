//! Load-balancing policies: the trait every policy implements, built-in or a user's own.
//!
//! A policy sees the resolver's endpoints and its subchannels' states, and through a [`Controller`]
//! creates, connects and removes subchannels, sets timers, asks for re-resolution and publishes
//! pickers. It never sees the adapter, the clock or the network: the balancer feeds it and carries
//! out what it asks, in order, so a policy is as deterministic as the core.
//!
//! The built-in policies, each choosable by name in a resolver's [`PolicyChoice`](crate::PolicyChoice):
//!
//! | name | what it does |
//! |---|---|
//! | `pick_first` | one connection, to the first address that answers ([`PickFirstConfig`]) |
//! | `round_robin` | a connection per endpoint, calls in turn ([`RoundRobinConfig`]) |
//! | `random` | calls to a READY endpoint drawn at random ([`RandomConfig`]) |
//! | `least_request` | the one with fewer calls in flight of a few drawn at random ([`LeastRequestConfig`]) |
//! | `weighted_round_robin` | in turn, in proportion to load-report or static weights ([`WeightedRoundRobinConfig`]) |
//! | `p2c_ewma` | the cheaper of two by latency estimate x calls in flight ([`PeakEwmaConfig`]) |
//! | `least_latency` | the cheapest of several by service time per call x calls in flight ([`LeastLatencyConfig`]) |
//! | `prequal` | by the backends' answers to probes, with Prequal's hot-cold rule ([`PrequalConfig`]) |
//! | `ring_hash` | consistent hashing on a request hash or header ([`RingHashConfig`]) |
//! | `outlier_detection` | ejects endpoints that fail more than their peers, around a child ([`OutlierDetectionConfig`]) |
//! | `weighted_target` | calls split by weight over children ([`WeightedTargetConfig`]) |
//! | `random_subsetting` | a child over a per-client random subset of the endpoints ([`RandomSubsettingConfig`]) |
//! | `priority` | children in priority order, calls to the highest that can serve ([`PriorityConfig`]) |
//!
//! Calls into a policy are never re-entrant: a state change caused by a controller call (say
//! `connect` moving a subchannel to CONNECTING) reaches the policy afterwards, through
//! [`Policy::subchannel_update`].

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::address::{Address, Endpoint};
use crate::call::{CallOutcome, LoadReport};
use crate::notice::Notice;
use crate::picker::Picker;
use crate::probe::ProbeResult;
use crate::resolver::ResolverError;
use crate::rng::Rng;
use crate::status::ConnectivityState;
use crate::subchannel::SubchannelId;

mod candidates;
mod child;
mod children;
pub mod endpoints;
pub mod least_latency;
pub mod least_request;
pub mod outlier_detection;
pub mod p2c_ewma;
mod pacing;
mod params;
pub mod pick_first;
pub mod prequal;
pub mod priority;
pub mod random;
pub mod random_subsetting;
pub mod ring_hash;
pub mod round_robin;
mod slot;
mod timer;
mod tree;
pub mod weighted_round_robin;
pub mod weighted_target;
mod wrapping;

pub use least_latency::LeastLatencyConfig;
pub use least_request::LeastRequestConfig;
pub use outlier_detection::{
    FailurePercentageEjection, OutlierDetectionConfig, SuccessRateEjection,
};
pub use p2c_ewma::PeakEwmaConfig;
pub(crate) use params::{parse_bool, parse_millis, parse_whole};
pub use params::{PolicyParamError, PolicyParamErrorKind};
pub use pick_first::PickFirstConfig;
pub use pick_first::PickFirstList;
pub use prequal::PrequalConfig;
pub use priority::{PriorityChild, PriorityConfig};
pub use random::RandomConfig;
pub use random_subsetting::RandomSubsettingConfig;
pub use ring_hash::{RingHashConfig, RingHashConfigError};
pub use round_robin::RoundRobinConfig;
pub use slot::SlotController;
pub use timer::TimerToken;
pub use weighted_round_robin::WeightedRoundRobinConfig;
pub use weighted_target::{WeightedTarget, WeightedTargetConfig};

/// A subchannel's new state, as the policy is told of it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubchannelUpdate {
    /// The state it moved to.
    pub state: ConnectivityState,
    /// Why its last attempt failed or its connection ended, if one did.
    pub error: Option<Arc<str>>,
}

/// What a policy may ask of the balancer that runs it.
pub trait Controller {
    /// The time of the input being handled.
    fn now(&self) -> Instant;

    /// Creates an IDLE subchannel for `address`. It connects only when [`Controller::connect`] asks.
    fn create_subchannel(&mut self, address: &Address) -> SubchannelId;

    /// A hint that about `additional` subchannels are about to be created (and connected), so
    /// room for them is made at once rather than as they come. Optional; the default does
    /// nothing.
    fn reserve_subchannels(&mut self, additional: usize) {
        let _ = additional;
    }

    /// Asks an IDLE subchannel to connect. Ignored in any other state (a subchannel in backoff goes
    /// IDLE when its backoff ends, and the policy is told).
    fn connect(&mut self, subchannel: SubchannelId);

    /// Removes a subchannel for good; the adapter drops its connection. Unknown handles are ignored.
    fn remove_subchannel(&mut self, subchannel: SubchannelId);

    /// The current state of a subchannel, `None` for an unknown or removed one.
    fn subchannel_state(&self, subchannel: SubchannelId) -> Option<ConnectivityState>;

    /// Publishes the policy's state and the picker that goes with it.
    fn publish(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>);

    /// Asks the resolver for a fresh answer (rate-limited by the balancer).
    fn request_resolution(&mut self);

    /// Asks the adapter to probe the backend of `subchannel` ([`Action::Probe`](crate::Action::Probe));
    /// its answer comes back through [`Policy::probe_result`]. A controller that wraps another
    /// passes the request on. The default drops it (a controller that cannot probe).
    fn request_probe(&mut self, subchannel: SubchannelId) {
        let _ = subchannel;
    }

    /// Asks for [`Policy::timer`] with `token` at `at` (or at the first timeout handled after it).
    ///
    /// A policy names its timers with [`TimerToken::new`] from its own kinds (a number, an enum's
    /// discriminant) and reads them back with [`TimerToken::kind`]. A controller that a policy
    /// hands a child (one per endpoint, or a wrapped policy; [`SlotController`] is one) gives the
    /// child's tokens the child's slot with [`TimerToken::child`], so a child's timers never
    /// collide with its parent's or a sibling's; setting a timer allocates nothing. A timer nested
    /// deeper than [`TimerToken::MAX_DEPTH`] wrapping controllers is not set (it could not be told
    /// apart).
    fn set_timer(&mut self, at: Instant, token: TimerToken);

    /// The seeded random generator: the only randomness a policy should use.
    fn rng(&mut self) -> &mut Rng;

    /// Whether the balancer keeps [`Notice`]s: a policy builds one only if so. The default
    /// says no; a controller that wraps another says what the one it wraps says.
    fn notices_enabled(&self) -> bool {
        false
    }

    /// Tells the balancer's adapter what the policy did ([`Notice::Ejected`],
    /// [`Notice::WeightsUpdated`], or a notice of a user's own policy), if notices are on. The
    /// default drops it; a controller that wraps another passes it on.
    fn notify(&mut self, notice: Notice) {
        let _ = notice;
    }

    /// The address of a subchannel, `None` for an unknown or removed one (to name it in a
    /// notice). The default knows none; a controller that wraps another asks it.
    fn subchannel_address(&self, subchannel: SubchannelId) -> Option<Address> {
        let _ = subchannel;
        None
    }
}

/// What a policy knows of one of its subchannels, for observability
/// ([`Balancer::snapshot`](crate::Balancer::snapshot)): each field is `None` where the policy
/// does not keep such a thing.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct PolicyDetails {
    /// Its weight (weighted_round_robin: from load reports once they count, else the resolver's
    /// static weight).
    pub weight: Option<f64>,
    /// Whether outlier detection ejected its address.
    pub ejected: Option<bool>,
    /// Its latency estimate (p2c_ewma).
    pub latency_estimate: Option<Duration>,
    /// Its calls in flight (least_request, p2c_ewma).
    pub in_flight: Option<usize>,
}

/// A load-balancing policy. Built-in policies implement it exactly as a user's own does.
pub trait Policy: Send + fmt::Debug {
    /// The resolver produced `endpoints` (possibly none: then fail calls with an error that says so).
    fn resolver_update(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller);

    /// The resolver failed. Keep using the endpoints already known; with none, fail calls with it.
    fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller);

    /// A subchannel this policy created changed state.
    fn subchannel_update(
        &mut self,
        subchannel: SubchannelId,
        update: &SubchannelUpdate,
        ctl: &mut dyn Controller,
    );

    /// A call queued while the policy was IDLE: start connecting. Also called by users who want a
    /// channel connected before its first call.
    fn exit_idle(&mut self, ctl: &mut dyn Controller) {
        let _ = ctl;
    }

    /// A timer set with [`Controller::set_timer`] fired, with the token it was set with.
    ///
    /// A policy that wraps children routes a token with [`TimerToken::split`]: `Some((slot,
    /// inner))` is child `slot`'s timer `inner`, `None` is the policy's own. Timers due at the
    /// same instant fire in token order: children's (by slot) before the policy's own (by kind).
    /// A timer of a policy no longer there (a child removed) may still fire: ignore unknown tokens.
    fn timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        let _ = (token, ctl);
    }

    /// Whether this policy learns from call outcomes ([`Policy::call_finished`]). Adapters skip
    /// reporting outcomes to a policy that does not, which saves a message per call. The default
    /// is `true`; return `false` only if `call_finished` does nothing.
    fn wants_call_outcomes(&self) -> bool {
        true
    }

    /// A call routed to `subchannel` ended.
    fn call_finished(
        &mut self,
        subchannel: SubchannelId,
        outcome: &CallOutcome,
        ctl: &mut dyn Controller,
    ) {
        let _ = (subchannel, outcome, ctl);
    }

    /// The backend behind `subchannel` reported its load out of band (not with a call: ORCA's
    /// stream, gRFC A51). weighted_round_robin weighs by these when configured to.
    fn load_report(
        &mut self,
        subchannel: SubchannelId,
        report: &LoadReport,
        ctl: &mut dyn Controller,
    ) {
        let _ = (subchannel, report, ctl);
    }

    /// The backend behind `subchannel` answered a probe this policy asked for
    /// ([`Controller::request_probe`]). A wrapping policy passes it to the child that owns the
    /// subchannel.
    fn probe_result(
        &mut self,
        subchannel: SubchannelId,
        result: &ProbeResult,
        ctl: &mut dyn Controller,
    ) {
        let _ = (subchannel, result, ctl);
    }

    /// Fills in what the policy knows of `subchannel` (one it created), for a snapshot. The
    /// default knows nothing; a policy that wraps others asks the one that owns it.
    fn describe_subchannel(&self, subchannel: SubchannelId, details: &mut PolicyDetails) {
        let _ = (subchannel, details);
    }

    /// A service config gave this policy new settings (`config` names the same policy): take
    /// them in place, keeping subchannels and state, and return `true`; or return `false`, the
    /// default, and the balancer builds a policy from `config` beside this one and switches to
    /// it gracefully (this one serves until the new one is READY). [`PolicyConfig::downcast_ref`]
    /// reads the settings.
    fn reconfigure(&mut self, config: &PolicyConfig, ctl: &mut dyn Controller) -> bool {
        let _ = (config, ctl);
        false
    }
}

/// Makes policies of one kind: a policy's name plus its settings.
pub trait PolicyBuilder: Send + Sync + fmt::Debug {
    /// The name resolvers choose it by (`pick_first`, `round_robin`, ...).
    fn name(&self) -> &str;

    /// A fresh policy with these settings.
    fn build(&self) -> Box<dyn Policy>;

    /// The same kind of policy with settings from a resolver's
    /// [`PolicyChoice`](crate::PolicyChoice). Policies with no settings accept only an empty list.
    /// `params` is never empty: an empty list keeps the configured policy as it is.
    fn with_params(&self, params: &[(String, String)]) -> Result<PolicyConfig, PolicyParamError> {
        let keys = params.iter().map(|(key, _)| key.as_str());
        Err(PolicyParamError::takes_no_parameters(self.name(), keys))
    }
}

/// A policy and its settings, cheap to clone: what a balancer is configured with.
#[derive(Clone)]
pub struct PolicyConfig {
    builder: Arc<dyn PolicyBuilder>,
    /// The same builder, to read its settings back as their own type.
    settings: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for PolicyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PolicyConfig").field(&self.builder).finish()
    }
}

impl PolicyConfig {
    /// A user's own policy.
    pub fn new<B: PolicyBuilder + 'static>(builder: B) -> Self {
        let builder = Arc::new(builder);
        PolicyConfig {
            settings: Arc::clone(&builder) as Arc<dyn Any + Send + Sync>,
            builder,
        }
    }

    /// The settings, if this config was made from a `B`: how a policy reads new settings in
    /// [`Policy::reconfigure`].
    pub fn downcast_ref<B: PolicyBuilder + 'static>(&self) -> Option<&B> {
        self.settings.downcast_ref::<B>()
    }

    /// Copies these settings over `settings` if they are of its kind (a spread's usual
    /// [`Spread::reconfigure`](endpoints::Spread::reconfigure)); `false`, with nothing changed,
    /// if they are another policy's.
    pub(crate) fn replace<B: PolicyBuilder + Clone + 'static>(&self, settings: &mut B) -> bool {
        match self.downcast_ref::<B>() {
            Some(new) => {
                settings.clone_from(new);
                true
            }
            None => false,
        }
    }

    /// pick_first with default settings: one connection, to the first address that answers.
    pub fn pick_first() -> Self {
        PolicyConfig::new(PickFirstConfig::default())
    }

    /// round_robin: a connection to every endpoint, calls spread evenly over the READY ones.
    pub fn round_robin() -> Self {
        PolicyConfig::new(RoundRobinConfig::default())
    }

    /// random: every call to a READY endpoint drawn uniformly.
    pub fn random() -> Self {
        PolicyConfig::new(RandomConfig::default())
    }

    /// least_request (gRFC A48): the least loaded of two random READY endpoints.
    pub fn least_request() -> Self {
        PolicyConfig::new(LeastRequestConfig::default())
    }

    /// weighted_round_robin (gRFC A58) with default settings: round robin in proportion to
    /// weights from backends' load reports, or else from the resolver's static weights; see
    /// [`WeightedRoundRobinConfig`].
    pub fn weighted_round_robin() -> Self {
        PolicyConfig::new(WeightedRoundRobinConfig::default())
    }

    /// p2c_ewma with default settings: the cheaper of two random READY endpoints, by a
    /// peak-sensitive latency average times calls in flight; see [`PeakEwmaConfig`].
    pub fn p2c_ewma() -> Self {
        PolicyConfig::new(PeakEwmaConfig::default())
    }

    /// least_latency with default settings: the cheapest of 6 random READY endpoints, by
    /// service time per call times calls in flight; see [`LeastLatencyConfig`].
    pub fn least_latency() -> Self {
        PolicyConfig::new(LeastLatencyConfig::default())
    }

    /// prequal with default settings: calls by the backends' answers to probes (requests in
    /// flight, latency) with Prequal's hot-cold rule; see [`PrequalConfig`].
    pub fn prequal() -> Self {
        PolicyConfig::new(PrequalConfig::default())
    }

    /// ring_hash with default settings: consistent hashing, so calls with the same hash (or the
    /// same value of a configured header) reach the same endpoint; see [`RingHashConfig`].
    pub fn ring_hash() -> Self {
        PolicyConfig::new(RingHashConfig::default())
    }

    /// outlier_detection around `child`: endpoints that fail much more than their peers are
    /// ejected for a while; see [`OutlierDetectionConfig`].
    pub fn outlier_detection(child: PolicyConfig) -> Self {
        PolicyConfig::new(OutlierDetectionConfig::new(child))
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        self.builder.name()
    }

    /// The builder.
    pub fn builder(&self) -> &dyn PolicyBuilder {
        &*self.builder
    }

    pub(crate) fn build(&self) -> Box<dyn Policy> {
        self.builder.build()
    }

    /// This policy with `params` applied, or why they do not fit.
    pub fn with_params(
        &self,
        params: &[(String, String)],
    ) -> Result<PolicyConfig, PolicyParamError> {
        if params.is_empty() {
            Ok(self.clone())
        } else {
            self.builder.with_params(params)
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig::pick_first()
    }
}

/// Every built-in policy with its default settings: what a resolver may choose by name, and what
/// a wrapping policy's `child_policy` parameter may name. (outlier_detection's default child is
/// round_robin.)
pub(crate) fn builtins() -> Vec<PolicyConfig> {
    vec![
        PolicyConfig::pick_first(),
        PolicyConfig::round_robin(),
        PolicyConfig::random(),
        PolicyConfig::least_request(),
        PolicyConfig::weighted_round_robin(),
        PolicyConfig::p2c_ewma(),
        PolicyConfig::least_latency(),
        PolicyConfig::prequal(),
        PolicyConfig::ring_hash(),
        PolicyConfig::outlier_detection(PolicyConfig::round_robin()),
    ]
}

/// Formats `address: error` pairs into one message, at most `limit` of them, saying how many more.
pub(crate) fn describe_failures<'a>(
    failures: impl Iterator<Item = (&'a Address, Option<&'a str>)>,
    limit: usize,
) -> String {
    let mut out = String::new();
    let mut total = 0usize;
    for (address, error) in failures {
        total += 1;
        if total > limit {
            continue;
        }
        if total > 1 {
            out.push_str("; ");
        }
        out.push_str(&address.to_string());
        out.push_str(": ");
        out.push_str(error.unwrap_or("not tried yet"));
    }
    if total > limit {
        out.push_str(&format!("; and {} more", total - limit));
    }
    out
}
