//! The `etcd` resolver and its settings: credentials, TLS, time limits, and an observer of its
//! errors.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use croupier::Target;
use croupier_channel::{BoxFuture, Resolver, ResolverContext};
use etcd_client::ConnectOptions;
use tonic::transport::Endpoint;

use crate::error::EtcdError;
use crate::event::EtcdEvent;
use crate::target::EtcdTarget;
use crate::watch::Watch;

/// Who is told of what the resolver does.
type Observer = Arc<dyn Fn(&EtcdEvent) + Send + Sync>;

/// Resolves `etcd://member,member/prefix` targets: the endpoints are the keys under
/// `prefix/`, read in full and then watched, each change reaching the channel as one update.
/// Register it for the scheme `etcd`, per channel (`.resolver("etcd", EtcdResolver::new())`)
/// or for the process (`register_resolver("etcd", EtcdResolver::new())`).
///
/// The resolver talks to one member at a time, in the target's order, and moves on to the next
/// when one cannot be reached, fails a read, or loses its watch (also when it loses its
/// leader: watches ask for one). Whenever it moves on it reads the prefix in full again, so
/// no change made while it was away is lost. When every member has failed in turn it reports an
/// [`EtcdError::AllMembersFailed`] to the channel, which keeps serving its last list, and tries
/// the members again after a backoff, or at once when the channel asks it to resolve again.
///
/// It runs on tokio (the etcd client does): use it with a channel of `croupier-tokio`.
#[derive(Clone)]
pub struct EtcdResolver {
    settings: Arc<Settings>,
}

/// The resolver's settings, shared by every target it resolves.
#[derive(Clone)]
pub(crate) struct Settings {
    credentials: Option<(String, String)>,
    #[cfg(feature = "tls")]
    tls: Option<etcd_client::TlsOptions>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    keep_alive: (Duration, Duration),
    pub(crate) retry_initial: Duration,
    pub(crate) retry_max: Duration,
    observer: Option<Observer>,
}

impl fmt::Debug for EtcdResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &*self.settings;
        let mut debug = f.debug_struct("EtcdResolver");
        // Never the user or the password: a Debug print ends up in logs.
        debug.field(
            "credentials",
            &settings.credentials.as_ref().map(|_| "<redacted>"),
        );
        #[cfg(feature = "tls")]
        debug.field("tls", &settings.tls.is_some());
        debug
            .field("connect_timeout", &settings.connect_timeout)
            .field("request_timeout", &settings.request_timeout)
            .field("keep_alive", &settings.keep_alive)
            .field(
                "retry_backoff",
                &(settings.retry_initial, settings.retry_max),
            )
            .field("observer", &settings.observer.is_some())
            .finish()
    }
}

impl Default for EtcdResolver {
    fn default() -> Self {
        EtcdResolver::new()
    }
}

