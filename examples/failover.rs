//! failover: what the channel's logs say when a backend is down, when another goes away
//! mid-run, and when a call fails because none is left.
//!
//! ```text
//! RUST_LOG=croupier=debug cargo run --example failover
//! RUST_LOG=croupier=debug cargo run --example failover -- --ports 6001,6002,6003 # other ports
//! ```
//!
//! Three endpoints: echo servers on the first two ports and nothing on the third, under
//! round_robin. Calls alternate over the two that answer, and the logs say why the third gets
//! none (its connection attempts are refused). Then the second server stops: the logs show its
//! subchannel leave READY and why, and calls go to the first alone. Then the first stops too,
//! and a call fails with the reason of every endpoint, as the logs said as it happened.
//!
//! `RUST_LOG` filters the logs (`croupier=debug` shows every state change; `croupier=trace`
//! each pick too); they go to stdout with the example's own lines, in the order things happened.

use std::process::ExitCode;
use std::time::Duration;

use croupier::{ConnectivityState, PickRequest, PolicyConfig};
use croupier_echo::{tokio_io::echo, EchoServer};
use croupier_tokio::{Channel, PickOptions, SharedStream};
use tracing_subscriber::EnvFilter;

/// One call: the echo of `message` from the backend a pick chose, or why it failed.
async fn call(channel: &Channel<SharedStream>, n: usize) -> Result<(), String> {
    let options = PickOptions::new().timeout(Duration::from_secs(5));
    let picked = channel
        .pick_with(&PickRequest::new(), options)
        .await
        .map_err(|status| format!("call {n} failed: {status}"))?;
    let address = picked.call.address().clone();
    let reply = {
        let mut stream = picked.connection.lock().await;
        echo(&mut *stream, "this is examples/failover").await
    };
    match reply {
        Ok(_) => {
            picked.call.success();
            println!("call {n}: served by {address}");
            Ok(())
        }
        Err(error) => {
            picked.connection.mark_broken(error.to_string());
            picked.call.finish(croupier::Code::Unavailable);
            Err(format!("call {n} failed on {address}: {error}"))
        }
    }
}

/// Waits (at most 10 s) until `done` holds for the channel's subchannels' states.
async fn wait_for(channel: &Channel<SharedStream>, done: impl Fn(&[ConnectivityState]) -> bool) {
    for _ in 0..1_000 {
        let states: Vec<_> = channel
            .subchannels()
            .await
            .iter()
            .map(|s| s.state)
            .collect();
        if done(&states) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ports() -> Result<[u16; 3], String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let list = match &args[..] {
        [] => return Ok([50051, 50052, 50053]),
        [flag, list] if flag == "--ports" => list,
        _ => return Err("usage: failover [--ports UP,UP,DOWN]".into()),
    };
    let ports: Vec<u16> = list
        .split(',')
        .map(|port| {
            port.trim()
                .parse()
                .map_err(|_| format!("not a port: {port:?}"))
        })
        .collect::<Result<_, _>>()?;
    ports
        .try_into()
        .map_err(|_| "--ports takes three ports: two servers and one with nothing on it".into())
}

async fn run() -> Result<(), String> {
    let [first, second, down] = ports()?;
    let start = |port| async move {
        EchoServer::start(port).await.map_err(|error| {
            format!("cannot listen on 127.0.0.1:{port} ({error}); try --ports with free ones")
        })
    };
    let first = start(first).await?;
    let second = start(second).await?;
    let target = format!(
        "ipv4:{},{},127.0.0.1:{down}",
        first.address(),
        second.address()
    );
    let channel = croupier_tokio::builder(&target)
        .policy(PolicyConfig::round_robin())
        .build()
        .map_err(|error| error.to_string())?;
    let ready = ConnectivityState::Ready;
    let failed = ConnectivityState::TransientFailure;
    wait_for(&channel, |states| {
        states.iter().filter(|s| **s == ready).count() == 2 && states.contains(&failed)
    })
    .await;

    println!("--- two backends up, one down ---");
    for n in 1..=4 {
        call(&channel, n).await?;
    }

    println!("--- the second backend stops ---");
    second.stop();
    wait_for(&channel, |states| {
        states.iter().filter(|s| **s == ready).count() == 1
    })
    .await;
    for n in 5..=6 {
        call(&channel, n).await?;
    }

    println!("--- the first backend stops too ---");
    first.stop();
    wait_for(&channel, |states| !states.contains(&ready)).await;
    match call(&channel, 7).await {
        Ok(()) => Err("call 7 should have failed: every backend is down".into()),
        Err(error) => {
            println!("{error}");
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::from_default_env())
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .without_time()
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
