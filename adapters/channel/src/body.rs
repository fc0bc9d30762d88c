//! The response body of a call through the channel's `Service`: it reports the call's outcome
//! when it ends, and ends the call when its deadline passes.

use std::error::Error as StdError;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Buf;
use croupier::{Address, Code, LoadReport, Status};
use http::Response;
use http_body::{Body, Frame, SizeHint};

use crate::backend::Backend;
use crate::channel::CallGuard;
use crate::error::{describe_error, BoxError};
use crate::grpc::{grpc_status, http_status_code, is_grpc, status_headers};
use crate::message_size::{response_too_large, CallLimits};
use crate::runtime::{BoxFuture, Runtime};

/// A connector's reading of a call's transport error as a gRPC code.
pub(crate) type ErrorCode = fn(&(dyn StdError + 'static)) -> Option<Code>;

/// A connector's reading of the load report a backend put in a response's trailers.
pub(crate) type LoadReader = fn(&http::HeaderMap) -> Option<LoadReport>;

/// A call's deadline: a timer on the channel's runtime, and the time the call was given.
pub(crate) struct Deadline {
    sleep: BoxFuture<'static, ()>,
    runtime: Arc<dyn Runtime>,
    at: Instant,
    budget: Duration,
    passed: bool,
}

impl Deadline {
    /// The deadline `at` of a call given `budget`, timed on `runtime`.
    pub(crate) fn new(runtime: Arc<dyn Runtime>, at: Instant, budget: Duration) -> Self {
        Deadline {
            sleep: runtime.sleep_until(at),
            runtime,
            at,
            budget,
            passed: false,
        }
    }

    /// When the deadline passes.
    pub(crate) fn at(&self) -> Instant {
        self.at
    }

    /// Whether the deadline has passed, by the runtime's clock (its timer may not have fired).
    pub(crate) fn has_passed(&self) -> bool {
        self.passed || self.runtime.now() >= self.at
    }

    /// Whether a gRPC status `code` that came now came too late: it is not OK, and it came after
    /// the deadline. The server's answer to its own copy of the deadline is one (a tonic server
    /// says `CANCELLED`), and the call is then the client's `DEADLINE_EXCEEDED`, as gRPC says
    /// of a deadline that passes before the status comes.
    pub(crate) fn overtakes(deadline: Option<&Deadline>, code: Code) -> bool {
        code != Code::Ok && deadline.is_some_and(Deadline::has_passed)
    }

    /// Ready once the deadline has passed (and from then on).
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.passed {
            std::task::ready!(self.sleep.as_mut().poll(cx));
            self.passed = true;
        }
        Poll::Ready(())
    }

    /// The call's time, as its errors quote it: `300 ms`, `10 s`.
    pub(crate) fn budget(&self) -> String {
        quote(self.budget)
    }
}

/// A call's time as its errors quote it.
fn quote(budget: Duration) -> String {
    let millis = budget.as_millis();
    if millis >= 1000 && millis % 1000 == 0 {
        format!("{} s", millis / 1000)
    } else if millis > 0 {
        format!("{millis} ms")
    } else {
        format!("{budget:?}")
    }
}

/// Runs `future` until `deadline` passes: `None` if it passed first.
pub(crate) async fn until<F: Future>(
    deadline: &mut Option<Deadline>,
    future: F,
) -> Option<F::Output> {
    let Some(deadline) = deadline else {
        return Some(future.await);
    };
    futures_lite::future::or(async { Some(future.await) }, async {
        poll_fn(|cx| deadline.poll(cx)).await;
        None
    })
    .await
}

impl fmt::Debug for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadline")
            .field("budget", &self.budget)
            .field("passed", &self.passed)
            .finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// A response body that reports its call's outcome and latency to the channel when it ends:
    /// at its trailers or its last frame (with the gRPC status they carry, and the backend's load
    /// report if the connector reads one there and the policy wants it), at an error, or when
    /// dropped before its end (`CANCELLED`).
    ///
    /// It also ends the call when the call's deadline passes before the body's end: the
    /// connection's body is dropped (for HTTP/2, the stream is reset with `CANCEL`) and the call
    /// fails `DEADLINE_EXCEEDED`; likewise, `RESOURCE_EXHAUSTED`, when the header of a gRPC
    /// message over the call's receive limit arrives (the messages before it are delivered,
    /// its bytes never read). For a gRPC response that failure, and an error of the
    /// connection's body, come as trailers with `grpc-status` and `grpc-message` (what a gRPC
    /// client reads as the call's status); other responses get an error.
    ///
    /// The body of a gRPC status the channel answered itself is empty, as is the
    /// [`Default`] one.
    pub struct CallBody<B> {
        #[pin]
        inner: Option<B>,
        call: Option<CallGuard>,
        backend: Option<Arc<Backend>>,
        deadline: Option<Deadline>,
        error_code: ErrorCode,
        load_report: LoadReader,
        grpc: bool,
        code: Option<Code>,
        // The load report of a trailers-only response (in its headers).
        load: Option<LoadReport>,
        // The response's messages, read for the receive limit and counted for the attempt's
        // metrics (feature `metrics`).
        received: crate::grpc::MessageBytes,
        limits: CallLimits,
        // The status owed after the data frame that a message over the limit cut short.
        owed: Option<http::HeaderMap>,
    }
}

