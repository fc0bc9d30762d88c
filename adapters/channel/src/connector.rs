//! Connectors: how an address becomes a connection of the user's type.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::sync::Arc;

use croupier::{Address, Code, LoadReport, ProbeResult};

use crate::backend::Backend;
use crate::runtime::BoxFuture;

/// A connection made by a [`Connector`], with a future that completes when the connection ends.
///
/// The channel watches `closed` for as long as it keeps the connection, so a connection that dies
/// while idle is noticed at once and no call is sent to it (rather than at the next call).
pub struct Connected<T> {
    /// The connection; the channel hands clones of it to calls.
    pub connection: T,
    /// Completes, with a reason, when the connection has ended (peer closed it, reset, GOAWAY).
    pub closed: BoxFuture<'static, String>,
    /// Reports of the connection's health, if the connector checks it ([`Connected::with_health`]).
    pub health: Option<HealthWatch>,
    /// Its server's out-of-band load reports, if the connector asks for them
    /// ([`Connected::with_load_reports`]).
    pub load_reports: Option<LoadWatch>,
}

impl<T> Connected<T> {
    /// A connection and the future that tells of its end.
    pub fn new(connection: T, closed: impl Future<Output = String> + Send + 'static) -> Self {
        Connected {
            connection,
            closed: Box::pin(closed),
            health: None,
            load_reports: None,
        }
    }

    /// Gates the connection's readiness on health reports (client-side health checking, gRFC
    /// A17): the balancer sees it READY only while the last report said [`Health::Serving`], and
    /// TRANSIENT_FAILURE otherwise, while the connection stays open. Reports already sent when
    /// the connection is handed over apply before any call can pick it, so a connector that
    /// waits for the first health answer never shows an unhealthy connection as READY.
    pub fn with_health(mut self, health: HealthWatch) -> Self {
        self.health = Some(health);
        self
    }

    /// Passes the server's out-of-band load reports (ORCA's stream, gRFC A51) to the balancer,
    /// for as long as the channel keeps the connection: weighted_round_robin weighs by them
    /// when its `enable_oob_load_report` is set.
    pub fn with_load_reports(mut self, reports: LoadWatch) -> Self {
        self.load_reports = Some(reports);
        self
    }

    /// A connection whose end the connector cannot observe; calls will find out instead, and
    /// report it through their [`CallGuard`](crate::CallGuard).
    pub fn unobserved(connection: T) -> Self {
        Connected {
            connection,
            closed: Box::pin(std::future::pending()),
            health: None,
            load_reports: None,
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Connected<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connected")
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

/// What a health check says about a connection's server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// It serves: calls may go to it.
    Serving,
    /// It should not get calls; the message says what the check answered.
    NotServing(String),
}

/// The sending half of a connection's reports (of its health, of its server's load): the
/// connector's check or stream holds it.
#[derive(Debug)]
pub struct Reporter<T> {
    sender: async_channel::Sender<T>,
}

impl<T> Clone for Reporter<T> {
    fn clone(&self) -> Self {
        Reporter {
            sender: self.sender.clone(),
        }
    }
}

impl<T> Reporter<T> {
    /// Reports `report`. Returns `false` once the channel no longer listens (the connection was
    /// let go), so the check or stream can stop.
    pub fn report(&self, report: T) -> bool {
        self.sender.try_send(report).is_ok()
    }
}

/// The receiving half of a connection's reports, handed to the channel with the connection.
#[derive(Debug)]
pub struct Watch<T> {
    receiver: async_channel::Receiver<T>,
}

impl<T> Watch<T> {
    /// Waits for the next report; `None` once the reporter is gone.
    pub(crate) async fn next(&self) -> Option<T> {
        self.receiver.recv().await.ok()
    }

    /// The reports already waiting.
    pub(crate) fn pending(&self) -> Vec<T> {
        std::iter::from_fn(|| self.receiver.try_recv().ok()).collect()
    }
}

/// The sending half of a connection's health reports: the connector's health check holds it.
pub type HealthReporter = Reporter<Health>;

/// The receiving half of a connection's health reports, handed to the channel with
/// [`Connected::with_health`].
pub type HealthWatch = Watch<Health>;

/// The sending half of a server's out-of-band load reports: the connector's stream holds it.
pub type LoadReporter = Reporter<LoadReport>;

/// The receiving half of a server's out-of-band load reports, handed to the channel with
/// [`Connected::with_load_reports`].
pub type LoadWatch = Watch<LoadReport>;

fn report_channel<T>() -> (Reporter<T>, Watch<T>) {
    let (sender, receiver) = async_channel::unbounded();
    (Reporter { sender }, Watch { receiver })
}

/// A channel for one connection's health reports.
pub fn health_channel() -> (HealthReporter, HealthWatch) {
    report_channel()
}

/// A channel for one connection's out-of-band load reports.
pub fn load_report_channel() -> (LoadReporter, LoadWatch) {
    report_channel()
}

/// What a connection attempt is for, besides its address: the names its calls go by.
///
/// `authority` is the target's default authority (`api.internal:50051` for
/// `dns:///api.internal:50051`; see [`Target::default_authority`](croupier::Target::default_authority));
/// `server_name` is the name the resolver gave the address's endpoint, if any
/// ([`Endpoint::server_name`](croupier::Endpoint::server_name)). A connector that verifies a server
/// (TLS) or names it in calls (HTTP/2's `:authority`) uses the server name, else the authority,
/// as gRPC does with `Address.ServerName`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectContext<'a> {
    authority: &'a str,
    server_name: Option<&'a str>,
}

impl<'a> ConnectContext<'a> {
    /// The context of an attempt on a channel whose target's authority is `authority`.
    pub fn new(authority: &'a str) -> Self {
        ConnectContext {
            authority,
            server_name: None,
        }
    }

