//! The front of a call that retries or hedges: it runs the call's attempts as its
//! [`RetryCall`] decides, each with a pick of its own (naming the subchannels tried before) and a
//! stream of its own, replaying the request body it keeps, until an attempt's response headers
//! commit the call or an attempt's status ends it.

use std::future::poll_fn;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use croupier::retry::{
    AttemptId, CallPolicy, Pushback, RetryAction, RetryCall, Unprocessed as Unseen,
};
use croupier::{Code, PickRequest, Status, SubchannelId};
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use http_body::Body;

use crate::body::{observe, until, CallBody, Deadline};
use crate::channel::{CallGuard, Channel, PickOptions, Picked};
use crate::error::{describe_error, BoxError};
use crate::grpc::{encode_grpc_timeout, grpc_message, grpc_status, http_status_code};
use crate::message_size::CallLimits;
use crate::replay::{BufferWatch, ReplayBody};
use crate::runtime::BoxFuture;
use crate::service::{clone_head, refused, unprocessed, Connection, Failure};

/// The header that tells a server how many attempts of the call came before this one.
const PREVIOUS_ATTEMPTS: &str = "grpc-previous-rpc-attempts";
/// The header that tells a server the call's deadline.
const GRPC_TIMEOUT: &str = "grpc-timeout";
/// The trailer in which a server asks a client to wait, or not to retry (gRFC A6).
const PUSHBACK: &str = "grpc-retry-pushback-ms";

/// Sends `request` by `policy`: attempts, retries and hedges until one attempt's response
/// headers come (the call is committed to it, and its body reports its end), an attempt's
/// status ends the call, or `deadline` passes, which bounds every attempt together.
pub(crate) async fn send<T, B, RB>(
    channel: &Channel<T>,
    request: Request<B>,
    options: PickOptions,
    mut deadline: Option<Deadline>,
    policy: CallPolicy,
    limits: CallLimits,
) -> Result<Response<CallBody<RB>>, Failure>
where
    T: Connection<B, RB>,
    B: Body<Data = bytes::Bytes> + Send + 'static,
    RB: Body + Send + 'static,
{
    let recv_timeout = match &policy {
        CallPolicy::Retry(retry) => retry.per_attempt_recv_timeout(),
        _ => None,
    };
    let (head, body) = request.into_parts();
    let (body, watch) = ReplayBody::retained(body, channel.retries().per_call_limit());
    if let Some(limit) = &limits.send {
        body.limit_sends(std::sync::Arc::clone(limit));
    }
    let machine = channel
        .retries()
        .start(policy, channel.retry_throttle(), channel.now());
    let mut front = Front {
        channel: channel.clone(),
        head,
        options,
        first: Some(body),
        deadline: deadline.as_ref().map(Deadline::at),
        recv_timeout,
        watch,
        machine,
        limits,
        running: Vec::new(),
        tried: Vec::new(),
        last: None,
        headers: None,
        timer: None,
    };
    let outcome = until(&mut deadline, poll_fn(|cx| front.poll(cx))).await;
    let Some(outcome) = outcome else {
        return Err(front.deadline_passed(deadline.as_ref()));
    };
    match outcome {
        Outcome::Committed(attempt, response, mut call) => {
            call.commit_retries(Committed::new(front.machine, attempt));
            let connector = (channel.error_code(), channel.load_report());
            Ok(observe(response, call, deadline, connector, front.limits))
        }
        Outcome::Answered(_, code) if Deadline::overtakes(deadline.as_ref(), code) => {
            Err(Failure::Status(Status::new(
                Code::DeadlineExceeded,
                format!(
                    "the call's {code} came after its deadline of {}",
                    deadline.as_ref().map_or_else(String::new, Deadline::budget)
                ),
            )))
        }
        Outcome::Answered(response, code) => {
            // A trailers-only response: its status is in the headers the caller reads.
            let (parts, _) = response.into_parts();
            Ok(Response::from_parts(parts, CallBody::empty(code)))
        }
        Outcome::Failed(failure) => Err(failure),
    }
}

/// A call's retry machine, committed to one attempt: told of that attempt's end, so that the
/// throttle counts it.
#[derive(Debug)]
pub(crate) struct Committed {
    call: RetryCall,
    attempt: AttemptId,
}

impl Committed {
    pub(crate) fn new(call: RetryCall, attempt: AttemptId) -> Self {
        Committed { call, attempt }
    }

    /// The attempt ended with `code` at `now`.
    pub(crate) fn ended(mut self, code: Code, now: Instant) {
        self.call
            .handle_attempt_end(self.attempt, code, Pushback::None, now);
    }
}

