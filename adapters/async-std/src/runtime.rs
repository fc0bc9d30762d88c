//! async-io as a croupier runtime: timers and sockets from async-io's reactor (the one async-std
//! and smol both run on), and tasks on an executor of your choice.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use croupier_channel::{BoxFuture, Runtime};

type Spawner = dyn Fn(BoxFuture<'static, ()>) + Send + Sync;

/// Runs a channel's tasks on async-io's reactor.
///
/// By default the tasks run on a small executor of croupier's own, one background thread, so the
/// adapter needs no particular runtime. [`AsyncIoRuntime::with_spawner`] puts them on yours
/// instead (`async_std::task::spawn`, `smol::spawn`).
#[derive(Clone)]
pub struct AsyncIoRuntime {
    spawner: Option<Arc<Spawner>>,
}

impl fmt::Debug for AsyncIoRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncIoRuntime")
            .field("own_executor", &self.spawner.is_none())
            .finish()
    }
}

impl Default for AsyncIoRuntime {
    fn default() -> Self {
        AsyncIoRuntime::new()
    }
}

impl AsyncIoRuntime {
    /// Tasks on croupier's own background executor.
    pub fn new() -> Self {
        AsyncIoRuntime { spawner: None }
    }

    /// Tasks spawned with `spawn` (which must run them to completion in the background).
    pub fn with_spawner(spawn: impl Fn(BoxFuture<'static, ()>) + Send + Sync + 'static) -> Self {
        AsyncIoRuntime {
            spawner: Some(Arc::new(spawn)),
        }
    }
}

/// croupier's own executor, driven by one background thread started on first use.
fn executor() -> &'static async_executor::Executor<'static> {
    static EXECUTOR: OnceLock<&'static async_executor::Executor<'static>> = OnceLock::new();
    EXECUTOR.get_or_init(|| {
        let executor: &'static async_executor::Executor<'static> =
            Box::leak(Box::new(async_executor::Executor::new()));
        std::thread::Builder::new()
            .name("croupier-async-io".to_owned())
            .spawn(move || {
                async_io::block_on(executor.run(futures_lite::future::pending::<()>()));
            })
            .expect("croupier cannot start its executor thread");
        executor
    })
}

impl Runtime for AsyncIoRuntime {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        match &self.spawner {
            Some(spawn) => spawn(future),
            None => executor().spawn(future).detach(),
        }
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            async_io::Timer::at(deadline).await;
        })
    }

    fn lookup_host(
        &self,
        host: String,
        port: u16,
    ) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { async_net::resolve((host.as_str(), port)).await })
    }
}
