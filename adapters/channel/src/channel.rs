//! The channel: a cheap handle that calls pick through.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier::retry::RetryThrottle;
use croupier::service_config::{IntoServiceConfig, MethodConfig, ServiceConfig};
use croupier::{
    Address, BackoffConfig, Balancer, BalancerConfig, CallOutcome, Code, ConnectivityState,
    LoadReport, Pick, PickNote, PickRequest, PolicyConfig, ResolutionConfig, ServiceConfigError,
    Status, SubchannelId, SubchannelInfo, Target, TargetError,
};
use futures_lite::future;

use crate::backend::Backend;
use crate::connector::{Addressed, Connector};
use crate::driver::Driver;
use crate::inbox::Input;
use crate::message_size::MessageLimits;
use crate::names::Names;
use crate::resolver::{global_resolvers, ResolveNow, Resolver, ResolverContext, ResolverRegistry};
use crate::retry::{Retries, RetrySettings};
use crate::runtime::{Runtime, Task};
use crate::shared::Shared;
use crate::snapshot::ChannelSnapshot;
use crate::trace::{self, Trace};

/// Why a channel could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The target is malformed, or names a scheme with no registered resolver.
    Target(TargetError),
    /// A setting of the builder has a value it cannot take.
    Setting {
        /// The setting (`user_agent`).
        setting: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The default service config is not a valid one; the error names the JSON path.
    ServiceConfig(ServiceConfigError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Target(error) => write!(f, "cannot build a channel: {error}"),
            BuildError::Setting { setting, reason } => {
                write!(f, "cannot build a channel: its {setting} {reason}")
            }
            BuildError::ServiceConfig(error) => {
                write!(
                    f,
                    "cannot build a channel: its default service config is invalid: {error}"
                )
            }
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Target(error) => Some(error),
            BuildError::Setting { .. } => None,
            BuildError::ServiceConfig(error) => Some(error),
        }
    }
}

impl From<TargetError> for BuildError {
    fn from(error: TargetError) -> Self {
        BuildError::Target(error)
    }
}

/// Builds a [`Channel`]: the target, the policy, backoff, resolvers, the connector, the seed.
pub struct ChannelBuilder<C> {
    target: String,
    runtime: Arc<dyn Runtime>,
    connector: C,
    config: BalancerConfig,
    resolvers: ResolverRegistry,
    default_port: u16,
    seed: Option<u64>,
    default_timeout: Option<Duration>,
    /// The channel's message size limits, where set.
    message_limits: MessageLimits,
    /// The retry or hedging policy, the throttle and the replay buffer (gRFC A6).
    pub(crate) retry: RetrySettings,
    /// A default service config that did not parse, reported by `build`.
    invalid_config: Option<ServiceConfigError>,
}

impl<C> fmt::Debug for ChannelBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelBuilder")
            .field("target", &self.target)
            .field("config", &self.config)
            .field("resolvers", &self.resolvers)
            .field("default_port", &self.default_port)
            .field("seed", &self.seed)
            .field("default_timeout", &self.default_timeout)
            .field("message_limits", &self.message_limits)
            .field("retry", &self.retry)
            .field("invalid_config", &self.invalid_config)
            .finish_non_exhaustive()
    }
}

impl<C: Connector> ChannelBuilder<C> {
    /// A builder for `target` on `runtime` with `connector`. Runtime adapters wrap this with their
    /// own runtime and default connector.
    pub fn new(target: impl Into<String>, runtime: Arc<dyn Runtime>, connector: C) -> Self {
        ChannelBuilder {
            target: target.into(),
            runtime,
            connector,
            config: BalancerConfig::default(),
            resolvers: ResolverRegistry::new(),
            default_port: croupier::target::DEFAULT_PORT,
            seed: None,
            default_timeout: None,
            message_limits: MessageLimits::default(),
            retry: RetrySettings::default(),
            invalid_config: None,
        }
    }

    /// The load-balancing policy (default: pick_first).
    pub fn policy(mut self, policy: PolicyConfig) -> Self {
        self.config.policy = policy;
        self
    }

