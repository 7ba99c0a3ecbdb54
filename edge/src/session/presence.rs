//! Answers to `presence` and `presence_stats`: only for a joined room that records presence.

use ferrocast_emitter::PresenceList;
use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::server::PresenceClient;
use ferrocast_protocol::presence::PresenceStats;

use super::Session;
use super::refusal::Refusal;
use crate::bus::Bus;
use crate::presence::flush;

impl<B: Bus> Session<B> {
    /// The clients present in `room`.
    pub(super) async fn presence(&self, room: &str) -> Result<Vec<PresenceClient>, Refusal> {
        self.may_see_presence(room).await?;
        let max = self.shared.presence.max;
        match self.shared.bus.presence_list(room, max).await? {
            PresenceList::Members(members) => Ok(members
                .into_iter()
                .map(|m| PresenceClient {
                    info: m.info.and_then(|i| serde_json::from_slice(&i).ok()),
                    client: m.client,
                    user: m.user,
                })
                .collect()),
            PresenceList::TooMany(n) => Err(Refusal::new(
                ErrorCode::TooLarge,
                format!("{n} clients present; at most {max} are listed (use presence_stats)"),
            )),
        }
    }

    /// How many clients and users are present in `room`.
    pub(super) async fn presence_stats(&self, room: &str) -> Result<PresenceStats, Refusal> {
        self.may_see_presence(room).await?;
        Ok(self.shared.bus.presence_stats(room).await?)
    }

    /// Refuses a room the connection is not in, or that records no presence; otherwise applies
    /// what this edge has pending for it, so the answer includes the connection's own join.
    async fn may_see_presence(&self, room: &str) -> Result<(), Refusal> {
        if !self.shared.presence.tracks(room) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "presence is not on for this room (--presence-rooms)",
            ));
        }
        if !self.rooms.contains(room) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "join the room to see who is in it",
            ));
        }
        Ok(flush::flush(&self.shared.presence, &*self.shared.bus, Some(room)).await?)
    }
}
