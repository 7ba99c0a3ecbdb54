//! What a connection's queue holds: [`Outbound`] items, most of them a [`Frame`] built once per
//! message and encoding and shared by every recipient. A leaf: the queue ([`mailbox`]) and its
//! sending side ([`outbox`]) both speak it.
//!
//! [`mailbox`]: super::mailbox
//! [`outbox`]: super::outbox

use std::sync::Arc;

use ferrocast_protocol::Offset;
use tungstenite::Message;

use crate::fanout::control::Control;
use crate::websocket::wire::Wire;

/// What a connection is asked to do, in order: two words, whatever the message, so a queue of
/// them stays small.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// Write this frame, shared with every other recipient.
    Frame(Arc<Frame>),
    /// Apply a worker's control message.
    Control(Arc<Control>),
    /// Write these presence frames (but not those about the connection itself).
    Presence(Arc<super::presence::PresenceFrames>),
    /// The connection left this topic (or was refused it) when this was queued: see
    /// [`Fences`](super::outbox::Fences).
    Fence(u64),
    /// The fan-out wrote a frame in part: write the rest (see [`Socket`](crate::websocket::socket::Socket)).
    Flush,
}

/// One encoded frame and where it came from, so a connection can drop what a replay already
/// sent. Built once per message and encoding, for all its recipients.
#[derive(Debug)]
pub struct Frame {
    /// The frame to write.
    pub message: Message,
    /// The registry topic it was delivered through (0 for frames of the edge's own).
    pub topic: u64,
    /// Its offset in the topic's history.
    pub offset: Option<Offset>,
    /// Its publish time (Unix ms), 0 for frames that are not messages.
    pub ts: u64,
    /// Its frames as sent, plain and compressed: made by the first recipient that needs each,
    /// shared by the rest.
    pub wire: Wire,
}

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        (&self.message, self.topic, self.offset, self.ts)
            == (&other.message, other.topic, other.offset, other.ts)
    }
}

impl Frame {
    /// `message` delivered through `topic`: a message at `offset`, published at `ts` (Unix ms),
    /// or (without them) a frame of the edge's own about the topic, such as a `gap`.
    pub fn of_topic(message: Message, topic: u64, offset: Option<Offset>, ts: u64) -> Arc<Frame> {
        Arc::new(Frame {
            message,
            topic,
            offset,
            ts,
            wire: Wire::default(),
        })
    }

    /// A frame of the edge's own (a ping), not from any topic.
    pub fn own(message: Message) -> Arc<Frame> {
        Frame::of_topic(message, 0, None, 0)
    }
}

impl Outbound {
    /// Bytes the frame holds (its payload), as counted against the queue's byte limit.
    pub fn size(&self) -> usize {
        match self {
            Outbound::Frame(frame) => frame.message.len(),
            Outbound::Presence(batch) => batch.size(),
            Outbound::Control(control) => control.size(),
            Outbound::Fence(_) | Outbound::Flush => 0,
        }
    }
}
