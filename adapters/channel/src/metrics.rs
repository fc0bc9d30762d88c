//! The channel's metrics (feature `metrics`), through the `metrics` facade: gRPC's names and
//! labels where gRPC defines them (gRFC A66 per call and per attempt, A94 per subchannel, A78
//! for weighted_round_robin and pick_first), and croupier's own per-backend call counter.
//!
//! A call registers nothing on its way: the instruments of a method (and of a method on one
//! backend) are registered the first time a call uses them and kept, so that a pick and a
//! call's end touch handles only, with no lock and no allocation. Handles registered while no
//! recorder is installed stay silent: install the recorder before the channel's first call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::Duration;
#[cfg(feature = "tower")]
use std::time::Instant;

use arc_swap::ArcSwap;
use croupier::{Address, Code};
use metrics::{Counter, Histogram, Key, Label, Level, Metadata, Unit};

mod lb;

pub(crate) use lb::PolicyMetrics;
pub use lb::{
    PICK_FIRST_DISCONNECTIONS, PICK_FIRST_FAILED, PICK_FIRST_SUCCEEDED, WRR_NOT_YET_USABLE,
    WRR_RR_FALLBACK, WRR_STALE, WRR_WEIGHTS,
};

/// Each call's time from its start to its end, across all its attempts, in seconds (A66;
/// `grpc.method`, `grpc.target`, `grpc.status`): the calls through the channel's `Service`.
pub const CALL_DURATION: &str = "grpc.client.call.duration";
/// Attempts started, with or without a backend to pick (A66; `grpc.method`, `grpc.target`).
pub const ATTEMPT_STARTED: &str = "grpc.client.attempt.started";
/// Each attempt's time from its pick to its end, in seconds (A66; with `grpc.status`).
pub const ATTEMPT_DURATION: &str = "grpc.client.attempt.duration";
/// The bytes of an attempt's request messages, without gRPC's 5-byte message headers (A66).
pub const ATTEMPT_SENT: &str = "grpc.client.attempt.sent_total_compressed_message_size";
/// The bytes of an attempt's response messages, without gRPC's 5-byte message headers (A66).
pub const ATTEMPT_RCVD: &str = "grpc.client.attempt.rcvd_total_compressed_message_size";
/// Calls (attempts) picked for each backend, by method and status: croupier's own counter,
/// labelled `croupier.backend` with the backend's address.
pub const BACKEND_CALLS: &str = "croupier.client.backend.calls";
/// Connection attempts that succeeded (A94; `grpc.target`).
pub const ATTEMPTS_SUCCEEDED: &str = "grpc.subchannel.connection_attempts_succeeded";
/// Connection attempts that failed or timed out (A94; `grpc.target`).
pub const ATTEMPTS_FAILED: &str = "grpc.subchannel.connection_attempts_failed";
/// Established connections that ended (A94; `grpc.target`, `grpc.disconnect_error`).
pub const DISCONNECTIONS: &str = "grpc.subchannel.disconnections";
/// Connections open now (A94; `grpc.target`).
pub const OPEN_CONNECTIONS: &str = "grpc.subchannel.open_connections";

/// The most methods whose calls are told apart; the calls of any further ones are counted
/// under `other`, as gRFC A66 does for methods it does not know, so that a client sending
/// arbitrary paths cannot grow the label set without bound.
const MAX_METHODS: usize = 256;

static METADATA: Metadata<'static> = Metadata::new("croupier", Level::INFO, Some(module_path!()));

/// Registered instruments of one method on a channel: its attempt counter, and its
/// histograms (of attempts, of calls) by status.
struct MethodInstruments {
    method: Arc<str>,
    target: Arc<str>,
    started: Counter,
    by_status: [OnceLock<AttemptInstruments>; 17],
    /// Calls through the channel's `Service` (feature `tower`), by status.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    calls: [OnceLock<Histogram>; 17],
}

impl MethodInstruments {
    /// The labels of its instruments for `code`.
    fn labels(&self, code: Code) -> Vec<Label> {
        vec![
            Label::new("grpc.method", Arc::clone(&self.method)),
            Label::new("grpc.target", Arc::clone(&self.target)),
            Label::new("grpc.status", code.as_str()),
        ]
    }
}

struct AttemptInstruments {
    duration: Histogram,
    sent: Histogram,
    rcvd: Histogram,
}

/// What one channel records its calls with.
pub(crate) struct ChannelMetrics {
    target: Arc<str>,
    methods: LabelCache<MethodInstruments>,
}

