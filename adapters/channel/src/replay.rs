//! Request bodies that can be sent again: what lets the channel move a request that a server did
//! not process (its GOAWAY excluded it, or it refused the stream) to another connection, and
//! what a call that retries or hedges (gRFC A6) sends each of its attempts.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::error::BoxError;
use crate::message_size::{SendCheck, SendLimit};

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
    /// Which copy this is: for a retried call, its attempt's number.
    copy: u32,
    /// Counts the message bytes this copy sends, for its attempt's metrics.
    #[cfg(feature = "metrics")]
    sent: Option<SentBytes>,
}

/// The message bytes one copy sent so far, read by its attempt at its end.
#[cfg(feature = "metrics")]
struct SentBytes {
    messages: crate::grpc::MessageBytes,
    total: Arc<std::sync::atomic::AtomicU64>,
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
    /// For a call that retries or hedges: what its attempts share beyond the frames.
    retained: Option<Retained>,
    /// The call's limit on request messages, and the reader of the caller's messages.
    send_limit: Option<SendCheck>,
}

/// The part of a replay shared by the attempts of a call that retries or hedges. Every frame is
/// kept until the call commits (the call's retry machine holds it to the buffer limits, told of
/// each byte by [`BufferWatch`]); after that, new frames pass through, and the kept ones go
/// once the committed copy has sent them.
#[derive(Default)]
struct Retained {
    /// Bytes kept that the call has not yet been told of.
    unreported: u64,
    /// The call waiting to hear of them: woken only once more than `wake_past` bytes are kept,
    /// as it reads them anyway before it decides anything else (a wake per frame would cost a
    /// task switch per message).
    watcher: Option<Waker>,
    wake_past: u64,
    /// Copies waiting at the frontier for the caller's next frame (hedges read side by side).
    waiting: Vec<Waker>,
    /// The copy the call committed to.
    committed: Option<u32>,
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
                retained: None,
                send_limit: None,
            })),
            cursor: 0,
            copy: 0,
            #[cfg(feature = "metrics")]
            sent: None,
        }
    }

    /// Wraps `body` for a call that retries or hedges: every frame is kept, whatever its size,
    /// until [`BufferWatch::commit`] (the call's retry machine bounds what it keeps, and is
    /// woken once more than `wake_past` bytes are kept), and the copies of
    /// [`BufferWatch::copy`] may read side by side. The body is copy 0.
    pub(crate) fn retained(body: B, wake_past: u64) -> (Self, BufferWatch<B>) {
        let body = ReplayBody::new(body);
        lock(&body.shared).retained = Some(Retained {
            wake_past,
            ..Retained::default()
        });
        let watch = BufferWatch {
            shared: Arc::clone(&body.shared),
        };
        (body, watch)
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
                retained: None,
                send_limit: None,
            })),
            cursor: 0,
            copy: 0,
            #[cfg(feature = "metrics")]
            sent: None,
        }
    }

    /// Sends no request message larger than `limit` allows: such a message, once it comes
    /// from the caller's body, is not sent; every copy then fails (its stream is reset), and
    /// the limit says why.
    pub(crate) fn limit_sends(&self, limit: Arc<SendLimit>) {
        lock(&self.shared).send_limit = Some(SendCheck::new(limit));
    }

    /// A copy that starts from the first frame, if everything sent so far was kept.
    pub fn replay(&self) -> Option<ReplayBody<B>> {
        if lock(&self.shared).spoiled {
            return None;
        }
        Some(ReplayBody {
            shared: Arc::clone(&self.shared),
            cursor: 0,
            copy: self.copy,
            #[cfg(feature = "metrics")]
            sent: None,
        })
    }
}

/// A retried call's view of its request body: how many bytes were kept since it last looked,
/// new copies for new attempts, and the commit that ends keeping.
pub(crate) struct BufferWatch<B> {
    shared: Arc<Mutex<Replay<B>>>,
}

impl<B> BufferWatch<B> {
    /// The bytes kept since the last call, or pending (the task woken once more than the
    /// `wake_past` of [`ReplayBody::retained`] are kept).
    pub(crate) fn poll_kept(&self, cx: &mut Context<'_>) -> Poll<u64> {
        let mut shared = lock(&self.shared);
        let Some(retained) = shared.retained.as_mut() else {
            return Poll::Pending;
        };
        match std::mem::take(&mut retained.unreported) {
            0 => {
                retained.watcher = Some(cx.waker().clone());
                Poll::Pending
            }
            bytes => Poll::Ready(bytes),
        }
    }