    /// With the server name the address's endpoint carries.
    pub fn with_server_name(mut self, server_name: Option<&'a str>) -> Self {
        self.server_name = server_name;
        self
    }

    /// The target's default authority.
    pub fn authority(&self) -> &'a str {
        self.authority
    }

    /// The server name the resolver gave the address's endpoint.
    pub fn server_name(&self) -> Option<&'a str> {
        self.server_name
    }

    /// The name to verify and address the server by: the server name, else the authority.
    pub fn name(&self) -> &'a str {
        self.server_name.unwrap_or(self.authority)
    }
}

/// Turns an address into a connection. Implement it to use TLS, HTTP/2, a tonic channel, or any
/// transport: the channel only stores and clones what it returns.
pub trait Connector: Send + Sync + 'static {
    /// What calls use. Cloned for every call, so make it a cheap handle (an `Arc`, a sender).
    type Connection: Clone + Send + Sync + 'static;

    /// Connects to `address`. The channel gives up on the attempt (drops this future) when the
    /// core's connect deadline passes.
    fn connect(
        &self,
        address: &Address,
    ) -> impl Future<Output = io::Result<Connected<Self::Connection>>> + Send + 'static;

    /// Connects to `address` for calls that go by the names in `context`. The channel calls
    /// this; the default ignores the names and calls [`Connector::connect`], which is all a
    /// connector that neither verifies nor names its server needs.
    fn connect_with(
        &self,
        address: &Address,
        context: &ConnectContext<'_>,
    ) -> impl Future<Output = io::Result<Connected<Self::Connection>>> + Send + 'static {
        let _ = context;
        self.connect(address)
    }

    /// Whether a call already found `connection` dead. A pick that lands on such a connection
    /// waits for the next picker (which will no longer offer it) instead of sending the call.
    fn is_broken(connection: &Self::Connection) -> bool {
        let _ = connection;
        false
    }

    /// The gRPC status code that `error` means, when a call sent on one of this connector's
    /// connections failed with it (or its response body did): for HTTP/2, gRPC's mapping of a
    /// stream reset's code (`CANCEL` is `CANCELLED`, `ENHANCE_YOUR_CALM` is
    /// `RESOURCE_EXHAUSTED`, ...). `None`, the default, stands for `UNAVAILABLE`: the transport
    /// failed under the call, which gRPC's clients report so, and retry on.
    fn error_code(error: &(dyn StdError + 'static)) -> Option<Code> {
        let _ = error;
        None
    }

    /// Probes the server behind `connection` for its requests in flight and latency estimate,
    /// when the policy asks ([`croupier::Action::Probe`], prequal): the future's answer goes to
    /// the balancer. The channel keeps at most one probe per subchannel in flight and drops it
    /// with the connection. `None`, the default, is a connector that cannot probe (the policy
    /// then picks without answers); an `Err` names what went wrong, and is dropped.
    fn probe(
        &self,
        connection: &Self::Connection,
    ) -> Option<BoxFuture<'static, Result<ProbeResult, String>>> {
        let _ = connection;
        None
    }

    /// The load report a backend sent at the end of a call's response, in its trailers (or in
    /// the headers of a response without a body): for gRPC, ORCA's `endpoint-load-metrics-bin`
    /// (gRFC A51). The channel's `Service` asks only while the policy learns from call outcomes
    /// (weighted_round_robin weighs endpoints by these reports), and passes the report with the
    /// call's outcome. `None`, the default, is a call without one; a report that cannot be read
    /// should be `None` too: it never fails the call.
    #[cfg(feature = "tower")]
    fn load_report(trailers: &http::HeaderMap) -> Option<LoadReport> {
        let _ = trailers;
        None
    }
}

/// A connection with the backend it was made to: what the channel keeps of each, so that a call
/// can name the address it went to and count itself on its subchannel.
#[derive(Clone, Debug)]
pub(crate) struct Addressed<T> {
    pub(crate) connection: T,
    pub(crate) backend: Arc<Backend>,
}

impl<T> Addressed<T> {
    /// Whether `C` finds the connection dead (what a snapshot's `is_broken` asks).
    pub(crate) fn is_broken<C: Connector<Connection = T>>(addressed: &Self) -> bool {
        C::is_broken(&addressed.connection)
    }
}
