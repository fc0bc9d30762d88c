//! The channel's logs: with a subscriber, one run shows why a backend is not used (its failed
//! attempts and their reasons, in a span naming its address) and where calls went (picks at
//! trace), and never a call's payload. Real sockets on loopback, bounded waits.
#![cfg(feature = "tracing")]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use croupier::{ConnectivityState, PickRequest, PolicyConfig};
use croupier_echo::{tokio_io::echo, EchoServer};
use tracing_subscriber::fmt::MakeWriter;

/// Every line the subscriber writes, kept.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn one_run_shows_why_a_backend_is_unused_and_where_calls_went() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    // The test's runtime runs the driver on this thread: the subscriber sees its events.
    let _guard = tracing::subscriber::set_default(subscriber);

    let up = EchoServer::start(0).await.unwrap();
    let down = closed_port();
    let target = format!("ipv4:{},127.0.0.1:{down}", up.address());
    let channel = croupier_tokio::builder(&target)
        .policy(PolicyConfig::round_robin())
        .build()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let subchannels = channel.subchannels().await;
            let ready = subchannels
                .iter()
                .any(|s| s.state == ConnectivityState::Ready);
            let failed = subchannels
                .iter()
                .any(|s| s.state == ConnectivityState::TransientFailure);
            if ready && failed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("one backend READY and the other failed, in time");

    let picked = channel.pick(&PickRequest::new()).await.unwrap();
    let secret = "payload-that-must-never-be-logged";
    let reply = {
        let mut stream = picked.connection.lock().await;
        echo(&mut *stream, secret).await.unwrap()
    };
    assert!(reply.starts_with(secret), "{reply}");
    picked.call.success();

    let logs = captured.text();
    let down_span = format!("address=127.0.0.1:{down}");
    let failed = logs
        .lines()
        .find(|line| line.contains("connection attempt failed"))
        .unwrap_or_else(|| panic!("no failed attempt logged:\n{logs}"));
    assert!(failed.contains("WARN"), "{failed}");
    assert!(failed.contains(&down_span), "{failed}");
    assert!(failed.contains(&format!("target={target}")), "{failed}");
    assert!(failed.contains("error="), "the reason is logged: {failed}");
    assert!(
        logs.lines()
            .any(|line| line.contains("resolver update applied")
                && line.contains("endpoints=2")
                && line.contains("policy=round_robin")),
        "{logs}"
    );
    let ready = format!("address={}", up.address());
    assert!(
        logs.lines().any(|line| line.contains(&ready)
            && line.contains("from=CONNECTING")
            && line.contains("to=READY")),
        "{logs}"
    );
    assert!(
        logs.lines().any(|line| line.contains("TRACE")
            && line.contains("picked")
            && line.contains(&up.address().to_string())),
        "{logs}"
    );
    assert!(!logs.contains(secret), "a payload was logged:\n{logs}");
}
