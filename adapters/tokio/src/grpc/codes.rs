//! What an HTTP/2 failure under a call means as a gRPC status code (grpc/grpc
//! doc/PROTOCOL-HTTP2.md, "Errors", and doc/statuscodes.md).

use std::error::Error as StdError;

use croupier::Code;
use h2::Reason;

/// The gRPC code of `error`, a call's failure on an HTTP/2 connection: a stream reset's code as
/// gRPC maps it; the connection lost (an I/O error, a GOAWAY, the connection closed) is
/// `UNAVAILABLE`, as is anything else the transport failed with.
pub(super) fn error_code(error: &(dyn StdError + 'static)) -> Option<Code> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return Some(match h2.reason() {
                // A GOAWAY ends the connection, whatever its code.
                Some(reason) if !h2.is_go_away() => reset_code(reason),
                _ => Code::Unavailable,
            });
        }
        next = error.source();
    }
    Some(Code::Unavailable)
}

/// gRPC's code for a stream reset with `reason`.
fn reset_code(reason: Reason) -> Code {
    match reason {
        Reason::REFUSED_STREAM => Code::Unavailable,
        Reason::CANCEL => Code::Cancelled,
        Reason::ENHANCE_YOUR_CALM => Code::ResourceExhausted,
        Reason::INADEQUATE_SECURITY => Code::PermissionDenied,
        // NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT,
        // FRAME_SIZE_ERROR, COMPRESSION_ERROR, CONNECT_ERROR, and codes gRPC does not name.
        _ => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_resets_map_as_grpc_maps_them() {
        let reset = |reason| error_code(&h2::Error::from(reason));
        assert_eq!(reset(Reason::CANCEL), Some(Code::Cancelled));
        assert_eq!(reset(Reason::REFUSED_STREAM), Some(Code::Unavailable));
        assert_eq!(
            reset(Reason::ENHANCE_YOUR_CALM),
            Some(Code::ResourceExhausted)
        );
        assert_eq!(
            reset(Reason::INADEQUATE_SECURITY),
            Some(Code::PermissionDenied)
        );
        assert_eq!(reset(Reason::PROTOCOL_ERROR), Some(Code::Internal));
        assert_eq!(reset(Reason::NO_ERROR), Some(Code::Internal));
    }

    #[test]
    fn a_lost_connection_is_unavailable() {
        let other = std::io::Error::other("connection closed");
        assert_eq!(error_code(&other), Some(Code::Unavailable));
    }
}
