//! tokio as a croupier runtime.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use croupier_channel::{BoxFuture, Runtime};

/// Spawns on, sleeps with, and looks names up through the tokio runtime that built the channel.
#[derive(Clone, Debug)]
pub struct TokioRuntime {
    handle: tokio::runtime::Handle,
}

impl TokioRuntime {
    /// The runtime of the calling task.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn current() -> Self {
        TokioRuntime {
            handle: tokio::runtime::Handle::current(),
        }
    }

    /// A specific runtime.
    pub fn from_handle(handle: tokio::runtime::Handle) -> Self {
        TokioRuntime { handle }
    }
}

impl Runtime for TokioRuntime {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        drop(self.handle.spawn(future));
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
            deadline,
        )))
    }

    fn lookup_host(
        &self,
        host: String,
        port: u16,
    ) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Box::pin(lookup(host, port))
    }
}

async fn lookup(host: String, port: u16) -> io::Result<Vec<SocketAddr>> {
    let found = tokio::net::lookup_host((host.as_str(), port)).await?;
    Ok(found.collect())
}
