//! Frames a client sends. Decoding never panics and, where it can, names the `ref` of the frame
//! it refuses so the client can match the error to its request.

use serde::Deserialize;

use crate::close::ErrorCode;

/// Largest `ref` a client may use (2^53 − 1, the largest integer JavaScript holds exactly).
pub const MAX_REF: u64 = (1 << 53) - 1;

/// Most messages a `history` page or a `join` with `rewind` carries (v1.2).
pub const MAX_HISTORY: u32 = 100;

/// Messages a `history` page carries when the client names no `limit`.
pub const DEFAULT_HISTORY: u32 = 20;

/// Offsets to resume the user and `all` scopes from, as sent in `auth` and `resume`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ScopeSince {
    /// Last offset the client holds for its user scope.
    #[serde(default)]
    pub user: Option<String>,
    /// Last offset the client holds for the `all` scope.
    #[serde(default)]
    pub all: Option<String>,
}

/// A decoded client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// First frame of a browser-style connection.
    Auth {
        /// The JWT.
        token: String,
        /// Scopes to recover.
        since: ScopeSince,
        /// The client's ECDH P-256 public key (v1.2, part E), as sent: base64 of an
        /// uncompressed point, when it asks for encryption.
        encrypt: Option<String>,
    },
    /// Set encryption up after a header-authenticated connect (v1.2, part E): the client's ECDH
    /// P-256 public key, as sent (base64 of an uncompressed point).
    Encrypt {
        /// The key, as sent.
        key: String,
        /// Echoed in the answer.
        reference: Option<u64>,
    },
    /// Recover user and `all` scopes after a header-authenticated connect.
    Resume {
        /// Scopes to recover.
        since: ScopeSince,
        /// Echoed in the answer.
        reference: Option<u64>,
    },
    /// Join a room, optionally resuming after an offset or rewinding its last messages.
    Join {
        /// Room name (already checked against the naming rules).
        room: String,
        /// The offset to resume after, as the client sent it.
        since: Option<String>,
        /// How many of the room's newest messages to send first (v1.2), 1 to [`MAX_HISTORY`];
        /// never together with `since`.
        rewind: Option<u32>,
        /// Echoed in the answer.
        reference: Option<u64>,
    },
    /// A page of a room's history, newest first in the choice, oldest first in the answer (v1.2).
    History {
        /// Room name.
        room: String,
        /// Most messages, 1 to [`MAX_HISTORY`] ([`DEFAULT_HISTORY`] if the client named none).
        limit: u32,
        /// Only messages before this offset (exclusive), as the client sent it; `None`: from the
        /// newest.
        before: Option<String>,
        /// Echoed in the answer.
        reference: Option<u64>,
    },
    /// Leave a room.
    Leave {
        /// Room name.
        room: String,
        /// Echoed in the answer.
        reference: Option<u64>,
    },
    /// Publish to a room.
    Publish {
        /// Room name.
        room: String,
        /// Event name.
        event: String,
        /// JSON text.
        data: Vec<u8>,
        /// Whether the publisher gets its own message (default true).
        echo: bool,
        /// The client's id for this publish (v1.2): a retry with it publishes nothing new.
        id: Option<String>,
        /// Echoed in the answer.
        reference: Option<u64>,
    },
    /// Send a message upstream to workers.
    Send {
        /// Event name.
        event: String,
        /// JSON text.
        data: Vec<u8>,
        /// The client's id for this send (v1.2): a retry with it stores nothing new.
        id: Option<String>,
        /// Echoed in the answer.
        reference: Option<u64>,
    },
    /// Call the application's workers and wait for their reply (v1.2).
    Rpc {
        /// Event name.
        event: String,
        /// JSON text.
        data: Vec<u8>,
        /// The client's id for this call (v1.2): a retry with it, from any connection of the
        /// user, calls nothing new and is answered with the first call's reply.
        id: Option<String>,
        /// Required: the reply, or the error, carries it.
        reference: u64,
        /// How long to wait for the reply, milliseconds (the default applied; at most
        /// [`rpc::MAX_TIMEOUT_MS`](crate::rpc::MAX_TIMEOUT_MS)).
        timeout_ms: u64,
    },
    /// Application-level ping.
    Ping {
        /// Echoed in the answer.
        reference: Option<u64>,
    },
    /// List a joined room's present clients (v1.1).
    Presence {
        /// Room name.
        room: String,
        /// Echoed in the answer.
        reference: Option<u64>,
    },
    /// Count a joined room's present clients and users (v1.1).
    PresenceStats {
        /// Room name.
        room: String,
        /// Echoed in the answer.
        reference: Option<u64>,
    },
    /// Replace the connection's token.
    Refresh {
        /// The new JWT.
        token: String,
    },
}

/// A frame the edge refuses, with what to put in the `error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// The refused frame's `ref`, when it could be read.
    pub reference: Option<u64>,
    /// The error code.
    pub code: ErrorCode,
    /// A short human-readable explanation.
    pub message: String,
}

impl ClientFrame {
    /// The frame's `ref`, if it has one.
    pub fn reference(&self) -> Option<u64> {
        match self {
            ClientFrame::Resume { reference, .. }
            | ClientFrame::Join { reference, .. }
            | ClientFrame::History { reference, .. }
            | ClientFrame::Leave { reference, .. }
            | ClientFrame::Publish { reference, .. }
            | ClientFrame::Send { reference, .. }
            | ClientFrame::Presence { reference, .. }
            | ClientFrame::PresenceStats { reference, .. }
            | ClientFrame::Encrypt { reference, .. }
            | ClientFrame::Ping { reference } => *reference,
            ClientFrame::Rpc { reference, .. } => Some(*reference),
            ClientFrame::Auth { .. } | ClientFrame::Refresh { .. } => None,
        }
    }

    /// Decodes a text frame (JSON).
    pub fn from_json(bytes: &[u8]) -> Result<ClientFrame, FrameError> {
        decode::json(bytes)
    }

    /// Decodes a binary frame (MessagePack). `data` is turned into JSON text.
    pub fn from_msgpack(bytes: &[u8]) -> Result<ClientFrame, FrameError> {
        decode::msgpack(bytes)
    }
}

mod decode;

#[cfg(test)]
mod tests;
