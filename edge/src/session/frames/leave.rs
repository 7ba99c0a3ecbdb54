//! `leave`, and leaving for any reason: nothing of the room is written after it, even what was
//! queued before.

use ferrocast_protocol::Target;
use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::server::ServerFrame;
use ferrocast_protocol::lifecycle::Lifecycle;

use super::Reply;
use crate::bus::Bus;
use crate::fanout::outbound::Outbound;
use crate::ops::metrics::metrics;
use crate::refusal::Refusal;
use crate::session::Session;
use crate::session::joined_rooms::Room;

impl<B: Bus> Session<B> {
    /// Answers `leave` with `left`.
    pub(super) fn on_leave(
        &mut self,
        room: &str,
        reference: Option<u64>,
    ) -> Result<Reply, Refusal> {
        if !self.leave(room, "client") {
            return Err(Refusal::new(ErrorCode::NotJoined, "not in that room"));
        }
        Ok(self
            .encode(&ServerFrame::Left {
                room,
                reference,
                by: None,
            })
            .into())
    }

    /// Leaves a room (`by` the client, the server or a disconnect); false if the connection was
    /// not in it.
    pub(in crate::session) fn leave(&mut self, room: &str, by: &str) -> bool {
        let Some(Room { topic, .. }) = self.rooms.remove(room) else {
            return false;
        };
        self.shared
            .registry
            .leave(&Target::Room(room.to_owned()).key(), self.id);
        self.shared.presence.leave(room, &self.client);
        self.report(Lifecycle::Leave {
            room: room.to_owned(),
            by: by.to_owned(),
        });
        self.seams.forget(topic);
        self.fence(topic);
        metrics().room_memberships.dec();
        true
    }

    /// Drops whatever of `topic`, which the registry no longer holds this connection in, is
    /// still queued (see [`Fences`](crate::fanout::outbox::Fences)).
    pub(super) fn fence(&mut self, topic: u64) {
        self.fences.raise(topic);
        self.outbox.push(Outbound::Fence(topic));
    }
}
