//! The byte stream under an HTTP/2 client connection, with two things the HTTP/2 library does not
//! do on its own:
//!
//! - **The server's preface.** A client finishes its handshake as soon as it has written its own
//!   preface, before the server has read a byte of it. A connection counts as established only
//!   once the server's preface (a SETTINGS frame, RFC 9113 3.4) has arrived, as gRPC's transports
//!   do; until then, a server that stops (or a listener dropped with the connection still in its
//!   backlog) would fail every call sent on it, with no GOAWAY to say they were not processed.
//! - **What the server said before it left.** A server shutting down gracefully sends its last
//!   GOAWAY and closes; if requests of ours arrive after that, its kernel answers them with a
//!   reset, and our next write fails. The frames it sent before closing (that GOAWAY, which says
//!   which requests it never processed, so that they can be sent elsewhere) are still waiting
//!   to be read; but a write error ends the HTTP/2 connection at once and they would be lost
//!   with it, and those requests failed as if the server might have run them. So a write that
//!   fails because the peer is gone reports success and drops the bytes; the read side then
//!   delivers what the peer sent and ends the connection with the peer's end (or with the
//!   write's error, should reading ever have to wait).
//! - **The server's GOAWAY, when it arrives.** The HTTP/2 library acts on a GOAWAY (no new
//!   streams) but says nothing of it until the connection has ended, which is when the last
//!   stream open on it has: a long call or a health check's Watch stream would keep the
//!   subchannel READY, and the server's graceful shutdown waiting, for as long as it runs. The
//!   read path follows the frame headers (nine bytes each; payloads are skipped, not copied) and
//!   records the first GOAWAY as it passes, without changing a byte of what HTTP/2 reads.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, Notify};

/// The length of an HTTP/2 frame header.
const FRAME_HEADER: usize = 9;
/// The type of a SETTINGS frame.
const SETTINGS: u8 = 0x4;
/// The type of a GOAWAY frame.
const GOAWAY: u8 = 0x7;
/// The most of a GOAWAY's debug data kept: enough for any reason worth quoting.
const DEBUG_DATA_KEPT: usize = 256;

/// A client's byte stream: it says when the server's preface has arrived and when its first
/// GOAWAY has, and leaves the end of a connection whose peer is gone to the read side.
pub(crate) struct ClientIo<T> {
    inner: T,
    /// Follows the server's frames, until the preface and a GOAWAY have both been seen.
    frames: Option<Frames>,
    /// A write failed because the peer is gone: later writes are dropped, and reading ends with
    /// this error rather than wait.
    write_failed: Option<io::Error>,
}

/// A GOAWAY frame from the server (RFC 9113, 6.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GoAway {
    /// The last stream the server may have processed.
    pub(crate) last_stream_id: u32,
    /// Its error code.
    pub(crate) reason: h2::Reason,
    /// Its debug data (at most [`DEBUG_DATA_KEPT`] bytes of it).
    pub(crate) debug_data: Bytes,
}

impl GoAway {
    /// Whether the server said the client pings too often (gRFC A8: `ENHANCE_YOUR_CALM` with
    /// debug data `too_many_pings`).
    pub(crate) fn too_many_pings(&self) -> bool {
        self.reason == h2::Reason::ENHANCE_YOUR_CALM && self.debug_data == "too_many_pings"
    }
}

impl fmt::Display for GoAway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server sent GOAWAY ({:?}, last stream {})",
            self.reason, self.last_stream_id
        )?;
        if !self.debug_data.is_empty() {
            write!(f, " {:?}", String::from_utf8_lossy(&self.debug_data))?;
        }
        Ok(())
    }
}

/// Where the server's first GOAWAY is kept once read: every handle to the connection can ask
/// whether it has come, and the connection's end waits for it.
#[derive(Debug, Default)]
pub(crate) struct GoAwaySignal {
    received: OnceLock<GoAway>,
    arrived: Notify,
}

impl GoAwaySignal {
    /// The server's first GOAWAY, if it has come.
    pub(crate) fn get(&self) -> Option<&GoAway> {
        self.received.get()
    }

    /// Waits for the server's first GOAWAY.
    pub(crate) async fn arrived(&self) -> GoAway {
        loop {
            if let Some(goaway) = self.received.get() {
                return goaway.clone();
            }
            // One waiter (the connection's end): a notification sent before it waits is kept.
            self.arrived.notified().await;
        }
    }

    fn set(&self, goaway: GoAway) {
        if self.received.set(goaway).is_ok() {
            self.arrived.notify_one();
        }
    }
}

