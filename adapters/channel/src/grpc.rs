//! gRPC's conventions on HTTP/2 that the channel's `Service` reads and writes: `grpc-timeout`,
//! `grpc-status` and `grpc-message`, and what an HTTP status means without them.

use std::time::Duration;

use croupier::Code;
use http::{HeaderMap, HeaderValue};

/// Whether a request or response is gRPC: it says so in its `content-type` (or carries a
/// `grpc-status`).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers.contains_key("grpc-status")
        || headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/grpc"))
}

/// The `grpc-status` in `headers` (or trailers), if there is one.
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(Code::from_value(value.trim().parse().ok()?))
}

/// The headers (or trailers) that carry a gRPC status: `grpc-status` and `grpc-message`.
pub(crate) fn status_headers(code: Code, message: &str) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(3);
    insert_status(&mut headers, code, message);
    headers
}

/// Adds `grpc-status` and `grpc-message` to `headers`.
pub(crate) fn insert_status(headers: &mut HeaderMap, code: Code, message: &str) {
    headers.insert("grpc-status", HeaderValue::from(u16::from(code.value())));
    if let Ok(value) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert("grpc-message", value);
    }
}

/// gRPC's encoding of `grpc-message`: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The message of a `grpc-message` value: `%XX` decoded, as gRPC encodes it; bytes that do not
/// form UTF-8 are replaced.
pub(crate) fn grpc_message(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("grpc-message")?.as_bytes();
    let mut decoded = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some((&byte, tail)) = rest.split_first() {
        let hex = tail
            .get(..2)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, hex) {
            (b'%', Some(escaped)) => {
                decoded.push(escaped);
                rest = &tail[2..];
            }
            _ => {
                decoded.push(byte);
                rest = tail;
            }
        }
    }
    Some(String::from_utf8_lossy(&decoded).into_owned())
}

/// The request's `grpc-timeout`, if it has a valid one.
pub(crate) fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    parse_grpc_timeout(headers.get("grpc-timeout")?.to_str().ok()?)
}

/// Parses gRPC's `grpc-timeout` value: up to eight digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(amount * 3600),
        'M' => Duration::from_secs(amount * 60),
        'S' => Duration::from_secs(amount),
        'm' => Duration::from_millis(amount),
        'u' => Duration::from_micros(amount),
        'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// `timeout` as a `grpc-timeout` value: the finest unit whose amount fits in eight digits,
/// rounded down (a server's deadline is then never later than the client's).
pub(crate) fn encode_grpc_timeout(timeout: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let units = [
        (timeout.as_micros(), 'u'),
        (timeout.as_millis(), 'm'),
        (u128::from(timeout.as_secs()), 'S'),
        (u128::from(timeout.as_secs() / 60), 'M'),
    ];
    let (amount, unit) = units
        .into_iter()
        .find(|(amount, _)| *amount <= MAX)
        .unwrap_or(((u128::from(timeout.as_secs() / 3600)).min(MAX), 'H'));
    HeaderValue::from_str(&format!("{amount}{unit}")).unwrap_or(HeaderValue::from_static("0u"))
}

/// gRPC's mapping of an HTTP status to a code, for responses that carry no `grpc-status`.
pub(crate) fn http_status_code(status: http::StatusCode) -> Code {
    match status.as_u16() {
        200 => Code::Ok,
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// Reads gRPC's message framing in a stream of data frames: each message's 5-byte header
/// (compressed flag and length), then its bytes. It counts the message bytes (what gRFC A66's
/// message sizes measure) and finds the first message longer than a limit as soon as its header
/// is whole, before its bytes come. Frames may cut a message, or its header, anywhere.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MessageBytes {
    header: [u8; 5],
    /// How much of the next header has been read.
    filled: usize,
    /// What is left of the current message.
    remaining: u64,
}

/// What one frame held: its message bytes, and the first message over the limit, if one began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Message bytes in the frame (headers left out), up to the oversized message's header.
    pub(crate) message_bytes: u64,
    /// A message over the limit whose header ended in this frame.
    pub(crate) oversized: Option<Oversized>,
}

/// A message longer than the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Oversized {
    /// Where in the frame its header starts (0 if it started in an earlier frame): the bytes
    /// before it belong to earlier messages.
    pub(crate) at: usize,
    /// Its length, as its header says.
    pub(crate) length: u64,
}

impl MessageBytes {
    /// Reads `data`, the stream's next frame, and returns how many message bytes it held.
    #[cfg(feature = "metrics")]
    pub(crate) fn feed<D: bytes::Buf>(&mut self, data: &D) -> u64 {
        self.feed_limited(data, None).message_bytes
    }

