//! A round_robin channel over thousands of endpoints on consecutive loopback IPs (127.0.0.1,
//! 127.0.0.2, ...) behind one port, served by one echo server: for each size, how long until
//! every endpoint is READY, how long one call to each takes, and the process's resident memory
//! before, with the channel, and after it was dropped.
//!
//! ```text
//! cargo run --release --example many_endpoints                   # 1,000, 4,000 and 6,000
//! cargo run --release --example many_endpoints -- 500 2000       # sizes of your choice
//! ```
//!
//! Resident memory does not fall when a channel is dropped: the allocator keeps the pages it was
//! given for the next ones (the next, larger size grows from there). What the channel held is
//! freed, to the byte: `adapters/tokio/tests/many_endpoints.rs` counts it with an allocator of
//! its own.
//!
//! Linux only (the server binds to the loopback device). Each endpoint takes three descriptors
//! (the client's socket, its watcher's handle, the server's socket), so `ulimit -n` bounds the
//! sizes: 6,000 needs 18,000 and a few more.

use std::process::ExitCode;

#[cfg(target_os = "linux")]
#[tokio::main]
async fn main() -> ExitCode {
    fleet::main().await
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("this example runs on Linux only: its server binds to the loopback device");
    ExitCode::FAILURE
}

/// The example, on Linux.
#[cfg(target_os = "linux")]
mod fleet {
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use croupier::{ConnectivityState, PickRequest, PolicyConfig};
    use croupier_echo::{tokio_io::echo, EchoServer};

    /// How long a size may take to become READY, or to close, before the example gives up on it.
    const PATIENCE: Duration = Duration::from_secs(60);

    /// The process's resident memory in MiB (`VmRSS` in /proc/self/status, given in kB).
    fn resident_mib() -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kb = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0);
        kb / 1024.0
    }

    /// Waits, checking every 10 ms, until `done` says so; `Err` after [`PATIENCE`].
    async fn wait_until<F: std::future::Future<Output = bool>>(
        mut done: impl FnMut() -> F,
    ) -> Result<(), tokio::time::error::Elapsed> {
        tokio::time::timeout(PATIENCE, async {
            while !done().await {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }

    /// One size: builds the channel, waits for every endpoint, calls each once, drops it.
    async fn run(server: &EchoServer, n: u32) -> Result<(), String> {
        let target = (0..n)
            .map(|i| server.fleet_address(i).map(|address| address.to_string()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("{n} endpoints do not fit in 127.0.0.0/8"))?
            .join(",");
        let before = resident_mib();
        let started = Instant::now();
        let channel = croupier_tokio::builder(format!("ipv4:{target}"))
            .policy(PolicyConfig::round_robin())
            .build()
            .map_err(|error| error.to_string())?;
        channel.connect();
        let ready = || async {
            let subchannels = channel.subchannels().await;
            subchannels.len() == n as usize
                && subchannels
                    .iter()
                    .all(|subchannel| subchannel.state == ConnectivityState::Ready)
        };
        wait_until(ready).await.map_err(|_| {
            format!("{n} endpoints: not all READY within {PATIENCE:?} (too few descriptors?)")
        })?;
        let all_ready = started.elapsed();

        let request = PickRequest::new();
        let calls_started = Instant::now();
        for _ in 0..n {
            let picked = channel.pick(&request).await.map_err(|e| e.to_string())?;
            let mut stream = picked.connection.lock().await;
            echo(&mut *stream, "hello")
                .await
                .map_err(|error| format!("a call to {}: {error}", picked.call.address()))?;
            drop(stream);
            picked.call.success();
        }
        let calls = calls_started.elapsed();
        let alive = resident_mib();

        drop(channel);
        wait_until(|| async { server.stats().open() == 0 })
            .await
            .map_err(|_| {
                format!("{n} endpoints: connections still open {PATIENCE:?} after drop")
            })?;
        let after = resident_mib();
        println!(
            "{n:>9} | {:>14.0} | {:>11.1} | {before:>16.1} | {alive:>12.1} | {after:>10.1}",
            all_ready.as_secs_f64() * 1e3,
            calls.as_secs_f64() * 1e6 / f64::from(n),
        );
        Ok(())
    }

    /// Runs each size in turn.
    pub(super) async fn main() -> ExitCode {
        let sizes: Vec<u32> = match std::env::args().skip(1).map(|a| a.parse()).collect() {
            Ok(sizes) => sizes,
            Err(error) => {
                eprintln!("sizes are numbers of endpoints: {error}");
                return ExitCode::FAILURE;
            }
        };
        let sizes = if sizes.is_empty() {
            vec![1_000, 4_000, 6_000]
        } else {
            sizes
        };
        let server = match EchoServer::start_fleet(0).await {
            Ok(server) => server,
            Err(error) => {
                eprintln!("could not start the echo server on the loopback device: {error}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "endpoints | all READY (ms) | us per call | RSS before (MiB) | with channel | after drop"
        );
        for n in sizes {
            if let Err(error) = run(&server, n).await {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        }
        ExitCode::SUCCESS
    }
}
