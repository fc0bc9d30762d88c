//! ORCA load reports (gRFC A51) from the echo servers: a report in the trailers of every
//! response ([`ServerOptions::load_report`](crate::ServerOptions::load_report)), and the
//! out-of-band `xds.service.orca.v3.OpenRcaService` that streams reports at the interval a
//! client asks for ([`ServerOptions::oob_load_report`](crate::ServerOptions::oob_load_report)).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use http::HeaderValue;
use http_body::{Body, Frame};
use prost::Message;
use tonic::{Request, Response, Status};

pub use pb::xds::data::orca::v3::OrcaLoadReport;
pub use pb::xds::service::orca::v3::OrcaLoadReportRequest;

/// The ORCA messages and the `OpenRcaService` server, generated from the protos croupier-tokio
/// vendors.
#[allow(missing_docs, unreachable_pub, missing_debug_implementations)]
pub mod pb {
    /// `xds.*`
    pub mod xds {
        /// `xds.data.*`
        pub mod data {
            /// `xds.data.orca.*`
            pub mod orca {
                /// `xds.data.orca.v3`
                pub mod v3 {
                    tonic::include_proto!("xds.data.orca.v3");
                }
            }
        }
        /// `xds.service.*`
        pub mod service {
            /// `xds.service.orca.*`
            pub mod orca {
                /// `xds.service.orca.v3`
                pub mod v3 {
                    tonic::include_proto!("xds.service.orca.v3");
                }
            }
        }
    }
}

/// The trailer that carries a call's load report.
pub const LOAD_REPORT_TRAILER: &str = "endpoint-load-metrics-bin";

/// The shortest interval the out-of-band stream sends reports at, whatever a client asks.
pub const MIN_REPORT_INTERVAL: Duration = Duration::from_millis(10);

/// `report` as the value of the [`LOAD_REPORT_TRAILER`]: serialized, then base64 (padded).
pub fn trailer_value(report: &OrcaLoadReport) -> HeaderValue {
    let text = base64::engine::general_purpose::STANDARD.encode(report.encode_to_vec());
    HeaderValue::try_from(text).expect("base64 is a valid header value")
}

/// A tower layer that puts the [`LOAD_REPORT_TRAILER`] on every response: in its trailers, or
/// in its headers when it has no body (a trailers-only response).
#[derive(Clone, Debug)]
pub(crate) struct TrailerLayer(pub(crate) Option<HeaderValue>);

impl<S> tower_layer::Layer<S> for TrailerLayer {
    type Service = WithTrailer<S>;

    fn layer(&self, inner: S) -> WithTrailer<S> {
        WithTrailer {
            inner,
            value: self.0.clone(),
        }
    }
}

/// The service [`TrailerLayer`] makes.
#[derive(Clone, Debug)]
pub(crate) struct WithTrailer<S> {
    inner: S,
    value: Option<HeaderValue>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower_service::Service<http::Request<B>> for WithTrailer<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<TrailedBody<RB>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let response = self.inner.call(request);
        let mut value = self.value.clone();
        Box::pin(async move {
            let mut response = response.await?;
            if response.headers().contains_key("grpc-status") {
                if let Some(value) = value.take() {
                    response.headers_mut().insert(LOAD_REPORT_TRAILER, value);
                }
            }
            Ok(response.map(|inner| TrailedBody { inner, value }))
        })
    }
}

/// A response body whose trailers get the load report.
#[derive(Debug)]
pub(crate) struct TrailedBody<B> {
    inner: B,
    value: Option<HeaderValue>,
}

impl<B: Body + Unpin> Body for TrailedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let mut frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &mut frame {
            if let Some(trailers) = frame.trailers_mut() {
                if let Some(value) = this.value.take() {
                    trailers.insert(LOAD_REPORT_TRAILER, value);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// `xds.service.orca.v3.OpenRcaService`: streams one report, again and again, at the interval
/// each call asks for.
#[derive(Clone, Debug)]
pub(crate) struct OpenRca {
    pub(crate) report: OrcaLoadReport,
    /// The interval the last call asked for.
    pub(crate) asked: Arc<Mutex<Option<Duration>>>,
}

#[tonic::async_trait]
impl pb::xds::service::orca::v3::open_rca_service_server::OpenRcaService for OpenRca {
    type StreamCoreMetricsStream =
        tokio_stream::wrappers::ReceiverStream<Result<OrcaLoadReport, Status>>;

    async fn stream_core_metrics(
        &self,
        request: Request<OrcaLoadReportRequest>,
    ) -> Result<Response<Self::StreamCoreMetricsStream>, Status> {
        let asked = request
            .into_inner()
            .report_interval
            .and_then(|interval| Duration::try_from(interval).ok());
        if let Ok(mut last) = self.asked.lock() {
            *last = asked;
        }
        let interval = asked
            .unwrap_or(Duration::from_secs(1))
            .max(MIN_REPORT_INTERVAL);
        let report = self.report.clone();
        let (reports, stream) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            while reports.send(Ok(report.clone())).await.is_ok() {
                tokio::time::sleep(interval).await;
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            stream,
        )))
    }
}