impl EtcdResolver {
    /// A resolver without credentials or TLS; members are given 2 s to connect and 5 s to
    /// answer, HTTP/2 keepalive pings every 10 s (5 s to answer) find a member that went away
    /// silently, and the members are tried again 100 ms after all failed, doubling to 2 s.
    pub fn new() -> Self {
        EtcdResolver {
            settings: Arc::new(Settings {
                credentials: None,
                #[cfg(feature = "tls")]
                tls: None,
                connect_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(5),
                keep_alive: (Duration::from_secs(10), Duration::from_secs(5)),
                retry_initial: Duration::from_millis(100),
                retry_max: Duration::from_secs(2),
                observer: None,
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        change(Arc::make_mut(&mut self.settings));
        self
    }

    /// Authenticates as `user` with `password` (etcd's auth). Neither is ever printed: not by
    /// `Debug`, not in errors.
    pub fn user(self, user: impl Into<String>, password: impl Into<String>) -> Self {
        let credentials = (user.into(), password.into());
        self.with(|settings| settings.credentials = Some(credentials))
    }

    /// Connects to the members over TLS with `tls` (a CA to trust, a client identity, the
    /// name to verify).
    #[cfg(feature = "tls")]
    pub fn tls(self, tls: etcd_client::TlsOptions) -> Self {
        self.with(|settings| settings.tls = Some(tls))
    }

    /// How long a member is given to accept a connection (default 2 s).
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        self.with(|settings| settings.connect_timeout = timeout)
    }

    /// How long a member is given to answer a read or to start a watch (default 5 s).
    pub fn request_timeout(self, timeout: Duration) -> Self {
        self.with(|settings| settings.request_timeout = timeout)
    }

    /// HTTP/2 keepalive: a ping after `interval` (etcd refuses pings closer than 5 s apart by
    /// default), and the member counts as gone if it does not answer within `timeout`.
    pub fn keep_alive(self, interval: Duration, timeout: Duration) -> Self {
        self.with(|settings| settings.keep_alive = (interval, timeout))
    }

    /// The waits between rounds over every member after all failed: `initial`, doubling up to
    /// `max`, back to `initial` once a member answers.
    pub fn retry_backoff(self, initial: Duration, max: Duration) -> Self {
        self.with(|settings| {
            settings.retry_initial = initial;
            settings.retry_max = max.max(initial);
        })
    }

    /// Calls `observer` with everything the resolver does and meets, as it happens, for logs
    /// and metrics: each list it sends the channel, each member that failed (and the resolver
    /// moved on), all members failed, each key skipped for its value. The channel itself hears
    /// only of the errors that leave it without a fresh list. The observer runs on the
    /// resolver's task: keep it short.
    pub fn on_event(self, observer: impl Fn(&EtcdEvent) + Send + Sync + 'static) -> Self {
        let observer: Observer = Arc::new(observer);
        self.with(|settings| settings.observer = Some(observer))
    }
}

impl Settings {
    /// Whether members are dialled over TLS.
    pub(crate) fn uses_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        return false;
    }

    /// The transport's settings for the member at `url`: time limits, keepalive, TLS.
    pub(crate) fn endpoint(&self, url: String) -> Result<Endpoint, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(url)?
            .connect_timeout(self.connect_timeout)
            .http2_keep_alive_interval(self.keep_alive.0)
            .keep_alive_timeout(self.keep_alive.1)
            .keep_alive_while_idle(true);
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return endpoint.tls_config(tls.clone());
        }
        Ok(endpoint)
    }

    /// The etcd client's options: the credentials, and watches that end when their member loses
    /// its leader (so that a member cut off from the others is left for one that is not).
    pub(crate) fn connect_options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new().with_require_leader(true);
        if let Some((user, password)) = &self.credentials {
            // A token expires (etcd's --auth-token-ttl): a request it fails gets a fresh one.
            options = options
                .with_user(user.clone(), password.clone())
                .with_auto_token_refresh(true);
        }
        options
    }

    /// Tells the observer of `event`, if there is one; `event` is only made then.
    pub(crate) fn observe(&self, event: impl FnOnce() -> EtcdEvent) {
        if let Some(observer) = &self.observer {
            observer(&event());
        }
    }

    /// Tells the observer of `error`.
    pub(crate) fn observe_error(&self, error: &EtcdError) {
        self.observe(|| EtcdEvent::Error(error.clone()));
    }
}

impl Resolver for EtcdResolver {
    fn resolve(&self, target: &Target, context: ResolverContext) -> BoxFuture<'static, ()> {
        let settings = Arc::clone(&self.settings);
        let parsed = EtcdTarget::parse(target);
        Box::pin(async move {
            match parsed {
                Ok(target) => Watch::new(settings, target, context).run().await,
                Err(error) => {
                    settings.observe_error(&error);
                    context.error((&error).into());
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_credentials() {
        let resolver = EtcdResolver::new().user("root", "hunter2");
        let printed = format!("{resolver:?}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("root"),
            "{printed}"
        );
    }
}
