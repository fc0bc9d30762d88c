//! A pick through a channel (snapshot, picker, connection handle, call guard) allocates nothing
//! and takes no listener when a backend is ready, and neither does the lookup of a call's method
//! settings in the service config in use: counted with a global allocator that tallies the
//! allocations of the picking thread.

#![allow(unsafe_code)] // a GlobalAlloc is unsafe to implement; it only forwards to the system's

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use croupier::{ConnectivityState, PickRequest, PolicyConfig};
use croupier_echo::EchoServer;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every method forwards to `System` unchanged; the counter is a thread-local cell.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Polls `future` once, on this thread; it must be ready at once.
fn ready_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the pick waited although a backend is READY"),
    }
}

#[test]
fn a_pick_through_a_ready_channel_allocates_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (servers, channel) = runtime.block_on(async {
        let servers = [
            EchoServer::start(0).await.unwrap(),
            EchoServer::start(0).await.unwrap(),
        ];
        let target = format!("ipv4:{},{}", servers[0].address(), servers[1].address());
        let channel = croupier_tokio::builder(target)
            .policy(PolicyConfig::round_robin())
            .default_service_config(
                r#"{"methodConfig": [
                    {"name": [{"service": "shop.Cart", "method": "Checkout"}], "timeout": "30s"},
                    {"name": [{"service": "shop.Cart"}], "waitForReady": true},
                    {"name": [{}], "timeout": "1s"}
                ]}"#,
            )
            .build()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let ready = channel
                    .subchannels()
                    .await
                    .iter()
                    .filter(|s| s.state == ConnectivityState::Ready)
                    .count();
                if ready == 2 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("both backends READY in time");
        (servers, channel)
    });

    let request = PickRequest::new();
    // A first pick on each backend outside the count (thread-locals and lazily built state
    // settle: with feature `metrics`, a backend's first call registers its instruments).
    for _ in 0..2 {
        ready_now(channel.pick(&request)).unwrap().call.success();
    }
    let paths = [
        "/shop.Cart/Checkout",
        "/shop.Cart/Add",
        "/other.Service/Call",
    ];
    let mut subchannels = Vec::with_capacity(1_000);
    let mut timeouts = Vec::with_capacity(1_000);
    let before = ALLOCATIONS.with(Cell::get);
    for i in 0..1_000 {
        // What the gRPC front does per call: the method's settings, then the pick.
        let method = channel.method_config(paths[i % paths.len()]);
        timeouts.push(method.and_then(|m| m.timeout));
        let picked = ready_now(channel.pick(&request)).unwrap();
        subchannels.push(picked.call.subchannel());
        picked.call.success();
    }
    let allocations = ALLOCATIONS.with(Cell::get) - before;
    assert_eq!(allocations, 0, "allocations in 1,000 lookups and picks");
    assert_eq!(
        &timeouts[..3],
        &[
            Some(Duration::from_secs(30)),
            None,
            Some(Duration::from_secs(1))
        ]
    );
    // The picks did spread: round robin over both backends.
    subchannels.sort();
    subchannels.dedup();
    assert_eq!(subchannels.len(), 2);
    drop(channel);
    drop(servers);
}
