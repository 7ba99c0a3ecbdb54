//! Frames an edge sends. Control frames go through serde; `msg` frames, the hot path, are built
//! once per message and encoding and shared by every recipient, with `data` spliced in as the
//! publisher wrote it (JSON) or transcoded once (MessagePack).

use serde::Serialize;
use thiserror::Error;
use uuid::Uuid;

use super::Encoding;
pub use super::enc::EncryptHello;
use crate::close::ErrorCode;
use crate::keys::Scope;

/// Which scopes were recovered without loss, in `welcome` and `resumed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Recovered {
    /// The user scope.
    pub user: bool,
    /// The `all` scope.
    pub all: bool,
}

/// The newest offsets of the user and `all` histories when `welcome` was sent (v1.2): `None` for
/// an empty history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Offsets {
    /// The user scope's.
    pub user: Option<String>,
    /// The `all` scope's.
    pub all: Option<String>,
}

/// A control frame from edge to client (everything but `msg`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    /// Authentication succeeded.
    Welcome {
        /// This connection's client id.
        client: &'a str,
        /// The token's `sub`.
        user: &'a str,
        /// The edge's node id.
        node: &'a str,
        /// Server ping interval, milliseconds.
        heartbeat: u64,
        /// Recovery result for the scopes asked for.
        recovered: Recovered,
        /// Where the user and `all` histories stand, so a client that drops before its first
        /// message in those scopes can still resume them.
        offsets: Offsets,
        /// The edge's half of the key agreement, when the `auth` frame asked for encryption
        /// (v1.2, part E).
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypt: Option<EncryptHello>,
    },
    /// Answer to `encrypt` (v1.2, part E): the edge's half of the key agreement.
    Encrypt {
        /// The request's `ref`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
        /// The edge's public key and salt.
        encrypt: EncryptHello,
    },
    /// Answer to `resume`.
    Resumed {
        /// The request's `ref`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
        /// Recovery result.
        recovered: Recovered,
    },
    /// The connection is in a room.
    Joined {
        /// The room.
        room: &'a str,
        /// The request's `ref`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
        /// Newest offset in the room's history, if any.
        offset: Option<String>,
        /// Whether everything after `since` was recovered.
        recovered: bool,
        /// `"server"` when a worker moved the client.
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<&'a str>,
    },
    /// The connection left a room.
    Left {
        /// The room.
        room: &'a str,
        /// The request's `ref`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
        /// `"server"` when a worker moved the client.
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<&'a str>,
    },
    /// A `publish` or `send` was accepted.
    Ack {
        /// The request's `ref`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
        /// Offset of a published message.
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<String>,
        /// Inbox stream id of a sent message.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Answer to `ping`.
    Pong {
        /// The request's `ref`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
    },
    /// Messages of a scope published before `offset` may never reach this client (v1.1): Redis
    /// lost them, or history needed to catch up was gone. Delivery goes on after `offset` (after
    /// whatever comes next, when it is null: the history was empty).
    Gap {
        /// The scope.
        scope: Scope,
        /// The room, for room scope.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        /// The newest offset of the history when the gap was found, if it had any.
        offset: Option<String>,
    },
    /// Answer to `presence` (v1.1): the room's present clients.
    Presence {
        /// The room.
        room: &'a str,
        /// The request's `ref`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
        /// Who is there.
        clients: Vec<PresenceClient>,
    },
    /// Answer to `presence_stats` (v1.1).
    #[serde(rename = "presence_stats")]
    PresenceStats {
        /// The room.
        room: &'a str,
        /// The request's `ref`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
        /// Clients present.
        clients: u64,
        /// Distinct users among them.
        users: u64,
    },
    /// A client joined a room whose presence events are on (v1.1).
    #[serde(rename = "presence_join")]
    PresenceJoin {
        /// The room.
        room: &'a str,
        /// The client that joined.
        client: &'a str,
        /// Its user.
        user: &'a str,
        /// Its token's `info` claim.
        #[serde(skip_serializing_if = "Option::is_none")]
        info: Option<&'a serde_json::Value>,
    },
    /// A client left a room whose presence events are on (v1.1).
    #[serde(rename = "presence_leave")]
    PresenceLeave {
        /// The room.
        room: &'a str,
        /// The client that left.
        client: &'a str,
        /// Its user.
        user: &'a str,
    },
    /// A token refresh was accepted.
    Refreshed {
        /// The new expiry, Unix seconds.
        exp: u64,
    },
    /// A frame was refused.
    Error {
        /// The refused frame's `ref`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable detail.
        message: &'a str,
        /// For `RATE_LIMITED` and `UNAVAILABLE` (v1.1): milliseconds to wait before the same
        /// frame can succeed.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
}

/// One present client, in a `presence` answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresenceClient {
    /// Its client id.
    pub client: String,
    /// Its user.
    pub user: String,
    /// Its token's `info` claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

/// A frame could not be encoded.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// JSON encoding failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// MessagePack encoding failed (for `msg`, typically `data` that is not JSON).
    #[error("msgpack: {0}")]
    MsgPack(#[from] rmp_serde::encode::Error),
}

impl ServerFrame<'_> {
    /// Encodes the frame.
    pub fn encode(&self, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
        Ok(match encoding {
            Encoding::Json => serde_json::to_vec(self)?,
            Encoding::MsgPack => rmp_serde::to_vec_named(self)?,
        })
    }
}

