//! What a server saw of each request's names: `:authority`, `:scheme`, `user-agent`.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::header::USER_AGENT;

/// The names one request arrived with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRequest {
    /// The path (`/grpc.examples.echo.Echo/UnaryEcho`).
    pub path: String,
    /// `:authority`, if the request had one.
    pub authority: Option<String>,
    /// `:scheme` (`http`, `https`).
    pub scheme: Option<String>,
    /// The `user-agent` header.
    pub user_agent: Option<String>,
}

/// The requests a server saw, in order.
pub(crate) type Seen = Arc<Mutex<Vec<SeenRequest>>>;

/// A tower layer that records each request's names before passing it on.
#[derive(Clone, Debug)]
pub(crate) struct RecordLayer(pub(crate) Seen);

impl<S> tower_layer::Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            seen: Arc::clone(&self.0),
        }
    }
}

/// The service [`RecordLayer`] makes.
#[derive(Clone, Debug)]
pub(crate) struct Record<S> {
    inner: S,
    seen: Seen,
}

impl<S, B> tower_service::Service<http::Request<B>> for Record<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let uri = request.uri();
        let seen = SeenRequest {
            path: uri.path().to_owned(),
            authority: uri.authority().map(ToString::to_string),
            scheme: uri.scheme_str().map(str::to_owned),
            user_agent: request
                .headers()
                .get(USER_AGENT)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        };
        if let Ok(mut all) = self.seen.lock() {
            all.push(seen);
        }
        self.inner.call(request)
    }
}
