//! The envelope: what a publisher puts into Redis for every message (docs/protocol.md, part 2).
//!
//! A MessagePack map with named fields, so publishers in any language can write it and new
//! optional fields can be added without breaking old edges (unknown fields are ignored).

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::keys::{Scope, Target};
use crate::names::{self, NameError};

mod msgpack;

/// Envelope format version written by this crate.
pub const VERSION: u32 = 1;

/// What an envelope asks edges to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Deliver a message to the target's sessions.
    Msg,
    /// Make the target's sessions join `room`.
    Join,
    /// Make the target's sessions leave `room`.
    Leave,
    /// Close the target's sessions with `code` and `reason`.
    Disconnect,
    /// Answer a client's `rpc` (v1.2): the target is the client, `ref` and `request` name the
    /// call, `data` is the answer, or `error` the worker's refusal (with `data` optional).
    Reply,
}

/// One published message or control operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version, 1.
    pub v: u32,
    /// Message id, a UUID (v7 when this crate makes it), 16 bytes on the wire.
    pub id: Uuid,
    /// What to do.
    pub kind: Kind,
    /// The target's scope.
    pub scope: Scope,
    /// The target's name: room name, user id, client id, or "" for `all`.
    pub target: String,
    /// Event name (for `msg`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event: String,
    /// The message's JSON text, as bytes.
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<u8>,
    /// Client ids that must not receive it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
    /// Publish time, Unix milliseconds.
    pub ts: u64,
    /// W3C traceparent of the publisher's span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// Room for `join` and `leave`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Close code for `disconnect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// Close reason for `disconnect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `reply`: the `ref` of the client's `rpc` frame.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<u64>,
    /// For `reply`: the id of the inbox message it answers, so a late reply never answers a
    /// later call that reused the `ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Uuid>,
    /// For `reply`: the worker refused the call, saying this (the client gets `RPC_ERROR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why an envelope was refused.
