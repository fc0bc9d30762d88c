//! gRPC's message size limits: the channel's own (its builder's) and a method's from the service
//! config (`maxRequestMessageBytes`, `maxResponseMessageBytes`), and the limits a call runs by.
//!
//! As grpc-go reads them (`getMaxSize`): where the channel and the method both set a limit, the
//! lower of the two holds; where one does, that one; where neither does, gRPC's default (a
//! response message of at most 4 MiB, request messages unlimited). A channel left at the
//! default therefore lets a method's config raise the receive limit, as in gRPC.

#[cfg(feature = "tower")]
use std::sync::{Arc, OnceLock};

#[cfg(feature = "tower")]
use bytes::Bytes;
#[cfg(feature = "tower")]
use croupier::service_config::MethodConfig;
#[cfg(feature = "tower")]
use croupier::{Code, Status};
#[cfg(feature = "tower")]
use http_body::Frame;

#[cfg(feature = "tower")]
use crate::error::BoxError;
#[cfg(feature = "tower")]
use crate::grpc::MessageBytes;

/// gRPC's default limit on a received message (grpc-go's `defaultClientMaxReceiveMessageSize`,
/// tonic's `max_decoding_message_size`): 4 MiB.
pub const DEFAULT_MAX_DECODING_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// The limits a channel's builder was given; `None` where it was given none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MessageLimits {
    /// The largest response message a call accepts.
    pub(crate) receive: Option<usize>,
    /// The largest request message a call sends.
    pub(crate) send: Option<usize>,
}

/// The limits one call runs by, in bytes of a message (its 5-byte header left out); `None` for
/// no limit.
#[cfg(feature = "tower")]
#[derive(Clone, Debug, Default)]
pub(crate) struct CallLimits {
    /// The largest response message the call accepts.
    pub(crate) receive: Option<u64>,
    /// The largest request message it sends, shared with its request body.
    pub(crate) send: Option<Arc<SendLimit>>,
}

#[cfg(feature = "tower")]
impl MessageLimits {
    /// The limits of a call to a method whose config is `method`. Allocates only for a send
    /// limit.
    pub(crate) fn for_call(&self, method: Option<&MethodConfig>) -> CallLimits {
        let default_receive = DEFAULT_MAX_DECODING_MESSAGE_SIZE as u64;
        let receive = effective(
            self.receive,
            method.and_then(|m| m.max_response_message_bytes),
        );
        let send = effective(self.send, method.and_then(|m| m.max_request_message_bytes));
        CallLimits {
            receive: receive.or(Some(default_receive)),
            send: send.map(|limit| Arc::new(SendLimit::new(limit))),
        }
    }
}