impl std::fmt::Debug for ChannelMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelMetrics")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// An attempt in progress: its method's instruments, and the sizes of its messages so far.
pub(crate) struct AttemptMetrics {
    method: Arc<MethodInstruments>,
    received: u64,
    /// What its request body's copy counts as sent.
    sent: Option<Arc<AtomicU64>>,
}

impl std::fmt::Debug for AttemptMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AttemptMetrics")
            .field(&self.method.method)
            .finish()
    }
}

impl ChannelMetrics {
    /// The metrics of a channel to `target` (its canonical form, `dns:///host:port`).
    pub(crate) fn new(target: &str) -> Self {
        describe();
        ChannelMetrics {
            target: target.into(),
            methods: LabelCache::default(),
        }
    }

    /// An attempt at `path` (`/package.Service/Method`, or none) starts: counted now.
    pub(crate) fn attempt_started(&self, path: Option<&str>) -> AttemptMetrics {
        let method = self.method(path);
        method.started.increment(1);
        AttemptMetrics {
            method,
            received: 0,
            sent: None,
        }
    }

    /// A call at `path` starts at `started`, timed by `clock` to its end.
    #[cfg(feature = "tower")]
    pub(crate) fn call_started(&self, path: &str, clock: Clock, started: Instant) -> CallMetrics {
        CallMetrics {
            method: Some(self.method(Some(path))),
            clock,
            started,
        }
    }

    /// The instruments of the method at `path`, registered on its first call.
    fn method(&self, path: Option<&str>) -> Arc<MethodInstruments> {
        let method = path.map_or("other", |path| path.strip_prefix('/').unwrap_or(path));
        self.methods
            .get_or_insert(method, |method| MethodInstruments {
                started: counter(
                    ATTEMPT_STARTED,
                    vec![
                        Label::new("grpc.method", Arc::clone(&method)),
                        Label::new("grpc.target", Arc::clone(&self.target)),
                    ],
                ),
                method,
                target: Arc::clone(&self.target),
                by_status: Default::default(),
                calls: Default::default(),
            })
    }
}

#[cfg(feature = "tower")]
/// What a call's end is timed by: the channel's runtime clock.
pub(crate) type Clock = Arc<dyn crate::runtime::Runtime>;

#[cfg(feature = "tower")]
/// A call in progress through the channel's `Service`: recorded once, when it ends, whatever
/// its attempts; a call dropped before its end (its caller gave up) ends `CANCELLED`.
pub(crate) struct CallMetrics {
    method: Option<Arc<MethodInstruments>>,
    clock: Clock,
    started: Instant,
}

#[cfg(feature = "tower")]
impl std::fmt::Debug for CallMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMetrics")
            .field("method", &self.method.as_ref().map(|m| &m.method))
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "tower")]
impl CallMetrics {
    /// The call ended with `code`.
    pub(crate) fn ended(mut self, code: Code) {
        self.record(code);
    }

    fn record(&mut self, code: Code) {
        let Some(method) = self.method.take() else {
            return;
        };
        let duration = self.clock.now().saturating_duration_since(self.started);
        method.calls[status_index(code)]
            .get_or_init(|| histogram(CALL_DURATION, method.labels(code)))
            .record(duration.as_secs_f64());
    }
}

#[cfg(feature = "tower")]
impl Drop for CallMetrics {
    fn drop(&mut self) {
        self.record(Code::Cancelled);
    }
}

impl AttemptMetrics {
    /// The attempt received response messages of `bytes` bytes (gRPC's headers left out).
    #[cfg(feature = "tower")]
    pub(crate) fn received(&mut self, bytes: u64) {
        self.received += bytes;
    }

    /// The attempt's request messages are counted in `sent` as they go.
    #[cfg(feature = "tower")]
    pub(crate) fn sending(&mut self, sent: Arc<AtomicU64>) {
        self.sent = Some(sent);
    }

    /// The attempt ended with `code` after `duration`; `backend` served it, if it was picked.
    pub(crate) fn ended(self, code: Code, duration: Duration, backend: Option<&BackendMetrics>) {
        let instruments =
            self.method.by_status[status_index(code)].get_or_init(|| AttemptInstruments {
                duration: histogram(ATTEMPT_DURATION, self.method.labels(code)),
                sent: histogram(ATTEMPT_SENT, self.method.labels(code)),
                rcvd: histogram(ATTEMPT_RCVD, self.method.labels(code)),
            });
        instruments.duration.record(duration.as_secs_f64());
        // Sizes for the calls whose messages the channel sees (through its `Service`), whether
        // or not their request reached a connection.
        if let Some(sent) = &self.sent {
            instruments.sent.record(sent.load(Ordering::Relaxed) as f64);
            instruments.rcvd.record(self.received as f64);
        }
        if let Some(backend) = backend {
            backend.called(&self, code);
        }
    }
}