#[derive(Debug, Error)]
pub enum EnvelopeError {
    /// Not a MessagePack map of the expected shape.
    #[error("undecodable envelope: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// Not a MessagePack map of the envelope's shape (what is wrong with it).
    #[error("undecodable envelope: {0}")]
    Malformed(&'static str),
    /// Could not be encoded (should not happen for well-formed values).
    #[error("unencodable envelope: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// A version this crate does not understand.
    #[error("unsupported envelope version {0}")]
    Version(u32),
    /// A name breaks the naming rules.
    #[error(transparent)]
    Name(#[from] NameError),
    /// `data` is not JSON.
    #[error("data is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// `data` is not UTF-8, so it cannot be JSON text.
    #[error("data is not UTF-8")]
    NotUtf8,
    /// A `msg` without event, or a control kind without its fields.
    #[error("envelope is missing {0}")]
    Missing(&'static str),
    /// A field's value is out of its range.
    #[error("{0}")]
    Invalid(&'static str),
}

/// Longest `reason` of a `disconnect`: what fits in a WebSocket close frame.
pub const MAX_REASON_BYTES: usize = 123;

impl Envelope {
    /// A new `msg` envelope for `target`, with a fresh UUID v7 and the current time.
    /// `data` must already be JSON text (see [`Envelope::validate`]).
    pub fn message(target: &Target, event: &str, data: Vec<u8>) -> Envelope {
        Envelope {
            v: VERSION,
            id: Uuid::now_v7(),
            kind: Kind::Msg,
            scope: target.scope(),
            target: target.name().to_owned(),
            event: event.to_owned(),
            data,
            except: Vec::new(),
            ts: now_ms(),
            trace: None,
            room: None,
            code: None,
            reason: None,
            reference: None,
            request: None,
            error: None,
        }
    }

    /// A control envelope making `target`'s sessions join `room`.
    pub fn join(target: &Target, room: &str) -> Envelope {
        Envelope::control(target, Kind::Join, Some(room.to_owned()), None, None)
    }

    /// A control envelope making `target`'s sessions leave `room`.
    pub fn leave(target: &Target, room: &str) -> Envelope {
        Envelope::control(target, Kind::Leave, Some(room.to_owned()), None, None)
    }

    /// A control envelope closing `target`'s sessions with `code` (4010-4999; 4010 is the
    /// protocol's "disconnected by the application") and `reason`.
    pub fn disconnect(target: &Target, code: u16, reason: &str) -> Envelope {
        Envelope::control(
            target,
            Kind::Disconnect,
            None,
            Some(code),
            Some(reason.to_owned()),
        )
    }

    /// A `reply` to the call `request` (an inbox message's id), whose `rpc` frame had `ref`
    /// `reference`: `data` (JSON text) answers it, or `error` refuses it, with `data` optional
    /// (empty: none). It goes to the calling client's target, or to its user's for a call the
    /// client named (see [`RpcCall::reply_key`](crate::rpc::RpcCall::reply_key)).
    pub fn reply(
        to: &Target,
        reference: u64,
        request: Uuid,
        data: Vec<u8>,
        error: Option<String>,
    ) -> Envelope {
        Envelope {
            kind: Kind::Reply,
            reference: Some(reference),
            request: Some(request),
            error,
            ..Envelope::message(to, "", data)
        }
    }

    fn control(
        target: &Target,
        kind: Kind,
        room: Option<String>,
        code: Option<u16>,
        reason: Option<String>,
    ) -> Envelope {
        Envelope {
            kind,
            event: String::new(),
            room,
            code,
            reason,
            ..Envelope::message(target, "", Vec::new())
        }
    }

    /// The target this envelope is addressed to.
    pub fn target(&self) -> Result<Target, NameError> {
        Target::new(self.scope, &self.target)
    }

    /// Checks what a receiving edge relies on: version, names, and that `data` is JSON.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        if self.v != VERSION {
            return Err(EnvelopeError::Version(self.v));
        }
        self.target()?;
        match self.kind {
            Kind::Msg => {
                names::validate_event(&self.event)?;
                let text = std::str::from_utf8(&self.data).map_err(|_| EnvelopeError::NotUtf8)?;
                serde_json::from_str::<serde::de::IgnoredAny>(text)?;
            }
            Kind::Join | Kind::Leave => {
                names::validate_room(self.room.as_deref().ok_or(EnvelopeError::Missing("room"))?)?;
            }
            Kind::Disconnect => {
                // 4000-4009 mean something of their own in the protocol (4001: do not retry
                // with this token, ...); applications get 4010 and up.
                if self.code.is_some_and(|c| !(4010..=4999).contains(&c)) {
                    return Err(EnvelopeError::Invalid(
                        "a disconnect code must be 4010-4999",
                    ));
                }
                if self
                    .reason
                    .as_ref()
                    .is_some_and(|r| r.len() > MAX_REASON_BYTES)
                {
                    return Err(EnvelopeError::Invalid(
                        "a disconnect reason must fit a close frame (123 bytes)",
                    ));
                }
            }
            Kind::Reply => self.validate_reply()?,
        }
        Ok(())
    }

    /// A reply goes to one client, names its call, and carries JSON: its answer, or with an
    /// error optionally some.
    fn validate_reply(&self) -> Result<(), EnvelopeError> {
        if !matches!(self.scope, Scope::Client | Scope::User) {
            return Err(EnvelopeError::Invalid("a reply goes to a client or a user"));
        }
        let reference = self.reference.ok_or(EnvelopeError::Missing("ref"))?;
        if reference > crate::frame::client::MAX_REF {
            return Err(EnvelopeError::Invalid(
                "a reply's ref must be at most 2^53-1",
            ));
        }
        self.request.ok_or(EnvelopeError::Missing("request"))?;
        if self
            .error
            .as_ref()
            .is_some_and(|e| e.len() > crate::rpc::MAX_ERROR_BYTES)
        {
            return Err(EnvelopeError::Invalid(
                "a reply's error message must be at most 1024 bytes",
            ));
        }
        if self.error.is_none() || !self.data.is_empty() {
            let text = std::str::from_utf8(&self.data).map_err(|_| EnvelopeError::NotUtf8)?;
            serde_json::from_str::<serde::de::IgnoredAny>(text)?;
        }
        Ok(())
    }

    /// Encodes as a MessagePack map.
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        Ok(rmp_serde::to_vec_named(self)?)
    }

    /// Decodes and validates. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let env = msgpack::read(bytes).map_err(EnvelopeError::Malformed)?;
        env.validate()?;
        Ok(env)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_a_named_map() {
        let mut env =
            Envelope::message(&Target::Room("chat:1".into()), "say", b"{\"a\":1}".to_vec());
        env.except.push("c1".into());
        let bytes = env.encode().unwrap();
        // A map keyed by name (fixmap marker), so other languages can write it.
        assert_eq!(bytes[0] & 0xf0, 0x80);
        assert_eq!(Envelope::decode(&bytes).unwrap(), env);
    }

    #[test]
    fn refuses_bad_envelopes() {
        let mut env = Envelope::message(&Target::Room("r".into()), "e", b"{".to_vec());
        assert!(Envelope::decode(&env.encode().unwrap()).is_err());
        env.data = b"1".to_vec();
        env.v = 2;
        assert!(Envelope::decode(&env.encode().unwrap()).is_err());
        env.v = 1;
        env.target = "bad room".into();
        assert!(Envelope::decode(&env.encode().unwrap()).is_err());
    }

    #[test]
    fn control_envelopes_carry_their_fields_and_are_checked() {
        let user = Target::User("7".into());
        let join = Envelope::join(&user, "lobby");
        assert_eq!(Envelope::decode(&join.encode().unwrap()).unwrap(), join);
        assert!(Envelope::decode(&Envelope::join(&user, "bad room").encode().unwrap()).is_err());
        let bye = Envelope::disconnect(&user, 4010, "banned");
        assert_eq!(Envelope::decode(&bye.encode().unwrap()).unwrap(), bye);
        for bad in [
            Envelope::disconnect(&user, 1000, "x"),
            Envelope::disconnect(&user, 4001, "x"),
            Envelope::disconnect(&user, 4010, &"x".repeat(124)),
        ] {
            assert!(Envelope::decode(&bad.encode().unwrap()).is_err());
        }
    }

    #[test]
    fn replies_name_their_call_and_carry_json() {
        let request = Uuid::now_v7();
        let client = Target::Client("c1".into());
        let answer = Envelope::reply(&client, 7, request, b"{\"t\":1}".to_vec(), None);
        assert_eq!(Envelope::decode(&answer.encode().unwrap()).unwrap(), answer);
        let to_user = Envelope::reply(&Target::User("ann".into()), 7, request, b"1".to_vec(), None);
        assert_eq!(
            Envelope::decode(&to_user.encode().unwrap()).unwrap(),
            to_user
        );
        let refusal = Envelope::reply(&client, 7, request, Vec::new(), Some("no".into()));
        assert_eq!(
            Envelope::decode(&refusal.encode().unwrap()).unwrap(),
            refusal
        );
        let mut to_a_room = answer.clone();
        to_a_room.scope = Scope::Room;
        let mut no_ref = answer.clone();
        no_ref.reference = None;
        let mut no_request = answer.clone();
        no_request.request = None;
        let mut no_data = answer.clone();
        no_data.data.clear();
        let mut long_error = refusal.clone();
        long_error.error = Some("x".repeat(1025));
        let mut bad_error_data = refusal.clone();
        bad_error_data.data = b"{".to_vec();
        for bad in [
            to_a_room,
            no_ref,
            no_request,
            no_data,
            long_error,
            bad_error_data,
        ] {
            assert!(Envelope::decode(&bad.encode().unwrap()).is_err(), "{bad:?}");
        }
    }
}
