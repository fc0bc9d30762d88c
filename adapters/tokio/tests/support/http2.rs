//! A raw HTTP/2 server's side of a connection on loopback: it writes the frames itself, and reads
//! the client's.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// HTTP/2 frame types and settings (RFC 9113, 6).
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
/// HTTP/2's initial flow-control window.
pub const SPEC_WINDOW: u32 = 65_535;

/// One HTTP/2 frame, as a raw server reads it.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A SETTINGS frame's parameters.
    pub fn settings(&self) -> Vec<(u16, u32)> {
        self.payload
            .chunks_exact(6)
            .map(|p| {
                (
                    u16::from_be_bytes([p[0], p[1]]),
                    u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                )
            })
            .collect()
    }
}

pub async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Frame> {
    let mut header = [0; 9];
    stream.read_exact(&mut header).await?;
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0; length];
    stream.read_exact(&mut payload).await?;
    Ok(Frame {
        kind: header[3],
        flags: header[4],
        stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff,
        payload,
    })
}

pub fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len())
        .expect("a short frame")
        .to_be_bytes();
    let mut bytes = vec![length[1], length[2], length[3], kind, flags, 0, 0, 0, 0];
    bytes.extend_from_slice(payload);
    bytes
}

/// A GOAWAY frame that processed no stream, with error `code` and `debug` data.
pub fn goaway(code: u32, debug: &[u8]) -> Vec<u8> {
    let mut payload = vec![0, 0, 0, 0];
    payload.extend(code.to_be_bytes());
    payload.extend(debug);
    frame(GOAWAY, 0, &payload)
}

/// Accepts a connection, reads the client's preface, and answers with an empty SETTINGS frame;
/// the stream, and when the SETTINGS went out.
pub async fn accept_http2(listener: &TcpListener) -> (TcpStream, Instant) {
    let (mut stream, _) = listener.accept().await.expect("a connection");
    let mut preface = [0; 24];
    stream.read_exact(&mut preface).await.expect("a preface");
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    stream
        .write_all(&frame(SETTINGS, 0, &[]))
        .await
        .expect("the server's SETTINGS");
    (stream, Instant::now())
}

/// Reads frames until one of `kind` on stream 0 (answering SETTINGS as it goes).
pub async fn until_frame(stream: &mut TcpStream, kind: u8) -> Frame {
    loop {
        let frame = read_frame(stream).await.expect("a frame");
        if frame.kind == SETTINGS && frame.flags & 1 == 0 {
            let _ = stream.write_all(&self::frame(SETTINGS, 1, &[])).await;
        }
        if frame.kind == kind && frame.stream == 0 && frame.flags & 1 == 0 {
            return frame;
        }
    }
}

pub async fn loopback() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("ipv4:{}", listener.local_addr().unwrap());
    (listener, target)
}
