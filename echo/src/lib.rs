//! The echo protocol of croupier's examples and tests, and echo servers on loopback.
//!
//! The protocol is one length-prefixed frame each way: a 4-byte big-endian length, then the
//! payload. A server answers each request with `"<payload> (from <the address its client reached>)"` (what the
//! load-balancing examples print) and counts the connections it accepts and sees end.
//!
//! Servers run on a thread of their own (with `async-io`), so they serve tokio, async-std and smol
//! clients alike. Client helpers exist for futures-io streams ([`futures_io`]) and, with the `tokio`
//! feature, for tokio streams (`tokio_io`).

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_net::{TcpListener, TcpStream};
use futures_lite::future;

/// How many connections a fleet's server lets wait to be accepted (the kernel caps it at
/// `net.core.somaxconn`).
#[cfg(target_os = "linux")]
const FLEET_BACKLOG: i32 = 4_096;

/// The largest frame either side accepts (1 MiB).
pub const MAX_FRAME: usize = 1 << 20;

/// The bytes of one frame carrying `payload`.
pub fn frame(payload: &[u8]) -> io::Result<Vec<u8>> {
    let length = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut bytes = Vec::with_capacity(4 + payload.len());
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(payload);
    Ok(bytes)
}

/// The payload length a frame header announces.
pub fn payload_length(header: [u8; 4]) -> io::Result<usize> {
    let length = u32::from_be_bytes(header) as usize;
    if length > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    Ok(length)
}

fn reply_text(reply: Vec<u8>) -> io::Result<String> {
    String::from_utf8(reply)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "reply is not UTF-8"))
}

fn no_reply() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection before replying",
    )
}

/// The protocol over futures-io streams (async-std, smol, async-net).
pub mod futures_io {
    use std::io;

    use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// Writes one frame.
    pub async fn write_frame<W: AsyncWrite + Unpin>(
        writer: &mut W,
        payload: &[u8],
    ) -> io::Result<()> {
        writer.write_all(&super::frame(payload)?).await?;
        writer.flush().await
    }

    /// Reads one frame; `Ok(None)` at a clean end of stream before a frame starts.
    pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Vec<u8>>> {
        let mut header = [0u8; 4];
        match reader.read_exact(&mut header).await {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(error) => return Err(error),
        }
        let mut payload = vec![0u8; super::payload_length(header)?];
        reader.read_exact(&mut payload).await?;
        Ok(Some(payload))
    }

    /// One echo call: sends `payload`, returns the reply.
    pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
        stream: &mut S,
        payload: &str,
    ) -> io::Result<String> {
        write_frame(stream, payload.as_bytes()).await?;
        let reply = read_frame(stream).await?.ok_or_else(super::no_reply)?;
        super::reply_text(reply)
    }
}

/// The protocol over tokio streams.
#[cfg(feature = "tokio")]
pub mod tokio_io {
    use std::io;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// Writes one frame.
    pub async fn write_frame<W: AsyncWrite + Unpin>(
        writer: &mut W,
        payload: &[u8],
    ) -> io::Result<()> {
        writer.write_all(&super::frame(payload)?).await?;
        writer.flush().await
    }

    /// Reads one frame; `Ok(None)` at a clean end of stream before a frame starts.
    pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Vec<u8>>> {
        let mut header = [0u8; 4];
        match reader.read_exact(&mut header).await {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(error) => return Err(error),
        }
        let mut payload = vec![0u8; super::payload_length(header)?];
        reader.read_exact(&mut payload).await?;
        Ok(Some(payload))
    }

    /// One echo call: sends `payload`, returns the reply.
    pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
        stream: &mut S,
        payload: &str,
    ) -> io::Result<String> {
        write_frame(stream, payload.as_bytes()).await?;
        let reply = read_frame(stream).await?.ok_or_else(super::no_reply)?;
        super::reply_text(reply)
    }
}

/// Counters a server keeps.
#[derive(Debug, Default)]
pub struct Stats {
    accepted: AtomicUsize,
    closed: AtomicUsize,
    calls: AtomicUsize,
}

impl Stats {
    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections that have ended so far.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.accepted().saturating_sub(self.closed())
    }

    /// Calls answered so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// An echo server on a loopback port, serving on a thread of its own until stopped or dropped.
