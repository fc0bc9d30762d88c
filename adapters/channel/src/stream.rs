//! A byte stream shared by the calls sent on it, one at a time, and watched while idle so that a
//! connection the peer closes is noticed at once (not when the next call fails on it).
//!
//! Each runtime adapter implements [`PeerWatch`] for its socket types; the locking and watching
//! logic lives here, once. The watcher never holds the stream: it peeks through a second handle
//! to the same socket (a clone or a duplicated descriptor) while no call is using it, so calls
//! never wait for it.

use std::fmt;
use std::future::Future;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use async_lock::{Mutex, MutexGuard};
use event_listener::Event;
use futures_lite::future;

/// A second handle to a connection's socket, for the watcher: a look at what comes next,
/// without taking it.
pub trait PeerWatch: Send + Sync + 'static {
    /// Waits until the socket has a byte to read or has ended, and says which without consuming
    /// anything: `Ok(0)` when the peer closed the stream, `Ok(n)` when bytes wait to be read.
    fn peek(&self) -> impl Future<Output = io::Result<usize>> + Send;

    /// How long the watcher lets a busy stream settle before it watches again (a short sleep on
    /// the runtime's timer). While calls keep coming, the watcher wakes once per settling period
    /// instead of twice per call; a stream that goes quiet is watched again after at most this
    /// long. The default does not wait.
    fn settle(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// How long adapters' watchers let a busy stream settle: a closed peer is noticed at most this
/// long after the last call, and at once on a stream that was already quiet.
pub const SETTLE: std::time::Duration = std::time::Duration::from_millis(10);

/// A stream shared by the calls a channel sends on it: [`SharedStream::lock`] it for one call's
/// request and response. [`SharedStream::watch`] gives the future that completes when the peer
/// closes it.
pub struct SharedStream<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    stream: Mutex<S>,
    /// Calls holding or waiting for the stream.
    active: AtomicUsize,
    /// Calls started so far (to tell a quiet stream from a busy one).
    started: AtomicUsize,
    /// Notified when a call starts wanting the stream.
    wanted: Event,
    /// Notified when a call releases the stream.
    released: Event,
    /// Set when a call found the connection dead.
    broken: OnceLock<String>,
}

impl<S> Clone for SharedStream<S> {
    fn clone(&self) -> Self {
        SharedStream {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> fmt::Debug for SharedStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedStream")
            .field("active", &self.inner.active.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<S: Send + 'static> SharedStream<S> {
    /// Wraps `stream`.
    pub fn new(stream: S) -> Self {
        SharedStream {
            inner: Arc::new(Inner {
                stream: Mutex::new(stream),
                active: AtomicUsize::new(0),
                started: AtomicUsize::new(0),
                wanted: Event::new(),
                released: Event::new(),
                broken: OnceLock::new(),
            }),
        }
    }

    /// Waits for exclusive use of the stream.
    pub async fn lock(&self) -> StreamGuard<'_, S> {
        self.inner.active.fetch_add(1, Ordering::SeqCst);
        self.inner.started.fetch_add(1, Ordering::Relaxed);
        self.inner.wanted.notify(usize::MAX);
        let guard = self.inner.stream.lock().await;
        StreamGuard {
            guard: Some(guard),
            active: &self.inner.active,
            released: &self.inner.released,
        }
    }

    /// Tells the channel that a call found this connection dead (its write failed, or the peer
    /// closed it mid-call): the connection is taken out of rotation at once, before more calls
    /// are sent to it. Call it on I/O errors that are about the connection, not the call.
    pub fn mark_broken(&self, reason: impl Into<String>) {
        let _ = self.inner.broken.set(reason.into());
        self.inner.wanted.notify(usize::MAX);
        self.inner.released.notify(usize::MAX);
    }

    /// Whether [`SharedStream::mark_broken`] was called.
    pub fn is_broken(&self) -> bool {
        self.inner.broken.get().is_some()
    }

    /// A future that completes, with a reason, when the peer has closed the connection or it
    /// failed, as `peer` (a second handle to the same socket) sees it. It looks only while no
    /// call uses the stream: a call reads its own response, and finds a dead stream itself.
    pub fn watch<W: PeerWatch>(&self, peer: W) -> impl Future<Output = String> + Send + 'static
    where
        S: Sync,
    {
        let inner = Arc::clone(&self.inner);
        async move {
            loop {
                // Let calls finish first (unless one found the connection dead).
                loop {
                    let released = inner.released.listen();
                    if let Some(reason) = inner.broken.get() {
                        return reason.clone();
                    }
                    if inner.active.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    released.await;
                }
                // Let a burst of calls pass: one timer per settling period, not wakes per call.
                loop {
                    let started = inner.started.load(Ordering::Relaxed);
                    peer.settle().await;
                    if inner.broken.get().is_some()
                        || (inner.active.load(Ordering::SeqCst) == 0
                            && inner.started.load(Ordering::Relaxed) == started)
                    {
                        break;
                    }
                }
                let wanted = inner.wanted.listen();
                if inner.active.load(Ordering::SeqCst) > 0 || inner.broken.get().is_some() {
                    continue;
                }
                let peeked = future::or(async { Some(peer.peek().await) }, async {
                    wanted.await;
                    None
                })
                .await;
                match peeked {
                    None => {} // a call started: let it run
                    Some(Ok(0)) => return "the peer closed the connection".to_owned(),
                    Some(Ok(_)) => {
                        // Bytes came while no call ran (or just as one started): they are the
                        // next call's to read; look again once one has run.
                        let wanted = inner.wanted.listen();
                        if inner.active.load(Ordering::SeqCst) == 0 {
                            wanted.await;
                        }
                    }
                    Some(Err(error)) => return format!("connection failed: {error}"),
                }
            }
        }
    }
}

/// Exclusive use of a [`SharedStream`]; derefs to the stream.
pub struct StreamGuard<'a, S> {
    guard: Option<MutexGuard<'a, S>>,
    active: &'a AtomicUsize,
    released: &'a Event,
}

impl<S> fmt::Debug for StreamGuard<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamGuard").finish_non_exhaustive()
    }
}

impl<S> Deref for StreamGuard<'_, S> {
    type Target = S;

    fn deref(&self) -> &S {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl<S> DerefMut for StreamGuard<'_, S> {
    fn deref_mut(&mut self) -> &mut S {
        self.guard.as_mut().expect("held until dropped")
    }
}

impl<S> Drop for StreamGuard<'_, S> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.released.notify(usize::MAX);
    }
}
