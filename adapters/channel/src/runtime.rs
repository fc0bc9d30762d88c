//! What a runtime adapter provides: spawning, sleeping, and name lookups.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The three things a channel needs from an async runtime. Adapter crates implement it
/// (`croupier-tokio`, `croupier-async-std`); everything else is runtime-agnostic.
pub trait Runtime: Send + Sync + fmt::Debug + 'static {
    /// Runs `future` to completion in the background.
    fn spawn(&self, future: BoxFuture<'static, ()>);

    /// Completes at `deadline` (at once if it has passed).
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;

    /// Looks `host` up in DNS (or the system's resolver), giving addresses with `port`.
    fn lookup_host(
        &self,
        host: String,
        port: u16,
    ) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;

    /// The current time. The default reads the system's monotonic clock.
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A spawned task that is cancelled when its handle is dropped.
#[derive(Debug)]
pub(crate) struct Task {
    cancel: async_channel::Sender<()>,
}

impl Task {
    /// Spawns `future` on `runtime`, to run until it ends or the handle goes away.
    pub(crate) fn spawn(
        runtime: &Arc<dyn Runtime>,
        future: impl Future<Output = ()> + Send + 'static,
    ) -> Task {
        let (cancel, cancelled) = async_channel::bounded::<()>(1);
        runtime.spawn(Box::pin(futures_lite::future::or(future, async move {
            // Resolves when the handle is dropped.
            let _ = cancelled.recv().await;
        })));
        Task { cancel }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.cancel.close();
    }
}