/// Stopping closes its listener and every connection it holds.
#[derive(Debug)]
pub struct EchoServer {
    address: SocketAddr,
    stats: Arc<Stats>,
    stop: async_channel::Sender<()>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EchoServer {
    /// Starts a server on `127.0.0.1:port` (`0` for any free port).
    pub async fn start(port: u16) -> io::Result<EchoServer> {
        EchoServer::start_on(SocketAddr::from(([127, 0, 0, 1], port))).await
    }

    /// Starts a server on `address` (a loopback address).
    pub async fn start_on(address: SocketAddr) -> io::Result<EchoServer> {
        EchoServer::serve(StdListener::bind(address)?)
    }

    /// Starts one server for a fleet: it listens on `port` (`0` for any free port) of every
    /// loopback address, so that endpoints on consecutive IPs (127.0.0.1, 127.0.0.2, ...: see
    /// [`EchoServer::fleet_address`]) are served by one listener, and each reply names the
    /// address its client reached. The listener is bound to 0.0.0.0, the only address that
    /// accepts connections to every 127.x.y.z (one bound to 127.0.0.1 accepts only 127.0.0.1),
    /// and to the loopback device, so that nothing from another interface reaches it.
    #[cfg(target_os = "linux")]
    pub async fn start_fleet(port: u16) -> io::Result<EchoServer> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.bind_device(Some(b"lo"))?;
        socket.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
        // As deep a queue as the kernel allows: a fleet's clients connect all at once.
        socket.listen(FLEET_BACKLOG)?;
        EchoServer::serve(socket.into())
    }

    /// The `index`th address of a fleet's server ([`EchoServer::start_fleet`]): 127.0.0.1 plus
    /// `index`, on its port. `None` past the end of 127.0.0.0/8.
    pub fn fleet_address(&self, index: u32) -> Option<SocketAddr> {
        let first = u32::from(std::net::Ipv4Addr::new(127, 0, 0, 1));
        let ip = std::net::Ipv4Addr::from(first.checked_add(index)?);
        (ip.octets()[0] == 127).then(|| SocketAddr::from((ip, self.port())))
    }

    fn serve(listener: StdListener) -> io::Result<EchoServer> {
        let address = listener.local_addr()?;
        let listener = TcpListener::try_from(listener)?;
        let stats = Arc::new(Stats::default());
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let counters = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name(format!("echo-server-{address}"))
            .spawn(move || {
                let executor = async_executor::LocalExecutor::new();
                future::block_on(executor.run(future::or(
                    async {
                        let _ = stopped.recv().await;
                    },
                    accept(&executor, listener, counters),
                )));
                // Dropping the executor drops every connection task, closing their sockets.
            })?;
        Ok(EchoServer {
            address,
            stats,
            stop,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Where it listens (0.0.0.0 and its port for a fleet's server).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Stops listening and closes every connection; when it returns, the port is free and every
    /// connection has been closed on the server's side.
    pub fn stop(&self) {
        self.stop.close();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept(
    executor: &async_executor::LocalExecutor<'_>,
    listener: TcpListener,
    stats: Arc<Stats>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(reached) = stream.local_addr() else {
            continue; // dropped: the connection is gone already
        };
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        let tally = Tally(Arc::clone(&stats));
        executor.spawn(serve(stream, reached, tally)).detach();
    }
}

/// Counts a connection as closed when its task ends, however it ends.
struct Tally(Arc<Stats>);

impl Drop for Tally {
    fn drop(&mut self) {
        self.0.closed.fetch_add(1, Ordering::SeqCst);
    }
}

/// Serves one connection; replies name `reached`, the address the client connected to.
async fn serve(mut stream: TcpStream, reached: SocketAddr, tally: Tally) {
    let _ = stream.set_nodelay(true);
    while let Ok(Some(request)) = futures_io::read_frame(&mut stream).await {
        let reply = format!("{} (from {reached})", String::from_utf8_lossy(&request));
        tally.0.calls.fetch_add(1, Ordering::SeqCst);
        if futures_io::write_frame(&mut stream, reply.as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
}
