//! The frames a server sends, followed as they pass on their way to HTTP/2: the client learns
//! when the server's preface has come and when its first GOAWAY has, which the HTTP/2 library
//! does not say.
//!
//! - **The server's preface.** A client finishes its handshake as soon as it has written its own
//!   preface, before the server has read a byte of it. A connection counts as established only
//!   once the server's preface (a SETTINGS frame, RFC 9113 3.4) has arrived, as gRPC's transports
//!   do; until then, a server that stops (or a listener dropped with the connection still in its
//!   backlog) would fail every call sent on it, with no GOAWAY to say they were not processed.
//! - **The server's GOAWAY, when it arrives.** The HTTP/2 library acts on a GOAWAY (no new
//!   streams) but says nothing of it until the connection has ended, which is when the last
//!   stream open on it has: a long call or a health check's Watch stream would keep the
//!   subchannel READY, and the server's graceful shutdown waiting, for as long as it runs.
//!
//! Only the nine-byte frame headers are read; payloads are skipped, not copied, except a
//! GOAWAY's. Once both are known, nothing more is looked at.

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};

/// The length of an HTTP/2 frame header.
const FRAME_HEADER: usize = 9;
/// The type of a SETTINGS frame.
const SETTINGS: u8 = 0x4;
/// The type of a GOAWAY frame.
const GOAWAY: u8 = 0x7;
/// The most of a GOAWAY's debug data kept: enough for any reason worth quoting.
const DEBUG_DATA_KEPT: usize = 256;

/// A GOAWAY frame from the server (RFC 9113, 6.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GoAway {
    /// The last stream the server may have processed.
    pub(crate) last_stream_id: u32,
    /// Its error code.
    pub(crate) reason: h2::Reason,
    /// Its debug data (at most [`DEBUG_DATA_KEPT`] bytes of it).
    pub(crate) debug_data: Bytes,
}

impl GoAway {
    /// Whether the server said the client pings too often (gRFC A8: `ENHANCE_YOUR_CALM` with
    /// debug data `too_many_pings`).
    pub(crate) fn too_many_pings(&self) -> bool {
        self.reason == h2::Reason::ENHANCE_YOUR_CALM && self.debug_data == "too_many_pings"
    }
}

impl fmt::Display for GoAway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server sent GOAWAY ({:?}, last stream {})",
            self.reason, self.last_stream_id
        )?;
        if !self.debug_data.is_empty() {
            write!(f, " {:?}", String::from_utf8_lossy(&self.debug_data))?;
        }
        Ok(())
    }
}

/// Where the server's first GOAWAY is kept once read: every handle to the connection can ask
/// whether it has come, and the connection's end waits for it.
#[derive(Debug, Default)]
pub(crate) struct GoAwaySignal {
    received: OnceLock<GoAway>,
    arrived: Notify,
}

impl GoAwaySignal {
    /// The server's first GOAWAY, if it has come.
    pub(crate) fn get(&self) -> Option<&GoAway> {
        self.received.get()
    }

    /// Waits for the server's first GOAWAY.
    pub(crate) async fn arrived(&self) -> GoAway {
        loop {
            if let Some(goaway) = self.received.get() {
                return goaway.clone();
            }
            // One waiter (the connection's end): a notification sent before it waits is kept.
            self.arrived.notified().await;
        }
    }

    fn set(&self, goaway: GoAway) {
        if self.received.set(goaway).is_ok() {
            self.arrived.notify_one();
        }
    }
}

/// Follows the frames the server sends: their headers are read, their payloads skipped, except
/// a GOAWAY's.
pub(crate) struct Frames {
    header: [u8; FRAME_HEADER],
    /// How many header bytes of the current frame have arrived.
    filled: usize,
    /// How many payload bytes of the current frame are still to come, once its header is known.
    remaining: usize,
    /// The payload of the GOAWAY being read.
    goaway: Option<Vec<u8>>,
    /// Hears the verdict on the server's first frame, until it is known.
    preface: Option<oneshot::Sender<Result<(), String>>>,
    signal: Arc<GoAwaySignal>,
}

