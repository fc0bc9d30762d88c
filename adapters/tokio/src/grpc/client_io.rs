//! The byte stream under an HTTP/2 client connection, with two things the HTTP/2 library does not
//! do on its own:
//!
//! - **The server's preface and GOAWAY.** Its frames are followed as they are read
//!   ([`Frames`]), so that the connection counts as established once the server's preface has
//!   come, and as draining once its GOAWAY has.
//! - **What the server said before it left.** A server shutting down gracefully sends its last
//!   GOAWAY and closes; if requests of ours arrive after that, its kernel answers them with a
//!   reset, and our next write fails. The frames it sent before closing (that GOAWAY, which says
//!   which requests it never processed, so that they can be sent elsewhere) are still waiting
//!   to be read; but a write error ends the HTTP/2 connection at once and they would be lost
//!   with it, and those requests failed as if the server might have run them. So a write that
//!   fails because the peer is gone reports success and drops the bytes; the read side then
//!   delivers what the peer sent and ends the connection with the peer's end (or with the
//!   write's error, should reading ever have to wait).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use super::frames::{Frames, GoAwaySignal};

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

impl<T> ClientIo<T> {
    /// Wraps `inner`; the receiver and the signal are those of [`Frames::new`].
    pub(crate) fn new(
        inner: T,
    ) -> (
        Self,
        oneshot::Receiver<Result<(), String>>,
        Arc<GoAwaySignal>,
    ) {
        let (frames, receipt, signal) = Frames::new();
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
