//! The default connector: TCP (with `TCP_NODELAY`) for IP addresses and `host:port` names, and
//! unix-domain sockets for `unix:` and `unix-abstract:` addresses.

use std::fmt;
use std::future::Future;
use std::io;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use croupier::Address;
use croupier_channel::{Connected, Connector};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, MutexGuard, Notify};

/// Connects to every kind of address croupier's built-in resolvers produce.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamConnector {
    _private: (),
}

impl StreamConnector {
    /// The default connector.
    pub fn new() -> Self {
        StreamConnector::default()
    }
}

impl Connector for StreamConnector {
    type Connection = SharedStream;

    fn connect(
        &self,
        address: &Address,
    ) -> impl Future<Output = io::Result<Connected<SharedStream>>> + Send + 'static {
        let address = address.clone();
        async move {
            let stream = open(&address).await?;
            let shared = SharedStream::new(stream);
            let closed = shared.clone().closed();
            Ok(Connected::new(shared, closed))
        }
    }
}

async fn open(address: &Address) -> io::Result<Stream> {
    match address {
        Address::Socket(addr) => tcp(TcpStream::connect(addr).await?),
        Address::Opaque(name) => tcp(TcpStream::connect(&**name).await?),
        #[cfg(unix)]
        Address::Unix(path) => Ok(Stream::Unix(tokio::net::UnixStream::connect(path).await?)),
        #[cfg(target_os = "linux")]
        Address::UnixAbstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            let stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
            stream.set_nonblocking(true)?;
            Ok(Stream::Unix(tokio::net::UnixStream::from_std(stream)?))
        }
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the default connector cannot connect to {other} on this platform"),
        )),
    }
}

fn tcp(stream: TcpStream) -> io::Result<Stream> {
    stream.set_nodelay(true)?;
    Ok(Stream::Tcp(stream))
}

/// A TCP or unix-domain stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A unix-domain connection.
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl Stream {
    async fn ready(&self, interest: Interest) -> io::Result<tokio::io::Ready> {
        match self {
            Stream::Tcp(s) => s.ready(interest).await,
            #[cfg(unix)]
            Stream::Unix(s) => s.ready(interest).await,
        }
    }

    /// Looks at the next byte without taking it: `Ok(0)` means the peer closed the stream, and
    /// `WouldBlock` that nothing is there (which also clears a stale readiness).
    fn try_peek(&self) -> io::Result<usize> {
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match self {
            Stream::Tcp(s) => s.try_io(Interest::READABLE, || {
                socket2::SockRef::from(s).peek(&mut byte)
            }),
            #[cfg(unix)]
            Stream::Unix(s) => s.try_io(Interest::READABLE, || {
                socket2::SockRef::from(s).peek(&mut byte)
            }),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A stream shared by the calls a channel sends on it, one call at a time: [`SharedStream::lock`]
/// it for a call's request and response.
///
/// While no call holds it, the channel watches it, so a connection the peer closes is noticed at
/// once and taken out of rotation before any call is sent to it.
#[derive(Clone)]
pub struct SharedStream {
    inner: Arc<Inner>,
}

struct Inner {
    stream: Mutex<Stream>,
    /// Wakes the watcher when a call wants the stream.
    wanted: Notify,
    /// Calls waiting for the stream.
    waiting: AtomicUsize,
}

impl fmt::Debug for SharedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedStream")
            .field("waiting", &self.inner.waiting.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SharedStream {
    /// Wraps `stream`.
    pub fn new(stream: Stream) -> Self {
        SharedStream {
            inner: Arc::new(Inner {
                stream: Mutex::new(stream),
                wanted: Notify::new(),
                waiting: AtomicUsize::new(0),
            }),
        }
    }

    /// Waits for exclusive use of the stream (calls are served in order).
    pub async fn lock(&self) -> StreamGuard<'_> {
        self.inner.waiting.fetch_add(1, Ordering::SeqCst);
        self.inner.wanted.notify_one();
        let guard = self.inner.stream.lock().await;
        self.inner.waiting.fetch_sub(1, Ordering::SeqCst);
        StreamGuard { guard }
    }

    /// Completes, with a reason, when the peer has closed the connection or it failed. Watches only
    /// while no call holds the stream; a call that finds the stream dead reports that itself.
    async fn closed(self) -> String {
        loop {
            let guard = self.inner.stream.lock().await;
            if self.inner.waiting.load(Ordering::SeqCst) > 0 {
                drop(guard);
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                ready = guard.ready(Interest::READABLE) => match ready {
                    Ok(ready) if ready.is_read_closed() => {
                        return "the peer closed the connection".to_owned();
                    }
                    Ok(_) => match guard.try_peek() {
                        Ok(0) => return "the peer closed the connection".to_owned(),
                        Ok(_) => {
                            // Bytes wait for a call to read them: step aside until one wants the
                            // stream.
                            drop(guard);
                            self.inner.wanted.notified().await;
                        }
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                        Err(error) => return format!("connection failed: {error}"),
                    },
                    Err(error) => return format!("connection failed: {error}"),
                },
                () = self.inner.wanted.notified() => drop(guard),
            }
        }
    }
}

/// Exclusive use of a [`SharedStream`]; derefs to the [`Stream`].
#[derive(Debug)]
pub struct StreamGuard<'a> {
    guard: MutexGuard<'a, Stream>,
}

impl Deref for StreamGuard<'_> {
    type Target = Stream;

    fn deref(&self) -> &Stream {
        &self.guard
    }
}

impl DerefMut for StreamGuard<'_> {
    fn deref_mut(&mut self) -> &mut Stream {
        &mut self.guard
    }
}