    /// The service config used while the resolver gives none (grpc-go's
    /// `WithDefaultServiceConfig`): its JSON, or a [`ServiceConfig`], or a parser's result (for
    /// a parser that knows your policies). Its policy wins over [`ChannelBuilder::policy`]; its
    /// method settings (timeout, wait-for-ready, retries) apply to calls by path. A resolver's
    /// valid config replaces it; an invalid one falls back on it if the channel had no valid
    /// config before (gRFC A21). A JSON that is not a valid config fails
    /// [`build`](Self::build) with [`BuildError::ServiceConfig`], naming the path.
    pub fn default_service_config(mut self, config: impl IntoServiceConfig) -> Self {
        match config.into_service_config() {
            Ok(config) => self.config = self.config.default_service_config(config),
            Err(error) => self.invalid_config = Some(error),
        }
        self
    }

    /// Ignores service configs (and policy choices) from the resolver, so that the default
    /// service config, or the policy, always applies (grpc-go's `WithDisableServiceConfig`).
    pub fn ignore_resolver_service_config(mut self, ignore: bool) -> Self {
        self.config = self.config.ignore_resolver_service_config(ignore);
        self
    }

    /// Makes `policy` choosable by name in resolver updates.
    pub fn register_policy(mut self, policy: PolicyConfig) -> Self {
        self.config.policies.push(policy);
        self
    }

    /// Connection backoff (default: gRPC's).
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// When to ask the resolver again (default: on request at most every 5 s, and every 30 s).
    pub fn resolution(mut self, resolution: ResolutionConfig) -> Self {
        self.config.resolution = resolution;
        self
    }

    /// The most endpoints a resolver update may list (default
    /// [`croupier::DEFAULT_MAX_ENDPOINTS`], 100,000): a longer list is refused as a resolver error
    /// that says how many came, and the last list accepted stays in use.
    pub fn max_endpoints(mut self, max: usize) -> Self {
        self.config.max_endpoints = max;
        self
    }

    /// The port for targets that name none (default 443, as gRPC).
    pub fn default_port(mut self, port: u16) -> Self {
        self.default_port = port;
        self
    }

    /// Registers a resolver for `scheme` for this channel only (on top of the process-wide ones).
    pub fn resolver(mut self, scheme: &str, resolver: impl Resolver) -> Self {
        self.resolvers.register(scheme, resolver);
        self
    }

