//! One message on its way to local clients: decoded once, encoded at most once per encoding, and
//! the same shared buffer handed to every recipient.

use bytes::Bytes;
use ferrocast_protocol::frame::server::{MsgFrame, ServerFrame};
use ferrocast_protocol::{Encoding, Envelope, Kind, Offset, Scope};
use tungstenite::Message;
use tungstenite::protocol::frame::Utf8Bytes;

/// A message for delivery, with its frames built on first use.
pub struct Delivery {
    /// The decoded envelope.
    pub envelope: Envelope,
    offset: String,
    json: Option<Option<Message>>,
    msgpack: Option<Option<Message>>,
}

impl Delivery {
    /// A decoded `msg` envelope at `offset`.
    pub fn new(envelope: Envelope, offset: Offset) -> Delivery {
        Delivery {
            envelope,
            offset: offset.to_string(),
            json: None,
            msgpack: None,
        }
    }

    /// Decodes a history entry for a replay. `None` for one that cannot be decoded (logged: one
    /// bad envelope never stops the others) and for control messages, which act on the
    /// sessions connected when they were sent and are never replayed (a replayed disconnect
    /// would close every resuming session again).
    pub fn decode(offset: Offset, bytes: &[u8]) -> Option<Delivery> {
        decode(offset, bytes)
            .filter(|envelope| envelope.kind == Kind::Msg)
            .map(|envelope| Delivery::new(envelope, offset))
    }

    /// Whether the client `client` is excluded by the publisher.
    pub fn excludes(&self, client: &str) -> bool {
        self.envelope.except.iter().any(|c| c == client)
    }

    /// The frame for `encoding`, built on first call. `None` if it cannot be built (logged once).
    pub fn frame(&mut self, encoding: Encoding) -> Option<Message> {
        let slot = match encoding {
            Encoding::Json => &mut self.json,
            Encoding::MsgPack => &mut self.msgpack,
        };
        if slot.is_none() {
            *slot = Some(build(&self.envelope, &self.offset, encoding));
        }
        slot.as_ref().and_then(Clone::clone)
    }
}

fn build(envelope: &Envelope, offset: &str, encoding: Encoding) -> Option<Message> {
    let frame = MsgFrame {
        scope: envelope.scope,
        room: (envelope.scope == Scope::Room).then_some(envelope.target.as_str()),
        event: &envelope.event,
        data: &envelope.data,
        offset: Some(offset),
        id: envelope.id,
        ts: envelope.ts,
    };
    match as_message(frame.encode(encoding), encoding) {
        Ok(message) => Some(message),
        Err(error) => {
            // Entrances refuse such data; this is a publisher that did not check (another
            // language's worker, say). Counted, so it is seen.
            tracing::warn!(id = %envelope.id, ?encoding, %error, "cannot encode message; skipped");
            crate::ops::metrics::metrics().dropped("unencodable");
            None
        }
    }
}

/// Decodes the envelope stored at `offset`: the one decoding of live and replayed messages alike.
/// One that cannot be decoded is logged, counted and skipped: one bad envelope never stops the
/// others.
pub fn decode(offset: Offset, bytes: &[u8]) -> Option<Envelope> {
    match Envelope::decode(bytes) {
        Ok(envelope) => Some(envelope),
        Err(error) => {
            tracing::warn!(%offset, %error, "undecodable envelope skipped");
            crate::ops::metrics::metrics().dropped("undecodable");
            None
        }
    }
}

/// A frame of the edge's own (everything but `msg`) as a WebSocket message in `encoding`.
pub fn message(frame: &ServerFrame<'_>, encoding: Encoding) -> Option<Message> {
    match as_message(frame.encode(encoding), encoding) {
        Ok(message) => Some(message),
        Err(error) => {
            tracing::error!(%error, "cannot encode a frame of the edge's own");
            None
        }
    }
}

/// A frame just encoded, as the WebSocket message of its encoding: text for JSON, binary for
/// MessagePack; or why it could not be. Every kind of frame goes through here.
pub(crate) fn as_message(
    encoded: Result<Vec<u8>, impl std::fmt::Display>,
    encoding: Encoding,
) -> Result<Message, String> {
    let bytes = encoded.map_err(|e| e.to_string())?;
    Ok(match encoding {
        Encoding::Json => {
            let text = String::from_utf8(bytes).map_err(|e| e.to_string())?;
            Message::Text(Utf8Bytes::from(text))
        }
        Encoding::MsgPack => Message::Binary(Bytes::from(bytes)),
    })
}
