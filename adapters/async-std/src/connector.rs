//! The default connector: TCP (with `TCP_NODELAY`) for IP addresses and `host:port` names, and
//! unix-domain sockets for `unix:` and `unix-abstract:` addresses, all on async-net.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use croupier::Address;
use croupier_channel::{Connected, Connector, PeerWatch};
use futures_lite::{AsyncRead, AsyncWrite};

/// A stream shared by the calls sent on it; [`SharedStream::lock`](croupier_channel::SharedStream::lock)
/// it for a call.
pub type SharedStream = croupier_channel::SharedStream<Stream>;

/// Exclusive use of a [`SharedStream`]; derefs to the [`Stream`].
pub type StreamGuard<'a> = croupier_channel::StreamGuard<'a, Stream>;

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

    fn is_broken(connection: &SharedStream) -> bool {
        connection.is_broken()
    }

    fn connect(
        &self,
        address: &Address,
    ) -> impl Future<Output = io::Result<Connected<SharedStream>>> + Send + 'static {
        let address = address.clone();
        async move {
            let stream = open(&address).await?;
            let peer = stream.watch_handle()?;
            let shared = SharedStream::new(stream);
            let closed = shared.watch(peer);
            Ok(Connected::new(shared, closed))
        }
    }
}

async fn open(address: &Address) -> io::Result<Stream> {
    match address {
        Address::Socket(addr) => tcp(async_net::TcpStream::connect(addr).await?),
        Address::Opaque(name) => tcp(async_net::TcpStream::connect(&**name).await?),
        #[cfg(unix)]
        Address::Unix(path) => Ok(Stream::Unix(
            async_io::Async::<std::os::unix::net::UnixStream>::connect(path).await?,
        )),
        #[cfg(target_os = "linux")]
        Address::UnixAbstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            let stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
            Ok(Stream::Unix(async_io::Async::new(stream)?))
        }
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the default connector cannot connect to {other} on this platform"),
        )),
    }
}

fn tcp(stream: async_net::TcpStream) -> io::Result<Stream> {
    stream.set_nodelay(true)?;
    Ok(Stream::Tcp(stream))
}

/// A TCP or unix-domain stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum Stream {
    /// A TCP connection.
    Tcp(async_net::TcpStream),
    /// A unix-domain connection.
    #[cfg(unix)]
    Unix(async_io::Async<std::os::unix::net::UnixStream>),
}

impl Stream {
    /// A second handle to the same socket, for the watcher.
    fn watch_handle(&self) -> io::Result<Stream> {
        match self {
            Stream::Tcp(stream) => Ok(Stream::Tcp(stream.clone())),
            #[cfg(unix)]
            Stream::Unix(stream) => Ok(Stream::Unix(async_io::Async::new(
                stream.get_ref().try_clone()?,
            )?)),
        }
    }
}

impl PeerWatch for Stream {
    async fn settle(&self) {
        async_io::Timer::after(croupier_channel::SETTLE).await;
    }

    async fn peek(&self) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.peek(&mut [0u8; 1]).await,
            #[cfg(unix)]
            Stream::Unix(s) => unix_peek(s).await,
        }
    }
}

/// async-io has no peek for unix streams: wait for readability, then peek on the socket.
#[cfg(unix)]
async fn unix_peek(socket: &async_io::Async<std::os::unix::net::UnixStream>) -> io::Result<usize> {
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    loop {
        socket.readable().await?;
        match socket2::SockRef::from(socket.get_ref()).peek(&mut probe) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
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

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_close(cx),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_close(cx),
        }
    }
}
