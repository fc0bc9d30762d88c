//! Connectivity states and status errors: the vocabulary shared by every layer.

use std::fmt;
use std::sync::Arc;

/// The connectivity state of a subchannel, of a policy, or of the whole channel
/// (grpc/grpc `doc/connectivity-semantics-and-api.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnectivityState {
    /// Not connected, and not trying to; a connection is made when one is needed.
    Idle,
    /// A connection attempt is under way.
    Connecting,
    /// Connected: calls can be sent.
    Ready,
    /// The last attempt failed; the next waits for its backoff to end.
    TransientFailure,
    /// Gone for good (a removed subchannel). A channel never reports this state.
    Shutdown,
}

impl ConnectivityState {
    /// The state as gRPC spells it (`READY`, `TRANSIENT_FAILURE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectivityState::Idle => "IDLE",
            ConnectivityState::Connecting => "CONNECTING",
            ConnectivityState::Ready => "READY",
            ConnectivityState::TransientFailure => "TRANSIENT_FAILURE",
            ConnectivityState::Shutdown => "SHUTDOWN",
        }
    }
}

impl fmt::Display for ConnectivityState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// gRPC status codes, as a pick or a call ends with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[allow(missing_docs)] // the names are gRPC's own
pub enum Code {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    /// The code as gRPC spells it (`UNAVAILABLE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The numeric value gRPC puts on the wire.
    pub fn value(self) -> u8 {
        self as u8
    }

    /// The code for a numeric value; unknown values map to [`Code::Unknown`].
    pub fn from_value(value: u32) -> Code {
        const ALL: [Code; 17] = [
            Code::Ok,
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
            Code::Unauthenticated,
        ];
        ALL.get(value as usize).copied().unwrap_or(Code::Unknown)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status error: a code and a message saying what failed and why.
///
/// Cloning is cheap (one shared allocation behind a thin pointer), so pickers hand out clones
/// without allocating, and a [`Pick`](crate::Pick) stays two words wide.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Status {
    inner: Arc<StatusInner>,
}

#[derive(PartialEq, Eq, Hash)]
struct StatusInner {
    code: Code,
    message: Box<str>,
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Status")
            .field("code", &self.inner.code)
            .field("message", &self.inner.message)
            .finish()
    }
}

impl Status {
    /// A status with any code.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Status {
            inner: Arc::new(StatusInner {
                code,
                message: message.into().into_boxed_str(),
            }),
        }
    }

    /// An `UNAVAILABLE` status: no backend can take the call now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Status::new(Code::Unavailable, message)
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.inner.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.inner.message
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.inner.code, self.inner.message)
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_values_round_trip() {
        for v in 0..17 {
            assert_eq!(u32::from(Code::from_value(v).value()), v);
        }
        assert_eq!(Code::from_value(99), Code::Unknown);
    }

    #[test]
    fn a_pick_result_is_two_words() {
        assert_eq!(std::mem::size_of::<Status>(), std::mem::size_of::<usize>());
        assert_eq!(
            std::mem::size_of::<crate::Pick>(),
            2 * std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn status_display_names_code_and_message() {
        let s = Status::unavailable("no endpoints");
        assert_eq!(s.to_string(), "UNAVAILABLE: no endpoints");
    }
}