impl<B> CallBody<B> {
    /// The body of a response the channel gives itself: no frames, the call already ended.
    pub(crate) fn empty(code: Code) -> Self {
        CallBody {
            code: Some(code),
            grpc: true,
            ..CallBody::default()
        }
    }

    fn finish(&mut self, code: Code) {
        if let Some(call) = self.call.take() {
            call.finish_with(code, self.load);
        }
    }

    /// The call whose response this is ends with the body: `whole` is recorded then, or now
    /// if the body has ended already (a status in the response's headers).
    #[cfg(feature = "metrics")]
    pub(crate) fn ends_call(&mut self, whole: crate::metrics::CallMetrics) {
        match &mut self.call {
            Some(call) => call.commit_call(whole),
            None => whole.ended(self.code.unwrap_or(Code::Internal)),
        }
    }
}

/// An empty body that ends at once and reports nothing (what tonic's interceptors answer with
/// when they refuse a call before it is sent).
impl<B> Default for CallBody<B> {
    fn default() -> Self {
        CallBody {
            inner: None,
            call: None,
            backend: None,
            deadline: None,
            error_code: |_| None,
            load_report: |_| None,
            grpc: false,
            code: None,
            load: None,
            received: crate::grpc::MessageBytes::default(),
            limits: CallLimits::default(),
            owed: None,
        }
    }
}

impl<B> fmt::Debug for CallBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallBody")
            .field("address", &self.backend.as_ref().map(|b| &b.address))
            .field("deadline", &self.deadline)
            .field("grpc", &self.grpc)
            .field("code", &self.code)
            .field("ended", &self.call.is_none())
            .finish_non_exhaustive()
    }
}

/// The backend that served a call, in its response's extensions: with tonic,
/// `response.extensions().get::<ServedBy>()`. A retried or hedged call names the attempt whose
/// answer it got.
#[derive(Clone)]
pub struct ServedBy(Arc<Backend>);

impl ServedBy {
    /// The backend's address.
    pub fn address(&self) -> &Address {
        &self.0.address
    }
}

impl fmt::Debug for ServedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ServedBy").field(self.address()).finish()
    }
}

impl PartialEq for ServedBy {
    fn eq(&self, other: &Self) -> bool {
        self.address() == other.address()
    }
}

impl Eq for ServedBy {}