/// One backend's call counters, by method and status.
pub(crate) struct BackendMetrics {
    address: Arc<str>,
    calls: LabelCache<[OnceLock<Counter>; 17]>,
}

impl std::fmt::Debug for BackendMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendMetrics")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl BackendMetrics {
    pub(crate) fn new(address: &Address) -> Self {
        BackendMetrics {
            address: address.to_string().into(),
            calls: LabelCache::default(),
        }
    }

    fn called(&self, attempt: &AttemptMetrics, code: Code) {
        let method = &attempt.method.method;
        let by_status = self.calls.get_or_insert(method, |_| Default::default());
        by_status[status_index(code)]
            .get_or_init(|| {
                counter(
                    BACKEND_CALLS,
                    vec![
                        Label::new("grpc.target", Arc::clone(&attempt.method.target)),
                        Label::new("grpc.method", Arc::clone(method)),
                        Label::new("grpc.status", code.as_str()),
                        Label::new("croupier.backend", Arc::clone(&self.address)),
                    ],
                )
            })
            .increment(1);
    }
}

/// A channel's subchannel events (A94), recorded by its driver. They are rare (a connection's
/// start and end), so each registers its instrument as it comes.
pub(crate) fn connection_attempt(target: &Arc<str>, succeeded: bool) {
    let name = match succeeded {
        true => ATTEMPTS_SUCCEEDED,
        false => ATTEMPTS_FAILED,
    };
    counter(name, target_label(target)).increment(1);
}

/// A connection of the channel to `target` opened (`true`) or ended (`false`).
pub(crate) fn connection_open(target: &Arc<str>, open: bool) {
    let gauge = metrics::with_recorder(|recorder| {
        recorder.register_gauge(
            &Key::from_parts(OPEN_CONNECTIONS, target_label(target)),
            &METADATA,
        )
    });
    match open {
        true => gauge.increment(1.0),
        false => gauge.decrement(1.0),
    }
}

/// An established connection of the channel to `target` ended, because of `reason` (what the
/// connector or the channel said).
pub(crate) fn disconnected(target: &Arc<str>, reason: &str) {
    let mut labels = target_label(target);
    labels.push(Label::new(
        "grpc.disconnect_error",
        disconnect_error(reason),
    ));
    counter(DISCONNECTIONS, labels).increment(1);
}

/// gRFC A94's name for why a connection ended, from the reason a connector gave: `GOAWAY
/// <code>`, `connection reset`, `connection timed out`, `connection aborted`, `socket error`,
/// `subchannel shutdown` or `unknown`.
pub(crate) fn disconnect_error(reason: &str) -> String {
    let lower = reason.to_ascii_lowercase();
    if let Some(at) = lower.find("goaway") {
        const CODES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "COMPRESSION_ERROR",
            "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED",
        ];
        let after = &reason[at..];
        let code = CODES
            .iter()
            .find(|code| after.contains(*code))
            .unwrap_or(&"NO_ERROR");
        return format!("GOAWAY {code}");
    }
    let name = if lower.contains("shut down") || lower.contains("shutdown") {
        "subchannel shutdown"
    } else if lower.contains("reset") {
        "connection reset"
    } else if lower.contains("timed out") || lower.contains("timeout") {
        "connection timed out"
    } else if lower.contains("abort") {
        "connection aborted"
    } else if lower.contains("broken pipe") || lower.contains("os error") || lower.contains("eof") {
        "socket error"
    } else {
        "unknown"
    };
    name.to_owned()
}

fn target_label(target: &Arc<str>) -> Vec<Label> {
    vec![Label::new("grpc.target", Arc::clone(target))]
}

fn counter(name: &'static str, labels: Vec<Label>) -> Counter {
    metrics::with_recorder(|recorder| {
        recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
    })
}

fn histogram(name: &'static str, labels: Vec<Label>) -> Histogram {
    metrics::with_recorder(|recorder| {
        recorder.register_histogram(&Key::from_parts(name, labels), &METADATA)
    })
}

/// The slot of `code` in a by-status table.
fn status_index(code: Code) -> usize {
    usize::from(code.value()).min(16)
}

