//! The channel's own server-streaming gRPC calls on a connection (the health check's Watch,
//! ORCA's StreamCoreMetrics): opening one, framing its request, reading its messages, and the
//! backoff between failed calls. Messages are framed as gRPC frames them: a compression flag
//! byte, a 4-byte big-endian length, the message.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use croupier_channel::{BoxError, ReplayBody};
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use tower_service::Service;

use super::Http2Connection;

/// The largest message accepted (health answers and load reports are a few bytes).
pub(super) const MAX_MESSAGE: usize = 4096;

/// The gRPC status code OK.
pub(super) const GRPC_OK: u32 = 0;

/// The first wait before a failed call is made again, and the longest.
pub(super) const RETRY_INITIAL: Duration = Duration::from_secs(1);
pub(super) const RETRY_MAX: Duration = Duration::from_secs(30);

/// The wait before the next call after `failures` failed ones: 1 s, doubling, at most 30 s.
pub(super) fn retry_delay(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    RETRY_INITIAL.saturating_mul(factor).min(RETRY_MAX)
}

/// `message`, framed: not compressed, its length, itself.
pub(super) fn frame(message: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0); // not compressed
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    Bytes::from(framed)
}

/// How a call's start went, when the server answered.
pub(super) enum Opened {
    /// The stream is open: its messages follow.
    Stream(Incoming),
    /// The server ended the call at once (a trailers-only answer) with this gRPC status code
    /// and message (as `: message`, or empty).
    Ended(u32, String),
}

/// Calls `path` on `connection` with the framed `request`; `what` names the call in errors
/// (`the health check`).
pub(super) async fn open<B>(
    connection: &Http2Connection<B>,
    path: &'static str,
    request: Bytes,
    what: &str,
) -> Result<Opened, String>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let request = Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(ReplayBody::full(request))
        .map_err(|error| format!("cannot make the {what} request: {error}"))?;
    let mut connection = connection.clone();
    poll_fn(|cx| connection.poll_ready(cx))
        .await
        .map_err(|error| format!("cannot start {what}: {error}"))?;
    let response: Response<Incoming> = connection
        .call(request)
        .await
        .map_err(|error| format!("{what} call failed: {error}"))?;
    let (parts, body) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        return Err(format!(
            "{what} call failed with HTTP status {}",
            parts.status
        ));
    }
    Ok(match grpc_status(&parts.headers) {
        Some(code) => Opened::Ended(code, grpc_message(&parts.headers)),
        None => Opened::Stream(body),
    })
}

/// What a stream said next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// A whole message.
    Message(Bytes),
    /// The call ended, with this gRPC status code and message (as `: message`, or empty).
    End(u32, String),
}

/// The next message of `stream`, gathered in `buffer`; `what` names the call in errors.
pub(super) async fn next_message(
    stream: &mut Incoming,
    buffer: &mut BytesMut,
    what: &str,
) -> Result<Next, String> {
    loop {
        if let Some(message) = take_message(buffer, what)? {
            return Ok(Next::Message(message));
        }
        match poll_fn(|cx| Pin::new(&mut *stream).poll_frame(cx)).await {
            None => return Ok(Next::End(GRPC_OK, String::new())),
            Some(Err(error)) => return Err(format!("{what} stream failed: {error}")),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if buffer.len() + data.len() > MAX_MESSAGE + 5 {
                        return Err(format!("{what} message is too large"));
                    }
                    buffer.extend_from_slice(&data);
                }
                Err(frame) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        let code = grpc_status(trailers).unwrap_or(GRPC_OK);
                        return Ok(Next::End(code, grpc_message(trailers)));
                    }
                }
            },
        }
    }
}

/// One whole gRPC message from the front of `buffer`, if it holds one.
pub(super) fn take_message(buffer: &mut BytesMut, what: &str) -> Result<Option<Bytes>, String> {
    if buffer.len() < 5 {
        return Ok(None);
    }
    if buffer[0] != 0 {
        return Err(format!(
            "{what} message is compressed, which was not asked for"
        ));
    }
    let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if length > MAX_MESSAGE {
        return Err(format!("{what} message is too large"));
    }
    if buffer.len() < 5 + length {
        return Ok(None);
    }
    buffer.advance(5);
    Ok(Some(buffer.split_to(length).freeze()))
}

fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn grpc_message(headers: &http::HeaderMap) -> String {
    match headers
        .get("grpc-message")
        .and_then(|value| value.to_str().ok())
    {
        Some(message) if !message.is_empty() => format!(": {message}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_taken_whole_from_the_buffer() {
        let take = |buffer: &mut BytesMut| take_message(buffer, "the test");
        let mut buffer = BytesMut::from(&[0, 0, 0, 0, 2, 0x08][..]);
        assert_eq!(take(&mut buffer), Ok(None));
        buffer.extend_from_slice(&[0x01, 0, 0, 0]);
        assert_eq!(
            take(&mut buffer),
            Ok(Some(Bytes::from_static(&[0x08, 0x01])))
        );
        assert_eq!(take(&mut buffer), Ok(None));
        let mut compressed = BytesMut::from(&[1, 0, 0, 0, 0][..]);
        assert!(take(&mut compressed).is_err());
        let mut huge = BytesMut::from(&[0, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(take(&mut huge).is_err());
    }

    #[test]
    fn a_message_is_framed_with_its_length() {
        assert_eq!(&frame(&[])[..], &[0, 0, 0, 0, 0]);
        assert_eq!(&frame(&[7, 8])[..], &[0, 0, 0, 0, 2, 7, 8]);
    }

    #[test]
    fn retries_back_off_to_a_limit() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(5), Duration::from_secs(16));
        assert_eq!(retry_delay(6), RETRY_MAX);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }
}
