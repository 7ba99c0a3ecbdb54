//! `history`: a page of a room's history, for any room the connection may join, joined or not
//! (the token's claims, a public pattern, or the join hook; a room it is in needs no asking).

use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::{Offset, Target};

use super::Reply;
use crate::bus::Bus;
use crate::fanout::delivery::as_message;
use crate::refusal::Refusal;
use crate::session::Session;

/// Messages a page may ask for per rate-limit token beyond its frame's own: a page of 100 costs
/// as much as five frames, so reading history cannot outrun the frame rate.
const MESSAGES_PER_TOKEN: u32 = 20;

impl<B: Bus> Session<B> {
    /// Answers `history` with up to `limit` messages before `before`, oldest first.
    pub(super) async fn on_history(
        &mut self,
        room: &str,
        limit: u32,
        before: Option<&str>,
        reference: Option<u64>,
    ) -> Result<Reply, Refusal> {
        self.rate
            .charge(f64::from(limit.div_ceil(MESSAGES_PER_TOKEN)));
        let before = before
            .map(|o| {
                o.parse::<Offset>()
                    .map_err(|_| Refusal::new(ErrorCode::BadFrame, "before must be an offset"))
            })
            .transpose()?;
        self.may_read(room).await?;
        let budget = self.page_budget().await?;
        let target = Target::Room(room.to_owned()).key();
        let page = self
            .shared
            .bus
            .history(&target, before, limit as usize)
            .await?;
        let answer =
            crate::history::answer(room, reference, &page, Some(&self.client), self.encoding);
        let message = as_message(answer, self.encoding).map_err(|error| {
            tracing::warn!(%room, %error, "cannot encode a history page");
            Refusal::new(ErrorCode::Internal, "cannot encode this page")
        })?;
        Ok(Reply {
            budget: Some(budget),
            ..Reply::from(Some(message))
        })
    }

    /// Refuses a room the connection may not join: one it is in, or one its claims or a public
    /// pattern allow, needs no asking; any other is the join hook's to allow.
    async fn may_read(&self, room: &str) -> Result<(), Refusal> {
        if self.rooms.contains(room)
            || self.claims.rooms.allows(room)
            || self.shared.public_rooms.allows(room)
        {
            return Ok(());
        }
        self.ask_join_hook(room).await.map(|_| ())
    }
}
