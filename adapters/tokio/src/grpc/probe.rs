//! Probes for policies that balance by what the backends themselves see (prequal): a small
//! unary RPC, `croupier.probe.v1.Probe/Probe` (`proto/croupier/probe/v1/probe.proto`), whose
//! answer is the server's requests in flight and the latency a call can expect there.
//!
//! **Why an RPC of its own, not ORCA's out-of-band stream.** Prequal's probes go where and when
//! the client asks: a few per call, to backends drawn at random, each answer as fresh as its
//! round trip. ORCA's `OpenRcaService` stream pushes a report per connection at a fixed period,
//! to every connection whatever the call rate, and its report has no field for requests in
//! flight. A probe is one HTTP/2 stream on the connection the calls use, so it measures the
//! same path, and a server answers it from a tower layer without a service of its own.
//!
//! The client side runs inside the channel: when the policy asks for a probe of a subchannel,
//! the channel sends one on its connection (at most one in flight per subchannel, bounded by
//! [`PROBE_TIMEOUT`]). A server without the layer answers UNIMPLEMENTED, which counts as no
//! answer, so prequal then picks as it does without answers. The server side is
//! [`ProbeLayer`], for any tonic server.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use croupier::ProbeResult;
use croupier_channel::{BoxError, BoxFuture};
use http_body::Body;
use prost::Message;

use crate::grpc::streaming::{self, Next, Opened};
use crate::grpc::Http2Connection;

mod server;

pub use server::{ProbeBody, ProbeLayer, ProbeService};

/// The method a probe calls.
pub const PROBE_PATH: &str = "/croupier.probe.v1.Probe/Probe";

/// How long the channel waits for a probe's answer before giving up on it.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the errors call it.
const WHAT: &str = "the probe";

/// `croupier.probe.v1.ProbeRequest`: empty.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub(crate) struct ProbeRequest {}

/// `croupier.probe.v1.ProbeResponse`.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub(crate) struct ProbeResponse {
    /// Requests in flight at the server.
    #[prost(uint32, tag = "1")]
    pub(crate) requests_in_flight: u32,
    /// The latency a call can expect, in microseconds, if the server has an estimate.
    #[prost(uint64, optional, tag = "2")]
    pub(crate) latency_micros: Option<u64>,
}

impl ProbeResponse {
    pub(crate) fn from_result(result: &ProbeResult) -> Self {
        ProbeResponse {
            requests_in_flight: result.requests_in_flight,
            latency_micros: result
                .latency
                .map(|latency| u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)),
        }
    }

    fn to_result(self) -> ProbeResult {
        ProbeResult::new(
            self.requests_in_flight,
            self.latency_micros.map(Duration::from_micros),
        )
    }
}

/// Probes the server of `connection`: its answer, or why there is none.
pub(super) fn probe<B>(
    connection: &Http2Connection<B>,
) -> BoxFuture<'static, Result<ProbeResult, String>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let connection = connection.clone();
    Box::pin(async move {
        match tokio::time::timeout(PROBE_TIMEOUT, ask(&connection)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer to {WHAT} within {PROBE_TIMEOUT:?}")),
        }
    })
}

async fn ask<B>(connection: &Http2Connection<B>) -> Result<ProbeResult, String>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let request = streaming::frame(&ProbeRequest {}.encode_to_vec());
    let mut body = match streaming::open(connection, PROBE_PATH, request, WHAT).await? {
        Opened::Stream(body) => body,
        Opened::Ended(code, message) => {
            return Err(format!("{WHAT} ended with gRPC status {code}{message}"))
        }
    };
    let mut buffer = BytesMut::new();
    match streaming::next_message(&mut body, &mut buffer, WHAT).await? {
        Next::Message(message) => ProbeResponse::decode(message)
            .map(ProbeResponse::to_result)
            .map_err(|error| format!("{WHAT}'s answer does not read: {error}")),
        Next::End(code, message) => Err(format!("{WHAT} ended with gRPC status {code}{message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reads_back_as_the_result_it_was_made_from() {
        for result in [
            ProbeResult::new(7, Some(Duration::from_micros(1_250))),
            ProbeResult::new(0, None),
        ] {
            let bytes = ProbeResponse::from_result(&result).encode_to_vec();
            let read = ProbeResponse::decode(bytes.as_slice()).unwrap().to_result();
            assert_eq!(read, result);
        }
    }
}
