//! The echo protocol of croupier's examples and tests, and echo servers on loopback.
//!
//! The echo protocol is a length-prefixed frame each way: a 4-byte big-endian length, then the
//! payload. A server answers each request frame with `"<payload> (from <its address>)"`, which is
//! what the seed's example prints, and counts the connections it accepts and sees close.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The largest frame either side accepts (1 MiB).
pub const MAX_FRAME: usize = 1 << 20;

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, payload: &[u8]) -> io::Result<()> {
    let length = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut frame = BytesMut::with_capacity(4 + payload.len());
    frame.put_u32(length);
    frame.put_slice(payload);
    writer.write_all(&frame).await?;
    writer.flush().await
}

/// Reads one frame; `Ok(None)` at a clean end of stream before a frame starts.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Bytes>> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = (&header[..]).get_u32() as usize;
    if length > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await?;
    Ok(Some(Bytes::from(payload)))
}

/// Sends `payload` and reads the reply, as one echo call.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    payload: &str,
) -> io::Result<String> {
    write_frame(stream, payload.as_bytes()).await?;
    match read_frame(stream).await? {
        Some(reply) => String::from_utf8(reply.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "reply is not UTF-8")),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection before replying",
        )),
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

/// An echo server on a loopback port, running on the current tokio runtime until stopped or
/// dropped. Stopping closes its listener and every connection it holds.
#[derive(Debug)]
pub struct EchoServer {
    address: SocketAddr,
    stats: Arc<Stats>,
    stop: watch::Sender<bool>,
}

impl EchoServer {
    /// Starts a server on `127.0.0.1:port` (`0` for any free port).
    pub async fn start(port: u16) -> io::Result<EchoServer> {
        EchoServer::start_on(SocketAddr::from(([127, 0, 0, 1], port))).await
    }

    /// Starts a server on `address` (a loopback address).
    pub async fn start_on(address: SocketAddr) -> io::Result<EchoServer> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve(listener, Arc::clone(&stats), stopped));
        Ok(EchoServer {
            address,
            stats,
            stop,
        })
    }

    /// Where it listens.
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

    /// Stops listening and closes every connection.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: TcpListener, stats: Arc<Stats>, mut stopped: watch::Receiver<bool>) {
    let name = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    loop {
        tokio::select! {
            () = stop_signal(&mut stopped) => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                stats.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(connection(stream, name.clone(), Arc::clone(&stats), stopped.clone()));
            }
        }
    }
}

async fn connection(
    mut stream: tokio::net::TcpStream,
    name: String,
    stats: Arc<Stats>,
    mut stopped: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    loop {
        tokio::select! {
            () = stop_signal(&mut stopped) => break,
            frame = read_frame(&mut stream) => {
                let Ok(Some(request)) = frame else { break };
                let reply = format!("{} (from {name})", String::from_utf8_lossy(&request));
                stats.calls.fetch_add(1, Ordering::SeqCst);
                if write_frame(&mut stream, reply.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
    }
    drop(stream);
    stats.closed.fetch_add(1, Ordering::SeqCst);
}

/// Completes once the server is told to stop (or its handle is gone).
async fn stop_signal(stopped: &mut watch::Receiver<bool>) {
    loop {
        if *stopped.borrow_and_update() {
            return;
        }
        if stopped.changed().await.is_err() {
            return;
        }
    }
}
