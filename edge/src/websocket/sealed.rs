//! A message as the whole encrypted frame one connection gets (PROTOCOL.md part E): built per
//! recipient, since each has its own key and counter, and never compressed (compressing before
//! encrypting would leak how compressible the content is).

use bytes::Bytes;
use tungstenite::Message;

use super::frame::{self, Opcode};
use crate::encryption::Channel;

/// The frame carrying `message` (text: JSON; binary: MessagePack) sealed as `channel`'s next
/// one, header included. `None` for any other kind of message, or one too large to encrypt
/// (then the counter is not used).
pub fn frame(channel: &mut Channel, message: &Message) -> Option<Bytes> {
    let (opcode, plain): (Opcode, &[u8]) = match message {
        Message::Text(text) => (Opcode::Text, text.as_bytes()),
        Message::Binary(bytes) => (Opcode::Binary, bytes),
        _ => return None,
    };
    let text = opcode == Opcode::Text;
    let len = channel.sealed_len(text, plain.len());
    let mut header = [0u8; frame::MAX_HEADER];
    let header_len = frame::write_header(&mut header, opcode, false, len);
    let mut out = Vec::with_capacity(header_len + len);
    out.extend_from_slice(&header[..header_len]);
    if !channel.seal(text, plain, &mut out) {
        tracing::warn!(
            len = plain.len(),
            "a frame too large to encrypt was not sent"
        );
        return None;
    }
    debug_assert_eq!(out.len(), header_len + len);
    Some(Bytes::from(out))
}
