//! Client-side health checking (gRFC A17): one `grpc.health.v1.Health/Watch` stream per
//! connection, on the connection itself.
//!
//! The two messages are small enough to write by hand (request: `string service = 1`;
//! response: `ServingStatus status = 1`), framed as gRPC frames them: a compression flag byte,
//! a 4-byte big-endian length, the message.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use croupier_channel::{
    health_channel, BoxError, BoxFuture, Connected, Health, HealthReporter, ReplayBody,
};
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use tower_service::Service;

use super::Http2Connection;

/// The method every health check calls.
const WATCH_PATH: &str = "/grpc.health.v1.Health/Watch";

/// The largest health message accepted (a response is a few bytes).
const MAX_MESSAGE: usize = 4096;

/// gRPC status codes the check tells apart.
const GRPC_OK: u32 = 0;
const GRPC_UNIMPLEMENTED: u32 = 12;

/// The first wait before a failed Watch call is made again, and the longest.
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// How connections' health is checked: the service name to ask about (`""`, the default, is the
/// whole server).
///
/// While a connection's last answer is SERVING, its subchannel is READY; any other answer
/// (NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN) makes it TRANSIENT_FAILURE while the connection stays
/// open, until the server says SERVING again. A connection counts as connected only once the
/// first answer has come (within the connect deadline). A server that does not implement the
/// health service (UNIMPLEMENTED) counts as healthy, and is not asked again on that connection.
/// If the Watch call fails otherwise, the connection counts as unhealthy and the call is made
/// again with backoff (1 s, doubling, at most 30 s).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthCheck {
    service: String,
}

impl HealthCheck {
    /// Checks the health of `service` (`""` for the whole server).
    pub fn new(service: impl Into<String>) -> Self {
        HealthCheck {
            service: service.into(),
        }
    }

    /// The service name asked about.
    pub fn service(&self) -> &str {
        &self.service
    }
}

/// Starts watching `connection`'s health, waits for the first answer, and hands the connection
/// over with its health reports.
pub(super) async fn connect<B>(
    check: HealthCheck,
    connection: Http2Connection<B>,
    mut closed: BoxFuture<'static, String>,
) -> io::Result<Connected<Http2Connection<B>>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (reporter, watch) = health_channel();
    let mut watcher = Watcher::new(check, connection.clone());
    tokio::select! {
        health = watcher.next() => {
            reporter.report(health);
        }
        reason = &mut closed => {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, reason));
        }
    }
    let closed = async move { watch_until_closed(watcher, reporter, closed).await };
    Ok(Connected::new(connection, closed).with_health(watch))
}

async fn watch_until_closed<B>(
    mut watcher: Watcher<B>,
    reporter: HealthReporter,
    mut closed: BoxFuture<'static, String>,
) -> String
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    loop {
        tokio::select! {
            reason = &mut closed => return reason,
            health = watcher.next() => {
                if !reporter.report(health) {
                    return closed.await;
                }
            }
        }
    }
}

/// One connection's Watch stream, made again when it fails.
struct Watcher<B> {
    check: HealthCheck,
    connection: Http2Connection<B>,
    stream: Option<Incoming>,
    buffer: BytesMut,
    /// The last answer reported.
    last: Option<Health>,
    /// The server does not implement health checking: healthy for good.
    unimplemented: bool,
    /// Consecutive failed calls.
    failures: u32,
}

