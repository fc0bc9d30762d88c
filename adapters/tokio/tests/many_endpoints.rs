//! A round_robin channel over thousands of real endpoints: consecutive loopback IPs
//! (127.0.0.1, 127.0.0.2, ...) behind one port, as a fleet of pods is, served by one listener.
//! Every endpoint becomes READY, N calls reach N distinct backends, and dropping the channel
//! closes every connection and gives back the memory it held.
//!
//! How many endpoints: as many as the process's descriptor limit allows, up to 8,000. Each one
//! costs four descriptors: the client's socket, the watcher's second handle to it, the handle
//! the watcher registers while it peeks at an idle connection, and the server's accepted socket.
//! With 1,000 kept in reserve (the test harness, the runtimes, the listener), a limit of 20,000
//! (this machine's and CI's, soft = hard, so it cannot be raised in-process) gives 4,750.
//! The core is tested to 200,000 endpoints without sockets (`core/tests/scale.rs`); here that
//! many would need 800,000 descriptors.
//!
//! The listener is bound to 0.0.0.0, the only address that accepts connections to every
//! 127.x.y.z (one bound to 127.0.0.1 accepts only 127.0.0.1), and to the loopback device, so
//! nothing from another interface reaches it.

#![allow(unsafe_code)] // a GlobalAlloc is unsafe to implement, and getrlimit is a C call

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier::{ConnectivityState, PickRequest, PolicyConfig};
use croupier_echo::tokio_io::{read_frame, write_frame};
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
const DESCRIPTORS_PER_ENDPOINT: usize = 4;
/// Descriptors kept for everything else.
const RESERVE: usize = 1_000;
/// How long every wait may take: generous, for 2 cores shared with other builds.
const PATIENCE: Duration = Duration::from_secs(60);
/// What may stay allocated after the channel is dropped, against the baseline taken after a
/// first channel of the same size was built and dropped (so tokio's and the allocator's caches
/// have grown already). Runs leave 0, 16 or 24 KiB: growable buffers (run queues and the like)
/// that reach a size in powers of two set by how many tasks woke at once, which varies with
/// scheduling. Anything kept per connection (a task, a stream: hundreds of bytes each) would
/// leave over a megabyte at 4,750 endpoints, and even 16 bytes per endpoint would exceed it.
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

/// Counters the server keeps.
#[derive(Default)]
struct Served {
    accepted: AtomicUsize,
    closed: AtomicUsize,
}

/// An echo server on one port of every loopback IP, on a thread and runtime of its own (as a
/// fleet of servers is apart from its client). Each reply names the address the client reached.
struct FleetServer {
    port: u16,
    served: Arc<Served>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FleetServer {
    fn start() -> FleetServer {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket
            .bind_device(Some(b"lo"))
            .expect("binding a socket to the loopback device");
        socket
            .bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())
            .unwrap();
        // As deep a queue as the kernel allows: thousands of clients connect at once.
        socket.listen(4_096).unwrap();
        socket.set_nonblocking(true).unwrap();
        let listener = std::net::TcpListener::from(socket);
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(Served::default());
        let counters = Arc::clone(&served);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    _ = stopped => {}
                    _ = accept(listener, counters) => {}
                }
            });
            // Dropping the runtime drops every connection task and closes its socket.
        });
        FleetServer {
            port,
            served,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for FleetServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(listener: tokio::net::TcpListener, served: Arc<Served>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        served.accepted.fetch_add(1, Ordering::SeqCst);
        let served = Arc::clone(&served);
        tokio::spawn(async move {
            let reached = stream
                .local_addr()
                .map(|address| address.to_string())
                .unwrap_or_default();
            while let Ok(Some(_request)) = read_frame(&mut stream).await {
                if write_frame(&mut stream, reached.as_bytes()).await.is_err() {
                    break;
                }
            }
            served.closed.fetch_add(1, Ordering::SeqCst);
        });
    }
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

/// The target naming `n` consecutive loopback IPs from 127.0.0.1, all on `port`.
fn fleet_target(n: usize, port: u16) -> String {
    let first = u32::from(Ipv4Addr::new(127, 0, 0, 1));
    let addresses: Vec<String> = (0..n as u32)
        .map(|i| SocketAddr::from((Ipv4Addr::from(first + i), port)).to_string())
        .collect();
    format!("ipv4:{}", addresses.join(","))
}

/// One echo call on `connection`; returns the address the server says was reached.
async fn call(connection: &SharedStream) -> String {
    let mut stream = connection.lock().await;
    write_frame(&mut *stream, b"which backend?").await.unwrap();
    let reply = read_frame(&mut *stream).await.unwrap().expect("a reply");
    String::from_utf8(reply).unwrap()
}

/// What one round measured.
struct Round {
    all_ready: Duration,
    live_with_channel: isize,
}

/// Builds a round_robin channel over `n` endpoints, waits until all are READY, makes `n` calls
/// (which must reach `n` distinct backends), drops the channel and waits until the server saw
/// every connection end.
async fn round(server: &FleetServer, n: usize) -> Round {
    let accepted_before = server.served.accepted.load(Ordering::SeqCst);
    let started = Instant::now();
    let channel = croupier_tokio::builder(fleet_target(n, server.port))
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

    let mut reached = HashSet::with_capacity(n);
    for _ in 0..n {
        let picked = channel.pick(&request).await.unwrap();
        let backend = call(&picked.connection).await;
        assert_eq!(
            backend,
            picked.call.address().to_string(),
            "the call reached the backend its pick named"
        );
        picked.call.success();
        reached.insert(backend);
    }
    assert_eq!(reached.len(), n, "distinct backends reached by {n} calls");
    assert_eq!(
        server.served.accepted.load(Ordering::SeqCst) - accepted_before,
        n,
        "connections accepted: one per endpoint"
    );
    let live_with_channel = live_bytes();

    drop(channel);
    wait_until("the server sees every connection end", || async {
        let served = &server.served;
        served.closed.load(Ordering::SeqCst) == served.accepted.load(Ordering::SeqCst)
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
    let server = FleetServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
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