    /// A copy from the first frame for the attempt numbered `copy`, if nothing sent so far was
    /// lost.
    pub(crate) fn copy(&self, copy: u32) -> Option<ReplayBody<B>> {
        let shared = lock(&self.shared);
        if shared.spoiled || shared.retained.as_ref()?.committed.is_some() {
            return None;
        }
        Some(ReplayBody {
            shared: Arc::clone(&self.shared),
            cursor: 0,
            copy,
            #[cfg(feature = "metrics")]
            sent: None,
        })
    }

    /// The call is committed to the attempt numbered `copy`: no more frames are kept, and the
    /// kept ones go once that copy has sent them.
    pub(crate) fn commit(&self, copy: u32) {
        let mut shared = lock(&self.shared);
        if let Some(retained) = shared.retained.as_mut() {
            retained.committed.get_or_insert(copy);
            retained.unreported = 0;
            for waiting in retained.waiting.drain(..) {
                waiting.wake();
            }
        }
    }
}

impl<B> Replay<B> {
    /// Whether `copy` belongs to an attempt other than the one its call committed to.
    fn is_stale(&self, copy: u32) -> bool {
        self.retained
            .as_ref()
            .and_then(|retained| retained.committed)
            .is_some_and(|committed| committed != copy)
    }

    /// After a commit, frees the kept frames once the committed `copy` has sent them all.
    fn forget_sent(&mut self, copy: u32, cursor: usize) {
        let committed = self.retained.as_ref().and_then(|r| r.committed);
        if committed == Some(copy) && cursor >= self.frontier && !self.kept.is_empty() {
            self.kept = Vec::new();
            self.kept_bytes = 0;
            self.spoiled = true;
        }
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

impl<B> ReplayBody<B>
where
    B: Body<Data = bytes::Bytes>,
{
    /// Counts the message bytes this copy sends from now on (gRPC's message headers left out):
    /// the total, for its attempt's metrics.
    #[cfg(feature = "metrics")]
    pub(crate) fn count_sent(&mut self) -> Arc<std::sync::atomic::AtomicU64> {
        let total = Arc::new(std::sync::atomic::AtomicU64::new(0));
        self.sent = Some(SentBytes {
            messages: crate::grpc::MessageBytes::default(),
            total: Arc::clone(&total),
        });
        total
    }
}

impl<B> ReplayBody<B>
where
    B: Body<Data = bytes::Bytes>,
    B::Error: Into<BoxError>,
{
    /// The copy's next frame: a kept one, else the caller's body's next (kept as it passes).
    fn poll_copy(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, BoxError>>> {
        let this = self;
        let mut guard = lock(&this.shared);
        let shared = &mut *guard;
        if shared.is_stale(this.copy) {
            // A copy of an attempt the call let go: it sends no more.
            return Poll::Ready(None);
        }
        if let Some(kept) = shared.kept.get(this.cursor).cloned() {
            this.cursor += 1;
            shared.forget_sent(this.copy, this.cursor);
            return Poll::Ready(Some(Ok(match kept {
                Kept::Data(data) => Frame::data(data),
                Kept::Trailers(trailers) => Frame::trailers(trailers),
            })));
        }
        if this.cursor != shared.frontier || shared.ended {
            // The end, or a stale copy (another one read on and did not keep what it read).
            return Poll::Ready(None);
        }
        if let Some(refused) = shared.send_limit.as_ref().and_then(SendCheck::refusal) {
            return Poll::Ready(Some(Err(refused)));
        }
        let Some(body) = shared.body.as_mut() else {
            return Poll::Ready(None);
        };
        let mut polled = body
            .as_mut()
            .poll_frame(cx)
            .map(|frame| frame.map(|frame| frame.map_err(Into::into)));
        if let (Poll::Ready(Some(Ok(frame))), Some(check)) =
            (&mut polled, shared.send_limit.as_mut())
        {
            if let Err(refused) = check.admit(frame) {
                polled = Poll::Ready(Some(Err(refused)));
            }
        }
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
                match (kept, &mut shared.retained) {
                    (Some((kept, len)), Some(retained)) => {
                        if retained.committed.is_none() {
                            retained.unreported += len as u64;
                            shared.kept.push(kept);
                            shared.kept_bytes += len;
                            if shared.kept_bytes as u64 > retained.wake_past {
                                if let Some(watcher) = retained.watcher.take() {
                                    watcher.wake();
                                }
                            }
                        }
                    }
                    (Some((kept, len)), None)
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
                shared.forget_sent(this.copy, this.cursor);
            }
            Poll::Ready(Some(Err(_))) => {
                shared.spoiled = true;
                shared.kept = Vec::new();
            }
            Poll::Ready(None) => {
                shared.ended = true;
                shared.body = None;
            }
            Poll::Pending => {
                if let Some(retained) = shared.retained.as_mut() {
                    // The caller's body wakes only its last reader: the others wait here.
                    if !retained.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                        retained.waiting.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
        }
        if let Some(retained) = shared.retained.as_mut() {
            for waiting in retained.waiting.drain(..) {
                waiting.wake();
            }
        }
        polled
    }
}

/// Its error is the caller's body's, or the channel's when a message is over the call's limit.
impl<B> Body for ReplayBody<B>
where
    B: Body<Data = bytes::Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, BoxError>>> {
        let polled = self.poll_copy(cx);
        #[cfg(feature = "metrics")]
        if let (Some(sent), Poll::Ready(Some(Ok(frame)))) = (&mut self.sent, &polled) {
            if let Some(data) = frame.data_ref() {
                let bytes = sent.messages.feed(data);
                sent.total
                    .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
            }
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
    fn a_retained_body_keeps_every_frame_and_reports_its_bytes() {
        let big: &'static str = Box::leak("x".repeat(REPLAY_LIMIT + 1).into_boxed_str());
        let (mut first, watch) = ReplayBody::retained(frames(&["ab", big]), 0);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(watch.poll_kept(&mut cx).is_pending());
        assert_eq!(read_all(&mut first).len(), 2);
        assert_eq!(watch.poll_kept(&mut cx), Poll::Ready(2 + big.len() as u64));
        assert!(watch.poll_kept(&mut cx).is_pending());
        // Past the transparent replays' limit, a retried call's copies still get every frame.
        let mut second = watch.copy(1).expect("all kept");
        assert_eq!(read_all(&mut second).len(), 2);
    }

    #[test]
    fn a_commit_ends_the_other_copies_and_frees_what_the_committed_one_sent() {
        let (mut first, watch) = ReplayBody::retained(frames(&["a", "b", "c"]), 0);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(
            Pin::new(&mut first).poll_frame(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
        let mut hedge = watch.copy(1).expect("kept");
        watch.commit(1);
        // The committed copy, behind, still sends from the start; the other one stops.
        assert_eq!(read_all(&mut first), Vec::<String>::new());
        assert_eq!(read_all(&mut hedge), ["a", "b", "c"]);
        assert!(lock(&hedge.shared).kept.is_empty());
        assert!(watch.copy(2).is_none());
        // Bytes read after the commit are not the call's to count.
        assert!(watch.poll_kept(&mut cx).is_pending());
    }

    /// A body whose frames come when the test says.
    struct Fed(std::sync::Arc<Mutex<VecDeque<&'static str>>>);

    impl Body for Fed {
        type Data = bytes::Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, Infallible>>> {
            match self.0.lock().unwrap().pop_front() {
                Some(data) => Poll::Ready(Some(Ok(Frame::data(bytes::Bytes::from_static(
                    data.as_bytes(),
                ))))),
                None => Poll::Pending,
            }
        }
    }

    /// A waker that counts its wakes.
    struct Counted(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn copies_waiting_side_by_side_are_all_woken_by_the_next_frame() {
        let feed = Arc::new(Mutex::new(VecDeque::new()));
        let (mut first, watch) = ReplayBody::retained(Fed(Arc::clone(&feed)), 0);
        let mut second = watch.copy(1).expect("nothing read yet");
        let wakes = Arc::new(Counted(Default::default()));
        let waker = std::task::Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let other = std::task::Waker::from(Arc::new(Counted(Default::default())));
        assert!(Pin::new(&mut first).poll_frame(&mut cx).is_pending());
        // The second copy waits too, and the caller's body now holds its waker alone.
        assert!(Pin::new(&mut second)
            .poll_frame(&mut Context::from_waker(&other))
            .is_pending());
        feed.lock().unwrap().push_back("a");
        assert!(matches!(
            Pin::new(&mut second).poll_frame(&mut Context::from_waker(&other)),
            Poll::Ready(Some(Ok(_)))
        ));
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The first copy was woken, and finds the frame kept for it.
        let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut first).poll_frame(&mut cx) else {
            panic!("the kept frame");
        };
        assert_eq!(frame.data_ref().map(|d| &d[..]), Some(&b"a"[..]));
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