/// Wraps the response body so that its end reports the call's outcome, its deadline ends it, and
/// so does a message over its receive limit; names the backend in the response's extensions
/// ([`ServedBy`]).
pub(crate) fn observe<RB: Body>(
    response: Response<RB>,
    call: CallGuard,
    deadline: Option<Deadline>,
    connector: (ErrorCode, LoadReader),
    mut limits: CallLimits,
) -> Response<CallBody<RB>> {
    let (error_code, load_report) = connector;
    let grpc = is_grpc(response.headers());
    if !grpc {
        limits.receive = None;
    }
    let (mut parts, body) = response.into_parts();
    parts.extensions.insert(ServedBy(call.backend()));
    let mut body = CallBody {
        inner: Some(body),
        backend: Some(call.backend()),
        call: Some(call),
        deadline,
        error_code,
        load_report,
        grpc,
        code: None,
        load: None,
        received: crate::grpc::MessageBytes::default(),
        limits,
        owed: None,
    };
    if grpc {
        // A trailers-only response carries its status (and any load report) in the headers.
        if let Some(code) = grpc_status(&parts.headers) {
            body.code = Some(code);
            body.load = read_load(body.call.as_ref(), load_report, &parts.headers);
        } else if parts.status != http::StatusCode::OK {
            let code = http_status_code(parts.status);
            body.code = Some(code);
            body.finish(code);
        }
    } else {
        body.code = Some(if parts.status.is_server_error() {
            http_status_code(parts.status)
        } else {
            Code::Ok
        });
    }
    if body.inner.as_ref().is_none_or(Body::is_end_stream) {
        let code = body.code.unwrap_or(Code::Internal);
        body.finish(code);
        body.deadline = None;
    }
    Response::from_parts(parts, body)
}