    /// The seed of every random choice the core makes (default: a random one). Two channels with
    /// the same seed and the same events make the same choices.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The timeout of a call that names none (default: none, as in gRPC, where a call without a
    /// deadline waits as long as it takes). It bounds a pick made without a timeout or deadline
    /// in its [`PickOptions`] and, through the channel's `Service` (feature `tower`), a request
    /// with neither those options nor a `grpc-timeout`: from the moment it enters the channel
    /// until its response ends.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// The largest gRPC response message a call accepts, in bytes (its 5-byte header left out;
    /// tonic's `max_decoding_message_size`, grpc-go's `MaxCallRecvMsgSize`). Unset, a call
    /// accepts its method's `maxResponseMessageBytes` if the service config names one, else
    /// [`DEFAULT_MAX_DECODING_MESSAGE_SIZE`] (4 MiB, gRPC's default); set, the lower of this
    /// and the method's. A larger message ends its call `RESOURCE_EXHAUSTED` as soon as its
    /// header arrives, before its bytes are read, and resets the call's stream, not the
    /// connection (the channel's `Service`, feature `tower`).
    ///
    /// [`DEFAULT_MAX_DECODING_MESSAGE_SIZE`]: crate::DEFAULT_MAX_DECODING_MESSAGE_SIZE
    pub fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.message_limits.receive = Some(limit);
        self
    }

    /// The largest gRPC request message a call sends, in bytes (tonic's
    /// `max_encoding_message_size`, grpc-go's `MaxCallSendMsgSize`). Unset, a call sends what
    /// its method's `maxRequestMessageBytes` allows, else anything (gRPC's default); set, the
    /// lower of this and the method's. A larger message is not sent: the call's stream is reset
    /// and the call ends `RESOURCE_EXHAUSTED` when that message comes (the channel's `Service`,
    /// feature `tower`), and is not retried.
    pub fn max_encoding_message_size(mut self, limit: usize) -> Self {
        self.message_limits.send = Some(limit);
        self
    }

    /// Replaces the connector.
    pub fn connector<D: Connector>(self, connector: D) -> ChannelBuilder<D> {
        self.map_connector(|_| connector)
    }

    /// Replaces the connector with what `f` makes of it: a way to change its settings, or to
    /// wrap it.
    pub fn map_connector<D: Connector>(self, f: impl FnOnce(C) -> D) -> ChannelBuilder<D> {
        ChannelBuilder {
            target: self.target,
            runtime: self.runtime,
            connector: f(self.connector),
            config: self.config,
            resolvers: self.resolvers,
            default_port: self.default_port,
            seed: self.seed,
            default_timeout: self.default_timeout,
            message_limits: self.message_limits,
            retry: self.retry,
            invalid_config: self.invalid_config,
        }
    }

    /// Parses the target, starts its resolver and the channel's driver task, and returns the
    /// channel. Must run inside the runtime the builder was made for.
    pub fn build(self) -> Result<Channel<C::Connection>, BuildError> {
        if let Some(error) = self.invalid_config {
            return Err(BuildError::ServiceConfig(error));
        }
        let mut resolvers = global_resolvers();
        resolvers.extend(&self.resolvers);
        let target = Target::parse(&self.target, |scheme| resolvers.contains(scheme))?;
        let resolver =
            resolvers
                .get(target.scheme())
                .ok_or_else(|| TargetError::UnknownScheme {
                    target: self.target.clone(),
                    scheme: target.scheme().to_owned(),
                })?;
        let seed = self.seed.unwrap_or_else(random_seed);
        let now = self.runtime.now();
        let mut config = self.config;
        // The driver logs and counts the core's notices; a larger queue asked for is kept.
        config.notice_capacity = config.notice_capacity.max(crate::driver::NOTICE_CAPACITY);
        let balancer = Balancer::new(config, seed, now);
        let shared = Arc::new(Shared::new(
            Addressed::<C::Connection>::is_broken::<C>,
            Arc::clone(balancer.service_config()),
        ));
        let (inbox, inbox_rx) = async_channel::unbounded();
        let resolve_now = Arc::new(ResolveNow::default());
        let context = ResolverContext::new(
            inbox.clone(),
            Arc::clone(&resolve_now),
            Arc::clone(&self.runtime),
            self.default_port,
        );
        let canonical: Arc<str> = target.to_string().into();
        let mut driver = Driver::new(
            balancer,
            Arc::clone(&self.runtime),
            Arc::new(self.connector),
            Arc::clone(&shared),
            inbox_rx,
            resolve_now,
            Arc::clone(&canonical),
        );
        driver.names = Names::new(target.default_authority());
        driver.trace = Trace::new(&self.target);
        let span = driver.trace.span();
        driver.resolver = Some(Task::spawn(
            &self.runtime,
            resolver.resolve(&target, context),
        ));
        self.runtime.spawn(Box::pin(driver.run()));
        Ok(Channel {
            handle: Arc::new(Handle {
                shared,
                inbox,
                runtime: self.runtime,
                target,
                span,
                default_timeout: self.default_timeout,
                message_limits: self.message_limits,
                retries: self.retry.build(seed),
                error_code: C::error_code,
                #[cfg(feature = "tower")]
                load_report: C::load_report,
                #[cfg(feature = "metrics")]
                metrics: crate::metrics::ChannelMetrics::new(&canonical),
            }),
        })
    }
}

fn random_seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    hasher.finish()
}

/// The part of a channel its clones share; dropping the last one stops the driver.
struct Handle<T> {
    shared: Arc<Shared<Addressed<T>>>,
    inbox: async_channel::Sender<Input>,
    runtime: Arc<dyn Runtime>,
    target: Target,
    /// The channel's span: where its calls' events are logged.
    span: trace::ChannelSpan,
    default_timeout: Option<Duration>,
    /// The message size limits its gRPC calls run by, with their methods' configs.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    message_limits: MessageLimits,
    /// What its calls retry and hedge by.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    retries: Retries,
    /// The connector's reading of a call's transport error as a gRPC code.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    error_code: fn(&(dyn std::error::Error + 'static)) -> Option<Code>,
    /// The connector's reading of a backend's load report in a response's trailers.
    #[cfg(feature = "tower")]
    load_report: crate::body::LoadReader,
    /// What its calls are recorded with.
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::ChannelMetrics,
}

impl<T> Drop for Handle<T> {
    fn drop(&mut self) {
        // The driver sees the inbox close, drops every connection and task, and ends.
        self.inbox.close();
    }
}