/// Follows the frames the server sends: their headers are read, their payloads skipped, except
/// a GOAWAY's.
struct Frames {
    header: [u8; FRAME_HEADER],
    /// How many header bytes of the current frame have arrived.
    filled: usize,
    /// How many payload bytes of the current frame are still to come, once its header is known.
    remaining: usize,
    /// The payload of the GOAWAY being read.
    goaway: Option<Vec<u8>>,
    /// Hears the verdict on the server's first frame, until it is known.
    preface: Option<oneshot::Sender<Result<(), String>>>,
    signal: Arc<GoAwaySignal>,
}

impl<T> ClientIo<T> {
    /// Wraps `inner`. The receiver hears once the server's first frame has been read: `Ok` for a
    /// SETTINGS frame, an error for anything else; it hears nothing (the sender is dropped) if
    /// the stream ends first. The signal holds the server's first GOAWAY once it has been read.
    pub(crate) fn new(
        inner: T,
    ) -> (
        Self,
        oneshot::Receiver<Result<(), String>>,
        Arc<GoAwaySignal>,
    ) {
        let (done, receipt) = oneshot::channel();
        let signal = Arc::new(GoAwaySignal::default());
        let frames = Frames {
            header: [0; FRAME_HEADER],
            filled: 0,
            remaining: 0,
            goaway: None,
            preface: Some(done),
            signal: Arc::clone(&signal),
        };
        (
            ClientIo {
                inner,
                frames: Some(frames),
                write_failed: None,
            },
            receipt,
            signal,
        )
    }
}

impl Frames {
    /// Looks at `bytes`, just read. Returns `false` once there is nothing left to look for.
    fn observe(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.filled < FRAME_HEADER {
                let take = bytes.len().min(FRAME_HEADER - self.filled);
                self.header[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
                self.filled += take;
                bytes = &bytes[take..];
                if self.filled < FRAME_HEADER {
                    return true;
                }
                if !self.header_complete() {
                    return false;
                }
            } else {
                let take = bytes.len().min(self.remaining);
                if let Some(payload) = self.goaway.as_mut() {
                    let room = (8 + DEBUG_DATA_KEPT).saturating_sub(payload.len());
                    payload.extend_from_slice(&bytes[..take.min(room)]);
                }
                self.remaining -= take;
                bytes = &bytes[take..];
            }
            if self.filled == FRAME_HEADER && self.remaining == 0 && !self.frame_complete() {
                return false;
            }
        }
        true
    }

    /// A frame's header has been read. Returns `false` if the stream is not worth following.
    fn header_complete(&mut self) -> bool {
        let kind = self.header[3];
        if kind != SETTINGS {
            if let Some(preface) = self.preface.take() {
                let _ = preface.send(Err(format!(
                    "the server's first HTTP/2 frame was of type {kind:#x}, not SETTINGS"
                )));
                return false;
            }
        }
        self.remaining = usize::from(self.header[0]) << 16
            | usize::from(self.header[1]) << 8
            | usize::from(self.header[2]);
        if kind == GOAWAY {
            self.goaway = Some(Vec::with_capacity(self.remaining.min(8 + DEBUG_DATA_KEPT)));
        }
        true
    }

    /// A whole frame has been read. Returns `false` once there is nothing left to look for.
    fn frame_complete(&mut self) -> bool {
        self.filled = 0;
        if let Some(preface) = self.preface.take() {
            let _ = preface.send(Ok(()));
        }
        if let Some(payload) = self.goaway.take() {
            // A GOAWAY too short to parse is HTTP/2's to refuse; it ends the connection.
            if let (Some(last), Some(code)) = (payload.get(0..4), payload.get(4..8)) {
                let last = u32::from_be_bytes([last[0], last[1], last[2], last[3]]);
                self.signal.set(GoAway {
                    last_stream_id: last & 0x7fff_ffff,
                    reason: u32::from_be_bytes([code[0], code[1], code[2], code[3]]).into(),
                    debug_data: Bytes::copy_from_slice(&payload[8..]),
                });
                return false;
            }
        }
        true
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ClientIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_pending() {
            if let Some(error) = &this.write_failed {
                return Poll::Ready(Err(io::Error::new(error.kind(), error.to_string())));
            }
        }
        if let Some(frames) = this.frames.as_mut() {
            if !frames.observe(&buf.filled()[before..]) {
                this.frames = None;
            }
        }
        polled
    }
}

/// Whether a write failed because the peer has closed or reset the connection.
fn peer_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

