//! Control messages from workers: make sessions join or leave a room, close them, or answer a
//! client's `rpc`. They reach the edge like messages, through the target's keys, and each
//! session applies them in order with the messages around them.

use ferrocast_protocol::{Envelope, Kind, Scope, close};
use uuid::Uuid;

/// What a control envelope asks a session to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Join the room (whatever the token allows: a worker decided).
    Join(String),
    /// Leave the room.
    Leave(String),
    /// Close the connection with this code and reason.
    Disconnect {
        /// Close code, 4010-4999 (4010 unless the worker chose another).
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// A worker's answer to one of the connection's calls (v1.2).
    Reply(RpcReply),
}

/// A worker's answer to a call: matched to the connection's pending calls by the inbox message's
/// id, which every retry of a named call shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcReply {
    /// The `ref` of the `rpc` frame that made the call (a retry answers with its own).
    pub reference: u64,
    /// The id of the inbox message that carried the call.
    pub request: Uuid,
    /// The worker's JSON text (empty: none, for a refusal without data).
    pub data: Vec<u8>,
    /// The worker's refusal message.
    pub error: Option<String>,
    /// Sent to every connection of the user (a named call, which any of them may be retrying),
    /// so a connection with no such call pending is no sign of a late reply.
    pub to_user: bool,
}

impl Control {
    /// Bytes it holds, as counted against a connection's queue limit: a reply's data.
    pub fn size(&self) -> usize {
        match self {
            Control::Reply(reply) => reply.data.len(),
            _ => 0,
        }
    }
}

impl Control {
    /// The control of a checked envelope; `None` for a `msg`.
    pub fn from_envelope(envelope: &Envelope) -> Option<Control> {
        let room = || envelope.room.clone().unwrap_or_default();
        match envelope.kind {
            Kind::Msg => None,
            Kind::Join => Some(Control::Join(room())),
            Kind::Leave => Some(Control::Leave(room())),
            Kind::Disconnect => Some(Control::Disconnect {
                code: envelope.code.unwrap_or(close::DISCONNECTED),
                reason: envelope.reason.clone().unwrap_or_default(),
            }),
            // `validate` made sure both are there.
            Kind::Reply => Some(Control::Reply(RpcReply {
                reference: envelope.reference.unwrap_or_default(),
                request: envelope.request.unwrap_or_default(),
                data: envelope.data.clone(),
                error: envelope.error.clone(),
                to_user: envelope.scope == Scope::User,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::delivery::Delivery;
    use ferrocast_protocol::offset::StreamId;
    use ferrocast_protocol::{Offset, Target};

    #[test]
    fn a_reply_is_a_control_and_never_replayed() {
        let request = Uuid::now_v7();
        let reply = Envelope::reply(
            &Target::Client("c1".into()),
            4,
            request,
            b"[1]".to_vec(),
            None,
        );
        assert_eq!(
            Control::from_envelope(&reply),
            Some(Control::Reply(RpcReply {
                reference: 4,
                request,
                data: b"[1]".to_vec(),
                error: None,
                to_user: false,
            }))
        );
        let offset = Offset {
            id: StreamId { ms: 1, seq: 0 },
            epoch: StreamId { ms: 1, seq: 0 },
        };
        let stored = reply.encode().expect("encode");
        assert!(Delivery::decode(offset, &stored).is_none());
    }
}
