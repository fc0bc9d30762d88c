//! The adapter scenarios (croupier-testkit) on async-std's executor, with real sockets on
//! 127.0.0.1; and one on smol's, to show the adapter needs neither.

use std::io;
use std::time::Duration;

use croupier_async_std::{AsyncIoRuntime, BoxFuture, ChannelBuilder, StreamConnector};
use croupier_echo::futures_io::echo;
use croupier_testkit::{Adapter, Conn};

struct AsyncStd;

impl Adapter for AsyncStd {
    type Connector = StreamConnector;

    fn builder(target: &str) -> ChannelBuilder<StreamConnector> {
        croupier_async_std::builder(target)
    }

    fn echo<'a>(connection: &'a Conn<Self>, message: &'a str) -> BoxFuture<'a, io::Result<String>> {
        Box::pin(async move {
            let mut stream = connection.lock().await;
            let reply = echo(&mut *stream, message).await;
            if let Err(error) = &reply {
                connection.mark_broken(error.to_string());
            }
            reply
        })
    }

    fn spawn<T: Send + 'static>(future: BoxFuture<'static, T>) -> BoxFuture<'static, T> {
        Box::pin(async_std::task::spawn(future))
    }

    fn sleep(duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async_std::task::sleep(duration))
    }
}

croupier_testkit::scenario_tests!(AsyncStd, #[async_std::test]);

/// The same adapter with its tasks on smol's executor instead of croupier's own.
struct Smol;

impl Adapter for Smol {
    type Connector = StreamConnector;

    fn builder(target: &str) -> ChannelBuilder<StreamConnector> {
        let runtime = AsyncIoRuntime::with_spawner(|task| smol::spawn(task).detach());
        croupier_async_std::builder_with(target, runtime)
    }

    fn echo<'a>(connection: &'a Conn<Self>, message: &'a str) -> BoxFuture<'a, io::Result<String>> {
        AsyncStd::echo(connection, message)
    }

    fn spawn<T: Send + 'static>(future: BoxFuture<'static, T>) -> BoxFuture<'static, T> {
        Box::pin(smol::spawn(future))
    }

    fn sleep(duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::after(duration).await;
        })
    }
}

#[test]
fn runs_under_smol_with_tasks_on_smols_executor() {
    smol::block_on(
        croupier_testkit::round_robin_spreads_300_calls_evenly_over_three_servers::<Smol>(),
    );
    smol::block_on(
        croupier_testkit::pick_first_sticks_to_the_first_server_and_fails_over_when_it_stops::<Smol>(
        ),
    );
}
