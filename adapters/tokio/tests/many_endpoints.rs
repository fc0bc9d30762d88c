//! A round_robin channel over thousands of real endpoints: consecutive loopback IPs
//! (127.0.0.1, 127.0.0.2, ...) behind one port, as a fleet of pods is, served by one listener.
//! Every endpoint becomes READY, N calls reach N distinct backends, and dropping the channel
//! closes every connection and gives back the memory it held.
//!
//! How many endpoints: as many as the process's descriptor limit allows, up to 8,000. Each one
//! costs three descriptors: the client's socket, the watcher's second handle to it (registered
//! with the runtime while it peeks at an idle connection), and the server's accepted socket.
//! With 1,000 kept in reserve (the test harness, the runtimes, the listener), a limit of 20,000
//! (this machine's and CI's, soft = hard, so it cannot be raised in-process) gives 6,333.
//! The core is tested to 200,000 endpoints without sockets (`core/tests/scale.rs`); here that
//! many would need 800,000 descriptors.
//!
//! One echo server serves them all ([`EchoServer::start_fleet`]); each reply names the address
//! its client reached.

#![cfg(target_os = "linux")]
#![allow(unsafe_code)] // a GlobalAlloc is unsafe to implement, and getrlimit is a C call

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use croupier::{ConnectivityState, PickRequest, PolicyConfig};
use croupier_echo::tokio_io::echo;
use croupier_echo::EchoServer;
use croupier_tokio::SharedStream;

/// Bytes allocated and not yet freed, by every thread of the test binary.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every method forwards to `System` unchanged; the counter is an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The most endpoints tested, whatever the limit.
const MAX_ENDPOINTS: usize = 8_000;
/// Descriptors per endpoint (see the crate docs).
const DESCRIPTORS_PER_ENDPOINT: usize = 3;
/// Descriptors kept for everything else.
const RESERVE: usize = 1_000;
/// How long every wait may take: generous, for 2 cores shared with other builds.
const PATIENCE: Duration = Duration::from_secs(60);
/// What may stay allocated after the channel is dropped, against the baseline taken after a
/// first channel of the same size was built and dropped (so tokio's and the allocator's caches
/// have grown already). Runs leave 0, 16 or 24 KiB: growable buffers (run queues and the like)
/// that reach a size in powers of two set by how many tasks woke at once, which varies with
/// scheduling. Anything kept per connection (a task, a stream: hundreds of bytes each) would
/// leave over a megabyte at 6,333 endpoints, and even 16 bytes per endpoint would exceed it.
const MEMORY_BOUND: isize = 64 * 1024;

/// The soft limit on open descriptors.
fn descriptor_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    let done = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(done, 0, "getrlimit(RLIMIT_NOFILE) failed");
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

fn endpoint_count() -> usize {
    MAX_ENDPOINTS.min(descriptor_limit().saturating_sub(RESERVE) / DESCRIPTORS_PER_ENDPOINT)
}

/// Waits, checking every 20 ms, until `done` says so; panics with `what` after [`PATIENCE`].
async fn wait_until<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what}: not within {PATIENCE:?}");
}

/// The target naming the first `n` addresses of the fleet `server` serves.
fn fleet_target(server: &EchoServer, n: u32) -> String {
    let addresses: Vec<String> = (0..n)
        .map(|i| server.fleet_address(i).expect("in 127.0.0.0/8").to_string())
        .collect();
    format!("ipv4:{}", addresses.join(","))
}

/// One echo call on `connection`.
async fn call(connection: &SharedStream) -> String {
    let mut stream = connection.lock().await;
    echo(&mut *stream, "which backend?").await.unwrap()
}

/// How many descriptors the process has open.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("listing /proc/self/fd")
        .count()
}

/// What one round measured.
struct Round {
    all_ready: Duration,
    live_with_channel: isize,
}

/// Builds a round_robin channel over `n` endpoints, waits until all are READY, makes `n` calls
/// (which must reach `n` distinct backends), drops the channel and waits until the server saw
/// every connection end.
async fn round(server: &EchoServer, n: usize) -> Round {
    let accepted_before = server.stats().accepted();
    let descriptors_before = open_descriptors();
    let started = Instant::now();
    let channel = croupier_tokio::builder(fleet_target(server, n as u32))
        .policy(PolicyConfig::round_robin())
        .build()
        .unwrap();
    channel.connect();
    wait_until("every endpoint READY", || async {
        let subchannels = channel.subchannels().await;
        subchannels.len() == n
            && subchannels
                .iter()
                .all(|subchannel| subchannel.state == ConnectivityState::Ready)
    })
    .await;
    let all_ready = started.elapsed();

    // The picker catches up with the last endpoints shortly after they are READY (changes no
    // call waits for are gathered): n picks in a row then name n distinct subchannels.
    let request = PickRequest::new();
    wait_until("a picker that offers every endpoint", || async {
        let mut picked = HashSet::with_capacity(n);
        for _ in 0..n {
            let pick = channel.pick(&request).await.unwrap();
            picked.insert(pick.call.subchannel());
        }
        picked.len() == n
    })
    .await;
    // Every connection is idle now, and its watcher peeking at it.
    let descriptors = open_descriptors() - descriptors_before;
    assert!(
        descriptors <= DESCRIPTORS_PER_ENDPOINT * n,
        "{descriptors} descriptors open for {n} endpoints"
    );

    let mut reached = HashSet::with_capacity(n);
    for _ in 0..n {
        let picked = channel.pick(&request).await.unwrap();
        let backend = call(&picked.connection).await;
        assert_eq!(
            backend,
            format!("which backend? (from {})", picked.call.address()),
            "the call reached the backend its pick named"
        );
        picked.call.success();
        reached.insert(backend);
    }
    assert_eq!(reached.len(), n, "distinct backends reached by {n} calls");
    assert_eq!(
        server.stats().accepted() - accepted_before,
        n,
        "connections accepted: one per endpoint"
    );
    let live_with_channel = live_bytes();

    drop(channel);
    wait_until("the server sees every connection end", || async {
        server.stats().open() == 0
    })
    .await;
    Round {
        all_ready,
        live_with_channel,
    }
}

#[test]
fn thousands_of_loopback_endpoints_serve_calls_and_give_back_their_memory() {
    let n = endpoint_count();
    // Below this, the memory bound would no longer tell a leak per endpoint from the caches.
    assert!(
        n >= 4_096,
        "a descriptor limit of {} allows only {n} endpoints; this test needs 4,096",
        descriptor_limit()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = EchoServer::start_fleet(0).await.unwrap();
        // A first round grows tokio's caches (I/O driver slabs, task queues) to this size.
        let warm_up = round(&server, n).await;
        let before = live_bytes();
        let measured = round(&server, n).await;
        // The channel's tasks end just after the connections close; wait for their memory.
        let bound = before + MEMORY_BOUND;
        let waited = tokio::time::timeout(PATIENCE, async {
            while live_bytes() > bound {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let after = live_bytes();
        eprintln!(
            "{n} endpoints: all READY in {:?} (warm-up {:?}); live bytes {before} before, \
             {} with the channel, {after} after it was dropped",
            measured.all_ready, warm_up.all_ready, measured.live_with_channel
        );
        assert!(
            waited.is_ok(),
            "{} bytes still live after the channel over {n} endpoints was dropped \
             (bound {MEMORY_BOUND})",
            after - before
        );
    });
}