impl<B> Body for CallBody<B>
where
    B: Body,
    B::Data: From<bytes::Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(this.owed.take().map(|status| Ok(Frame::trailers(status))));
        };
        let cut = match inner.poll_frame(cx) {
            Poll::Pending => {
                let passed = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.poll(cx).is_ready());
                if !passed {
                    return Poll::Pending;
                }
                Cut::Deadline(None)
            }
            Poll::Ready(Some(Err(error))) => Cut::Failed(error.into()),
            Poll::Ready(Some(Ok(frame))) if frame.is_data() => {
                let fed = match frame.data_ref() {
                    Some(data) => this.received.feed_limited(data, this.limits.receive),
                    None => crate::grpc::Fed::default(),
                };
                #[cfg(feature = "metrics")]
                if let Some(call) = this.call.as_mut() {
                    call.received(fed.message_bytes);
                }
                let Some(oversized) = fed.oversized else {
                    return Poll::Ready(Some(Ok(frame)));
                };
                // The messages before it go on; it, and all after it, never come.
                let before = frame
                    .into_data()
                    .ok()
                    .map(|mut data| data.copy_to_bytes(oversized.at));
                Cut::TooLarge(oversized.length, before.unwrap_or_default())
            }
            Poll::Ready(Some(Ok(frame))) => {
                let Some(trailers) = frame.trailers_ref() else {
                    return Poll::Ready(Some(Ok(frame)));
                };
                let code = if *this.grpc {
                    grpc_status(trailers)
                        .or(*this.code)
                        .unwrap_or(Code::Internal)
                } else {
                    this.code.unwrap_or(Code::Ok)
                };
                if *this.grpc && Deadline::overtakes(this.deadline.as_ref(), code) {
                    Cut::Deadline(Some(code))
                } else {
                    let load = read_load(this.call.as_ref(), *this.load_report, trailers);
                    end(this.call, this.deadline, code, load.or(*this.load));
                    return Poll::Ready(Some(Ok(frame)));
                }
            }
            Poll::Ready(None) => {
                // A gRPC response that ends without a status is an internal error (gRPC's rule).
                end(
                    this.call,
                    this.deadline,
                    this.code.unwrap_or(Code::Internal),
                    *this.load,
                );
                return Poll::Ready(None);
            }
        };
        // The call ends here, not as the server would end it: dropping the connection's body
        // resets its stream, so the server hears that the call is over.
        this.inner.set(None);
        let from = name(this.backend.as_deref().map(|b| &b.address));
        let (code, message, error) = match cut {
            Cut::Deadline(server) => {
                let budget = this
                    .deadline
                    .as_ref()
                    .map_or_else(String::new, Deadline::budget);
                let mut message = format!("the response from {from} did not end within {budget}");
                if let Some(code) = server {
                    message.push_str(&format!("; the server's {code} came after the deadline"));
                }
                (Code::DeadlineExceeded, message, None)
            }
            Cut::Failed(error) => match this.limits.send.as_ref().and_then(|s| s.refused()) {
                // The stream was reset because the request's next message was too large.
                Some(refused) => (Code::ResourceExhausted, refused.to_owned(), Some(error)),
                None => {
                    let code = (this.error_code)(&*error).unwrap_or(Code::Unavailable);
                    let message = format!(
                        "the response from {from} failed: {}",
                        describe_error(&*error)
                    );
                    (code, message, Some(error))
                }
            },
            Cut::TooLarge(length, before) => {
                let limit = this.limits.receive.unwrap_or_default();
                let message = response_too_large(&from, length, limit);
                end(this.call, this.deadline, Code::ResourceExhausted, None);
                let status = status_headers(Code::ResourceExhausted, &message);
                if before.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::trailers(status))));
                }
                *this.owed = Some(status);
                return Poll::Ready(Some(Ok(Frame::data(before.into()))));
            }
        };
        end(this.call, this.deadline, code, None);
        Poll::Ready(Some(match (*this.grpc, error) {
            // A gRPC client reads the call's status from trailers (an error would be UNKNOWN).
            (true, _) => Ok(Frame::trailers(status_headers(code, &message))),
            (false, Some(error)) => Err(error),
            (false, None) => Err(Box::new(Status::new(code, message))),
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.owed.is_none() && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// Why the channel ends a response body before the server does.
enum Cut {
    /// The deadline passed: before any status, or before the server's failing one.
    Deadline(Option<Code>),
    /// The connection's body failed.
    Failed(BoxError),
    /// A gRPC message of this length, over the receive limit, began after these bytes.
    TooLarge(u64, bytes::Bytes),
}

/// The call ended with `code` (and the backend's `load`): report it, and stop timing it.
fn end(
    call: &mut Option<CallGuard>,
    deadline: &mut Option<Deadline>,
    code: Code,
    load: Option<LoadReport>,
) {
    if let Some(call) = call.take() {
        call.finish_with(code, load);
    }
    *deadline = None;
}

/// The load report in `metadata`, read only while `call` still waits for its outcome (a policy
/// that ignores outcomes costs no decoding).
fn read_load(
    call: Option<&CallGuard>,
    load_report: LoadReader,
    metadata: &http::HeaderMap,
) -> Option<LoadReport> {
    call.filter(|call| call.expects_outcome())
        .and_then(|_| load_report(metadata))
}

/// An address as a message names it.
fn name(address: Option<&Address>) -> String {
    address.map_or_else(|| "the server".to_owned(), ToString::to_string)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_calls_budget_reads_in_the_unit_it_was_given() {
        let budget = quote;
        assert_eq!(budget(Duration::from_millis(300)), "300 ms");
        assert_eq!(budget(Duration::from_secs(10)), "10 s");
        assert_eq!(budget(Duration::from_millis(1500)), "1500 ms");
        assert_eq!(budget(Duration::from_micros(20)), "20µs");
    }

    /// A runtime whose clock stands still at `now` and whose timers never fire.
    #[derive(Debug)]
    struct Stopped {
        now: Instant,
    }

    impl Runtime for Stopped {
        fn spawn(&self, _future: BoxFuture<'static, ()>) {}

        fn sleep_until(&self, _deadline: Instant) -> BoxFuture<'static, ()> {
            Box::pin(std::future::pending())
        }

        fn lookup_host(
            &self,
            _host: String,
            _port: u16,
        ) -> BoxFuture<'static, std::io::Result<Vec<std::net::SocketAddr>>> {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn now(&self) -> Instant {
            self.now
        }
    }

    #[test]
    fn a_failing_status_after_the_deadline_is_the_deadlines() {
        let start = Instant::now();
        let at = start + Duration::from_millis(300);
        let deadline = |now| Deadline::new(Arc::new(Stopped { now }), at, at - start);
        // Past the deadline (its timer not yet fired): a failure is the deadline's, OK stays.
        let late = deadline(at);
        assert!(Deadline::overtakes(Some(&late), Code::Cancelled));
        assert!(!Deadline::overtakes(Some(&late), Code::Ok));
        // Before it, or with none, the server's status stands.
        let early = deadline(start);
        assert!(!Deadline::overtakes(Some(&early), Code::Cancelled));
        assert!(!Deadline::overtakes(None, Code::Cancelled));
    }

    /// A runtime whose timers have all fired: every deadline has passed.
    #[derive(Debug)]
    struct Late;

    impl Runtime for Late {
        fn spawn(&self, _future: BoxFuture<'static, ()>) {}

        fn sleep_until(&self, _deadline: Instant) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }

        fn lookup_host(
            &self,
            _host: String,
            _port: u16,
        ) -> BoxFuture<'static, std::io::Result<Vec<std::net::SocketAddr>>> {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    /// A body that never sends a frame.
    struct Silent;

    impl Body for Silent {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    /// A silent response body whose deadline of 300 ms has passed, from `address`.
    fn overdue(grpc: bool) -> CallBody<Silent> {
        let now = Instant::now();
        CallBody {
            inner: Some(Silent),
            backend: Some(Arc::new(Backend::new(Address::Opaque(
                "backend:50051".into(),
            )))),
            deadline: Some(Deadline::new(
                Arc::new(Late),
                now,
                Duration::from_millis(300),
            )),
            grpc,
            ..CallBody::default()
        }
    }

    fn poll(body: &mut CallBody<Silent>) -> Poll<Option<Result<Frame<bytes::Bytes>, BoxError>>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(body).poll_frame(&mut cx)
    }

    #[test]
    fn a_grpc_body_past_its_deadline_ends_with_the_status_in_trailers() {
        let mut body = overdue(true);
        let Poll::Ready(Some(Ok(frame))) = poll(&mut body) else {
            panic!("the deadline ends the body with a frame");
        };
        let trailers = frame.into_trailers().expect("trailers");
        assert_eq!(trailers["grpc-status"], "4");
        assert_eq!(
            trailers["grpc-message"],
            "the response from backend:50051 did not end within 300 ms"
        );
        // The connection's body is dropped (its stream reset), and the body has ended.
        assert!(body.inner.is_none() && body.is_end_stream());
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
    }

    #[test]
    fn another_body_past_its_deadline_ends_with_an_error() {
        let mut body = overdue(false);
        let Poll::Ready(Some(Err(error))) = poll(&mut body) else {
            panic!("the deadline ends the body with an error");
        };
        let status = error.downcast_ref::<Status>().expect("a status");
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
    }

    /// A body that sends one data frame, then waits.
    struct OneFrame(Option<bytes::Bytes>);

    impl Body for OneFrame {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, Self::Error>>> {
            self.0.take().map_or(Poll::Pending, |data| {
                Poll::Ready(Some(Ok(Frame::data(data))))
            })
        }
    }

    #[test]
    fn a_message_over_the_limit_ends_the_body_after_the_messages_before_it() {
        // A message of 2 bytes, then the header of one of 300 and a byte of it.
        let frame = [0, 0, 0, 0, 2, 1, 2, 0, 0, 0, 1, 44, 9];
        let mut body = CallBody {
            inner: Some(OneFrame(Some(bytes::Bytes::copy_from_slice(&frame)))),
            grpc: true,
            limits: CallLimits {
                receive: Some(299),
                send: None,
            },
            ..CallBody::default()
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Some(Ok(first))) = Pin::new(&mut body).poll_frame(&mut cx) else {
            panic!("the first message comes");
        };
        assert_eq!(first.into_data().ok().as_deref(), Some(&frame[..7]));
        assert!(body.inner.is_none() && !body.is_end_stream());
        let Poll::Ready(Some(Ok(status))) = Pin::new(&mut body).poll_frame(&mut cx) else {
            panic!("then the status");
        };
        let trailers = status.into_trailers().expect("trailers");
        assert_eq!(trailers["grpc-status"], "8");
        assert_eq!(
            trailers["grpc-message"],
            "a response message of 300 bytes from the server is larger than the limit of 299 \
             bytes (maxResponseMessageBytes, or the channel's max_decoding_message_size)"
        );
        assert!(body.is_end_stream());
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
    }

    #[test]
    fn the_default_body_is_empty_and_ended() {
        let body = CallBody::<NoBody>::default();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        let answered = CallBody::<NoBody>::empty(Code::Unavailable);
        assert!(answered.is_end_stream());
    }

    /// A response body type to name; never polled.
    pub(crate) struct NoBody;

    impl Body for NoBody {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, Self::Error>>> {
            Poll::Ready(None)
        }
    }
}