/// The lower of the channel's and the method's limit where both are set, else the one that is.
#[cfg(feature = "tower")]
fn effective(channel: Option<usize>, method: Option<u64>) -> Option<u64> {
    let channel = channel.map(|limit| u64::try_from(limit).unwrap_or(u64::MAX));
    match (channel, method) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A call's limit on the request messages it sends, shared by the request body that enforces it
/// and the call that reports it: once a message over the limit comes, it is not sent, the
/// request's stream is reset, and the call ends `RESOURCE_EXHAUSTED` with [`SendLimit::refused`].
#[cfg(feature = "tower")]
#[derive(Debug)]
pub(crate) struct SendLimit {
    limit: u64,
    refused: OnceLock<String>,
}

#[cfg(feature = "tower")]
impl SendLimit {
    pub(crate) fn new(limit: u64) -> Self {
        SendLimit {
            limit,
            refused: OnceLock::new(),
        }
    }

    /// The limit, in bytes.
    #[cfg(test)]
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// A request message of `length` bytes came: it is refused.
    pub(crate) fn refuse(&self, length: u64) {
        let _ = self.refused.set(format!(
            "a request message of {length} bytes is larger than the limit of {} bytes \
             (maxRequestMessageBytes, or the channel's max_encoding_message_size): not sent",
            self.limit
        ));
    }

    /// Why the request was refused, if it was.
    pub(crate) fn refused(&self) -> Option<&str> {
        self.refused.get().map(String::as_str)
    }
}

/// Holds the request messages of a body to a [`SendLimit`], as they come.
#[cfg(feature = "tower")]
pub(crate) struct SendCheck {
    limit: Arc<SendLimit>,
    messages: MessageBytes,
}

#[cfg(feature = "tower")]
impl SendCheck {
    pub(crate) fn new(limit: Arc<SendLimit>) -> Self {
        SendCheck {
            limit,
            messages: MessageBytes::default(),
        }
    }

    /// Reads `frame`, the body's next. A message over the limit is refused: the frame keeps
    /// only the messages before it, or, with none, is refused itself.
    pub(crate) fn admit(&mut self, frame: &mut Frame<Bytes>) -> Result<(), BoxError> {
        let Some(data) = frame.data_mut() else {
            return Ok(());
        };
        let fed = self.messages.feed_limited(data, Some(self.limit.limit));
        let Some(oversized) = fed.oversized else {
            return Ok(());
        };
        self.limit.refuse(oversized.length);
        data.truncate(oversized.at);
        match (oversized.at, self.refusal()) {
            (0, Some(refused)) => Err(refused),
            _ => Ok(()),
        }
    }

    /// The error every read fails with once a message was refused.
    pub(crate) fn refusal(&self) -> Option<BoxError> {
        let refused = self.limit.refused()?;
        Some(Box::new(Status::new(Code::ResourceExhausted, refused)))
    }
}

/// What a call ends with when its response carries a message of `length` bytes, over `limit`,
/// from `from`.
#[cfg(feature = "tower")]
pub(crate) fn response_too_large(from: &str, length: u64, limit: u64) -> String {
    format!(
        "a response message of {length} bytes from {from} is larger than the limit of {limit} \
         bytes (maxResponseMessageBytes, or the channel's max_decoding_message_size)"
    )
}

#[cfg(all(test, feature = "tower"))]
mod tests {
    use super::*;

    fn method(request: Option<u64>, response: Option<u64>) -> MethodConfig {
        let mut method = MethodConfig::default();
        method.max_request_message_bytes = request;
        method.max_response_message_bytes = response;
        method
    }

    /// A call's limits, as numbers: receive, send.
    fn limits(channel: MessageLimits, method: Option<&MethodConfig>) -> (Option<u64>, Option<u64>) {
        let limits = channel.for_call(method);
        (limits.receive, limits.send.map(|send| send.limit()))
    }

    #[test]
    fn without_limits_a_call_receives_4_mib_and_sends_anything() {
        let none = MessageLimits::default();
        assert_eq!(limits(none, None), (Some(4 * 1024 * 1024), None));
        let empty = MethodConfig::default();
        assert_eq!(limits(none, Some(&empty)), (Some(4 * 1024 * 1024), None));
    }

    #[test]
    fn the_lower_of_the_channels_and_the_methods_limit_holds() {
        let channel = MessageLimits {
            receive: Some(1000),
            send: Some(2000),
        };
        let tighter = method(Some(20), Some(10));
        assert_eq!(limits(channel, Some(&tighter)), (Some(10), Some(20)));
        let looser = method(Some(1 << 30), Some(1 << 30));
        assert_eq!(limits(channel, Some(&looser)), (Some(1000), Some(2000)));
        // A method that sets only one keeps the channel's other.
        let one = method(None, Some(10));
        assert_eq!(limits(channel, Some(&one)), (Some(10), Some(2000)));
        assert_eq!(limits(channel, None), (Some(1000), Some(2000)));
    }

    #[test]
    fn a_methods_limit_alone_replaces_grpcs_default() {
        // As in gRPC: the 4 MiB default is what holds when nobody says otherwise, so a
        // method's config may raise it.
        let raised = method(Some(5), Some(8 << 20));
        assert_eq!(
            limits(MessageLimits::default(), Some(&raised)),
            (Some(8 << 20), Some(5))
        );
        // A channel's limit, once set, bounds it.
        let channel = MessageLimits {
            receive: Some(DEFAULT_MAX_DECODING_MESSAGE_SIZE),
            send: None,
        };
        let raised = method(None, Some(8 << 20));
        assert_eq!(limits(channel, Some(&raised)), (Some(4 << 20), None));
    }

    /// A message's frame: its 5-byte header saying `length`, then `length` bytes.
    fn message(length: u8) -> Vec<u8> {
        let mut bytes = vec![0, 0, 0, 0, length];
        bytes.extend(std::iter::repeat_n(7, usize::from(length)));
        bytes
    }

    fn data(bytes: &[u8]) -> Frame<Bytes> {
        Frame::data(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn a_request_stream_sends_the_messages_before_one_over_the_limit_and_no_more() {
        let limit = Arc::new(SendLimit::new(10));
        let mut check = SendCheck::new(Arc::clone(&limit));
        // A message at the limit passes whole.
        let mut frame = data(&message(10));
        assert!(check.admit(&mut frame).is_ok());
        assert_eq!(frame.data_ref().map(Bytes::len), Some(15));
        assert!(check.refusal().is_none());
        // One of 3 bytes, then the header of one of 11: the frame keeps the first.
        let mut bytes = message(3);
        bytes.extend(&message(11)[..7]);
        let mut frame = data(&bytes);
        assert!(check.admit(&mut frame).is_ok());
        assert_eq!(frame.data_ref().map(Bytes::len), Some(8));
        // From then on, every read fails, naming the size and the limit.
        let refused = check.refusal().expect("refused").to_string();
        assert!(refused.contains("11 bytes") && refused.contains("limit of 10 bytes"));
        assert!(limit.refused().is_some());
        // A frame that starts with an oversized message is refused itself.
        let mut check = SendCheck::new(Arc::new(SendLimit::new(10)));
        let mut trailers = Frame::<Bytes>::trailers(http::HeaderMap::new());
        assert!(check.admit(&mut trailers).is_ok());
        assert!(check.admit(&mut data(&message(200))).is_err());
    }

    #[test]
    fn a_refusal_names_the_size_and_the_limit() {
        let limit = SendLimit::new(100);
        assert_eq!(limit.refused(), None);
        limit.refuse(101);
        limit.refuse(5000);
        let refused = limit.refused().expect("refused");
        assert!(refused.contains("101 bytes") && refused.contains("limit of 100 bytes"));
        let message = response_too_large("127.0.0.1:1", 5000, 4096);
        assert!(message.contains("5000 bytes from 127.0.0.1:1") && message.contains("4096"));
    }
}
