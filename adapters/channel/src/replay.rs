//! Request bodies that can be sent again: what lets the channel move a request that a server did
//! not process (its GOAWAY excluded it, or it refused the stream) to another connection.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// How much of one request body the channel keeps to send again (64 KiB). A request whose body
/// is larger is still sent, once; if its server does not process it, the call fails.
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// A request body as the channel hands it to a connection: the caller's body, whose frames are
/// kept (up to [`REPLAY_LIMIT`]) as they are sent, so that the request can be sent again on
/// another connection if the first one's server did not process it.
pub struct ReplayBody<B> {
    shared: Arc<Mutex<Replay<B>>>,
    /// How many of the kept frames this copy has yielded.
    cursor: usize,
}

struct Replay<B> {
    body: Option<Pin<Box<B>>>,
    kept: Vec<Kept>,
    kept_bytes: usize,
    /// How many frames have been read from the caller's body.
    frontier: usize,
    /// A frame was not kept (over the limit, or the body failed): no more copies.
    spoiled: bool,
    /// The caller's body has ended.
    ended: bool,
}

#[derive(Clone)]
enum Kept {
    Data(bytes::Bytes),
    Trailers(HeaderMap),
}

impl<B> ReplayBody<B> {
    /// Wraps `body`.
    pub fn new(body: B) -> Self {
        ReplayBody {
            shared: Arc::new(Mutex::new(Replay {
                body: Some(Box::pin(body)),
                kept: Vec::new(),
                kept_bytes: 0,
                frontier: 0,
                spoiled: false,
                ended: false,
            })),
            cursor: 0,
        }
    }

    /// A body of `data` alone, already kept: for requests the connection itself makes (a health
    /// check), on a connection whose calls send bodies of type `B`.
    pub fn full(data: bytes::Bytes) -> Self {
        let kept_bytes = data.len();
        ReplayBody {
            shared: Arc::new(Mutex::new(Replay {
                body: None,
                kept: vec![Kept::Data(data)],
                kept_bytes,
                frontier: 1,
                spoiled: false,
                ended: true,
            })),
            cursor: 0,
        }
    }

    /// A copy that starts from the first frame, if everything sent so far was kept.
    pub fn replay(&self) -> Option<ReplayBody<B>> {
        if lock(&self.shared).spoiled {
            return None;
        }
        Some(ReplayBody {
            shared: Arc::clone(&self.shared),
            cursor: 0,
        })
    }
}

fn lock<B>(shared: &Mutex<Replay<B>>) -> MutexGuard<'_, Replay<B>> {
    match shared.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = lock(&self.shared);
        f.debug_struct("ReplayBody")
            .field("cursor", &self.cursor)
            .field("kept_bytes", &shared.kept_bytes)
            .field("spoiled", &shared.spoiled)
            .field("ended", &shared.ended)
            .finish_non_exhaustive()
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = bytes::Bytes>,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, B::Error>>> {
        let this = &mut *self;
        let mut shared = lock(&this.shared);
        if let Some(kept) = shared.kept.get(this.cursor).cloned() {
            this.cursor += 1;
            return Poll::Ready(Some(Ok(match kept {
                Kept::Data(data) => Frame::data(data),
                Kept::Trailers(trailers) => Frame::trailers(trailers),
            })));
        }
        if this.cursor != shared.frontier || shared.ended {
            // The end, or a stale copy (another one read on and did not keep what it read).
            return Poll::Ready(None);
        }
        let Some(body) = shared.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = body.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let kept = if let Some(data) = frame.data_ref() {
                    Some((Kept::Data(data.clone()), data.len()))
                } else {
                    frame
                        .trailers_ref()
                        .map(|trailers| (Kept::Trailers(trailers.clone()), 0))
                };
                shared.frontier += 1;
                match kept {
                    Some((kept, len))
                        if !shared.spoiled && shared.kept_bytes + len <= REPLAY_LIMIT =>
                    {
                        shared.kept.push(kept);
                        shared.kept_bytes += len;
                    }
                    _ => {
                        shared.spoiled = true;
                        shared.kept = Vec::new();
                    }
                }
                this.cursor = shared.frontier;
            }
            Poll::Ready(Some(Err(_))) => {
                shared.spoiled = true;
                shared.kept = Vec::new();
            }
            Poll::Ready(None) => {
                shared.ended = true;
                shared.body = None;
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let shared = lock(&self.shared);
        if self.cursor < shared.kept.len() {
            return false;
        }
        self.cursor != shared.frontier
            || shared.ended
            || shared
                .body
                .as_ref()
                .is_some_and(|body| body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let shared = lock(&self.shared);
        match &shared.body {
            Some(body) if self.cursor == shared.frontier => body.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use super::*;

    /// A body that yields the given frames, then ends.
    struct Frames(VecDeque<Frame<bytes::Bytes>>);

    impl Body for Frames {
        type Data = bytes::Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn frames(data: &[&'static str]) -> Frames {
        Frames(
            data.iter()
                .map(|d| Frame::data(bytes::Bytes::from_static(d.as_bytes())))
                .collect(),
        )
    }

    fn read_all<B: Body<Data = bytes::Bytes> + Unpin>(body: &mut B) -> Vec<String> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        loop {
            match Pin::new(&mut *body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        out.push(String::from_utf8_lossy(data).into_owned());
                    }
                }
                Poll::Ready(_) => return out,
                Poll::Pending => panic!("the test bodies never wait"),
            }
        }
    }

    #[test]
    fn a_replay_sends_the_same_frames_again() {
        let mut first = ReplayBody::new(frames(&["a", "b", "c"]));
        let mut second = first.replay().expect("nothing read yet");
        assert_eq!(read_all(&mut first), ["a", "b", "c"]);
        let mut third = first.replay().expect("all kept");
        assert_eq!(read_all(&mut second), ["a", "b", "c"]);
        assert_eq!(read_all(&mut third), ["a", "b", "c"]);
        assert!(third.is_end_stream());
    }

    #[test]
    fn a_replay_picks_up_where_the_first_copy_stopped() {
        let mut first = ReplayBody::new(frames(&["a", "b"]));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(
            Pin::new(&mut first).poll_frame(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
        let mut second = first.replay().expect("kept");
        drop(first);
        assert_eq!(read_all(&mut second), ["a", "b"]);
    }

    #[test]
    fn a_full_body_yields_its_bytes_and_ends() {
        let mut body = ReplayBody::<Frames>::full(bytes::Bytes::from_static(b"ping"));
        assert!(!body.is_end_stream());
        assert_eq!(read_all(&mut body), ["ping"]);
        assert!(body.is_end_stream());
        let mut again = body.replay().expect("kept");
        assert_eq!(read_all(&mut again), ["ping"]);
    }

    #[test]
    fn a_body_over_the_limit_is_sent_once_and_not_replayed() {
        let big: &'static str = Box::leak("x".repeat(REPLAY_LIMIT + 1).into_boxed_str());
        let mut first = ReplayBody::new(frames(&["a", big, "c"]));
        let mut stale = first.replay().expect("nothing read yet");
        assert_eq!(read_all(&mut first).len(), 3);
        assert!(first.replay().is_none());
        // A copy made before the limit was passed cannot go on past what was kept.
        assert!(read_all(&mut stale).is_empty());
    }
}