impl<B> Watcher<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn new(check: HealthCheck, connection: Http2Connection<B>) -> Self {
        Watcher {
            check,
            connection,
            stream: None,
            buffer: BytesMut::new(),
            last: None,
            unimplemented: false,
            failures: 0,
        }
    }

    /// The next change of health.
    async fn next(&mut self) -> Health {
        loop {
            let health = self.step().await;
            if self.last.as_ref() != Some(&health) {
                self.last = Some(health.clone());
                return health;
            }
        }
    }

    /// The next answer (the same as the last, possibly).
    async fn step(&mut self) -> Health {
        loop {
            if self.unimplemented {
                return std::future::pending().await;
            }
            let Some(stream) = self.stream.as_mut() else {
                if self.failures > 0 {
                    tokio::time::sleep(retry_delay(self.failures)).await;
                }
                match self.start().await {
                    Ok(Some(health)) => return health,
                    Ok(None) => continue,
                    Err(reason) => return self.failed(reason),
                }
            };
            return match read_message(stream, &mut self.buffer).await {
                Ok(Message::Status(status)) => {
                    self.failures = 0;
                    serving_status(status)
                }
                Ok(Message::End(code, message)) => {
                    self.stream = None;
                    self.failed(format!(
                        "the health check stream ended with status {code}{message}"
                    ))
                }
                Err(reason) => {
                    self.stream = None;
                    self.failed(reason)
                }
            };
        }
    }

    fn failed(&mut self, reason: String) -> Health {
        self.failures = self.failures.saturating_add(1);
        Health::NotServing(reason)
    }

    /// Starts a Watch call. `Ok(Some(_))` when the call ended at once with an answer of its own
    /// (UNIMPLEMENTED: healthy), `Ok(None)` when the stream is open.
    async fn start(&mut self) -> Result<Option<Health>, String> {
        let request = Request::post(WATCH_PATH)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(ReplayBody::full(watch_request(&self.check.service)))
            .map_err(|error| format!("cannot make the health check request: {error}"))?;
        let mut connection = self.connection.clone();
        poll_fn(|cx| connection.poll_ready(cx))
            .await
            .map_err(|error| format!("cannot start the health check: {error}"))?;
        let response: Response<Incoming> = connection
            .call(request)
            .await
            .map_err(|error| format!("the health check call failed: {error}"))?;
        let (parts, body) = response.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(format!(
                "the health check call failed with HTTP status {}",
                parts.status
            ));
        }
        if let Some(code) = grpc_status(&parts.headers) {
            // A trailers-only answer: the call is over.
            return match code {
                GRPC_UNIMPLEMENTED => {
                    self.unimplemented = true;
                    Ok(Some(Health::Serving))
                }
                code => Err(format!(
                    "the health check call failed with status {code}{}",
                    grpc_message(&parts.headers)
                )),
            };
        }
        self.stream = Some(body);
        self.buffer.clear();
        Ok(None)
    }
}

fn retry_delay(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    RETRY_INITIAL.saturating_mul(factor).min(RETRY_MAX)
}

/// A `HealthCheckRequest { service }`, framed.
fn watch_request(service: &str) -> Bytes {
    let mut message = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0); // not compressed
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    Bytes::from(framed)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// What the health stream said next.
#[derive(Debug, PartialEq, Eq)]
enum Message {
    /// A `HealthCheckResponse` with this status.
    Status(u64),
    /// The call ended, with this gRPC status code and message (as `: message`, or empty).
    End(u32, String),
}

async fn read_message(stream: &mut Incoming, buffer: &mut BytesMut) -> Result<Message, String> {
    loop {
        if let Some(message) = take_message(buffer)? {
            return Ok(Message::Status(parse_status(&message)?));
        }
        match poll_fn(|cx| Pin::new(&mut *stream).poll_frame(cx)).await {
            None => return Ok(Message::End(GRPC_OK, String::new())),
            Some(Err(error)) => return Err(format!("the health check stream failed: {error}")),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if buffer.len() + data.len() > MAX_MESSAGE + 5 {
                        return Err("the health check answer is too large".to_owned());
                    }
                    buffer.extend_from_slice(&data);
                }
                Err(frame) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        let code = grpc_status(trailers).unwrap_or(GRPC_OK);
                        return Ok(Message::End(code, grpc_message(trailers)));
                    }
                }
            },
        }
    }
}

