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
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use croupier::retry::CallPolicy;
use croupier::service_config::MethodConfig;
use croupier::{Code, PickRequest, Status};
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

pub use crate::body::CallBody;
use crate::body::{observe, until, Deadline};
use crate::channel::{CallGuard, Channel, PickOptions, Picked};
use crate::error::{describe_error, BoxError};
use crate::grpc::{encode_grpc_timeout, grpc_status, grpc_timeout, insert_status, is_grpc};
use crate::message_size::CallLimits;
use crate::replay::ReplayBody;
use crate::retry;
use crate::runtime::BoxFuture;

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
    refused: bool,
}

impl Unprocessed {
    /// The request was not processed, because of `reason`: it was never sent.
    pub fn new(reason: impl Into<BoxError>) -> Self {
        Unprocessed {
            reason: reason.into(),
            refused: false,
        }
    }

    /// The request reached the server, whose HTTP/2 layer refused it (`REFUSED_STREAM`, or a
    /// GOAWAY that excluded its stream), because of `reason`. A call replays such a request at
    /// most once (gRFC A6), one never sent more often.
    pub fn refused(reason: impl Into<BoxError>) -> Self {
        Unprocessed {
            reason: reason.into(),
            refused: true,
        }
    }

    /// Whether the server refused the request (else it was never sent).
    pub fn is_refused(&self) -> bool {
        self.refused
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
/// The call's deadline is a [`PickOptions`] deadline or timeout in the request's extensions, else
/// its `grpc-timeout` header, else the channel's
/// [default timeout](crate::ChannelBuilder::default_timeout), else none; a timeout counts from
/// the moment the request enters the channel. The deadline bounds the whole call: the pick (as
/// [`Channel::pick_with`] waits), the response's headers and its body up to its end. When it
/// passes, the call's stream is dropped (for HTTP/2, reset with `CANCEL`) and the call fails
/// `DEADLINE_EXCEEDED`, whatever the server does; a gRPC request that names no `grpc-timeout`
/// is sent with one, so that its server knows the deadline too. The channel itself is always
/// ready (picks queue inside the call), so `poll_ready` never waits.
///
/// A gRPC request (`content-type: application/grpc...`) that fails gets the gRPC status the
/// failure calls for, as a gRPC channel answers: a tonic client reads it as the call's status,
/// code intact. Before the response's headers it is a trailers-only response; after them, the
/// response body ends with trailers carrying it (see [`CallBody`]):
///
/// - no backend ready before the deadline: `DEADLINE_EXCEEDED`; the channel in
///   TRANSIENT_FAILURE, or no connection taking the request: `UNAVAILABLE`;
/// - the deadline passed while the server was silent: `DEADLINE_EXCEEDED`, naming the address
///   and what the call waited for;
/// - the connection failed under the call (the server gone, a reset): the code the connector
///   reads in the error ([`Connector::error_code`](crate::Connector::error_code)), by default
///   `UNAVAILABLE`, with the address and the reason;
/// - a message over the call's size limit ([`ChannelBuilder::max_decoding_message_size`] and
///   [`ChannelBuilder::max_encoding_message_size`], with the method's `maxResponseMessageBytes`
///   and `maxRequestMessageBytes`): `RESOURCE_EXHAUSTED`, naming its size and the limit, the
///   call's stream reset. A response's is found at its header, before its bytes are read.
///
/// [`ChannelBuilder::max_decoding_message_size`]: crate::ChannelBuilder::max_decoding_message_size
/// [`ChannelBuilder::max_encoding_message_size`]: crate::ChannelBuilder::max_encoding_message_size
///
/// Other requests get the error itself: the channel's [`croupier::Status`], or the transport's
/// own error for the client to map as it maps any.
impl<T, B, RB> Service<Request<B>> for Channel<T>
where
    T: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone + Send + Sync + 'static,
    T::Future: Send,
    T::Error: Into<BoxError>,
    B: Body<Data = bytes::Bytes> + Send + 'static,
    RB: Body + Send + 'static,
    RB::Error: Into<BoxError>,
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

/// What the channel's `Service` asks of its connections: each a `Service` over requests whose
/// bodies the channel can replay, answering with `RB` bodies, cheap to clone and shared across
/// tasks.
pub(crate) trait Connection<B, RB>:
    Service<Request<ReplayBody<B>>, Response = Response<RB>, Future: Send, Error: Into<BoxError>>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T, B, RB> Connection<B, RB> for T where
    T: Service<
            Request<ReplayBody<B>>,
            Response = Response<RB>,
            Future: Send,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

async fn send<T, B, RB>(
    channel: Channel<T>,
    mut request: Request<B>,
) -> Result<Response<CallBody<RB>>, BoxError>
where
    T: Connection<B, RB>,
    B: Body<Data = bytes::Bytes> + Send + 'static,
    RB: Body + Send + 'static,
{
    let grpc = is_grpc(request.headers());
    // One deadline for every attempt: a timeout counts from the call's start.
    let started = channel.now();
    // The call's own duration (gRFC A66), from here to its end whatever its attempts; dropped
    // before its end, it is recorded CANCELLED.
    #[cfg(feature = "metrics")]
    let whole = channel.call_started(request.uri().path(), started);
    // The method's settings from the config in use: its timeout and wait-for-ready here; its
    // `call_policy` (retries, hedging) and the channel's `retry_throttle()` are what a retrying
    // call runs by.
    let method = channel.method_config(request.uri().path());
    let options = pick_options(
        &request,
        started,
        channel.default_deadline(started),
        method.as_deref(),
    );
    let mut deadline = options.effective_deadline(started).map(|at| {
        let timeout = at.saturating_duration_since(started);
        // The server hears the call's deadline: the request's own `grpc-timeout`, unless the
        // method's config cut it shorter; the channel's when the request names none.
        let sent = grpc_timeout(request.headers());
        let cut_by_method = method
            .as_ref()
            .and_then(|method| method.timeout)
            .is_some_and(|limit| sent.is_some_and(|sent| limit < sent));
        if grpc && (sent.is_none() || cut_by_method) {
            request
                .headers_mut()
                .insert("grpc-timeout", encode_grpc_timeout(timeout));
        }
        Deadline::new(channel.runtime(), at, timeout)
    });
    // Only gRPC calls retry or hedge, or have message size limits: they speak of gRPC.
    let (policy, limits) = match grpc {
        true => (
            channel.retries().call_policy(method.as_deref()),
            channel.message_limits(method.as_deref()),
        ),
        false => (CallPolicy::None, CallLimits::default()),
    };
    let connector = (channel.error_code(), channel.load_report());
    let sent = match policy {
        CallPolicy::None => attempt(&channel, request, options, &mut deadline, &limits)
            .await
            .map(|(response, call)| observe(response, call, deadline, connector, limits)),
        // Boxed, so that a plain call's future does not carry a retried one's state.
        policy => {
            let call = retry::send(&channel, request, options, deadline, policy, limits);
            Box::pin(call).await
        }
    };
    #[cfg(feature = "metrics")]
    let sent = match sent {
        Ok(mut response) => {
            response.body_mut().ends_call(whole);
            Ok(response)
        }
        Err(failure) => {
            whole.ended(failure.status().code());
            Err(failure)
        }
    };
    match sent {
        Ok(response) => Ok(response),
        Err(Failure::Status(status) | Failure::Transport(_, status)) if grpc => {
            Ok(status_response(&status))
        }
        Err(Failure::Status(status)) => Err(Box::new(status)),
        Err(Failure::Transport(error, _)) => Err(error),
    }
}

/// Why a request got no response.
pub(crate) enum Failure {
    /// The channel answers for itself: no backend to pick, no connection took the request, or
    /// its deadline passed.
    Status(Status),
    /// The connection failed after sending it: the transport's own error, and the gRPC status
    /// it means.
    Transport(BoxError, Status),
}

impl Failure {
    /// The gRPC status the failure means.
    pub(crate) fn status(&self) -> &Status {
        match self {
            Failure::Status(status) | Failure::Transport(_, status) => status,
        }
    }
}

/// Sends `request`, on another connection each time one's server did not process it, until its
/// response's headers come or its deadline passes; a request message over the call's send limit
/// ends it.
async fn attempt<T, B, RB>(
    channel: &Channel<T>,
    request: Request<B>,
    options: PickOptions,
    deadline: &mut Option<Deadline>,
    limits: &CallLimits,
) -> Result<(Response<RB>, CallGuard), Failure>
where
    T: Connection<B, RB>,
    B: Body<Data = bytes::Bytes> + Send + 'static,
{
    let mut request = request.map(ReplayBody::new);
    if let Some(limit) = &limits.send {
        request.body().limit_sends(Arc::clone(limit));
    }
    let mut last_error: Option<BoxError> = None;
    for _ in 0..MAX_SEND_ATTEMPTS {
        let (parts, body) = request.into_parts();
        let picked = channel
            .pick_with(&PickRequest::from_parts(&parts), options)
            .await;
        let Picked {
            mut connection,
            mut call,
        } = picked.map_err(Failure::Status)?;
        let replay = body.replay();
        let mut body = body;
        call.count_sent(&mut body);
        request = Request::from_parts(parts, body);
        if deadline.as_ref().is_some_and(Deadline::has_passed) {
            // Too late to send it at all.
            return Err(no_headers(call, deadline.as_ref(), None));
        }
        match until(deadline, poll_fn(|cx| connection.poll_ready(cx))).await {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                // Not sent: the connection is gone. It saw the error itself; pick again.
                call.finish(Code::Unavailable);
                last_error = Some(error.into());
                continue;
            }
            None => return Err(no_headers(call, deadline.as_ref(), None)),
        }
        let (head, body) = request.into_parts();
        let parts = replay.as_ref().and_then(|_| clone_head(&head));
        request = Request::from_parts(head, body);
        let error: BoxError = match until(deadline, connection.call(request)).await {
            Some(Ok(response)) => {
                return match grpc_status(response.headers()) {
                    Some(code) if Deadline::overtakes(deadline.as_ref(), code) => {
                        Err(no_headers(call, deadline.as_ref(), Some(code)))
                    }
                    _ => Ok((response, call)),
                };
            }
            Some(Err(error)) => error.into(),
            // Dropping the response's future resets the stream: the server hears of it.
            None => return Err(no_headers(call, deadline.as_ref(), None)),
        };
        if let Some(failure) = refused(limits, Some(&call)) {
            call.finish(Code::ResourceExhausted);
            return Err(failure);
        }
        match (is_unprocessed(&*error), replay, parts) {
            (true, Some(body), Some(parts)) => {
                // Pick again: the server never saw it.
                call.finish(Code::Unavailable);
                request = Request::from_parts(parts, body);
                last_error = Some(error);
            }
            _ => {
                let code = (channel.error_code())(&*error).unwrap_or(Code::Unavailable);
                let message = format!(
                    "the call to {} failed: {}",
                    call.address(),
                    describe_error(&*error)
                );
                call.finish(code);
                return Err(Failure::Transport(error, Status::new(code, message)));
            }
        }
    }
    Err(Failure::Status(Status::unavailable(format!(
        "no connection took the request in {MAX_SEND_ATTEMPTS} attempts; last: {}",
        last_error.map_or_else(|| "none".to_owned(), |e| describe_error(&*e))
    ))))
}

/// The call's failure if its request was refused for a message over its send limit: not
/// retried, whatever the policy, as every attempt would send the same message (grpc-go fails
/// the call the same way, before any attempt sees it).
pub(crate) fn refused(limits: &CallLimits, call: Option<&CallGuard>) -> Option<Failure> {
    let refused = limits.send.as_ref()?.refused()?;
    let message = match call {
        Some(call) => format!("the call to {} failed: {refused}", call.address()),
        None => format!("the call failed: {refused}"),
    };
    Some(Failure::Status(Status::new(
        Code::ResourceExhausted,
        message,
    )))
}

/// The call's deadline passed before its response's headers came, or before the server's
/// status `late` did.
pub(crate) fn no_headers(
    call: CallGuard,
    deadline: Option<&Deadline>,
    late: Option<Code>,
) -> Failure {
    let mut message = format!(
        "no response headers from {} within {}",
        call.address(),
        deadline.map_or_else(String::new, Deadline::budget)
    );
    if let Some(code) = late {
        message.push_str(&format!("; the server's {code} came after the deadline"));
    }
    let status = Status::new(Code::DeadlineExceeded, message);
    call.finish(Code::DeadlineExceeded);
    Failure::Status(status)
}

/// A trailers-only gRPC response: `grpc-status` and `grpc-message` in the headers, no body.
fn status_response<RB>(status: &Status) -> Response<CallBody<RB>> {
    let mut response = Response::new(CallBody::empty(status.code()));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    insert_status(headers, status.code(), status.message());
    response
}

/// Whether `error`, or one of its sources, says the server did not process the request.
fn is_unprocessed(error: &(dyn StdError + 'static)) -> bool {
    unprocessed(error).is_some()
}

/// The [`Unprocessed`] that `error` is, or one of its sources.
pub(crate) fn unprocessed<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a Unprocessed> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(unprocessed) = error.downcast_ref::<Unprocessed>() {
            return Some(unprocessed);
        }
        next = error.source();
    }
    None
}

