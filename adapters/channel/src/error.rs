//! The errors calls through the channel's `Service` fail with, and how they are told: below the
//! service and the response body, which both use them.

use std::error::Error as StdError;

/// The error type of the channel's `Service`: a pick's [`croupier::Status`], or the connection's
/// own error.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// An error and its sources on one line, each source's text once: what a gRPC status message
/// or a log line shows of a connection's failure.
pub fn describe_error(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}