impl Frames {
    /// Follows a new connection's frames. The receiver hears once the server's first frame has
    /// been read: `Ok` for a SETTINGS frame, an error for anything else; it hears nothing (the
    /// sender is dropped) if the stream ends first. The signal holds the server's first GOAWAY
    /// once it has been read.
    pub(crate) fn new() -> (
        Self,
        oneshot::Receiver<Result<(), String>>,
        Arc<GoAwaySignal>,
    ) {
        let (done, receipt) = oneshot::channel();
        let signal = Arc::new(GoAwaySignal::default());
        let frames = Frames {
            header: [0; FRAME_HEADER],
            filled: 0,
            remaining: 0,
            goaway: None,
            preface: Some(done),
            signal: Arc::clone(&signal),
        };
        (frames, receipt, signal)
    }

    /// Looks at `bytes`, just read. Returns `false` once there is nothing left to look for.
    pub(crate) fn observe(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.filled < FRAME_HEADER {
                let take = bytes.len().min(FRAME_HEADER - self.filled);
                self.header[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
                self.filled += take;
                bytes = &bytes[take..];
                if self.filled < FRAME_HEADER {
                    return true;
                }
                if !self.header_complete() {
                    return false;
                }
            } else {
                let take = bytes.len().min(self.remaining);
                if let Some(payload) = self.goaway.as_mut() {
                    let room = (8 + DEBUG_DATA_KEPT).saturating_sub(payload.len());
                    payload.extend_from_slice(&bytes[..take.min(room)]);
                }
                self.remaining -= take;
                bytes = &bytes[take..];
            }
            if self.filled == FRAME_HEADER && self.remaining == 0 && !self.frame_complete() {
                return false;
            }
        }
        true
    }

    /// A frame's header has been read. Returns `false` if the stream is not worth following.
    fn header_complete(&mut self) -> bool {
        let kind = self.header[3];
        if kind != SETTINGS {
            if let Some(preface) = self.preface.take() {
                let _ = preface.send(Err(format!(
                    "the server's first HTTP/2 frame was of type {kind:#x}, not SETTINGS"
                )));
                return false;
            }
        }
        self.remaining = usize::from(self.header[0]) << 16
            | usize::from(self.header[1]) << 8
            | usize::from(self.header[2]);
        if kind == GOAWAY {
            self.goaway = Some(Vec::with_capacity(self.remaining.min(8 + DEBUG_DATA_KEPT)));
        }
        true
    }

