//! Resolvers: what turns a target into endpoints, registered by scheme.
//!
//! A resolver runs as a task for the channel's whole life. It reports results through its
//! [`ResolverContext`] whenever it has them, and looks again when the channel asks
//! ([`ResolverContext::resolve_now`]): the core decides when that is (after a lost connection, after
//! an error with backoff, and periodically), already rate-limited.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use croupier::{Endpoint, ResolverError, ResolverUpdate, Target};
use event_listener::Event;

use crate::dns::DnsResolver;
use crate::inbox::Input;
use crate::runtime::{BoxFuture, Runtime};

/// Resolves targets of one scheme. Register it with [`register_resolver`] (for every channel of the
/// process) or [`ChannelBuilder::resolver`](crate::ChannelBuilder::resolver) (for one channel).
pub trait Resolver: Send + Sync + 'static {
    /// Resolves `target` for as long as the returned future runs: report results with
    /// [`ResolverContext::update`] or [`ResolverContext::error`], and wait for
    /// [`ResolverContext::resolve_now`] to look again. A future that returns leaves the channel with
    /// its last results. The future is dropped when the channel closes.
    fn resolve(&self, target: &Target, context: ResolverContext) -> BoxFuture<'static, ()>;
}

impl<F> Resolver for F
where
    F: Fn(&Target, ResolverContext) -> BoxFuture<'static, ()> + Send + Sync + 'static,
{
    fn resolve(&self, target: &Target, context: ResolverContext) -> BoxFuture<'static, ()> {
        self(target, context)
    }
}

/// A resolver's link to its channel.
#[derive(Clone)]
pub struct ResolverContext {
    inbox: async_channel::Sender<Input>,
    resolve_now: Arc<ResolveNow>,
    runtime: Arc<dyn Runtime>,
    default_port: u16,
}

impl fmt::Debug for ResolverContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolverContext")
            .field("default_port", &self.default_port)
            .finish_non_exhaustive()
    }
}

/// A "look again" flag with a way to wait for it.
#[derive(Debug, Default)]
pub(crate) struct ResolveNow {
    pending: AtomicBool,
    event: Event,
}

impl ResolveNow {
    pub(crate) fn request(&self) {
        self.pending.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }
}

impl ResolverContext {
    pub(crate) fn new(
        inbox: async_channel::Sender<Input>,
        resolve_now: Arc<ResolveNow>,
        runtime: Arc<dyn Runtime>,
        default_port: u16,
    ) -> Self {
        ResolverContext {
            inbox,
            resolve_now,
            runtime,
            default_port,
        }
    }

    /// Reports the endpoints the target names now.
    pub fn update(&self, update: ResolverUpdate) {
        let _ = self.inbox.try_send(Input::Resolved(update));
    }

    /// Reports a failure to resolve; the channel keeps its last endpoints and asks again later.
    pub fn error(&self, error: ResolverError) {
        let _ = self.inbox.try_send(Input::ResolverFailed(error));
    }

    /// Waits until the channel asks for fresh results. Requests that arrive while the resolver is
    /// busy are remembered (one pending request at most).
    pub async fn resolve_now(&self) {
        loop {
            if self.resolve_now.pending.swap(false, Ordering::AcqRel) {
                return;
            }
            let listener = self.resolve_now.event.listen();
            if self.resolve_now.pending.swap(false, Ordering::AcqRel) {
                return;
            }
            listener.await;
        }
    }

    /// Whether the channel is gone (a resolver may stop then).
    pub fn is_closed(&self) -> bool {
        self.inbox.is_closed()
    }

    /// The port to use when the target names none.
    pub fn default_port(&self) -> u16 {
        self.default_port
    }

    /// The runtime, for lookups and timers.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }
}

/// Resolvers by scheme.
#[derive(Clone, Default)]
pub struct ResolverRegistry {
    resolvers: BTreeMap<String, Arc<dyn Resolver>>,
}

impl fmt::Debug for ResolverRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.resolvers.keys()).finish()
    }
}

impl ResolverRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        ResolverRegistry::default()
    }

    /// A registry with the built-in schemes: `dns`, `passthrough`, `ipv4`, `ipv6`, `unix`,
    /// `unix-abstract`.
    pub fn with_builtins() -> Self {
        let mut registry = ResolverRegistry::new();
        registry.register("dns", DnsResolver::new());
        for scheme in ["passthrough", "ipv4", "ipv6", "unix", "unix-abstract"] {
            registry.register(scheme, StaticTargetResolver);
        }
        registry
    }

    /// Registers `resolver` for `scheme` (lowercase), replacing an earlier one.
    pub fn register(&mut self, scheme: &str, resolver: impl Resolver) {
        self.resolvers
            .insert(scheme.to_ascii_lowercase(), Arc::new(resolver));
    }

    /// The resolver for `scheme`.
    pub fn get(&self, scheme: &str) -> Option<Arc<dyn Resolver>> {
        self.resolvers.get(scheme).cloned()
    }

    /// Whether `scheme` has a resolver.
    pub fn contains(&self, scheme: &str) -> bool {
        self.resolvers.contains_key(scheme)
    }

    /// Adds every resolver of `other`, replacing same-scheme ones.
    pub fn extend(&mut self, other: &ResolverRegistry) {
        for (scheme, resolver) in &other.resolvers {
            self.resolvers.insert(scheme.clone(), Arc::clone(resolver));
        }
    }
}

fn global() -> &'static RwLock<ResolverRegistry> {
    static GLOBAL: OnceLock<RwLock<ResolverRegistry>> = OnceLock::new();
    GLOBAL.get_or_init(|| RwLock::new(ResolverRegistry::with_builtins()))
}

/// Registers `resolver` for `scheme` in the process-wide registry that every channel built
/// afterwards starts from (gRPC's `resolver.Register`): call it at start-up.
pub fn register_resolver(scheme: &str, resolver: impl Resolver) {
    global()
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .register(scheme, resolver);
}

/// A copy of the process-wide registry.
pub fn global_resolvers() -> ResolverRegistry {
    global()
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// A resolver that always reports the same endpoints (handy for tests and fixed fleets).
#[derive(Clone, Debug)]
pub struct StaticResolver {
    endpoints: Vec<Endpoint>,
}

impl StaticResolver {
    /// A resolver for these endpoints.
    pub fn new(endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        StaticResolver {
            endpoints: endpoints.into_iter().collect(),
        }
    }
}

impl Resolver for StaticResolver {
    fn resolve(&self, _: &Target, context: ResolverContext) -> BoxFuture<'static, ()> {
        context.update(ResolverUpdate::new(self.endpoints.clone()));
        Box::pin(async {})
    }
}

/// `passthrough`, `ipv4`, `ipv6`, `unix`, `unix-abstract`: the target names its addresses itself.
#[derive(Clone, Copy, Debug)]
struct StaticTargetResolver;

impl Resolver for StaticTargetResolver {
    fn resolve(&self, target: &Target, context: ResolverContext) -> BoxFuture<'static, ()> {
        match target.static_endpoints() {
            Some(Ok(endpoints)) => context.update(ResolverUpdate::new(endpoints)),
            Some(Err(error)) => context.error(ResolverError::new(error.to_string())),
            None => context.error(ResolverError::new(format!(
                "scheme {} does not name its addresses itself",
                target.scheme()
            ))),
        }
        Box::pin(async {})
    }
}
