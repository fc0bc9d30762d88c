//! The HTTP/2 settings of a channel's connections: the connect timeout, flow-control windows,
//! header limits and keepalive pings (gRFC A8), as tonic's `Endpoint` offers them.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use croupier::Address;
use hyper::client::conn::http2;
use hyper_util::rt::TokioExecutor;

use super::frames::GoAway;

/// The HTTP/2 settings of a channel's connections. Every one is off, or HTTP/2's (hyper's)
/// default, until set.
///
/// ```
/// use std::time::Duration;
///
/// use croupier_tokio::grpc::{Http2Options, KeepAlive};
///
/// let options = Http2Options::new()
///     .connect_timeout(Duration::from_secs(5))
///     .initial_stream_window_size(1 << 20)
///     .keep_alive(KeepAlive::new(Duration::from_secs(30)));
/// assert_eq!(options.keep_alive_time(), Some(Duration::from_secs(30)));
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Http2Options {
    connect_timeout: Option<Duration>,
    initial_stream_window_size: Option<u32>,
    initial_connection_window_size: Option<u32>,
    adaptive_window: bool,
    max_header_list_size: Option<u32>,
    keep_alive: Option<KeepAlive>,
    /// The keepalive time in force: the configured one, doubled each time a server said
    /// `too_many_pings`. Every connection of one connector shares it; a copy of the options has
    /// its own.
    keep_alive_time: KeepAliveTime,
}

impl Http2Options {
    /// HTTP/2's defaults: no connect timeout of its own, no keepalive pings.
    pub fn new() -> Self {
        Http2Options::default()
    }

    /// Bounds each connection attempt (opening the stream, the HTTP/2 handshake, the server's
    /// preface, the first health answer) by `timeout`. The core bounds every attempt by its
    /// connect deadline already (at least the backoff's min connect timeout, 20 s by default,
    /// see [`BackoffConfig`](croupier::BackoffConfig)): the attempt ends at whichever comes
    /// first, so this can shorten the core's bound but never lengthen it. Default: none.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The flow-control window of each stream, in bytes (HTTP/2's `SETTINGS_INITIAL_WINDOW_SIZE`;
    /// default 2 MiB, hyper's), at most 2<sup>31</sup> - 1, HTTP/2's largest window: a larger
    /// size counts as that. Turns the adaptive window off.
    pub fn initial_stream_window_size(mut self, size: u32) -> Self {
        self.initial_stream_window_size = Some(size.min(MAX_WINDOW));
        self.adaptive_window = false;
        self
    }

    /// The flow-control window of the connection as a whole, in bytes (default 5 MiB, hyper's),
    /// at most 2<sup>31</sup> - 1 as well. Turns the adaptive window off.
    pub fn initial_connection_window_size(mut self, size: u32) -> Self {
        self.initial_connection_window_size = Some(size.min(MAX_WINDOW));
        self.adaptive_window = false;
        self
    }

    /// Sizes the flow-control windows from the bandwidth-delay product that PINGs measure, in
    /// place of fixed initial windows. Default: off.
    pub fn adaptive_window(mut self, enabled: bool) -> Self {
        self.adaptive_window = enabled;
        self
    }