impl<T: AsyncWrite + Unpin> ClientIo<T> {
    /// A write's result, with a peer gone turned into success: `written` bytes taken.
    fn settle<R>(&mut self, polled: Poll<io::Result<R>>, written: R) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(Err(error)) if peer_gone(&error) => {
                self.write_failed = Some(error);
                Poll::Ready(Ok(written))
            }
            polled => polled,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ClientIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.write_failed.is_some() {
            return Poll::Ready(Ok(buf.len()));
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.settle(polled, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total = bufs.iter().map(|buf| buf.len()).sum();
        if self.write_failed.is_some() {
            return Poll::Ready(Ok(total));
        }
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.settle(polled, total)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_failed.is_some() {
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.settle(polled, ())
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_failed.is_some() {
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.settle(polled, ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Receipt = oneshot::Receiver<Result<(), String>>;

    fn new_frames() -> (Frames, Receipt, Arc<GoAwaySignal>) {
        let (watched, receipt, signal) = ClientIo::new(());
        let frames = watched.frames.expect("a new stream is followed");
        (frames, receipt, signal)
    }

    /// The verdict on the preface, if there is one yet.
    fn verdict(receipt: &mut Receipt) -> Option<Result<(), String>> {
        receipt.try_recv().ok()
    }

    /// A SETTINGS frame with `length` payload bytes, then a PING frame.
    fn settings_then_ping(length: u8) -> Vec<u8> {
        let mut bytes = vec![0, 0, length, SETTINGS, 0, 0, 0, 0, 0];
        bytes.extend(std::iter::repeat_n(7, usize::from(length)));
        bytes.extend([0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        bytes
    }

    /// A GOAWAY frame: last stream `last`, error `code`, then `debug` data.
    fn goaway(last: u32, code: u32, debug: &[u8]) -> Vec<u8> {
        let length = u8::try_from(8 + debug.len()).expect("a short frame");
        let mut bytes = vec![0, 0, length, GOAWAY, 0, 0, 0, 0, 0];
        bytes.extend(last.to_be_bytes());
        bytes.extend(code.to_be_bytes());
        bytes.extend(debug);
        bytes
    }

    #[test]
    fn the_preface_counts_once_its_settings_frame_is_whole() {
        let bytes = settings_then_ping(12);
        // One byte at a time: nothing until the twenty-first (9 + 12) byte.
        let (mut frames, mut receipt, _) = new_frames();
        for (i, byte) in bytes.iter().enumerate().take(21) {
            assert!(frames.observe(std::slice::from_ref(byte)));
            assert_eq!(verdict(&mut receipt).is_some(), i == 20, "after byte {i}");
        }
        // All at once, with the next frame in the same read.
        let (mut frames, mut receipt, _) = new_frames();
        assert!(frames.observe(&bytes));
        assert_eq!(verdict(&mut receipt), Some(Ok(())));
        // Split inside the header.
        let (mut frames, mut receipt, _) = new_frames();
        assert!(frames.observe(&bytes[..4]));
        assert!(frames.observe(&bytes[4..20]));
        assert_eq!(verdict(&mut receipt), None);
        assert!(frames.observe(&bytes[20..]));
        assert_eq!(verdict(&mut receipt), Some(Ok(())));
    }

    #[test]
    fn an_empty_settings_frame_is_a_preface() {
        let (mut frames, mut receipt, _) = new_frames();
        assert!(frames.observe(&settings_then_ping(0)[..9]));
        assert_eq!(verdict(&mut receipt), Some(Ok(())));
    }

    #[test]
    fn anything_but_settings_first_is_refused() {
        let (mut frames, mut receipt, _) = new_frames();
        // An HTTP/1.1 server's answer to the client preface.
        assert!(!frames.observe(b"HTTP/1.1 400 Bad Request\r\n"));
        let verdict = verdict(&mut receipt);
        assert!(matches!(verdict, Some(Err(message)) if message.contains("not SETTINGS")));
    }

    #[test]
    fn the_first_goaway_is_found_among_the_frames_however_they_are_split() {
        let mut bytes = settings_then_ping(6);
        // A DATA frame of 300 bytes whose payload looks like a GOAWAY header: skipped whole.
        bytes.extend([0, 0x01, 0x2c, 0x0, 0x1, 0, 0, 0, 1]);
        bytes.extend(goaway(5, 0, b"").iter().cycle().take(300));
        bytes.extend(goaway(7, 0xb, b"too_many_pings"));
        let first_ends = bytes.len();
        bytes.extend(goaway(3, 0, b"a second one"));
        let expected = GoAway {
            last_stream_id: 7,
            reason: h2::Reason::ENHANCE_YOUR_CALM,
            debug_data: Bytes::from_static(b"too_many_pings"),
        };
        for chunk in [1, 2, 7, 9, 10, 64, bytes.len()] {
            let (mut frames, mut receipt, signal) = new_frames();
            // Followed up to the piece that completes the first GOAWAY, and no further.
            let stopped = bytes
                .chunks(chunk)
                .position(|piece| !frames.observe(piece))
                .expect("the GOAWAY ends the following");
            assert_eq!(stopped, (first_ends - 1) / chunk, "in pieces of {chunk}");
            assert_eq!(verdict(&mut receipt), Some(Ok(())));
            assert_eq!(signal.get(), Some(&expected), "in pieces of {chunk}");
            assert!(expected.too_many_pings());
        }
    }

    #[test]
    fn a_goaway_keeps_a_bounded_part_of_its_debug_data() {
        let debug = [b'x'; 200];
        let mut bytes = settings_then_ping(0);
        // Two GOAWAY frames' worth of debug data in one: 400 bytes (a 3-byte length).
        let mut frame = goaway(0, 0, &debug);
        let length = 8 + 2 * debug.len();
        frame[..3].copy_from_slice(&(length as u32).to_be_bytes()[1..]);
        frame.extend(debug);
        bytes.extend(frame);
        let (mut frames, _, signal) = new_frames();
        assert!(!frames.observe(&bytes));
        let received = signal.get().expect("the GOAWAY");
        assert_eq!(received.debug_data.len(), DEBUG_DATA_KEPT);
        assert_eq!(received.reason, h2::Reason::NO_ERROR);
        assert!(!received.too_many_pings());
        assert!(received
            .to_string()
            .contains("GOAWAY (NO_ERROR, last stream 0)"));
    }

    /// A peer that has sent `incoming` and then closed: writes fail with `write_error`; reads
    /// give what was sent, then wait (`then_wait`) or report the end.
    struct Gone {
        incoming: std::collections::VecDeque<u8>,
        write_error: io::ErrorKind,
        then_wait: bool,
    }

    impl AsyncRead for Gone {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.incoming.is_empty() {
                return if self.then_wait {
                    Poll::Pending
                } else {
                    Poll::Ready(Ok(()))
                };
            }
            while buf.remaining() > 0 {
                match self.incoming.pop_front() {
                    Some(byte) => buf.put_slice(&[byte]),
                    None => break,
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Gone {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(self.write_error.into()))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Err(self.write_error.into()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn gone(incoming: &[u8], write_error: io::ErrorKind, then_wait: bool) -> ClientIo<Gone> {
        ClientIo::new(Gone {
            incoming: incoming.iter().copied().collect(),
            write_error,
            then_wait,
        })
        .0
    }

    fn context() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    fn read(io: &mut ClientIo<Gone>) -> Poll<io::Result<Vec<u8>>> {
        let mut bytes = [0; 64];
        let mut buf = ReadBuf::new(&mut bytes);
        Pin::new(io)
            .poll_read(&mut context(), &mut buf)
            .map_ok(|()| buf.filled().to_vec())
    }

    fn write(io: &mut ClientIo<Gone>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(io).poll_write(&mut context(), bytes)
    }

    #[test]
    fn what_a_departed_peer_sent_is_still_read_after_a_write_fails() {
        // The peer's last frame (a GOAWAY, say) waits in the socket; our write meets its reset.
        let mut io = gone(b"last words", io::ErrorKind::ConnectionReset, false);
        assert!(matches!(write(&mut io, b"request"), Poll::Ready(Ok(7))));
        assert!(matches!(write(&mut io, b"more"), Poll::Ready(Ok(4))));
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut context()),
            Poll::Ready(Ok(()))
        ));
        assert!(matches!(read(&mut io), Poll::Ready(Ok(bytes)) if bytes == b"last words"));
        // Then the peer's end.
        assert!(matches!(read(&mut io), Poll::Ready(Ok(bytes)) if bytes.is_empty()));
    }

    #[test]
    fn reading_never_waits_once_a_write_found_the_peer_gone() {
        let mut io = gone(b"", io::ErrorKind::BrokenPipe, true);
        assert!(
            read(&mut io).is_pending(),
            "nothing written yet: reading waits"
        );
        assert!(matches!(write(&mut io, b"request"), Poll::Ready(Ok(7))));
        match read(&mut io) {
            Poll::Ready(Err(error)) => assert_eq!(error.kind(), io::ErrorKind::BrokenPipe),
            other => panic!("expected the write's error, got {other:?}"),
        }
    }

    #[test]
    fn other_write_errors_are_reported_as_they_are() {
        let mut io = gone(b"", io::ErrorKind::PermissionDenied, false);
        match write(&mut io, b"request") {
            Poll::Ready(Err(error)) => assert_eq!(error.kind(), io::ErrorKind::PermissionDenied),
            other => panic!("expected the error, got {other:?}"),
        }
        assert!(io.write_failed.is_none());
    }
}