/// A message for delivery: `{"type":"msg",...}`.
#[derive(Debug, Clone, Copy)]
pub struct MsgFrame<'a> {
    /// The target's scope.
    pub scope: Scope,
    /// The room, for room scope.
    pub room: Option<&'a str>,
    /// Event name (from the name set: needs no escaping).
    pub event: &'a str,
    /// The publisher's JSON text, already checked to be valid JSON.
    pub data: &'a [u8],
    /// Position in the target's history.
    pub offset: Option<&'a str>,
    /// The publisher's message id.
    pub id: Uuid,
    /// Publish time, Unix ms.
    pub ts: u64,
}

impl MsgFrame<'_> {
    /// Encodes the frame. JSON keeps `data` byte for byte; MessagePack carries it as the
    /// equivalent MessagePack value.
    pub fn encode(&self, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
        match encoding {
            Encoding::Json => self.encode_json(),
            Encoding::MsgPack => self.encode_msgpack(),
        }
    }

    fn encode_json(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.data.len() + 192);
        self.write_json(&mut out)?;
        Ok(out)
    }

    /// Appends the frame as JSON to `out`: `data` byte for byte as the publisher wrote it.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(b"{\"type\":\"msg\",\"scope\":\"");
        out.extend_from_slice(self.scope.as_str().as_bytes());
        out.push(b'"');
        if let Some(room) = self.room {
            out.extend_from_slice(b",\"room\":");
            serde_json::to_writer(&mut *out, room)?;
        }
        out.extend_from_slice(b",\"event\":");
        serde_json::to_writer(&mut *out, self.event)?;
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(self.data);
        out.extend_from_slice(b",\"offset\":");
        serde_json::to_writer(&mut *out, &self.offset)?;
        out.extend_from_slice(b",\"id\":\"");
        out.extend_from_slice(
            self.id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        out.extend_from_slice(b"\",\"ts\":");
        out.extend_from_slice(self.ts.to_string().as_bytes());
        out.push(b'}');
        Ok(())
    }

    fn encode_msgpack(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(rmp_serde::to_vec_named(&MsgWire(self))?)
    }
}

/// A `msg` frame as serde writes it into MessagePack: `data` transcoded from the publisher's
/// JSON into the equivalent MessagePack value as it is written. Also how a `history` answer
/// carries its messages.
pub(crate) struct MsgWire<'a>(pub(crate) &'a MsgFrame<'a>);

impl Serialize for MsgWire<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a, D: Serialize> {
            #[serde(rename = "type")]
            kind: &'static str,
            scope: Scope,
            #[serde(skip_serializing_if = "Option::is_none")]
            room: Option<&'a str>,
            event: &'a str,
            data: D,
            offset: Option<&'a str>,
            id: String,
            ts: u64,
        }
        let frame = self.0;
        let mut json = serde_json::Deserializer::from_slice(frame.data);
        Wire {
            kind: "msg",
            scope: frame.scope,
            room: frame.room,
            event: frame.event,
            data: serde_transcode::Transcoder::new(&mut json),
            offset: frame.offset,
            id: frame.id.hyphenated().to_string(),
            ts: frame.ts,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests;
