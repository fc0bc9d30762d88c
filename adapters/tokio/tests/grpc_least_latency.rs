//! least_latency through the gRPC channel against real tonic servers on loopback: when one
//! server turns five times slower, calls move off it within a second, and come back after it
//! recovers. Shares are measured by the servers' own counts over windows of wall time, with
//! margins wide enough for a loaded machine.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use croupier::PolicyConfig;
use croupier_echo_grpc::{EchoClient, GrpcEchoServer, ServerOptions};
use support::{call, servers, target, until_ready, GrpcChannel, PATIENCE};

/// Each server's calls so far.
fn counts(servers: &[GrpcEchoServer]) -> Vec<usize> {
    servers.iter().map(GrpcEchoServer::calls).collect()
}

/// Server 0's share of the calls the servers received during `window`.
async fn share_of_first(servers: &[GrpcEchoServer], window: Duration) -> f64 {
    let before = counts(servers);
    tokio::time::sleep(window).await;
    let during: Vec<usize> = counts(servers)
        .iter()
        .zip(&before)
        .map(|(after, before)| after - before)
        .collect();
    let total: usize = during.iter().sum();
    assert!(total > 20, "calls kept flowing: {during:?}");
    during[0] as f64 / total as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_move_off_a_server_that_turns_slow_and_back_after_it_recovers() {
    let servers = servers(3, ServerOptions::new()).await;
    for server in &servers {
        server.set_delay(Duration::from_millis(10));
    }
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target(&servers))
        .policy(PolicyConfig::least_latency())
        .build()
        .unwrap();
    until_ready(&channel, 3).await;
    // Four callers, each sending its next call when the last is answered.
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let mut client = EchoClient::new(channel.clone());
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    call(&mut client, "busy").await.unwrap();
                }
            })
        })
        .collect();

    let even = share_of_first(&servers, Duration::from_secs(1)).await;
    assert!(even > 0.15, "an equal server gets its part: {even}");

    // Five times slower: within a second most of its calls have gone elsewhere.
    servers[0].set_delay(Duration::from_millis(50));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let slow = share_of_first(&servers, Duration::from_secs(2)).await;
    assert!(
        slow < 0.12,
        "the slow server still gets {slow} of the calls"
    );

    // Recovered: its estimate drifts back, it is tried, answers fast, and gets its part again.
    servers[0].set_delay(Duration::from_millis(10));
    let back = tokio::time::timeout(PATIENCE, async {
        loop {
            let share = share_of_first(&servers, Duration::from_secs(1)).await;
            if share > 0.2 {
                return share;
            }
        }
    })
    .await
    .expect("the recovered server gets a fifth of the calls again within 10 s");
    assert!(back > 0.2);

    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        tokio::time::timeout(PATIENCE, caller)
            .await
            .expect("callers stop")
            .unwrap();
    }
}
