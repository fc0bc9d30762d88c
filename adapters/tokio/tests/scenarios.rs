//! The adapter scenarios (croupier-testkit) on tokio, with real sockets on 127.0.0.1.

use std::io;
use std::time::Duration;

use croupier_echo::tokio_io::echo;
use croupier_testkit::{Adapter, Conn};
use croupier_tokio::{BoxFuture, ChannelBuilder, StreamConnector};

struct Tokio;

impl Adapter for Tokio {
    type Connector = StreamConnector;

    fn builder(target: &str) -> ChannelBuilder<StreamConnector> {
        croupier_tokio::builder(target)
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
        let task = tokio::spawn(future);
        Box::pin(async move { task.await.expect("the task panicked") })
    }

    fn sleep(duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

croupier_testkit::scenario_tests!(Tokio, #[tokio::test]);
