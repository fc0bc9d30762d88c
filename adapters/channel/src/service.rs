//! The channel as a [`tower_service::Service`] over HTTP requests (feature `tower`), so that HTTP/2
//! and gRPC clients (a tonic-generated client, for one) send through it unchanged.
//!
//! Each request is one call: its `http::request::Parts` (path, headers) are the pick's input, the
//! picked connection (itself a `Service`) sends it, and the call's outcome goes back to the
//! balancer when the response ends. For gRPC responses the outcome is the `grpc-status` of the
//! headers (a trailers-only response) or of the trailers; for other HTTP responses it follows the
//! status code. Its latency runs from the pick to the end of the response body.

use std::error::Error as StdError;
use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use croupier::{Code, PickRequest};
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower_service::Service;

use crate::channel::{CallGuard, Channel, PickOptions, Picked};
use crate::replay::ReplayBody;
use crate::runtime::BoxFuture;

/// The error type of the channel's `Service`: a pick's [`croupier::Status`], or the connection's
/// own error.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// How many connections one request may be handed to when each in turn closes before sending it.
const MAX_SEND_ATTEMPTS: usize = 5;

/// The error a connection's `Service` returns when the server did not process the request: it
/// was never sent (the connection was closing), or the server refused it (an HTTP/2 GOAWAY that
/// excluded its stream, `REFUSED_STREAM`). The channel then sends it again on another connection,
/// from the frames its [`ReplayBody`] kept, so that no call is lost that a server never saw.
///
/// Connections return it boxed, as their error or its source (the channel looks for it with
/// `downcast_ref`).
#[derive(Debug)]
pub struct Unprocessed {
    reason: BoxError,
}

impl Unprocessed {
    /// The request was not processed, because of `reason`.
    pub fn new(reason: impl Into<BoxError>) -> Self {
        Unprocessed {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Unprocessed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server did not process the request: {}", self.reason)
    }
}

impl StdError for Unprocessed {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.reason)
    }
}

/// A request sends through the channel: pick, send on the picked connection, report the outcome
/// when the response ends. The connection receives the request with its body in a
/// [`ReplayBody`], so that a request its server did not process ([`Unprocessed`]) is sent again on
/// another connection.
///
/// The pick waits as [`Channel::pick_with`] does, with the request's deadline: a [`PickOptions`]
/// in the request's extensions if it has one, else its `grpc-timeout` header, else none. The
/// channel itself is always ready (picks queue inside the call), so `poll_ready` never waits.
///
/// A gRPC request (`content-type: application/grpc...`) that fails in the channel itself (no
/// backend ready before its deadline, the channel in TRANSIENT_FAILURE, no connection taking
/// it) gets a trailers-only response with the `grpc-status` and `grpc-message` the failure
/// calls for (`DEADLINE_EXCEEDED`, `UNAVAILABLE`, ...), as a gRPC channel answers: a tonic
/// client reads it as the call's status, code intact. Other requests get the error itself, and
/// so does a request whose connection failed after sending it: that error is the transport's
/// own (a stream reset with its HTTP/2 code, say), for the client to map as it maps any.
impl<T, B, RB> Service<Request<B>> for Channel<T>
where
    T: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone + Send + Sync + 'static,
    T::Future: Send,
    T::Error: Into<BoxError>,
    B: Body<Data = bytes::Bytes> + Send + 'static,
    RB: Body + Send + 'static,
{
    type Response = Response<CallBody<RB>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<CallBody<RB>>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        Box::pin(send(self.clone(), request))
    }
}

async fn send<T, B, RB>(
    channel: Channel<T>,
    request: Request<B>,
) -> Result<Response<CallBody<RB>>, BoxError>
where
    T: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone + Send + Sync + 'static,
    T::Error: Into<BoxError>,
    B: Body<Data = bytes::Bytes> + Send + 'static,
    RB: Body,
{
    let grpc = is_grpc(request.headers());
    match attempt(channel, request).await {
        Ok(response) => Ok(response),
        Err(Failure::Channel(code, error)) if grpc => {
            Ok(status_response(code, &describe_error(&*error)))
        }
        Err(Failure::Channel(_, error) | Failure::Connection(error)) => Err(error),
    }
}

/// Why a request got no response.
enum Failure {
    /// The channel could not send it: no backend to pick, or no connection took it. The code is
    /// the gRPC status this means.
    Channel(Code, BoxError),
    /// The connection failed after sending it: the transport's own error.
    Connection(BoxError),
}

