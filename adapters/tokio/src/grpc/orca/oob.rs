//! Out-of-band load reports (gRFC A51): one `xds.service.orca.v3.OpenRcaService/StreamCoreMetrics`
//! stream per connection, asking for a report every period, each report passed to the balancer
//! for the connection's subchannel.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use croupier_channel::{load_report_channel, BoxError, Connected, LoadReporter};
use http_body::Body;
use prost::Message;

use super::service::OrcaLoadReportRequest;
use super::{data, to_load_report};
use crate::grpc::health::GRPC_UNIMPLEMENTED;
use crate::grpc::streaming::{self, Next, Opened};
use crate::grpc::Http2Connection;

/// The method each stream calls.
const STREAM_PATH: &str = "/xds.service.orca.v3.OpenRcaService/StreamCoreMetrics";

/// What the errors call it.
const WHAT: &str = "the ORCA load report";

/// Streams `connected`'s server's load reports every `period` to the channel, for as long as
/// the channel keeps the connection (the stream runs inside the future that tells of its end,
/// which the channel drops with it). A server without the service (UNIMPLEMENTED) is not asked
/// again on that connection; a stream that fails otherwise is opened again with backoff (1 s,
/// doubling, at most 30 s).
pub(in crate::grpc) fn attach<B>(
    connected: Connected<Http2Connection<B>>,
    period: Duration,
) -> Connected<Http2Connection<B>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (reporter, watch) = load_report_channel();
    let stream = stream(connected.connection.clone(), period, reporter);
    let mut closed = connected.closed;
    let closed = async move {
        tokio::select! {
            reason = &mut closed => return reason,
            () = stream => {}
        }
        closed.await
    };
    Connected {
        closed: Box::pin(closed),
        ..connected
    }
    .with_load_reports(watch)
}

/// Streams reports until the channel stops listening or the server has no such service.
async fn stream<B>(connection: Http2Connection<B>, period: Duration, reporter: LoadReporter)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let request = streaming::frame(&request(period).encode_to_vec());
    let mut buffer = BytesMut::new();
    let mut failures = 0u32;
    loop {
        if failures > 0 {
            tokio::time::sleep(streaming::retry_delay(failures)).await;
        }
        let mut body = match streaming::open(&connection, STREAM_PATH, request.clone(), WHAT).await
        {
            Ok(Opened::Stream(body)) => body,
            Ok(Opened::Ended(GRPC_UNIMPLEMENTED, _)) => return,
            Ok(Opened::Ended(..)) | Err(_) => {
                failures = failures.saturating_add(1);
                continue;
            }
        };
        buffer.clear();
        // Reports until the stream ends or fails; a report that does not read is skipped.
        while let Ok(Next::Message(message)) =
            streaming::next_message(&mut body, &mut buffer, WHAT).await
        {
            failures = 0;
            let Ok(report) = data::OrcaLoadReport::decode(message) else {
                continue;
            };
            if !reporter.report(to_load_report(&report)) {
                return;
            }
        }
        failures = failures.saturating_add(1);
    }
}

/// The request for a report every `period`.
fn request(period: Duration) -> OrcaLoadReportRequest {
    OrcaLoadReportRequest {
        report_interval: Some(prost_types::Duration {
            seconds: i64::try_from(period.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(period.subsec_nanos()).unwrap_or(0),
        }),
        request_cost_names: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_asks_for_the_period() {
        let asked = request(Duration::from_millis(1500));
        let interval = asked.report_interval.expect("an interval");
        assert_eq!((interval.seconds, interval.nanos), (1, 500_000_000));
        let decoded = OrcaLoadReportRequest::decode(&asked.encode_to_vec()[..]).unwrap();
        assert_eq!(decoded, asked);
    }
}
