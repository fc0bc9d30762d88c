//! The server's side of probes: a tower layer for tonic servers that counts the requests in
//! flight, measures their latency, and answers `croupier.probe.v1.Probe/Probe` itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use croupier::{ArrivedAt, ProbeResult, ServerLoad};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use prost::Message;

use super::{ProbeResponse, PROBE_PATH};
use crate::grpc::streaming;

/// A tower layer for a gRPC server that answers croupier's probes: it counts the requests in
/// flight through it, keeps their latency per load ([`ServerLoad`], from each request's arrival
/// to its response's headers, which for a unary call is the handler's whole work), and answers
/// `croupier.probe.v1.Probe/Probe` without passing it on.
///
/// ```no_run
/// # async fn run(health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>) -> Result<(), Box<dyn std::error::Error>> {
/// use croupier_tokio::grpc::probe::ProbeLayer;
///
/// tonic::transport::Server::builder()
///     .layer(ProbeLayer::new())
///     .add_service(health) // any tonic service
///     .serve("127.0.0.1:50051".parse()?)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct ProbeLayer {
    load: Arc<Mutex<ServerLoad>>,
}

impl ProbeLayer {
    /// A layer with its own count, starting at nothing in flight.
    pub fn new() -> Self {
        ProbeLayer::default()
    }

    /// A layer over `load` (its settings, such as [`ServerLoad::stale_after`]).
    pub fn with_load(load: ServerLoad) -> Self {
        ProbeLayer {
            load: Arc::new(Mutex::new(load)),
        }
    }

    /// What a probe would be answered now.
    pub fn answer(&self) -> ProbeResult {
        lock(&self.load).answer(Instant::now())
    }
}

fn lock(load: &Mutex<ServerLoad>) -> std::sync::MutexGuard<'_, ServerLoad> {
    // The count stays meaningful whatever panicked while holding it.
    load.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S> tower_layer::Layer<S> for ProbeLayer {
    type Service = ProbeService<S>;

    fn layer(&self, inner: S) -> ProbeService<S> {
        ProbeService {
            inner,
            load: Arc::clone(&self.load),
        }
    }
}

/// The service [`ProbeLayer`] makes around a server's.
#[derive(Clone, Debug)]
pub struct ProbeService<S> {
    inner: S,
    load: Arc<Mutex<ServerLoad>>,
}

/// Counts a request until its response's headers, or until it is dropped unanswered.
struct InFlight {
    load: Arc<Mutex<ServerLoad>>,
    arrived: Option<ArrivedAt>,
    started: Instant,
}

impl InFlight {
    fn finish(mut self, answered: bool) {
        if let Some(arrived) = self.arrived.take() {
            let now = Instant::now();
            let mut load = lock(&self.load);
            if answered {
                load.call_finished(arrived, now.saturating_duration_since(self.started), now);
            } else {
                load.call_abandoned(arrived);
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(arrived) = self.arrived.take() {
            lock(&self.load).call_abandoned(arrived);
        }
    }
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for ProbeService<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ProbeBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.uri().path() == PROBE_PATH {
            let answer = lock(&self.load).answer(Instant::now());
            return Box::pin(std::future::ready(Ok(answer_response(&answer))));
        }
        let in_flight = InFlight {
            arrived: Some(lock(&self.load).call_started()),
            load: Arc::clone(&self.load),
            started: Instant::now(),
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            in_flight.finish(response.is_ok());
            response.map(|response| response.map(ProbeBody::inner))
        })
    }
}

/// A gRPC response carrying `answer`: headers, the message, `grpc-status: 0`.
fn answer_response<B>(answer: &ProbeResult) -> Response<ProbeBody<B>> {
    let message = streaming::frame(&ProbeResponse::from_result(answer).encode_to_vec());
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut response = Response::new(ProbeBody {
        kind: Kind::Answer {
            message: Some(message),
            trailers: Some(trailers),
        },
    });
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// A response body through [`ProbeService`]: the server's own, or a probe's answer.
#[derive(Debug)]
pub struct ProbeBody<B> {
    kind: Kind<B>,
}

#[derive(Debug)]
enum Kind<B> {
    Inner(B),
    Answer {
        message: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
}

impl<B> ProbeBody<B> {
    fn inner(body: B) -> Self {
        ProbeBody {
            kind: Kind::Inner(body),
        }
    }
}

impl<B> Body for ProbeBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Inner(body) => Pin::new(body).poll_frame(cx),
            Kind::Answer { message, trailers } => Poll::Ready(match message.take() {
                Some(data) => Some(Ok(Frame::data(data))),
                None => trailers.take().map(|t| Ok(Frame::trailers(t))),
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner(body) => body.is_end_stream(),
            Kind::Answer { message, trailers } => message.is_none() && trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner(body) => body.size_hint(),
            Kind::Answer { .. } => SizeHint::default(),
        }
    }
}