/// One whole gRPC message from the front of `buffer`, if it holds one.
fn take_message(buffer: &mut BytesMut) -> Result<Option<Bytes>, String> {
    if buffer.len() < 5 {
        return Ok(None);
    }
    if buffer[0] != 0 {
        return Err("the health check answer is compressed, which was not asked for".to_owned());
    }
    let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if length > MAX_MESSAGE {
        return Err("the health check answer is too large".to_owned());
    }
    if buffer.len() < 5 + length {
        return Ok(None);
    }
    buffer.advance(5);
    Ok(Some(buffer.split_to(length).freeze()))
}

/// The `status` field (1, varint) of a `HealthCheckResponse`; absent means UNKNOWN (0).
fn parse_status(mut message: &[u8]) -> Result<u64, String> {
    let malformed = || "the health check answer is malformed".to_owned();
    let mut status = 0;
    while !message.is_empty() {
        let key = get_varint(&mut message).ok_or_else(malformed)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = get_varint(&mut message).ok_or_else(malformed)?,
            (_, 0) => {
                get_varint(&mut message).ok_or_else(malformed)?;
            }
            (_, 1) => message = message.get(8..).ok_or_else(malformed)?,
            (_, 2) => {
                let length = get_varint(&mut message).ok_or_else(malformed)?;
                let length = usize::try_from(length).map_err(|_| malformed())?;
                message = message.get(length..).ok_or_else(malformed)?;
            }
            (_, 5) => message = message.get(4..).ok_or_else(malformed)?,
            _ => return Err(malformed()),
        }
    }
    Ok(status)
}

fn get_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// What a `ServingStatus` means for the connection.
fn serving_status(status: u64) -> Health {
    match status {
        1 => Health::Serving,
        0 => Health::NotServing("the health check answered UNKNOWN".to_owned()),
        2 => Health::NotServing("the health check answered NOT_SERVING".to_owned()),
        3 => Health::NotServing("the health check answered SERVICE_UNKNOWN".to_owned()),
        other => Health::NotServing(format!("the health check answered status {other}")),
    }
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
    fn the_watch_request_is_a_framed_health_check_request() {
        assert_eq!(&watch_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &watch_request("echo")[..],
            &[0, 0, 0, 0, 6, 0x0a, 4, b'e', b'c', b'h', b'o']
        );
    }

    #[test]
    fn answers_parse_to_their_status() {
        assert_eq!(parse_status(&[0x08, 0x01]), Ok(1));
        assert_eq!(parse_status(&[]), Ok(0));
        // Unknown fields of every wire type are skipped.
        assert_eq!(
            parse_status(&[0x10, 0x05, 0x1a, 0x01, b'x', 0x25, 1, 2, 3, 4, 0x08, 0x02]),
            Ok(2)
        );
        assert!(parse_status(&[0x08]).is_err());
        assert!(parse_status(&[0x1a, 0x09, b'x']).is_err());
        assert!(parse_status(&[0x0b]).is_err());
        assert!(parse_status(&[0xff; 11]).is_err());
    }

    #[test]
    fn messages_are_taken_whole_from_the_buffer() {
        let mut buffer = BytesMut::from(&[0, 0, 0, 0, 2, 0x08][..]);
        assert_eq!(take_message(&mut buffer), Ok(None));
        buffer.extend_from_slice(&[0x01, 0, 0, 0]);
        assert_eq!(
            take_message(&mut buffer),
            Ok(Some(Bytes::from_static(&[0x08, 0x01])))
        );
        assert_eq!(take_message(&mut buffer), Ok(None));
        let mut compressed = BytesMut::from(&[1, 0, 0, 0, 0][..]);
        assert!(take_message(&mut compressed).is_err());
        let mut huge = BytesMut::from(&[0, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(take_message(&mut huge).is_err());
    }

    #[test]
    fn only_serving_is_healthy() {
        assert_eq!(serving_status(1), Health::Serving);
        for status in [0, 2, 3, 99] {
            assert!(matches!(serving_status(status), Health::NotServing(_)));
        }
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