/// A load-balanced channel to the backends a target names. Clone it freely: clones share one
/// driver, and dropping the last one closes every connection.
pub struct Channel<T> {
    handle: Arc<Handle<T>>,
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Channel {
            handle: Arc::clone(&self.handle),
        }
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("target", &self.handle.target.to_string())
            .field("state", &self.state())
            .finish()
    }
}

/// How a pick may wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PickOptions {
    /// `None`: not said, so the method's config decides (else no).
    wait_for_ready: Option<bool>,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
}

impl PickOptions {
    /// Fail fast in TRANSIENT_FAILURE, wait without limit while connecting.
    pub fn new() -> Self {
        PickOptions::default()
    }

    /// Wait through TRANSIENT_FAILURE too, until a backend is ready or the deadline passes.
    pub fn wait_for_ready(mut self, wait: bool) -> Self {
        self.wait_for_ready = Some(wait);
        self
    }

    /// Whether the pick waits through TRANSIENT_FAILURE, if these options say.
    #[cfg(feature = "tower")]
    pub(crate) fn waits_for_ready(&self) -> Option<bool> {
        self.wait_for_ready
    }

    /// Give up `timeout` after the pick starts.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Give up at `deadline`.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// When the pick gives up, if it started at `now`: the earlier of its deadline and its
    /// timeout from `now`.
    pub(crate) fn effective_deadline(&self, now: Instant) -> Option<Instant> {
        let from_timeout = self.timeout.and_then(|t| now.checked_add(t));
        match (self.deadline, from_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A picked connection and the guard that reports the call's end.
#[derive(Debug)]
pub struct Picked<T> {
    /// The connection to send the call on.
    pub connection: T,
    /// Report the call's outcome through it (dropping it reports `CANCELLED`).
    pub call: CallGuard,
}

/// Reports a call's outcome and latency to the channel when the call ends.
#[must_use = "dropping the guard at once reports the call as cancelled"]
pub struct CallGuard {
    inbox: async_channel::Sender<Input>,
    subchannel: SubchannelId,
    backend: Arc<Backend>,
    started: Instant,
    /// What the picker noted, handed back with the outcome.
    note: PickNote,
    runtime: Arc<dyn Runtime>,
    /// The call's end has been counted.
    ended: bool,
    /// Whether the policy hears the outcome (it learns from outcomes).
    tells_policy: bool,
    /// The attempt's instruments, and the sizes of its messages.
    #[cfg(feature = "metrics")]
    attempt: Option<crate::metrics::AttemptMetrics>,
    /// The retry machine of the call, once committed to this attempt: it hears the end too
    /// (for the retry throttle).
    #[cfg(feature = "tower")]
    retry: Option<Box<crate::retry::Committed>>,
    /// The call's own instruments, once committed to this attempt: its end is the call's.
    #[cfg(all(feature = "tower", feature = "metrics"))]
    whole: Option<crate::metrics::CallMetrics>,
}

impl fmt::Debug for CallGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallGuard")
            .field("subchannel", &self.subchannel)
            .field("address", &self.backend.address)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl CallGuard {
    /// The subchannel the call went to.
    pub fn subchannel(&self) -> SubchannelId {
        self.subchannel
    }

    /// The address of the connection the call went to.
    pub fn address(&self) -> &Address {
        &self.backend.address
    }

    /// The backend the call went to, shared.
    #[cfg(feature = "tower")]
    pub(crate) fn backend(&self) -> Arc<Backend> {
        Arc::clone(&self.backend)
    }

    /// The attempt received response messages of `bytes` bytes (gRPC's headers left out).
    #[cfg(all(feature = "tower", feature = "metrics"))]
    pub(crate) fn received(&mut self, bytes: u64) {
        if let Some(attempt) = &mut self.attempt {
            attempt.received(bytes);
        }
    }

    /// Counts what `body` sends as the attempt's request messages.
    #[cfg(feature = "tower")]
    pub(crate) fn count_sent<B: http_body::Body<Data = bytes::Bytes>>(
        &mut self,
        body: &mut crate::replay::ReplayBody<B>,
    ) {
        #[cfg(feature = "metrics")]
        if let Some(attempt) = &mut self.attempt {
            attempt.sending(body.count_sent());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = body;
    }

    /// The call succeeded.
    pub fn success(self) {
        self.finish(Code::Ok);
    }

    /// The call ended with `code`.
    pub fn finish(mut self, code: Code) {
        self.report(code, None);
    }

    /// The call ended with `code`, and the backend reported its load with the response (what
    /// weighted_round_robin weighs endpoints by).
    pub fn finish_with_load(mut self, code: Code, load: LoadReport) {
        self.report(code, Some(load));
    }

    /// Whether the channel still waits for the call's outcome: it has not been reported, and
    /// the policy learns from outcomes. A load report is worth reading only then.
    #[cfg(feature = "tower")]
    pub(crate) fn expects_outcome(&self) -> bool {
        !self.ended && self.tells_policy
    }

    /// The call ended with `code`, with the backend's load report if it sent one.
    #[cfg(feature = "tower")]
    pub(crate) fn finish_with(mut self, code: Code, load: Option<LoadReport>) {
        self.report(code, load);
    }

    /// Commits the call's own instruments to this attempt: its end is the call's.
    #[cfg(all(feature = "tower", feature = "metrics"))]
    pub(crate) fn commit_call(&mut self, call: crate::metrics::CallMetrics) {
        self.whole = Some(call);
    }

    /// Hands the call's retry machine, committed to this attempt, the attempt's end.
    #[cfg(feature = "tower")]
    pub(crate) fn commit_retries(&mut self, committed: crate::retry::Committed) {
        self.retry = Some(Box::new(committed));
    }

    fn report(&mut self, code: Code, load: Option<LoadReport>) {
        #[cfg(feature = "tower")]
        if let Some(committed) = self.retry.take() {
            committed.ended(code, self.runtime.now());
        }
        #[cfg(all(feature = "tower", feature = "metrics"))]
        if let Some(call) = self.whole.take() {
            call.ended(code);
        }
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        self.backend.call_ended(code);
        #[cfg(feature = "metrics")]
        let attempt = self.attempt.take();
        #[cfg(not(feature = "metrics"))]
        let attempt: Option<std::convert::Infallible> = None;
        if !self.tells_policy && attempt.is_none() {
            return; // nothing to tell a policy that ignores outcomes: not even the clock read
        }
        let latency = self.runtime.now().saturating_duration_since(self.started);
        #[cfg(feature = "metrics")]
        if let Some(attempt) = attempt {
            attempt.ended(code, latency, Some(&self.backend.metrics));
        }
        if !self.tells_policy {
            return;
        }
        let mut outcome = CallOutcome::new(code, latency).with_note(self.note);
        if let Some(load) = load {
            outcome = outcome.with_load(load);
        }
        let _ = self
            .inbox
            .try_send(Input::CallEnded(self.subchannel, outcome));
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.report(Code::Cancelled, None);
    }
}

impl<T: Clone> Channel<T> {
    /// Picks a connection for one call, waiting while the channel connects. Fails at once in
    /// TRANSIENT_FAILURE with the error that names the failed addresses.
    pub async fn pick(&self, request: &PickRequest<'_>) -> Result<Picked<T>, Status> {
        self.pick_with(request, PickOptions::new()).await
    }

    /// Picks a connection for one call, as `options` say; with neither a timeout nor a deadline
    /// in them, the channel's default timeout bounds it (if it has one).
    pub async fn pick_with(
        &self,
        request: &PickRequest<'_>,
        options: PickOptions,
    ) -> Result<Picked<T>, Status> {
        let started = self.handle.runtime.now();
        // An attempt counts as started before its pick (gRFC A66), whether or not it gets a
        // backend.
        #[cfg(feature = "metrics")]
        let attempt = self.handle.metrics.attempt_started(request.path());
        #[allow(unused_mut)]
        let mut picked = self.pick_from(request, options, started).await;
        #[cfg(feature = "metrics")]
        match &mut picked {
            Ok(picked) => picked.call.attempt = Some(attempt),
            Err(status) => attempt.ended(
                status.code(),
                self.handle.runtime.now().saturating_duration_since(started),
                None,
            ),
        }
        picked
    }

    /// The pick of [`Channel::pick_with`], which started at `started`.
    async fn pick_from(
        &self,
        request: &PickRequest<'_>,
        options: PickOptions,
        started: Instant,
    ) -> Result<Picked<T>, Status> {
        let handle = &*self.handle;
        let deadline = options
            .effective_deadline(started)
            .or_else(|| handle.default_deadline(started));
        let mut sleep = None;
        let mut last_failure: Option<Status> = None;
        loop {
            // The usual pick takes no listener (which would allocate and lock): one is taken only
            // when the pick must wait, and then the snapshot is checked again before waiting.
            let snapshot = handle.shared.load();
            if handle.shared.is_closed() {
                return Err(Status::unavailable("the channel is closed"));
            }
            let (pick, note) = snapshot.picker.pick_with_note(request);
            match pick {
                Pick::Ready(subchannel) => {
                    let connection = snapshot
                        .connections
                        .get(&subchannel)
                        .filter(|connection| !(handle.shared.is_broken)(connection));
                    if let Some(connection) = connection {
                        connection.backend.call_started();
                        trace::picked(&handle.span, subchannel, &connection.backend.address);
                        return Ok(Picked {
                            connection: connection.connection.clone(),
                            call: CallGuard {
                                inbox: handle.inbox.clone(),
                                subchannel,
                                backend: Arc::clone(&connection.backend),
                                started,
                                note,
                                runtime: Arc::clone(&handle.runtime),
                                ended: false,
                                tells_policy: snapshot.wants_outcomes,
                                #[cfg(feature = "metrics")]
                                attempt: None,
                                #[cfg(feature = "tower")]
                                retry: None,
                                #[cfg(all(feature = "tower", feature = "metrics"))]
                                whole: None,
                            },
                        });
                    }
                    // Its connection just went away, or a call found it dead: wait for the
                    // picker that knows it. The pick counted a call in flight there (in
                    // least_request, say): end it, as a call never sent.
                    if snapshot.wants_outcomes {
                        let unsent = CallOutcome::unsent().with_note(note);
                        let _ = handle.inbox.try_send(Input::CallEnded(subchannel, unsent));
                    }
                }
                Pick::Queue if handle.shared.first_to_ask_exit_idle() => {
                    let _ = handle.inbox.try_send(Input::ExitIdle);
                }
                Pick::Fail(status) => {
                    if options.wait_for_ready != Some(true) {
                        trace::pick_failed(&handle.span, &status);
                        return Err(status);
                    }
                    last_failure = Some(status);
                }
                Pick::Drop(status) => {
                    trace::pick_failed(&handle.span, &status);
                    return Err(status);
                }
                _ => {}
            }
            let seen = snapshot.generation;
            drop(snapshot);
            let listener = handle.shared.listen();
            if handle.shared.load().generation != seen {
                continue; // a newer picker came while this one was asked
            }
            let Some(deadline) = deadline else {
                listener.await;
                continue;
            };
            let sleep = sleep.get_or_insert_with(|| handle.runtime.sleep_until(deadline));
            let timed_out = future::or(
                async {
                    listener.await;
                    false
                },
                async {
                    sleep.await;
                    true
                },
            )
            .await;
            if timed_out {
                let snapshot = handle.shared.load();
                let status = deadline_exceeded(
                    handle.runtime.now().saturating_duration_since(started),
                    snapshot.state,
                    last_failure.as_ref(),
                    snapshot.last_error.as_deref(),
                );
                trace::pick_failed(&handle.span, &status);
                return Err(status);
            }
        }
    }
}

impl<T> Channel<T> {
    /// The channel's connectivity state.
    pub fn state(&self) -> ConnectivityState {
        self.handle.shared.load().state
    }

    /// Waits until the state differs from `from`, and returns the new state.
    pub async fn state_changed(&self, from: ConnectivityState) -> ConnectivityState {
        loop {
            let listener = self.handle.shared.listen();
            let state = self.state();
            if state != from {
                return state;
            }
            listener.await;
        }
    }

    /// Starts connecting now if the channel is IDLE, instead of at the first call.
    pub fn connect(&self) {
        let _ = self.handle.inbox.try_send(Input::ExitIdle);
    }

    /// A snapshot of every subchannel: address, state, last error.
    pub async fn subchannels(&self) -> Vec<SubchannelInfo> {
        let (reply, answer) = async_channel::bounded(1);
        if self
            .handle
            .inbox
            .try_send(Input::Subchannels(reply))
            .is_err()
        {
            return Vec::new();
        }
        answer.recv().await.unwrap_or_default()
    }

    /// The channel as it is now: its state and since when, what the resolver last said, and
    /// every subchannel with its state, connection attempts, last error and calls. Answered by
    /// the channel's driver once it has taken every input already sent to it; a closed
    /// channel's is SHUTDOWN with no subchannels.
    pub async fn snapshot(&self) -> ChannelSnapshot {
        let (reply, answer) = async_channel::bounded(1);
        if self.handle.inbox.try_send(Input::Snapshot(reply)).is_ok() {
            if let Ok(snapshot) = answer.recv().await {
                return snapshot;
            }
        }
        let now = self.handle.runtime.now();
        ChannelSnapshot::closed(self.handle.target.to_string(), now)
    }

    /// The parsed target.
    pub fn target(&self) -> &Target {
        &self.handle.target
    }

    /// The service config in use: the resolver's, or the default, or an empty one (gRFC A21).
    pub fn service_config(&self) -> Arc<ServiceConfig> {
        Arc::clone(&self.handle.shared.load().service_config)
    }

    /// The channel's retry throttle (gRFC A6), if the service config in use sets
    /// `retryThrottling`: one token bucket that every call's retries and hedges share. A new
    /// config with the same settings keeps the same bucket.
    pub fn retry_throttle(&self) -> Option<Arc<RetryThrottle>> {
        self.handle.shared.load().retry_throttle.clone()
    }

    /// The settings the service config in use gives a call to `path`
    /// (`/package.Service/Method`): its timeout, wait-for-ready and retry or hedging policy
    /// ([`MethodConfig::call_policy`]). Takes no lock and allocates nothing.
    pub fn method_config(&self, path: &str) -> Option<Arc<MethodConfig>> {
        self.handle
            .shared
            .load()
            .service_config
            .methods
            .shared_for_path(path)
            .cloned()
    }

    /// The time on the channel's runtime.
    #[cfg(feature = "tower")]
    pub(crate) fn now(&self) -> Instant {
        self.handle.runtime.now()
    }

    /// The channel's runtime, for timers.
    #[cfg(feature = "tower")]
    pub(crate) fn runtime(&self) -> Arc<dyn Runtime> {
        Arc::clone(&self.handle.runtime)
    }

    /// The deadline of a call that started at `now` and names none: the default timeout's.
    #[cfg(feature = "tower")]
    pub(crate) fn default_deadline(&self, now: Instant) -> Option<Instant> {
        self.handle.default_deadline(now)
    }

    /// The connector's reading of a call's transport error as a gRPC code.
    #[cfg(feature = "tower")]
    pub(crate) fn error_code(&self) -> fn(&(dyn std::error::Error + 'static)) -> Option<Code> {
        self.handle.error_code
    }

    /// The connector's reading of a backend's load report in a response's trailers.
    #[cfg(feature = "tower")]
    pub(crate) fn load_report(&self) -> crate::body::LoadReader {
        self.handle.load_report
    }

    /// The message size limits of a gRPC call to a method whose config is `method`.
    #[cfg(feature = "tower")]
    pub(crate) fn message_limits(
        &self,
        method: Option<&MethodConfig>,
    ) -> crate::message_size::CallLimits {
        self.handle.message_limits.for_call(method)
    }

    /// What the channel's calls retry and hedge by.
    #[cfg(feature = "tower")]
    pub(crate) fn retries(&self) -> &Retries {
        &self.handle.retries
    }

    /// A call at `path` through the channel's `Service` starts at `started`: timed until it
    /// ends (gRFC A66's call duration).
    #[cfg(all(feature = "tower", feature = "metrics"))]
    pub(crate) fn call_started(&self, path: &str, started: Instant) -> crate::metrics::CallMetrics {
        self.handle
            .metrics
            .call_started(path, self.runtime(), started)
    }
}

impl<T> Handle<T> {
    fn default_deadline(&self, now: Instant) -> Option<Instant> {
        self.default_timeout
            .and_then(|timeout| now.checked_add(timeout))
    }
}

fn deadline_exceeded(
    waited: Duration,
    state: ConnectivityState,
    failure: Option<&Status>,
    last_error: Option<&str>,
) -> Status {
    let mut message = format!(
        "deadline exceeded after {waited:.3?} waiting for a ready backend (channel {state})"
    );
    if let Some(failure) = failure {
        message.push_str(&format!("; last failure: {}", failure.message()));
    } else if let Some(error) = last_error {
        message.push_str(&format!("; last connection error: {error}"));
    }
    Status::new(Code::DeadlineExceeded, message)
}
