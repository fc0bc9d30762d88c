//! Client-side health checking (gRFC A17): one `grpc.health.v1.Health/Watch` stream per
//! connection, on the connection itself.
//!
//! The two messages are small enough to write by hand (request: `string service = 1`;
//! response: `ServingStatus status = 1`).

use std::io;

use bytes::{Bytes, BytesMut};
use croupier_channel::{health_channel, BoxError, BoxFuture, Connected, Health, HealthReporter};
use http_body::Body;
use hyper::body::Incoming;

use super::streaming::{self, Next, Opened};
use super::Http2Connection;

/// What the errors call it.
const WHAT: &str = "the health check";

/// The method every health check calls.
const WATCH_PATH: &str = "/grpc.health.v1.Health/Watch";

/// The gRPC status code of a server without the health service.
pub(super) const GRPC_UNIMPLEMENTED: u32 = 12;

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
                    tokio::time::sleep(streaming::retry_delay(self.failures)).await;
                }
                match self.start().await {
                    Ok(Some(health)) => return health,
                    Ok(None) => continue,
                    Err(reason) => return self.failed(reason),
                }
            };
            let next = streaming::next_message(stream, &mut self.buffer, WHAT).await;
            return match next.and_then(|next| match next {
                Next::Message(message) => parse_status(&message).map(Ok),
                Next::End(code, message) => Ok(Err((code, message))),
            }) {
                Ok(Ok(status)) => {
                    self.failures = 0;
                    serving_status(status)
                }
                Ok(Err((code, message))) => {
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
        let request = watch_request(&self.check.service);
        match streaming::open(&self.connection, WATCH_PATH, request, WHAT).await? {
            // A trailers-only answer: the call is over.
            Opened::Ended(GRPC_UNIMPLEMENTED, _) => {
                self.unimplemented = true;
                Ok(Some(Health::Serving))
            }
            Opened::Ended(code, message) => Err(format!(
                "the health check call failed with status {code}{message}"
            )),
            Opened::Stream(body) => {
                self.stream = Some(body);
                self.buffer.clear();
                Ok(None)
            }
        }
    }
}

/// A `HealthCheckRequest { service }`, framed.
fn watch_request(service: &str) -> Bytes {
    let mut message = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    streaming::frame(&message)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
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
    fn only_serving_is_healthy() {
        assert_eq!(serving_status(1), Health::Serving);
        for status in [0, 2, 3, 99] {
            assert!(matches!(serving_status(status), Health::NotServing(_)));
        }
    }
}
