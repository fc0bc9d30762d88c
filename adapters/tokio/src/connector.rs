//! The default connector: TCP (with `TCP_NODELAY` unless told otherwise, and TCP keepalive if
//! asked) for IP addresses and `host:port` names, and unix-domain sockets for `unix:` and
//! `unix-abstract:` addresses.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use croupier::Address;
use croupier_channel::{Connected, Connector, PeerWatch};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A stream shared by the calls sent on it; [`SharedStream::lock`](croupier_channel::SharedStream::lock)
/// it for a call.
pub type SharedStream = croupier_channel::SharedStream<Stream>;

/// Exclusive use of a [`SharedStream`]; derefs to the [`Stream`].
pub type StreamGuard<'a> = croupier_channel::StreamGuard<'a, Stream>;

/// Connects to every kind of address croupier's built-in resolvers produce.
#[derive(Clone, Copy, Debug)]
pub struct StreamConnector {
    nodelay: bool,
    keepalive: Option<Duration>,
    keepalive_interval: Option<Duration>,
    keepalive_retries: Option<u32>,
}

impl Default for StreamConnector {
    fn default() -> Self {
        StreamConnector {
            nodelay: true,
            keepalive: None,
            keepalive_interval: None,
            keepalive_retries: None,
        }
    }
}

impl StreamConnector {
    /// The default connector: `TCP_NODELAY` on, no TCP keepalive.
    pub fn new() -> Self {
        StreamConnector::default()
    }

    /// Whether TCP connections send small writes at once (`TCP_NODELAY`, Nagle's algorithm off;
    /// default: on, as tonic and gRPC do: an RPC's frames should not wait for an ACK).
    pub fn tcp_nodelay(mut self, enabled: bool) -> Self {
        self.nodelay = enabled;
        self
    }

    /// Turns TCP keepalive on, with probes after `idle` without traffic (`None`, the default:
    /// off). The probes' interval and count are the operating system's unless set below.
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.keepalive = idle;
        self
    }

    /// The time between TCP keepalive probes, once they have begun (default: the operating
    /// system's). Applies on Linux, Android, macOS, iOS, FreeBSD and NetBSD, with
    /// [`tcp_keepalive`](Self::tcp_keepalive) on.
    pub fn tcp_keepalive_interval(mut self, interval: Option<Duration>) -> Self {
        self.keepalive_interval = interval;
        self
    }

    /// How many TCP keepalive probes go unanswered before the connection is dropped (default:
    /// the operating system's). Applies where [`tcp_keepalive_interval`](Self::tcp_keepalive_interval)
    /// does.
    pub fn tcp_keepalive_retries(mut self, retries: Option<u32>) -> Self {
        self.keepalive_retries = retries;
        self
    }

    /// Opens a stream to `address` with these settings.
    pub(crate) async fn open(self, address: &Address) -> io::Result<Stream> {
        match address {
            Address::Socket(addr) => self.tcp(TcpStream::connect(addr).await?),
            Address::Opaque(name) => self.tcp(TcpStream::connect(&**name).await?),
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

    fn tcp(self, stream: TcpStream) -> io::Result<Stream> {
        stream.set_nodelay(self.nodelay)?;
        if let Some(idle) = self.keepalive {
            let keepalive = self.probes(socket2::TcpKeepalive::new().with_time(idle));
            socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
        }
        Ok(Stream::Tcp(stream))
    }

    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd"
    ))]
    fn probes(self, mut keepalive: socket2::TcpKeepalive) -> socket2::TcpKeepalive {
        if let Some(interval) = self.keepalive_interval {
            keepalive = keepalive.with_interval(interval);
        }
        if let Some(retries) = self.keepalive_retries {
            keepalive = keepalive.with_retries(retries);
        }
        keepalive
    }

    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd"
    )))]
    fn probes(self, keepalive: socket2::TcpKeepalive) -> socket2::TcpKeepalive {
        let _ = (self.keepalive_interval, self.keepalive_retries);
        keepalive
    }
}

impl Connector for StreamConnector {
    type Connection = SharedStream;

    fn is_broken(connection: &SharedStream) -> bool {
        connection.is_broken()
    }