/// The request's head again, for another attempt: method, URI, version and headers. Extensions
/// cannot be cloned in general; those of the request types the channel knows ([`PickOptions`]) are
/// carried over, others only go with the first attempt.
pub(crate) fn clone_head(head: &http::request::Parts) -> Option<http::request::Parts> {
    let mut copy = Request::builder()
        .method(head.method.clone())
        .uri(head.uri.clone())
        .version(head.version)
        .body(())
        .ok()?;
    *copy.headers_mut() = head.headers.clone();
    if let Some(options) = head.extensions.get::<PickOptions>() {
        copy.extensions_mut().insert(*options);
    }
    Some(copy.into_parts().0)
}

/// The pick's options: a [`PickOptions`] extension, its timeout turned into a deadline from
/// `now`. Options without a timeout or a deadline (say, only wait-for-ready) take the request's
/// `grpc-timeout`. The method's config (if one matches the call) bounds that by its `timeout`,
/// as gRPC takes the sooner of the two, and says whether to wait for ready when the options do
/// not. Without either deadline, the channel's `default` one.
fn pick_options<B>(
    request: &Request<B>,
    now: Instant,
    default: Option<Instant>,
    method: Option<&MethodConfig>,
) -> PickOptions {
    let mut options = request
        .extensions()
        .get::<PickOptions>()
        .copied()
        .unwrap_or_default();
    let requested = options
        .effective_deadline(now)
        .or_else(|| grpc_timeout(request.headers()).and_then(|timeout| now.checked_add(timeout)));
    let configured = method
        .and_then(|method| method.timeout)
        .and_then(|timeout| now.checked_add(timeout));
    let deadline = match (requested, configured) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if options.waits_for_ready().is_none() {
        if let Some(wait) = method.and_then(|method| method.wait_for_ready) {
            options = options.wait_for_ready(wait);
        }
    }
    match deadline.or(default) {
        Some(deadline) => options.deadline(deadline),
        None => options,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::tests::NoBody;
    use std::time::Duration;

    #[test]
    fn a_timeout_becomes_one_deadline_for_every_attempt() {
        let now = Instant::now();
        let request = Request::builder()
            .header("grpc-timeout", "250m")
            .body(())
            .unwrap();
        let options = pick_options(&request, now, None, None);
        let later = now + Duration::from_secs(1);
        assert_eq!(
            options.effective_deadline(later),
            Some(now + Duration::from_millis(250))
        );
        let plain = Request::new(());
        assert_eq!(
            pick_options(&plain, now, None, None).effective_deadline(later),
            None
        );
    }

    #[test]
    fn options_without_a_deadline_take_the_grpc_timeout_then_the_default() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let default = now + Duration::from_secs(3);
        let mut request = Request::builder()
            .header("grpc-timeout", "250m")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(PickOptions::new().wait_for_ready(true));
        let options = pick_options(&request, now, Some(default), None);
        assert_eq!(
            options.effective_deadline(later),
            Some(now + Duration::from_millis(250))
        );
        assert_eq!(options, options.wait_for_ready(true));
        // Options with a timeout of their own keep it, over the header.
        request
            .extensions_mut()
            .insert(PickOptions::new().timeout(Duration::from_millis(100)));
        assert_eq!(
            pick_options(&request, now, Some(default), None).effective_deadline(later),
            Some(now + Duration::from_millis(100))
        );
        // Neither: the channel's default.
        let plain = Request::new(());
        assert_eq!(
            pick_options(&plain, now, Some(default), None).effective_deadline(later),
            Some(default)
        );
    }

    #[test]
    fn a_method_config_bounds_the_deadline_and_says_whether_to_wait_for_ready() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let mut method = MethodConfig::default();
        method.timeout = Some(Duration::from_millis(200));
        method.wait_for_ready = Some(true);
        // The sooner of the request's grpc-timeout and the method's timeout.
        let longer = Request::builder()
            .header("grpc-timeout", "5S")
            .body(())
            .unwrap();
        let options = pick_options(&longer, now, None, Some(&method));
        assert_eq!(
            options.effective_deadline(later),
            Some(now + Duration::from_millis(200))
        );
        assert_eq!(options.waits_for_ready(), Some(true));
        let shorter = Request::builder()
            .header("grpc-timeout", "50m")
            .body(())
            .unwrap();
        assert_eq!(
            pick_options(&shorter, now, None, Some(&method)).effective_deadline(later),
            Some(now + Duration::from_millis(50))
        );
        // Without a timeout of its own, the call takes the method's, before the default.
        let plain = Request::new(());
        let default = Some(now + Duration::from_secs(3));
        assert_eq!(
            pick_options(&plain, now, default, Some(&method)).effective_deadline(later),
            Some(now + Duration::from_millis(200))
        );
        // A call that says whether to wait for ready is heard over the method's config.
        let mut fail_fast = Request::new(());
        fail_fast
            .extensions_mut()
            .insert(PickOptions::new().wait_for_ready(false));
        let options = pick_options(&fail_fast, now, None, Some(&method));
        assert_eq!(options.waits_for_ready(), Some(false));
    }

    #[test]
    fn a_failed_grpc_call_answers_with_its_status_in_the_headers() {
        let status = Status::new(Code::DeadlineExceeded, "too late: 5%");
        let response: Response<CallBody<NoBody>> = status_response(&status);
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "4");
        // The message alone, not prefixed with its code as `Status` displays it.
        assert_eq!(response.headers()["grpc-message"], "too late: 5%25");
        assert_eq!(response.headers()["content-type"], "application/grpc");
        assert!(response.body().is_end_stream());
    }
}
