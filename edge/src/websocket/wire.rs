//! A publication's frames, built once for all its recipients: header and payload in one shared
//! buffer per form (as it is, compressed, or compressed in stored blocks for clients that asked
//! for a small window), so each recipient costs a reference and a write, never a copy.

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use tungstenite::Message;

use super::deflate::{self, Deflate};
use super::frame::{self, Opcode};

/// The frames of one shared message, each made by the first recipient that needs it.
#[derive(Debug, Default)]
pub struct Wire {
    plain: OnceLock<Bytes>,
    compressed: OnceLock<Bytes>,
    stored: OnceLock<Bytes>,
}

impl Wire {
    /// The whole frame carrying `message` to a connection that negotiated `deflate` and
    /// compresses messages of `min_compress` bytes or more. `None` for anything but a text or
    /// binary message.
    pub fn frame(
        &self,
        message: &Message,
        deflate: Option<Deflate>,
        min_compress: usize,
    ) -> Option<Bytes> {
        let (opcode, payload): (Opcode, &[u8]) = match message {
            Message::Text(text) => (Opcode::Text, text.as_bytes()),
            Message::Binary(bytes) => (Opcode::Binary, bytes),
            _ => return None,
        };
        let frame = match deflate {
            Some(deflate) if payload.len() >= min_compress => {
                let (cell, small) = if deflate.small_window {
                    (&self.stored, true)
                } else {
                    (&self.compressed, false)
                };
                cell.get_or_init(|| build(opcode, true, &deflate::compress(payload, small)))
            }
            _ => self.plain.get_or_init(|| build(opcode, false, payload)),
        };
        Some(frame.clone())
    }
}

/// An unfragmented server frame: header and payload in one buffer.
pub fn build(opcode: Opcode, compressed: bool, payload: &[u8]) -> Bytes {
    let mut header = [0u8; frame::MAX_HEADER];
    let len = frame::write_header(&mut header, opcode, compressed, payload.len());
    let mut out = BytesMut::with_capacity(len + payload.len());
    out.extend_from_slice(&header[..len]);
    out.extend_from_slice(payload);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_is_built_once_and_shared() {
        let wire = Wire::default();
        let text = Message::Text("x".repeat(600).into());
        let plain = wire.frame(&text, None, 512).unwrap();
        assert_eq!(&plain[..4], &[0x81, 126, 0x02, 0x58]);
        assert_eq!(plain.len(), 4 + 600);
        let again = wire.frame(&text, None, 512).unwrap();
        assert_eq!(
            plain.as_ptr(),
            again.as_ptr(),
            "the same buffer, not a copy"
        );
        let fast = Deflate {
            small_window: false,
        };
        let compressed = wire.frame(&text, Some(fast), 512).unwrap();
        assert_eq!(compressed[0], 0xC1, "FIN, RSV1 (compressed), text");
        assert!(compressed.len() < 100);
        // Below the threshold a deflate client gets the plain frame.
        assert_eq!(
            wire.frame(&text, Some(fast), 1000).unwrap().as_ptr(),
            plain.as_ptr()
        );
        assert_eq!(wire.frame(&Message::Ping(Bytes::new()), None, 0), None);
    }
}
