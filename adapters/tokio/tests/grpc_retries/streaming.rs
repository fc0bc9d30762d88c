//! A request sent in several HTTP/2 DATA frames, as a client stream sends it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};

/// A request body fed frame by frame through a channel.
pub(crate) struct Chunks(pub(crate) tokio::sync::mpsc::Receiver<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

/// An `EchoRequest` with `message` (under 128 bytes), in gRPC's length-prefixed framing.
pub(crate) fn framed(message: &str) -> Vec<u8> {
    let mut proto = vec![0x0a, u8::try_from(message.len()).unwrap()];
    proto.extend_from_slice(message.as_bytes());
    let mut framed = vec![0];
    framed.extend_from_slice(&u32::try_from(proto.len()).unwrap().to_be_bytes());
    framed.extend(proto);
    framed
}