/// Sends `request`, on another connection each time one's server did not process it.
async fn attempt<T, B, RB>(
    channel: Channel<T>,
    request: Request<B>,
) -> Result<Response<CallBody<RB>>, Failure>
where
    T: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone + Send + Sync + 'static,
    T::Error: Into<BoxError>,
    B: Body<Data = bytes::Bytes> + Send + 'static,
    RB: Body,
{
    // One deadline for every attempt: a timeout counts from the call's start.
    let options = pick_options(&request, channel.now());
    let mut request = request.map(ReplayBody::new);
    let mut last_error: Option<BoxError> = None;
    for _ in 0..MAX_SEND_ATTEMPTS {
        let (parts, body) = request.into_parts();
        let picked = channel
            .pick_with(&PickRequest::from_parts(&parts), options)
            .await;
        let Picked {
            mut connection,
            call,
        } = picked.map_err(|status| Failure::Channel(status.code(), BoxError::from(status)))?;
        let replay = body.replay();
        request = Request::from_parts(parts, body);
        if let Err(error) = poll_fn(|cx| connection.poll_ready(cx)).await {
            // Not sent: the connection is gone. It saw the error itself; pick again.
            call.finish(Code::Unavailable);
            last_error = Some(error.into());
            continue;
        }
        let parts = replay.as_ref().and_then(|_| clone_parts(&request));
        match connection.call(request).await {
            Ok(response) => return Ok(observe(response, call)),
            Err(error) => {
                call.finish(Code::Unavailable);
                let error: BoxError = error.into();
                match (is_unprocessed(&*error), replay, parts) {
                    (true, Some(body), Some(parts)) => {
                        request = Request::from_parts(parts, body);
                        last_error = Some(error);
                    }
                    _ => return Err(Failure::Connection(error)),
                }
            }
        }
    }
    Err(Failure::Channel(
        Code::Unavailable,
        format!(
            "no connection took the request in {MAX_SEND_ATTEMPTS} attempts; last: {}",
            last_error.map_or_else(|| "none".to_owned(), |e| e.to_string())
        )
        .into(),
    ))
}

/// A trailers-only gRPC response: `grpc-status` and `grpc-message` in the headers, no body.
fn status_response<RB>(code: Code, message: &str) -> Response<CallBody<RB>> {
    let mut response = Response::new(CallBody {
        inner: None,
        call: None,
        grpc: true,
        code: Some(code),
    });
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-status",
        http::HeaderValue::from(u16::from(code.value())),
    );
    if let Ok(value) = http::HeaderValue::from_str(&percent_encode(message)) {
        headers.insert("grpc-message", value);
    }
    response
}

/// gRPC's encoding of `grpc-message`: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// An error and its sources on one line, each source's text once: what a gRPC status message
/// or a log line shows of a connection's failure.
pub fn describe_error(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// Whether `error`, or one of its sources, says the server did not process the request.
fn is_unprocessed(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<Unprocessed>() {
            return true;
        }
        next = error.source();
    }
    false
}

/// The request's head again, for a second attempt: method, URI, version and headers. Extensions
/// cannot be cloned in general; those of the request types the channel knows ([`PickOptions`]) are
/// carried over, others only go with the first attempt.
fn clone_parts<B>(request: &Request<B>) -> Option<http::request::Parts> {
    let mut copy = Request::builder()
        .method(request.method().clone())
        .uri(request.uri().clone())
        .version(request.version())
        .body(())
        .ok()?;
    *copy.headers_mut() = request.headers().clone();
    if let Some(options) = request.extensions().get::<PickOptions>() {
        copy.extensions_mut().insert(*options);
    }
    Some(copy.into_parts().0)
}

/// The pick's options: a [`PickOptions`] extension, or the `grpc-timeout` header, with any
/// timeout turned into a deadline from `now`.
fn pick_options<B>(request: &Request<B>, now: Instant) -> PickOptions {
    let options = match request.extensions().get::<PickOptions>() {
        Some(options) => *options,
        None => match request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout)
        {
            Some(timeout) => PickOptions::new().timeout(timeout),
            None => PickOptions::new(),
        },
    };
    match options.effective_deadline(now) {
        Some(deadline) => options.deadline(deadline),
        None => options,
    }
}

/// Parses gRPC's `grpc-timeout` value: up to eight digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(amount * 3600),
        'M' => Duration::from_secs(amount * 60),
        'S' => Duration::from_secs(amount),
        'm' => Duration::from_millis(amount),
        'u' => Duration::from_micros(amount),
        'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Wraps the response body so that its end reports the call's outcome.
fn observe<RB: Body>(response: Response<RB>, call: CallGuard) -> Response<CallBody<RB>> {
    let grpc = is_grpc(response.headers());
    let (parts, body) = response.into_parts();
    let mut body = CallBody {
        inner: Some(body),
        call: Some(call),
        grpc,
        code: None,
    };
    if grpc {
        // A trailers-only response carries its status in the headers.
        if let Some(code) = grpc_status(&parts.headers) {
            body.code = Some(code);
        } else if parts.status != http::StatusCode::OK {
            body.finish(http_status_code(parts.status));
        }
    } else {
        body.code = Some(if parts.status.is_server_error() {
            http_status_code(parts.status)
        } else {
            Code::Ok
        });
    }
    if body.is_end_stream() {
        let code = body.code.unwrap_or(Code::Internal);
        body.finish(code);
    }
    Response::from_parts(parts, body)
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers.contains_key("grpc-status")
        || headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/grpc"))
}