    fn connect(
        &self,
        address: &Address,
    ) -> impl Future<Output = io::Result<Connected<SharedStream>>> + Send + 'static {
        let address = address.clone();
        let connector = *self;
        async move {
            let (stream, peer) = connector.open(&address).await?.with_watch_handle()?;
            let shared = SharedStream::new(stream);
            let closed = shared.watch(peer);
            Ok(Connected::new(shared, closed))
        }
    }
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
    /// The stream, and a second handle to its socket for the watcher.
    fn with_watch_handle(self) -> io::Result<(Stream, IdleWatch)> {
        match self {
            Stream::Tcp(stream) => {
                let std = stream.into_std()?;
                let peer = std.try_clone()?;
                Ok((Stream::Tcp(TcpStream::from_std(std)?), IdleWatch::Tcp(peer)))
            }
            #[cfg(unix)]
            Stream::Unix(stream) => {
                let std = stream.into_std()?;
                let peer = std.try_clone()?;
                Ok((
                    Stream::Unix(tokio::net::UnixStream::from_std(std)?),
                    IdleWatch::Unix(peer),
                ))
            }
        }
    }

    async fn ready(&self, interest: Interest) -> io::Result<tokio::io::Ready> {
        match self {
            Stream::Tcp(s) => s.ready(interest).await,
            #[cfg(unix)]
            Stream::Unix(s) => s.ready(interest).await,
        }
    }

    /// Looks at the next byte without taking it; `WouldBlock` also clears tokio's stale
    /// readiness, so the next wait really waits.
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

impl PeerWatch for Stream {
    async fn settle(&self) {
        tokio::time::sleep(croupier_channel::SETTLE).await;
    }

    async fn peek(&self) -> io::Result<usize> {
        loop {
            self.ready(Interest::READABLE).await?;
            match self.try_peek() {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }
}

/// The watcher's handle to a connection's socket: a duplicated descriptor that is registered
/// with the runtime only while the watcher peeks (once the connection has been idle for a
/// while), so that while calls run, the socket's readiness wakes the calls and nothing else.
#[derive(Debug)]
enum IdleWatch {
    Tcp(std::net::TcpStream),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixStream),
}

impl IdleWatch {
    /// The handle's own descriptor, registered for one peek: dropping the registration leaves
    /// it open, so a peek costs no descriptor (a connection holds two, not three, however many
    /// connections a channel has).
    #[cfg(unix)]
    fn register(&self) -> io::Result<tokio::io::unix::AsyncFd<std::os::fd::BorrowedFd<'_>>> {
        use std::os::fd::AsFd;
        let fd = match self {
            IdleWatch::Tcp(socket) => socket.as_fd(),
            IdleWatch::Unix(socket) => socket.as_fd(),
        };
        // Deprecated because an owned `T` need not keep its descriptor open while registered
        // (tokio-rs/tokio#8587); a `BorrowedFd` does, for as long as the registration lives.
        // Its replacement is an `unsafe fn`, and this crate has no unsafe code.
        #[allow(deprecated)]
        tokio::io::unix::AsyncFd::with_interest(fd, Interest::READABLE)
    }

    /// A registered handle for one peek.
    #[cfg(not(unix))]
    fn register(&self) -> io::Result<Stream> {
        let IdleWatch::Tcp(socket) = self;
        Ok(Stream::Tcp(TcpStream::from_std(socket.try_clone()?)?))
    }
}

impl PeerWatch for IdleWatch {
    async fn settle(&self) {
        tokio::time::sleep(croupier_channel::SETTLE).await;
    }

    #[cfg(unix)]
    async fn peek(&self) -> io::Result<usize> {
        // Deregistered when the peek ends or a call interrupts it.
        let registered = self.register()?;
        loop {
            let mut ready = registered.readable().await?;
            let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
            // `Err` is a stale readiness (`WouldBlock`), cleared by `try_io`: wait again.
            if let Ok(peeked) =
                ready.try_io(|fd| socket2::SockRef::from(fd.get_ref()).peek(&mut byte))
            {
                return peeked;
            }
        }
    }

    #[cfg(not(unix))]
    async fn peek(&self) -> io::Result<usize> {
        // Dropped (and so deregistered) when the peek ends or a call interrupts it.
        let registered = self.register()?;
        PeerWatch::peek(&registered).await
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
