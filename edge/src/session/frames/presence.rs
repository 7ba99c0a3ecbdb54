//! `presence` and `presence_stats`: for a joined room that records presence (the rules are in
//! [`presence::query`](crate::presence::query), shared with the HTTP API).

use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::server::{PresenceClient, ServerFrame};

use super::{Reply, SINCE_COST};
use crate::bus::Bus;
use crate::presence::query;
use crate::refusal::Refusal;
use crate::session::Session;

impl<B: Bus> Session<B> {
    /// Answers `presence` with the clients present in `room`.
    pub(super) async fn on_presence(
        &mut self,
        room: &str,
        reference: Option<u64>,
    ) -> Result<Reply, Refusal> {
        // A list makes Redis read up to --presence-max entries: it costs like a `since`.
        self.rate.charge(SINCE_COST);
        self.may_see_presence(room)?;
        let members = query::list(&self.shared.presence, &*self.shared.bus, room).await?;
        let clients = members
            .into_iter()
            .map(|m| PresenceClient {
                info: m.info.and_then(|i| serde_json::from_slice(&i).ok()),
                client: m.client,
                user: m.user,
            })
            .collect();
        Ok(self
            .encode(&ServerFrame::Presence {
                room,
                reference,
                clients,
            })
            .into())
    }

    /// Answers `presence_stats` with how many clients and users are present in `room`.
    pub(super) async fn on_presence_stats(
        &mut self,
        room: &str,
        reference: Option<u64>,
    ) -> Result<Reply, Refusal> {
        self.may_see_presence(room)?;
        let stats = query::stats(&self.shared.presence, &*self.shared.bus, room).await?;
        Ok(self
            .encode(&ServerFrame::PresenceStats {
                room,
                reference,
                clients: stats.clients,
                users: stats.users,
            })
            .into())
    }

    /// Refuses a room that records no presence, or that the connection is not in.
    fn may_see_presence(&self, room: &str) -> Result<(), Refusal> {
        query::tracked(&self.shared.presence, room)?;
        if !self.rooms.contains(room) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "join the room to see who is in it",
            ));
        }
        Ok(())
    }
}
