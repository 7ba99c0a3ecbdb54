//! Presence announcements on their way to a room's members: one batch of `presence_join` and
//! `presence_leave` frames per encoding, queued as a single item per member, so a burst of
//! thousands of joins (a mass reconnect) costs each member one queue slot, not thousands.

use std::sync::Arc;

use ferrocast_protocol::Encoding;
use ferrocast_protocol::frame::server::ServerFrame;
use ferrocast_protocol::presence::PresenceEvents;
use tungstenite::Message;

use super::delivery;

/// Frames of one presence batch, in one encoding, for every member of a room.
#[derive(Debug, PartialEq)]
pub struct PresenceFrames {
    /// The registry topic it was delivered through.
    pub topic: u64,
    /// Each frame with the client it is about: a client is not told about itself.
    pub frames: Vec<(Arc<str>, Message)>,
}

impl PresenceFrames {
    /// Bytes the frames hold.
    pub fn size(&self) -> usize {
        self.frames.iter().map(|(_, m)| m.len()).sum()
    }
}

/// The frames of `events` in `room`, in `encoding`. An `info` that is not JSON is left out.
pub fn frames(room: &str, events: &PresenceEvents, encoding: Encoding) -> Vec<(Arc<str>, Message)> {
    let mut frames = Vec::with_capacity(events.join.len() + events.leave.len());
    for left in &events.leave {
        let frame = ServerFrame::PresenceLeave {
            room,
            client: &left.client,
            user: &left.user,
        };
        frames
            .extend(delivery::message(&frame, encoding).map(|m| (left.client.as_str().into(), m)));
    }
    for joined in &events.join {
        let info = joined
            .info
            .as_deref()
            .and_then(|i| serde_json::from_slice::<serde_json::Value>(i).ok());
        let frame = ServerFrame::PresenceJoin {
            room,
            client: &joined.client,
            user: &joined.user,
            info: info.as_ref(),
        };
        frames.extend(
            delivery::message(&frame, encoding).map(|m| (joined.client.as_str().into(), m)),
        );
    }
    frames
}
