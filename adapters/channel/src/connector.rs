//! Connectors: how an address becomes a connection of the user's type.

use std::future::Future;
use std::io;

use croupier::Address;

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
}

impl<T> Connected<T> {
    /// A connection and the future that tells of its end.
    pub fn new(connection: T, closed: impl Future<Output = String> + Send + 'static) -> Self {
        Connected {
            connection,
            closed: Box::pin(closed),
        }
    }

    /// A connection whose end the connector cannot observe; calls will find out instead, and
    /// report it through their [`CallGuard`](crate::CallGuard).
    pub fn unobserved(connection: T) -> Self {
        Connected {
            connection,
            closed: Box::pin(std::future::pending()),
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

    /// Whether a call already found `connection` dead. A pick that lands on such a connection
    /// waits for the next picker (which will no longer offer it) instead of sending the call.
    fn is_broken(connection: &Self::Connection) -> bool {
        let _ = connection;
        false
    }
}