/// Describes every instrument to the recorder, once per process.
fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        describe_histogram!(
            CALL_DURATION,
            Unit::Seconds,
            "Time taken by an RPC, from its start to its end, across all its attempts."
        );
        describe_counter!(
            ATTEMPT_STARTED,
            Unit::Count,
            "The total number of RPC attempts started, including those that have not completed."
        );
        describe_histogram!(
            ATTEMPT_DURATION,
            Unit::Seconds,
            "Time taken by an RPC attempt, from its pick to its end."
        );
        describe_histogram!(
            ATTEMPT_SENT,
            Unit::Bytes,
            "Bytes of an RPC attempt's request messages, without gRPC's message headers."
        );
        describe_histogram!(
            ATTEMPT_RCVD,
            Unit::Bytes,
            "Bytes of an RPC attempt's response messages, without gRPC's message headers."
        );
        describe_counter!(
            BACKEND_CALLS,
            Unit::Count,
            "RPC attempts picked for each backend, by method and status."
        );
        describe_counter!(
            ATTEMPTS_SUCCEEDED,
            Unit::Count,
            "Number of successful connection attempts."
        );
        describe_counter!(
            ATTEMPTS_FAILED,
            Unit::Count,
            "Number of failed connection attempts."
        );
        describe_counter!(
            DISCONNECTIONS,
            Unit::Count,
            "Number of times a subchannel's connection ended."
        );
        describe_gauge!(OPEN_CONNECTIONS, Unit::Count, "Number of open connections.");
        lb::describe();
    });
}

/// Values by method name, read without a lock: a lookup loads the current map; a new name
/// copies it with one more entry (rare: once per method). Past [`MAX_METHODS`] names, new
/// ones share the entry of `other`.
struct LabelCache<V> {
    map: ArcSwap<HashMap<Arc<str>, Arc<V>>>,
}

impl<V> Default for LabelCache<V> {
    fn default() -> Self {
        LabelCache {
            map: ArcSwap::from_pointee(HashMap::new()),
        }
    }
}

impl<V> LabelCache<V> {
    /// The value for `name`, made by `make` (given the name, shared) the first time.
    fn get_or_insert(&self, name: &str, make: impl FnOnce(Arc<str>) -> V) -> Arc<V> {
        let current = self.map.load();
        if let Some(value) = current.get(name) {
            return Arc::clone(value);
        }
        let name = if current.len() >= MAX_METHODS {
            "other"
        } else {
            name
        };
        if let Some(value) = current.get(name) {
            return Arc::clone(value);
        }
        drop(current);
        let name: Arc<str> = name.into();
        let fresh = Arc::new(make(Arc::clone(&name)));
        let mut found = Arc::clone(&fresh);
        self.map.rcu(|map| {
            if let Some(value) = map.get(&name) {
                // Another call put it there first: share that one.
                found = Arc::clone(value);
                return Arc::clone(map);
            }
            found = Arc::clone(&fresh);
            let mut map = HashMap::clone(map);
            map.insert(Arc::clone(&name), Arc::clone(&fresh));
            Arc::new(map)
        });
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnect_reasons_read_as_a94_names_them() {
        assert_eq!(
            disconnect_error("GOAWAY from the server: ENHANCE_YOUR_CALM (too_many_pings)"),
            "GOAWAY ENHANCE_YOUR_CALM"
        );
        assert_eq!(
            disconnect_error("the server sent GOAWAY"),
            "GOAWAY NO_ERROR"
        );
        assert_eq!(
            disconnect_error("connection reset by peer (os error 104)"),
            "connection reset"
        );
        assert_eq!(
            disconnect_error("keepalive ping timed out"),
            "connection timed out"
        );
        assert_eq!(
            disconnect_error("the subchannel was shut down"),
            "subchannel shutdown"
        );
        assert_eq!(
            disconnect_error("the peer closed the connection"),
            "unknown"
        );
    }

    #[test]
    fn past_the_limit_new_methods_share_the_other_entry() {
        let cache: LabelCache<String> = LabelCache::default();
        for n in 0..MAX_METHODS {
            let method = format!("svc/M{n}");
            assert_eq!(*cache.get_or_insert(&method, |m| m.to_string()), method);
        }
        assert_eq!(*cache.get_or_insert("svc/late", |m| m.to_string()), "other");
        assert_eq!(
            *cache.get_or_insert("svc/later", |m| m.to_string()),
            "other"
        );
        assert_eq!(*cache.get_or_insert("svc/M3", |m| m.to_string()), "svc/M3");
    }
}
