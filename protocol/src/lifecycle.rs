//! Lifecycle events (docs/protocol.md, part 4): what an edge appends to the inbox, beside the
//! clients' `send`s, when a client connects, disconnects, joins or leaves a room. Their event
//! names start with `$`, which no client may use, so a client can never forge one.

use serde::{Deserialize, Serialize};

/// A lifecycle event, as a worker reads it from an upstream message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// `$connect`: the client authenticated.
    Connect,
    /// `$disconnect`: the connection ended, with this close code and reason.
    Disconnect {
        /// The close code (1006 when the connection ended without a close frame).
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// `$join`: the client joined `room` (`by` is `"server"` when a worker put it there).
    Join {
        /// The room.
        room: String,
        /// Who made it join: `"client"` or `"server"`.
        by: String,
    },
    /// `$leave`: the client left `room` (by its own `leave`, a worker, a refresh that revoked
    /// it, or the connection ending: `by` is `"client"`, `"server"` or `"disconnect"`).
    Leave {
        /// The room.
        room: String,
        /// Why: `"client"`, `"server"` or `"disconnect"`.
        by: String,
    },
}

/// The event name of [`Lifecycle::Connect`].
pub const CONNECT: &str = "$connect";
/// The event name of [`Lifecycle::Disconnect`].
pub const DISCONNECT: &str = "$disconnect";
/// The event name of [`Lifecycle::Join`].
pub const JOIN: &str = "$join";
/// The event name of [`Lifecycle::Leave`].
pub const LEAVE: &str = "$leave";

/// Whether `event` is one of the lifecycle event names.
pub fn is_lifecycle(event: &str) -> bool {
    matches!(event, CONNECT | DISCONNECT | JOIN | LEAVE)
}

#[derive(Serialize, Deserialize)]
struct Closed {
    code: u16,
    reason: String,
}

#[derive(Serialize, Deserialize)]
struct Moved {
    room: String,
    by: String,
}

impl Lifecycle {
    /// Its event name.
    pub fn event(&self) -> &'static str {
        match self {
            Lifecycle::Connect => CONNECT,
            Lifecycle::Disconnect { .. } => DISCONNECT,
            Lifecycle::Join { .. } => JOIN,
            Lifecycle::Leave { .. } => LEAVE,
        }
    }

    /// Its `data`, as JSON text.
    pub fn data(&self) -> Vec<u8> {
        let json = match self {
            Lifecycle::Connect => Ok(b"{}".to_vec()),
            Lifecycle::Disconnect { code, reason } => serde_json::to_vec(&Closed {
                code: *code,
                reason: reason.clone(),
            }),
            Lifecycle::Join { room, by } | Lifecycle::Leave { room, by } => {
                serde_json::to_vec(&Moved {
                    room: room.clone(),
                    by: by.clone(),
                })
            }
        };
        // Strings and integers always serialize.
        json.unwrap_or_else(|_| b"{}".to_vec())
    }

    /// The lifecycle event of an upstream message's `event` and `data`, if it is one.
    pub fn parse(event: &str, data: &[u8]) -> Option<Lifecycle> {
        match event {
            CONNECT => Some(Lifecycle::Connect),
            DISCONNECT => {
                let Closed { code, reason } = serde_json::from_slice(data).ok()?;
                Some(Lifecycle::Disconnect { code, reason })
            }
            JOIN | LEAVE => {
                let Moved { room, by } = serde_json::from_slice(data).ok()?;
                Some(if event == JOIN {
                    Lifecycle::Join { room, by }
                } else {
                    Lifecycle::Leave { room, by }
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_their_data() {
        for event in [
            Lifecycle::Connect,
            Lifecycle::Disconnect {
                code: 1006,
                reason: "gone \"away\"".into(),
            },
            Lifecycle::Join {
                room: "chat:1".into(),
                by: "client".into(),
            },
            Lifecycle::Leave {
                room: "chat:1".into(),
                by: "disconnect".into(),
            },
        ] {
            assert!(is_lifecycle(event.event()));
            assert_eq!(Lifecycle::parse(event.event(), &event.data()), Some(event));
        }
        assert_eq!(Lifecycle::parse("chat.say", b"{}"), None);
        assert_eq!(Lifecycle::parse(JOIN, b"{}"), None);
        assert!(
            crate::names::validate_event(CONNECT).is_err(),
            "no client may send one"
        );
    }
}