/// The `grpc-status` in `headers` (or trailers), if there is one.
fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(Code::from_value(value.trim().parse().ok()?))
}

/// gRPC's mapping of an HTTP status to a code, for responses that carry no `grpc-status`.
fn http_status_code(status: http::StatusCode) -> Code {
    match status.as_u16() {
        200 => Code::Ok,
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

pin_project_lite::pin_project! {
    /// A response body that reports its call's outcome and latency to the channel when it ends:
    /// at its trailers or its last frame (with the gRPC status they carry), at an error
    /// (`UNAVAILABLE`), or when dropped before its end (`CANCELLED`). The body of a gRPC
    /// status the channel answered itself is empty.
    pub struct CallBody<B> {
        #[pin]
        inner: Option<B>,
        call: Option<CallGuard>,
        grpc: bool,
        code: Option<Code>,
    }
}

impl<B> CallBody<B> {
    fn finish(&mut self, code: Code) {
        if let Some(call) = self.call.take() {
            call.finish(code);
        }
    }
}

impl<B> fmt::Debug for CallBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallBody")
            .field("grpc", &self.grpc)
            .field("code", &self.code)
            .field("ended", &self.call.is_none())
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for CallBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let polled = inner.poll_frame(cx);
        let code = match &polled {
            Poll::Pending => return polled,
            Poll::Ready(Some(Ok(frame))) => match frame.trailers_ref() {
                Some(trailers) if *this.grpc => Some(
                    grpc_status(trailers)
                        .or(*this.code)
                        .unwrap_or(Code::Internal),
                ),
                Some(_) => Some(this.code.unwrap_or(Code::Ok)),
                None => None,
            },
            Poll::Ready(Some(Err(_))) => Some(Code::Unavailable),
            // A gRPC response that ends without a status is an internal error (gRPC's rule).
            Poll::Ready(None) => Some(this.code.unwrap_or(Code::Internal)),
        };
        if let Some(code) = code {
            if let Some(call) = this.call.take() {
                call.finish(code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values_parse_as_the_spec_says() {
        assert_eq!(parse_grpc_timeout("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("1x"), None);
        assert_eq!(parse_grpc_timeout("-1S"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(parse_grpc_timeout("1é"), None);
    }

    #[test]
    fn a_timeout_becomes_one_deadline_for_every_attempt() {
        let now = Instant::now();
        let request = Request::builder()
            .header("grpc-timeout", "250m")
            .body(())
            .unwrap();
        let options = pick_options(&request, now);
        let later = now + Duration::from_secs(1);
        assert_eq!(
            options.effective_deadline(later),
            Some(now + Duration::from_millis(250))
        );
        let plain = Request::new(());
        assert_eq!(pick_options(&plain, now).effective_deadline(later), None);
    }

    #[test]
    fn grpc_status_comes_from_the_header_value() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(grpc_status(&headers), Some(Code::Ok));
        headers.insert("grpc-status", "9".parse().unwrap());
        assert_eq!(grpc_status(&headers), Some(Code::FailedPrecondition));
        headers.insert("grpc-status", "nine".parse().unwrap());
        assert_eq!(grpc_status(&headers), None);
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(percent_encode("no backend"), "no backend");
        assert_eq!(percent_encode("100% down"), "100%25 down");
        assert_eq!(percent_encode("a\nb"), "a%0Ab");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn a_failed_grpc_call_answers_with_its_status_in_the_headers() {
        let response: Response<CallBody<NoBody>> =
            status_response(Code::DeadlineExceeded, "too late: 5%");
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "4");
        assert_eq!(response.headers()["grpc-message"], "too late: 5%25");
        assert_eq!(response.headers()["content-type"], "application/grpc");
        assert!(response.body().is_end_stream());
    }

    /// A response body type to name; never polled.
    struct NoBody;

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

    #[test]
    fn http_statuses_map_as_grpc_maps_them() {
        assert_eq!(http_status_code(http::StatusCode::OK), Code::Ok);
        assert_eq!(
            http_status_code(http::StatusCode::SERVICE_UNAVAILABLE),
            Code::Unavailable
        );
        assert_eq!(
            http_status_code(http::StatusCode::NOT_FOUND),
            Code::Unimplemented
        );
        assert_eq!(
            http_status_code(http::StatusCode::IM_A_TEAPOT),
            Code::Unknown
        );
    }
}