    /// The largest header list a response may bring, in bytes (HTTP/2's
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`; default 16 KiB, hyper's).
    pub fn max_header_list_size(mut self, size: u32) -> Self {
        self.max_header_list_size = Some(size);
        self
    }

    /// Sends keepalive pings (gRFC A8): see [`KeepAlive`]. Default: none.
    pub fn keep_alive(mut self, keep_alive: KeepAlive) -> Self {
        self.keep_alive_time = KeepAliveTime::new(keep_alive.time);
        self.keep_alive = Some(keep_alive);
        self
    }

    /// The connect timeout set, if any.
    pub fn get_connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// The keepalive settings, if pings are sent.
    pub fn get_keep_alive(&self) -> Option<&KeepAlive> {
        self.keep_alive.as_ref()
    }

    /// The keepalive time in force for new connections: the configured [`KeepAlive::new`] time,
    /// doubled each time a server closed a connection with GOAWAY `ENHANCE_YOUR_CALM` and debug
    /// data `too_many_pings` (gRFC A8). `None` without keepalive.
    pub fn keep_alive_time(&self) -> Option<Duration> {
        self.keep_alive.as_ref()?;
        Some(self.keep_alive_time.get())
    }

    /// Applies the settings to a new connection's HTTP/2 builder.
    pub(super) fn configure(&self, builder: &mut http2::Builder<TokioExecutor>) {
        if let Some(size) = self.initial_stream_window_size {
            builder.initial_stream_window_size(size);
        }
        if let Some(size) = self.initial_connection_window_size {
            builder.initial_connection_window_size(size);
        }
        if self.adaptive_window {
            builder.adaptive_window(true);
        }
        if let Some(size) = self.max_header_list_size {
            builder.max_header_list_size(size);
        }
        if let Some(keep_alive) = &self.keep_alive {
            builder
                .keep_alive_interval(self.keep_alive_time.get())
                .keep_alive_timeout(keep_alive.timeout)
                .keep_alive_while_idle(keep_alive.permit_without_calls);
        }
    }

    /// `attempt`, a connection attempt to `address`, bounded by the connect timeout if one is set.
    pub(super) fn bound<T>(
        &self,
        address: &Address,
        attempt: impl Future<Output = io::Result<T>> + Send + 'static,
    ) -> impl Future<Output = io::Result<T>> + Send + 'static {
        let timeout = self.connect_timeout;
        let address = address.clone();
        async move {
            let Some(timeout) = timeout else {
                return attempt.await;
            };
            tokio::time::timeout(timeout, attempt)
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "connecting to {address} took longer than the connect timeout \
                             ({timeout:?})"
                        ),
                    ))
                })
        }
    }

    /// What a connection's GOAWAY changes for the connections after it: `too_many_pings`
    /// doubles the keepalive time.
    pub(super) fn goaway_listener(&self) -> impl Fn(&GoAway) + Send + Sync + 'static {
        let time = self
            .keep_alive
            .as_ref()
            .map(|_| self.keep_alive_time.shared());
        move |goaway| {
            if let Some(time) = &time {
                if goaway.too_many_pings() {
                    time.double();
                }
            }
        }
    }
}

/// HTTP/2 keepalive pings (gRFC A8): after `time` with nothing read from the server, the client
/// sends a PING, and closes the connection (reporting it lost, so that its calls fail
/// UNAVAILABLE and the subchannel reconnects) if no answer comes within `timeout`. A half-open
/// peer is found without waiting for TCP's timeouts.
///
/// grpc-go raises a `time` below 10 s to 10 s; croupier takes it as given (tests and local
/// networks want less), and leaves the policing to servers, as A8 does: a server that finds
/// the pings too frequent closes the connection with GOAWAY `ENHANCE_YOUR_CALM`
/// `too_many_pings`, and the channel then doubles its keepalive time for every later connection
/// ([`Http2Options::keep_alive_time`]). gRPC servers allow a ping every 5 minutes by default, and
/// only while calls are in flight: keep `time` at or above what the servers permit.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeepAlive {
    time: Duration,
    timeout: Duration,
    permit_without_calls: bool,
}

impl KeepAlive {
    /// Pings after `time` without activity, waits 20 s for the answer (gRPC's default), and
    /// pings only while calls are in flight. A `time` under a millisecond counts as one (zero
    /// would ping after every read, and doubling it would never help).
    pub fn new(time: Duration) -> Self {
        KeepAlive {
            time: time.max(MIN_TIME),
            timeout: Duration::from_secs(20),
            permit_without_calls: false,
        }
    }

    /// How long to wait for a ping's answer before the connection counts as lost.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Pings also while no call is in flight (A8's `permit_without_calls`; default: off). A
    /// health check's Watch stream is a call in flight: with health checking on, pings go on.
    pub fn permit_without_calls(mut self, permit: bool) -> Self {
        self.permit_without_calls = permit;
        self
    }

    /// The time without activity after which a ping is sent.
    pub fn get_time(&self) -> Duration {
        self.time
    }

    /// How long a ping's answer may take.
    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether pings are sent with no call in flight.
    pub fn get_permit_without_calls(&self) -> bool {
        self.permit_without_calls
    }
}

/// HTTP/2's largest flow-control window (RFC 9113, 6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// The shortest keepalive time taken.
const MIN_TIME: Duration = Duration::from_millis(1);

/// A keepalive time that the connections of one connector share, in nanoseconds.
#[derive(Default)]
struct KeepAliveTime(Arc<AtomicU64>);

impl KeepAliveTime {
    fn new(time: Duration) -> Self {
        KeepAliveTime(Arc::new(AtomicU64::new(nanos(time))))
    }

    fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    /// The same time, for a connection to change.
    fn shared(&self) -> KeepAliveTime {
        KeepAliveTime(Arc::clone(&self.0))
    }

    fn double(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |time| {
                Some(time.saturating_mul(2))
            });
    }
}

/// Copies of the options each have their own time, so that one channel's servers never change
/// another's.
impl Clone for KeepAliveTime {
    fn clone(&self) -> Self {
        KeepAliveTime::new(self.get())
    }
}

impl fmt::Debug for KeepAliveTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

fn nanos(time: Duration) -> u64 {
    u64::try_from(time.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn goaway(reason: h2::Reason, debug: &'static [u8]) -> GoAway {
        GoAway {
            last_stream_id: 0,
            reason,
            debug_data: Bytes::from_static(debug),
        }
    }

    #[test]
    fn too_many_pings_doubles_the_keepalive_time_of_the_options_and_no_copy() {
        let options = Http2Options::new().keep_alive(KeepAlive::new(Duration::from_millis(300)));
        let copy = options.clone();
        let listener = options.goaway_listener();
        listener(&goaway(h2::Reason::NO_ERROR, b""));
        listener(&goaway(h2::Reason::ENHANCE_YOUR_CALM, b"something else"));
        assert_eq!(options.keep_alive_time(), Some(Duration::from_millis(300)));
        listener(&goaway(h2::Reason::ENHANCE_YOUR_CALM, b"too_many_pings"));
        assert_eq!(options.keep_alive_time(), Some(Duration::from_millis(600)));
        listener(&goaway(h2::Reason::ENHANCE_YOUR_CALM, b"too_many_pings"));
        assert_eq!(options.keep_alive_time(), Some(Duration::from_millis(1200)));
        assert_eq!(copy.keep_alive_time(), Some(Duration::from_millis(300)));
    }

    #[test]
    fn the_keepalive_time_saturates() {
        let options = Http2Options::new().keep_alive(KeepAlive::new(Duration::MAX));
        let listener = options.goaway_listener();
        listener(&goaway(h2::Reason::ENHANCE_YOUR_CALM, b"too_many_pings"));
        assert_eq!(
            options.keep_alive_time(),
            Some(Duration::from_nanos(u64::MAX))
        );
    }

    #[test]
    fn a_zero_keepalive_time_counts_as_a_millisecond_and_doubles_from_there() {
        let options = Http2Options::new().keep_alive(KeepAlive::new(Duration::ZERO));
        assert_eq!(options.keep_alive_time(), Some(Duration::from_millis(1)));
        options.goaway_listener()(&goaway(h2::Reason::ENHANCE_YOUR_CALM, b"too_many_pings"));
        assert_eq!(options.keep_alive_time(), Some(Duration::from_millis(2)));
    }

    #[test]
    fn windows_are_at_most_http2s_largest() {
        let options = Http2Options::new()
            .initial_stream_window_size(u32::MAX)
            .initial_connection_window_size(1 << 31);
        assert_eq!(options.initial_stream_window_size, Some(MAX_WINDOW));
        assert_eq!(options.initial_connection_window_size, Some(MAX_WINDOW));
        let options = Http2Options::new().initial_stream_window_size(MAX_WINDOW);
        assert_eq!(options.initial_stream_window_size, Some(MAX_WINDOW));
    }

    #[test]
    fn without_keepalive_there_is_no_time() {
        let options = Http2Options::new();
        options.goaway_listener()(&goaway(h2::Reason::ENHANCE_YOUR_CALM, b"too_many_pings"));
        assert_eq!(options.keep_alive_time(), None);
    }
}
