//! Upstream messages: what an edge appends to the inbox stream `P:{inbox}` for every client
//! `send` (docs/protocol.md, part 2), and what workers read back.
//!
//! A MessagePack map with named fields, like the envelope. `data` and `meta` are JSON text
//! carried as bytes, so a worker gets the client's JSON exactly as it was sent.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::{EnvelopeError, VERSION};
use crate::names;
use crate::rpc::RpcCall;

/// The field of an inbox entry that holds the encoded message.
pub const FIELD: &str = "e";

/// One client `send`, as workers receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upstream {
    /// Format version, 1.
    pub v: u32,
    /// Message id, a UUID v7 chosen by the edge.
    pub id: Uuid,
    /// The sending connection's client id: answer it with a message to this client.
    pub client: String,
    /// The sender's user id (its token's `sub`).
    pub user: String,
    /// The edge that accepted the message.
    pub node: String,
    /// Event name.
    pub event: String,
    /// The client's JSON, as text bytes.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// The token's `meta` claim as JSON text, when it has one.
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    pub meta: Option<Vec<u8>>,
    /// When the edge accepted it, Unix milliseconds.
    pub ts: u64,
    /// W3C traceparent of the edge's span, when tracing is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// Set on an `rpc` (v1.2): the client waits for a reply (the emitter's `reply` or
    /// `reply_error`) to this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc: Option<RpcCall>,
}

impl Upstream {
    /// Whether the client waits for a reply to this message (an `rpc`).
    pub fn expects_reply(&self) -> bool {
        self.rpc.is_some()
    }

    /// Whether this is an `rpc` whose client has stopped waiting: it had its `TIMEOUT`, and a
    /// reply would be dropped.
    pub fn rpc_expired(&self) -> bool {
        self.rpc
            .as_ref()
            .is_some_and(|call| call.expired_at(crate::envelope::now_ms()))
    }

    /// Checks what a worker relies on: version, event name, and that `data` and `meta` are JSON.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        if self.v != VERSION {
            return Err(EnvelopeError::Version(self.v));
        }
        // Lifecycle events are the edge's own: their `$` names no client can send.
        if !crate::lifecycle::is_lifecycle(&self.event) {
            names::validate_event(&self.event)?;
        }
        check_json(&self.data)?;
        if self
            .rpc
            .as_ref()
            .is_some_and(|call| call.reference > crate::frame::client::MAX_REF)
        {
            return Err(EnvelopeError::Invalid("an rpc ref must be at most 2^53-1"));
        }
        if let Some(meta) = &self.meta {
            check_json(meta)?;
        }
        Ok(())
    }

    /// Encodes as a MessagePack map.
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        Ok(rmp_serde::to_vec_named(self)?)
    }

    /// Decodes and validates. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Upstream, EnvelopeError> {
        let upstream: Upstream = rmp_serde::from_slice(bytes)?;
        upstream.validate()?;
        Ok(upstream)
    }
}

fn check_json(bytes: &[u8]) -> Result<(), EnvelopeError> {
    let text = std::str::from_utf8(bytes).map_err(|_| EnvelopeError::NotUtf8)?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Upstream {
        Upstream {
            v: VERSION,
            id: Uuid::now_v7(),
            client: "c1".into(),
            user: "7".into(),
            node: "edge-1".into(),
            event: "chat.send".into(),
            data: br#"{"text":"hi"}"#.to_vec(),
            meta: Some(br#"{"plan":"pro"}"#.to_vec()),
            ts: 5,
            trace: None,
            rpc: None,
        }
    }

    #[test]
    fn round_trips_as_a_named_map() {
        let upstream = sample();
        let bytes = upstream.encode().unwrap();
        assert_eq!(bytes[0] & 0xf0, 0x80, "a map keyed by name");
        assert_eq!(Upstream::decode(&bytes).unwrap(), upstream);
        let call = Upstream {
            rpc: Some(RpcCall {
                reference: 9,
                deadline: 1_000,
                reply_key: Some("fc:{inbox}:ids:3:ann:r-1:reply".into()),
            }),
            ..sample()
        };
        let bytes = call.encode().unwrap();
        assert_eq!(Upstream::decode(&bytes).unwrap(), call);
        // Named fields in a map of its own, for workers in other languages.
        #[derive(Deserialize)]
        struct Mark {
            rpc: std::collections::BTreeMap<String, serde_json::Value>,
        }
        let mark: Mark = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(
            mark.rpc,
            [
                ("deadline".to_owned(), 1000.into()),
                ("ref".to_owned(), 9.into()),
                (
                    "reply_key".to_owned(),
                    "fc:{inbox}:ids:3:ann:r-1:reply".into()
                ),
            ]
            .into()
        );
    }

    #[test]
    fn refuses_what_a_worker_could_not_use() {
        let mut bad = sample();
        bad.data = b"{".to_vec();
        assert!(Upstream::decode(&bad.encode().unwrap()).is_err());
        let mut bad = sample();
        bad.meta = Some(b"nope".to_vec());
        assert!(Upstream::decode(&bad.encode().unwrap()).is_err());
        assert!(Upstream::decode(b"\x93\x01\x02").is_err());
    }
}
