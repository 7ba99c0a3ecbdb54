//! Control messages from workers: make sessions join or leave a room, or close them. They reach
//! the edge like messages, through the target's keys, and each session applies them in order
//! with the messages around them.

use ferrocast_protocol::{Envelope, Kind, close};

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
        }
    }
}