    /// A whole frame has been read. Returns `false` once there is nothing left to look for.
    fn frame_complete(&mut self) -> bool {
        self.filled = 0;
        if let Some(preface) = self.preface.take() {
            let _ = preface.send(Ok(()));
        }
        if let Some(payload) = self.goaway.take() {
            // A GOAWAY too short to parse is HTTP/2's to refuse; it ends the connection.
            if let (Some(last), Some(code)) = (payload.get(0..4), payload.get(4..8)) {
                let last = u32::from_be_bytes([last[0], last[1], last[2], last[3]]);
                self.signal.set(GoAway {
                    last_stream_id: last & 0x7fff_ffff,
                    reason: u32::from_be_bytes([code[0], code[1], code[2], code[3]]).into(),
                    debug_data: Bytes::copy_from_slice(&payload[8..]),
                });
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Receipt = oneshot::Receiver<Result<(), String>>;

    fn new_frames() -> (Frames, Receipt, Arc<GoAwaySignal>) {
        Frames::new()
    }

    /// The verdict on the preface, if there is one yet.
    fn verdict(receipt: &mut Receipt) -> Option<Result<(), String>> {
        receipt.try_recv().ok()
    }

    /// A SETTINGS frame with `length` payload bytes, then a PING frame.
    fn settings_then_ping(length: u8) -> Vec<u8> {
        let mut bytes = vec![0, 0, length, SETTINGS, 0, 0, 0, 0, 0];
        bytes.extend(std::iter::repeat_n(7, usize::from(length)));
        bytes.extend([0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        bytes
    }

    /// A GOAWAY frame: last stream `last`, error `code`, then `debug` data.
    fn goaway(last: u32, code: u32, debug: &[u8]) -> Vec<u8> {
        let length = u8::try_from(8 + debug.len()).expect("a short frame");
        let mut bytes = vec![0, 0, length, GOAWAY, 0, 0, 0, 0, 0];
        bytes.extend(last.to_be_bytes());
        bytes.extend(code.to_be_bytes());
        bytes.extend(debug);
        bytes
    }

    #[test]
    fn the_preface_counts_once_its_settings_frame_is_whole() {
        let bytes = settings_then_ping(12);
        // One byte at a time: nothing until the twenty-first (9 + 12) byte.
        let (mut frames, mut receipt, _) = new_frames();
        for (i, byte) in bytes.iter().enumerate().take(21) {
            assert!(frames.observe(std::slice::from_ref(byte)));
            assert_eq!(verdict(&mut receipt).is_some(), i == 20, "after byte {i}");
        }
        // All at once, with the next frame in the same read.
        let (mut frames, mut receipt, _) = new_frames();
        assert!(frames.observe(&bytes));
        assert_eq!(verdict(&mut receipt), Some(Ok(())));
        // Split inside the header.
        let (mut frames, mut receipt, _) = new_frames();
        assert!(frames.observe(&bytes[..4]));
        assert!(frames.observe(&bytes[4..20]));
        assert_eq!(verdict(&mut receipt), None);
        assert!(frames.observe(&bytes[20..]));
        assert_eq!(verdict(&mut receipt), Some(Ok(())));
    }

    #[test]
    fn an_empty_settings_frame_is_a_preface() {
        let (mut frames, mut receipt, _) = new_frames();
        assert!(frames.observe(&settings_then_ping(0)[..9]));
        assert_eq!(verdict(&mut receipt), Some(Ok(())));
    }

    #[test]
    fn anything_but_settings_first_is_refused() {
        let (mut frames, mut receipt, _) = new_frames();
        // An HTTP/1.1 server's answer to the client preface.
        assert!(!frames.observe(b"HTTP/1.1 400 Bad Request\r\n"));
        let verdict = verdict(&mut receipt);
        assert!(matches!(verdict, Some(Err(message)) if message.contains("not SETTINGS")));
    }

    #[test]
    fn the_first_goaway_is_found_among_the_frames_however_they_are_split() {
        let mut bytes = settings_then_ping(6);
        // A DATA frame of 300 bytes whose payload looks like a GOAWAY header: skipped whole.
        bytes.extend([0, 0x01, 0x2c, 0x0, 0x1, 0, 0, 0, 1]);
        bytes.extend(goaway(5, 0, b"").iter().cycle().take(300));
        bytes.extend(goaway(7, 0xb, b"too_many_pings"));
        let first_ends = bytes.len();
        bytes.extend(goaway(3, 0, b"a second one"));
        let expected = GoAway {
            last_stream_id: 7,
            reason: h2::Reason::ENHANCE_YOUR_CALM,
            debug_data: Bytes::from_static(b"too_many_pings"),
        };
        for chunk in [1, 2, 7, 9, 10, 64, bytes.len()] {
            let (mut frames, mut receipt, signal) = new_frames();
            // Followed up to the piece that completes the first GOAWAY, and no further.
            let stopped = bytes
                .chunks(chunk)
                .position(|piece| !frames.observe(piece))
                .expect("the GOAWAY ends the following");
            assert_eq!(stopped, (first_ends - 1) / chunk, "in pieces of {chunk}");
            assert_eq!(verdict(&mut receipt), Some(Ok(())));
            assert_eq!(signal.get(), Some(&expected), "in pieces of {chunk}");
            assert!(expected.too_many_pings());
        }
    }

    #[test]
    fn a_goaway_keeps_a_bounded_part_of_its_debug_data() {
        let debug = [b'x'; 200];
        let mut bytes = settings_then_ping(0);
        // Two GOAWAY frames' worth of debug data in one: 400 bytes (a 3-byte length).
        let mut frame = goaway(0, 0, &debug);
        let length = 8 + 2 * debug.len();
        frame[..3].copy_from_slice(&(length as u32).to_be_bytes()[1..]);
        frame.extend(debug);
        bytes.extend(frame);
        let (mut frames, _, signal) = new_frames();
        assert!(!frames.observe(&bytes));
        let received = signal.get().expect("the GOAWAY");
        assert_eq!(received.debug_data.len(), DEBUG_DATA_KEPT);
        assert_eq!(received.reason, h2::Reason::NO_ERROR);
        assert!(!received.too_many_pings());
        assert!(received
            .to_string()
            .contains("GOAWAY (NO_ERROR, last stream 0)"));
    }
}