    /// Reads `data`, the stream's next frame, and stops at the first header of a message longer
    /// than `limit`. Once one is found, the stream is not to be read further.
    pub(crate) fn feed_limited<D: bytes::Buf>(&mut self, data: &D, limit: Option<u64>) -> Fed {
        let mut slices = [std::io::IoSlice::new(&[]); 8];
        let filled = data.chunks_vectored(&mut slices);
        let mut seen = 0;
        let mut fed = Fed::default();
        for slice in &slices[..filled] {
            let (counted, oversized) = self.read(slice, limit, seen);
            fed.message_bytes += counted;
            if oversized.is_some() {
                fed.oversized = oversized;
                return fed;
            }
            seen += slice.len();
        }
        // Chunks past the eight looked at: counted as message bytes, their headers unread.
        fed.message_bytes += (data.remaining().saturating_sub(seen)) as u64;
        fed
    }

    /// Reads `bytes`, which start `base` bytes into the frame.
    fn read(
        &mut self,
        mut bytes: &[u8],
        limit: Option<u64>,
        base: usize,
    ) -> (u64, Option<Oversized>) {
        let end = base + bytes.len();
        let mut counted = 0;
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take = bytes
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                counted += take as u64;
                self.remaining -= take as u64;
                bytes = &bytes[take..];
                continue;
            }
            // A header starts here, or goes on from earlier bytes (of an earlier frame: 0).
            let starts_at = (end - bytes.len()).saturating_sub(self.filled);
            let take = bytes.len().min(5 - self.filled);
            self.header[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
            self.filled += take;
            bytes = &bytes[take..];
            if self.filled == 5 {
                let [_, a, b, c, d] = self.header;
                self.remaining = u64::from(u32::from_be_bytes([a, b, c, d]));
                self.filled = 0;
                if limit.is_some_and(|limit| self.remaining > limit) {
                    let oversized = Oversized {
                        at: starts_at,
                        length: self.remaining,
                    };
                    return (counted, Some(oversized));
                }
            }
        }
        (counted, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "metrics")]
    #[test]
    fn message_bytes_leave_out_each_messages_header_wherever_frames_cut() {
        // Two messages, of 3 and 0 bytes, then one of 4 bytes.
        let stream = [
            &[0u8, 0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0, 0, 0, 0][..],
            &[0, 0, 4, b'w', b'x'][..],
            &[b'y', b'z'][..],
        ];
        let mut counter = MessageBytes::default();
        let counted: Vec<u64> = stream
            .iter()
            .map(|frame| counter.feed(&bytes::Bytes::copy_from_slice(frame)))
            .collect();
        assert_eq!(counted, [3, 2, 2]);
        // One byte at a time, the same.
        let mut counter = MessageBytes::default();
        let total: u64 = stream
            .concat()
            .iter()
            .map(|byte| counter.feed(&bytes::Bytes::copy_from_slice(&[*byte])))
            .sum();
        assert_eq!(total, 7);
    }

    /// A message's frame: its 5-byte header saying `length`, then `body` bytes of it.
    fn message(length: u32, body: usize) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend(length.to_be_bytes());
        bytes.extend(std::iter::repeat_n(7, body));
        bytes
    }

    #[test]
    fn the_first_message_over_the_limit_is_found_by_its_header_wherever_frames_cut() {
        // Messages of 10 and 100 bytes (the limit), then one of 101, whose bytes never come.
        let mut stream = message(10, 10);
        stream.extend(message(100, 100));
        let oversized_at = stream.len();
        stream.extend(message(101, 0));
        for size in [1, 2, 4, 5, 6, 7, 64, stream.len()] {
            let mut reader = MessageBytes::default();
            let mut found = None;
            let mut counted = 0;
            for (index, frame) in stream.chunks(size).enumerate() {
                let fed = reader.feed_limited(&bytes::Bytes::copy_from_slice(frame), Some(100));
                counted += fed.message_bytes;
                if let Some(oversized) = fed.oversized {
                    found = Some((index * size + oversized.at, oversized));
                    break;
                }
            }
            let (start, oversized) = found.expect("the oversized message");
            assert_eq!(oversized.length, 101, "in frames of {size}");
            assert_eq!(counted, 110, "in frames of {size}");
            // Where its header starts, when it starts in the frame that completes it.
            let header_in_one_frame = oversized_at / size == (oversized_at + 4) / size;
            if header_in_one_frame {
                assert_eq!(start, oversized_at, "in frames of {size}");
            } else {
                assert_eq!(oversized.at, 0, "in frames of {size}");
            }
        }
        // Without a limit, or at it, nothing is oversized.
        let mut reader = MessageBytes::default();
        let fed = reader.feed_limited(&bytes::Bytes::from(stream.clone()), None);
        assert_eq!(
            fed,
            Fed {
                message_bytes: 110,
                oversized: None
            }
        );
        let mut reader = MessageBytes::default();
        let at_limit = reader.feed_limited(&bytes::Bytes::from(message(100, 100)), Some(100));
        assert_eq!(at_limit.oversized, None);
    }

    #[test]
    fn a_header_split_across_the_chunks_of_one_frame_is_found_where_it_starts() {
        use bytes::Buf;
        let first = bytes::Bytes::from(message(3, 3).into_iter().chain([0, 0]).collect::<Vec<_>>());
        let second = bytes::Bytes::from_static(&[0, 1, 0]);
        let frame = first.chain(second);
        let mut reader = MessageBytes::default();
        let fed = reader.feed_limited(&frame, Some(255));
        assert_eq!(fed.message_bytes, 3);
        assert_eq!(fed.oversized, Some(Oversized { at: 8, length: 256 }));
    }

    #[test]
    fn grpc_timeout_values_parse_as_the_spec_says() {
        assert_eq!(parse_grpc_timeout("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("1x"), None);
        assert_eq!(parse_grpc_timeout("-1S"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(parse_grpc_timeout("1é"), None);
    }

    #[test]
    fn timeouts_encode_in_the_finest_unit_that_fits() {
        assert_eq!(encode_grpc_timeout(Duration::from_millis(300)), "300000u");
        assert_eq!(encode_grpc_timeout(Duration::from_secs(1000)), "1000000m");
        assert_eq!(encode_grpc_timeout(Duration::from_secs(200_000)), "200000S");
        assert_eq!(
            encode_grpc_timeout(Duration::from_secs(200_000_000)),
            "3333333M"
        );
        assert_eq!(encode_grpc_timeout(Duration::MAX), "99999999H");
        for timeout in [Duration::from_nanos(1500), Duration::from_secs(86_400)] {
            let encoded = encode_grpc_timeout(timeout);
            let decoded = parse_grpc_timeout(encoded.to_str().unwrap()).unwrap();
            assert!(decoded <= timeout && timeout - decoded < Duration::from_micros(1));
        }
    }

    #[test]
    fn grpc_status_comes_from_the_header_value() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(grpc_status(&headers), Some(Code::Ok));
        headers.insert("grpc-status", "9".parse().unwrap());
        assert_eq!(grpc_status(&headers), Some(Code::FailedPrecondition));
        headers.insert("grpc-status", "nine".parse().unwrap());
        assert_eq!(grpc_status(&headers), None);
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(percent_encode("no backend"), "no backend");
        assert_eq!(percent_encode("100% down"), "100%25 down");
        assert_eq!(percent_encode("a\nb"), "a%0Ab");
        assert_eq!(percent_encode("é"), "%C3%A9");
        let headers = status_headers(Code::DeadlineExceeded, "too late: 5%");
        assert_eq!(headers["grpc-status"], "4");
        assert_eq!(headers["grpc-message"], "too late: 5%25");
    }

    #[test]
    fn grpc_messages_decode_as_they_were_encoded() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_message(&headers), None);
        for message in ["no backend", "100% down", "a\nb", "é", "%"] {
            headers.insert(
                "grpc-message",
                status_headers(Code::Ok, message)["grpc-message"].clone(),
            );
            assert_eq!(grpc_message(&headers).as_deref(), Some(message));
        }
        // A `%` that escapes nothing stays as it is.
        headers.insert("grpc-message", HeaderValue::from_static("50%_off%4"));
        assert_eq!(grpc_message(&headers).as_deref(), Some("50%_off%4"));
    }

    #[test]
    fn http_statuses_map_as_grpc_maps_them() {
        assert_eq!(http_status_code(http::StatusCode::OK), Code::Ok);
        assert_eq!(
            http_status_code(http::StatusCode::SERVICE_UNAVAILABLE),
            Code::Unavailable
        );
        assert_eq!(
            http_status_code(http::StatusCode::NOT_FOUND),
            Code::Unimplemented
        );
        assert_eq!(
            http_status_code(http::StatusCode::IM_A_TEAPOT),
            Code::Unknown
        );
    }
}
