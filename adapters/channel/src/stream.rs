//! A byte stream shared by the calls sent on it, one at a time, and watched while idle so that a
//! connection the peer closes is noticed at once (not when the next call fails on it).
//!
//! Each runtime adapter implements [`PeerWatch`] for its socket types; the locking and watching
//! logic lives here, once.

use std::fmt;
use std::future::Future;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_lock::{Mutex, MutexGuard};
use event_listener::Event;
use futures_lite::future;

/// What the watcher needs from a socket: a look at what comes next, without taking it.
pub trait PeerWatch: Send + Sync + 'static {
    /// Waits until the stream has a byte to read or has ended, and says which without consuming
    /// anything: `Ok(0)` when the peer closed the stream, `Ok(n)` when bytes wait to be read.
    fn peek(&self) -> impl Future<Output = io::Result<usize>> + Send;
}

/// A stream shared by the calls a channel sends on it: [`SharedStream::lock`] it for one call's
/// request and response. While no call holds it, it is watched, and [`SharedStream::closed`]
/// completes as soon as the peer closes it.
pub struct SharedStream<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    stream: Mutex<S>,
    /// Notified when a call starts waiting for the stream.
    wanted: Event,
    /// Notified when a call releases the stream.
    released: Event,
    /// Calls waiting for the stream.
    waiting: AtomicUsize,
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
            .field("waiting", &self.inner.waiting.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<S: PeerWatch> SharedStream<S> {
    /// Wraps `stream`.
    pub fn new(stream: S) -> Self {
        SharedStream {
            inner: Arc::new(Inner {
                stream: Mutex::new(stream),
                wanted: Event::new(),
                released: Event::new(),
                waiting: AtomicUsize::new(0),
            }),
        }
    }

    /// Waits for exclusive use of the stream.
    pub async fn lock(&self) -> StreamGuard<'_, S> {
        self.inner.waiting.fetch_add(1, Ordering::SeqCst);
        self.inner.wanted.notify(usize::MAX);
        let guard = self.inner.stream.lock().await;
        self.inner.waiting.fetch_sub(1, Ordering::SeqCst);
        StreamGuard {
            guard: Some(guard),
            released: &self.inner.released,
        }
    }

    /// Completes, with a reason, when the peer has closed the stream or it failed. It watches
    /// only while no call holds the stream; a call that finds it dead reports that itself.
    pub async fn closed(self) -> String {
        loop {
            // Let waiting calls go first.
            loop {
                let released = self.inner.released.listen();
                if self.inner.waiting.load(Ordering::SeqCst) == 0 {
                    break;
                }
                released.await;
            }
            let guard = self.inner.stream.lock().await;
            if self.inner.waiting.load(Ordering::SeqCst) > 0 {
                continue;
            }
            let wanted = self.inner.wanted.listen();
            if self.inner.waiting.load(Ordering::SeqCst) > 0 {
                continue;
            }
            let peeked = future::or(async { Some(guard.peek().await) }, async {
                wanted.await;
                None
            })
            .await;
            match peeked {
                None => {} // a call wants the stream: release it
                Some(Ok(0)) => return "the peer closed the connection".to_owned(),
                Some(Ok(_)) => {
                    // Bytes wait for a call to read them: step aside until one wants them.
                    let wanted = self.inner.wanted.listen();
                    drop(guard);
                    if self.inner.waiting.load(Ordering::SeqCst) == 0 {
                        wanted.await;
                    }
                }
                Some(Err(error)) => return format!("connection failed: {error}"),
            }
        }
    }
}

/// Exclusive use of a [`SharedStream`]; derefs to the stream.
pub struct StreamGuard<'a, S> {
    guard: Option<MutexGuard<'a, S>>,
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
        self.released.notify(usize::MAX);
    }
}