/// How a call's attempts came out.
enum Outcome<RB> {
    /// Committed to `attempt` by its response headers: its response, and its guard.
    Committed(AttemptId, Response<RB>, CallGuard),
    /// Ended by an attempt's status in its response's headers (a trailers-only response).
    Answered(Response<RB>, Code),
    /// Ended by a failure: no pick, or the transport's.
    Failed(Failure),
}

/// An attempt's end, kept until the call says whether it is the call's.
enum Ended<RB> {
    /// A status in the response's headers, and what it says (for the call's deadline error).
    Answered(Response<RB>, Code, String),
    Failed(Failure),
}

/// One attempt of the call: picking, then sending.
struct Running<T, B, RB> {
    attempt: AttemptId,
    /// Its pick's guard, once picked: reports its outcome to the balancer.
    call: Option<CallGuard>,
    stage: Stage<T, B, RB>,
}

type Pick<T, B> = (Parts, ReplayBody<B>, Result<Picked<T>, Status>);

enum Stage<T, B, RB> {
    Picking(BoxFuture<'static, Pick<T, B>>),
    Sending(BoxFuture<'static, Sent<RB>>),
}

/// What sending one attempt came to.
enum Sent<RB> {
    Response(Response<RB>),
    /// The connection was gone before the request went out.
    NotReady(BoxError),
    Failed(BoxError),
}

struct Front<T, B, RB> {
    channel: Channel<T>,
    /// The request's head, which every attempt copies.
    head: Parts,
    options: PickOptions,
    /// The first attempt's body (later ones get copies of it).
    first: Option<ReplayBody<B>>,
    /// When the call's deadline passes: each attempt after the first tells its server the time
    /// left.
    deadline: Option<Instant>,
    /// The retry policy's `perAttemptRecvTimeout`, for the status of an attempt it ends.
    recv_timeout: Option<Duration>,
    watch: BufferWatch<B>,
    machine: RetryCall,
    /// The call's message size limits, which every attempt shares.
    limits: CallLimits,
    running: Vec<Running<T, B, RB>>,
    /// The subchannels earlier attempts went to, for each new pick to pass over.
    tried: Vec<SubchannelId>,
    /// The latest attempt to end, and how.
    last: Option<(AttemptId, Ended<RB>)>,
    /// The attempt whose response headers committed the call.
    headers: Option<(AttemptId, Response<RB>, CallGuard)>,
    /// The machine's next timer, and when it fires.
    timer: Option<(Instant, BoxFuture<'static, ()>)>,
}

impl<T, B, RB> Front<T, B, RB>
where
    T: Connection<B, RB>,
    B: Body<Data = bytes::Bytes> + Send + 'static,
    RB: Body + Send + 'static,
{
    /// Carries out the machine's actions, and feeds it the request's bytes, its timer and its
    /// attempts' ends, until the call is committed or over.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Outcome<RB>> {
        loop {
            while let Some(action) = self.machine.poll_action() {
                match action {
                    RetryAction::Start {
                        attempt,
                        previous_attempts,
                        ..
                    } => self.start(attempt, previous_attempts),
                    RetryAction::Cancel(attempt) => {
                        // Dropping its response future resets its stream (RST_STREAM CANCEL),
                        // and its guard reports it CANCELLED.
                        self.running.retain(|running| running.attempt != attempt);
                    }
                    RetryAction::TimedOut(attempt) => self.timed_out(attempt),
                    RetryAction::Commit(attempt) => self.watch.commit(attempt.get()),
                    RetryAction::Finish { attempt, code } => {
                        return Poll::Ready(self.finish(attempt, code));
                    }
                    _ => {}
                }
            }
            if let Some((attempt, response, call)) = self.headers.take() {
                return Poll::Ready(Outcome::Committed(attempt, response, call));
            }
            // The bytes first: an attempt's end must not overtake the request that caused it.
            if let Poll::Ready(bytes) = self.watch.poll_kept(cx) {
                self.machine
                    .handle_request_buffered(bytes, self.channel.now());
                continue;
            }
            if self.poll_timer(cx) || self.poll_attempts(cx) {
                continue;
            }
            return Poll::Pending;
        }
    }

    fn start(&mut self, attempt: AttemptId, previous_attempts: u32) {
        let body = match self.first.take() {
            Some(first) if attempt.get() == 0 => Some(first),
            _ => self.watch.copy(attempt.get()),
        };
        let (Some(body), Some(mut head)) = (body, clone_head(&self.head)) else {
            if let Some(failure) = refused(&self.limits, None) {
                // A hedge after an earlier copy met a message over the limit.
                return self.end(attempt, Ended::Failed(failure), Pushback::Stop);
            }
            let status = Status::unavailable(
                "the request cannot be sent again: its body failed as it was sent",
            );
            return self.end(
                attempt,
                Ended::Failed(Failure::Status(status)),
                Pushback::None,
            );
        };
        if previous_attempts > 0 {
            head.headers
                .insert(PREVIOUS_ATTEMPTS, HeaderValue::from(previous_attempts));
        }
        if let (Some(at), true) = (self.deadline, attempt.get() > 0) {
            let left = at.saturating_duration_since(self.channel.now());
            head.headers.insert(GRPC_TIMEOUT, encode_grpc_timeout(left));
        }
        let channel = self.channel.clone();
        let tried = self.tried.clone();
        let options = self.options;
        let picking = Box::pin(async move {
            let request = PickRequest::from_parts(&head).with_tried(&tried);
            let picked = channel.pick_with(&request, options).await;
            (head, body, picked)
        });
        self.running.push(Running {
            attempt,
            call: None,
            stage: Stage::Picking(picking),
        });
    }

    /// Polls every attempt; `true` if one moved on (the caller loops again).
    fn poll_attempts(&mut self, cx: &mut Context<'_>) -> bool {
        for index in 0..self.running.len() {
            let running = &mut self.running[index];
            match &mut running.stage {
                Stage::Picking(picking) => {
                    let Poll::Ready((head, body, picked)) = picking.as_mut().poll(cx) else {
                        continue;
                    };
                    match picked {
                        Ok(Picked {
                            connection,
                            mut call,
                        }) => {
                            if !self.tried.contains(&call.subchannel()) {
                                self.tried.push(call.subchannel());
                            }
                            let mut body = body;
                            call.count_sent(&mut body);
                            running.call = Some(call);
                            running.stage = Stage::Sending(sending(connection, head, body));
                        }
                        Err(status) => {
                            let attempt = self.running.remove(index).attempt;
                            let ended = Ended::Failed(Failure::Status(status));
                            self.end(attempt, ended, Pushback::None);
                        }
                    }
                    return true;
                }
                Stage::Sending(sending) => {
                    let Poll::Ready(sent) = sending.as_mut().poll(cx) else {
                        continue;
                    };
                    let running = self.running.remove(index);
                    if let Some(call) = running.call {
                        self.sent(running.attempt, call, sent);
                    }
                    return true;
                }
            }
        }
        false
    }

    /// `attempt`'s request went out on the connection `call` picked, and came to `sent`.
    fn sent(&mut self, attempt: AttemptId, call: CallGuard, sent: Sent<RB>) {
        let now = self.channel.now();
        let error = match sent {
            Sent::Response(response) => {
                let headers = response.headers();
                let code = grpc_status(headers).or_else(|| {
                    (response.status() != http::StatusCode::OK)
                        .then(|| http_status_code(response.status()))
                });
                let Some(code) = code else {
                    // Response headers: the call commits to this attempt.
                    self.machine.handle_response_headers(attempt, now);
                    if self.machine.committed() == Some(attempt) {
                        self.headers = Some((attempt, response, call));
                    }
                    return;
                };
                let pushback = Pushback::from_header(headers.get(PUSHBACK).map(|v| v.as_bytes()));
                let load = if call.expects_outcome() {
                    (self.channel.load_report())(headers)
                } else {
                    None
                };
                let said = format!(
                    "{code} from {}: {}",
                    call.address(),
                    grpc_message(headers).unwrap_or_default()
                );
                call.finish_with(code, load);
                let ended = Ended::Answered(response, code, said);
                return self.end(attempt, ended, pushback);
            }
            Sent::NotReady(error) => {
                let status = lost(&call, &*error, Code::Unavailable);
                call.finish(Code::Unavailable);
                self.last = Some((attempt, Ended::Failed(Failure::Transport(error, status))));
                return self.machine.handle_attempt_unprocessed(
                    attempt,
                    Unseen::NotSent,
                    Code::Unavailable,
                    now,
                );
            }
            Sent::Failed(error) => error,
        };
        if let Some(failure) = refused(&self.limits, Some(&call)) {
            // A request message over the limit: no attempt would send it.
            call.finish(Code::ResourceExhausted);
            return self.end(attempt, Ended::Failed(failure), Pushback::Stop);
        }
        if let Some(why) = unprocessed(&*error) {
            let why = match why.is_refused() {
                true => Unseen::Refused,
                false => Unseen::NotSent,
            };
            let status = lost(&call, &*error, Code::Unavailable);
            call.finish(Code::Unavailable);
            self.last = Some((attempt, Ended::Failed(Failure::Transport(error, status))));
            return self
                .machine
                .handle_attempt_unprocessed(attempt, why, Code::Unavailable, now);
        }
        let code = (self.channel.error_code())(&*error).unwrap_or(Code::Unavailable);
        let status = lost(&call, &*error, code);
        call.finish(code);
        self.end(
            attempt,
            Ended::Failed(Failure::Transport(error, status)),
            Pushback::None,
        );
    }

    /// `attempt` waited `perAttemptRecvTimeout` for response headers: dropping its response
    /// future resets its stream (RST_STREAM CANCEL, the connection stays), its guard reports it
    /// CANCELLED, and CANCELLED is its status should the call end with it.
    fn timed_out(&mut self, attempt: AttemptId) {
        let Some(index) = self.running.iter().position(|r| r.attempt == attempt) else {
            return;
        };
        let running = self.running.remove(index);
        let to = running.call.as_ref().map_or_else(
            || "before a pick".to_owned(),
            |call| format!("from {}", call.address()),
        );
        let status = Status::new(
            Code::Cancelled,
            format!(
                "{attempt} had no response headers {to} within the retry policy's \
                 perAttemptRecvTimeout of {:?}",
                self.recv_timeout.unwrap_or_default()
            ),
        );
        self.last = Some((attempt, Ended::Failed(Failure::Status(status))));
    }

    /// `attempt` ended as `ended` says: the machine decides what follows.
    fn end(&mut self, attempt: AttemptId, ended: Ended<RB>, pushback: Pushback) {
        let code = match &ended {
            Ended::Answered(_, code, _) => *code,
            Ended::Failed(failure) => failure.status().code(),
        };
        self.last = Some((attempt, ended));
        self.machine
            .handle_attempt_end(attempt, code, pushback, self.channel.now());
    }

    /// Wakes the machine when its timer (a retry's backoff, the next hedge) fires.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.machine.poll_timeout() else {
            self.timer = None;
            return false;
        };
        let runtime = self.channel.runtime();
        let (_, sleep) = match &mut self.timer {
            Some(timer) if timer.0 == at => timer,
            timer => timer.insert((at, runtime.sleep_until(at))),
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.timer = None;
        // The runtime's clock may read a hair before the instant its timer fired for.
        self.machine.handle_timeout(self.channel.now().max(at));
        true
    }

    /// The call is over with `attempt`'s status.
    fn finish(&mut self, attempt: AttemptId, code: Code) -> Outcome<RB> {
        match self.last.take() {
            Some((last, Ended::Answered(response, code, _))) if last == attempt => {
                Outcome::Answered(response, code)
            }
            Some((last, Ended::Failed(failure))) if last == attempt => Outcome::Failed(failure),
            _ => Outcome::Failed(Failure::Status(Status::new(
                code,
                format!("the call ended with {attempt}'s {code}"),
            ))),
        }
    }

    /// The deadline passed first: the attempts running end with it.
    fn deadline_passed(&mut self, deadline: Option<&Deadline>) -> Failure {
        for running in self.running.drain(..) {
            if let Some(call) = running.call {
                call.finish(Code::DeadlineExceeded);
            }
        }
        let attempts = self.machine.policy_attempts();
        let mut message = format!(
            "no response headers within {} in {attempts} attempt{}",
            deadline.map_or_else(String::new, Deadline::budget),
            if attempts == 1 { "" } else { "s" },
        );
        if let Some((_, ended)) = &self.last {
            let last = match ended {
                Ended::Answered(_, _, said) => said.clone(),
                Ended::Failed(failure) => failure.status().message().to_owned(),
            };
            message.push_str(&format!("; the last failed: {last}"));
        }
        Failure::Status(Status::new(Code::DeadlineExceeded, message))
    }
}

/// Sends one attempt on `connection`.
fn sending<T, B, RB>(
    mut connection: T,
    head: Parts,
    body: ReplayBody<B>,
) -> BoxFuture<'static, Sent<RB>>
where
    T: Connection<B, RB>,
    B: Send + 'static,
    RB: 'static,
{
    Box::pin(async move {
        if let Err(error) = poll_fn(|cx| connection.poll_ready(cx)).await {
            return Sent::NotReady(error.into());
        }
        match connection.call(Request::from_parts(head, body)).await {
            Ok(response) => Sent::Response(response),
            Err(error) => Sent::Failed(error.into()),
        }
    })
}

/// The status of an attempt that `error` ended, on the connection `call` went to.
fn lost(call: &CallGuard, error: &(dyn std::error::Error + 'static), code: Code) -> Status {
    Status::new(
        code,
        format!(
            "the call to {} failed: {}",
            call.address(),
            describe_error(error)
        ),
    )
}
