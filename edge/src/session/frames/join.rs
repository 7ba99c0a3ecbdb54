//! `join`, and joining for a worker: the permission (claims, public patterns or the join hook),
//! membership, the replay a `since` asks for, and presence.

use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::server::ServerFrame;
use ferrocast_protocol::{Offset, Target, TargetKey};
use tungstenite::Message;

use super::{Reply, SINCE_COST};
use crate::bus::{Bus, ReplayCursor};
use crate::fanout::dedup::Written;
use crate::fanout::outbox::Direct;
use crate::hooks::join::{self, JoinRequest, JoinVerdict};
use crate::ops::metrics::metrics;
use crate::refusal::Refusal;
use crate::session::joined_rooms::Room;
use crate::session::replay::Replaying;
use crate::session::{Session, wait_live};
use ferrocast_protocol::lifecycle::Lifecycle;

impl<B: Bus> Session<B> {
    /// Answers `join` with `joined`, then the replay `since` asks for.
    pub(super) async fn on_join(
        &mut self,
        room: &str,
        since: Option<&str>,
        reference: Option<u64>,
    ) -> Result<Reply, Refusal> {
        if since.is_some() {
            self.rate.charge(SINCE_COST);
        }
        self.join(room, since, reference, None).await
    }

    /// Joins a room: subscribes, then opens its history after `since`. Answers `joined`, to be
    /// followed by the replay. `by` is `Some("server")` for a worker's join, which needs no
    /// permission from the token.
    pub(in crate::session) async fn join(
        &mut self,
        room: &str,
        since: Option<&str>,
        reference: Option<u64>,
        by: Option<&'static str>,
    ) -> Result<Reply, Refusal> {
        let target = Target::Room(room.to_owned()).key();
        if self.rooms.contains(room) {
            // Already live here: nothing to replay, just the current position.
            let cursor = self.open(&target, None).await?;
            return Ok(self.joined(room, reference, &cursor, by).into());
        }
        let granted = self.may_join(room, by).await?;
        let since = since.and_then(|s| s.parse::<Offset>().ok());
        let (topic, cursor) = self.subscribe(&target, since).await?;
        self.enter(room, Room { topic, granted }, by);
        // A seam only where there is a replay: with no usable `since`, queued live messages
        // are all new to the client.
        if let (Some(_), Some(last)) = (since, cursor.last) {
            self.seams.set(topic, last);
        }
        Ok(Reply {
            frames: self
                .joined(room, reference, &cursor, by)
                .into_iter()
                .collect(),
            replays: vec![Replaying {
                target,
                topic,
                cursor,
                written: Written::default(),
            }],
            close: None,
        })
    }

    /// Whether the connection may join `room` now; `Ok(true)` if a worker or the join hook let
    /// it in (so no claim is needed to stay after a refresh).
    async fn may_join(&self, room: &str, by: Option<&str>) -> Result<bool, Refusal> {
        if !self.shared.bus.is_ready() {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "the bus is reconnecting; retry",
            ));
        }
        let max = self.shared.config.max_rooms;
        if self.rooms.len() >= max {
            return Err(Refusal::new(
                ErrorCode::TooManyRooms,
                format!("at most {max} rooms per connection"),
            ));
        }
        let claimed = self.claims.rooms.allows(room) || self.shared.public_rooms.allows(room);
        // A room the claims do not cover may still be the application's to grant.
        Ok(by.is_some() || (!claimed && self.ask_join_hook(room).await?))
    }

    /// Makes the connection a member of `target`, waits until it is live and opens its history
    /// after `since`: the topic and where the history stands. On failure the membership is
    /// undone, and whatever of the topic was queued meanwhile is fenced off.
    async fn subscribe(
        &mut self,
        target: &TargetKey,
        since: Option<Offset>,
    ) -> Result<(u64, ReplayCursor), Refusal> {
        let joined = self
            .shared
            .registry
            .join(target, self.id, self.member(Direct::Yes));
        let cursor = match wait_live(joined.state).await {
            Ok(()) => self.open(target, since).await,
            Err(refusal) => Err(refusal),
        };
        match cursor {
            Ok(cursor) => Ok((joined.topic, cursor)),
            Err(refusal) => {
                self.shared.registry.leave(target, self.id);
                self.fence(joined.topic);
                Err(refusal)
            }
        }
    }

    /// Records the connection in `room`, which it is now a member of: its list, the metric,
    /// the workers' `$join`, and presence.
    fn enter(&mut self, room: &str, joined: Room, by: Option<&str>) {
        self.rooms.insert(room, joined);
        metrics().room_memberships.inc();
        self.report(Lifecycle::Join {
            room: room.to_owned(),
            by: by.unwrap_or("client").to_owned(),
        });
        let info = self.presence_info();
        self.shared
            .presence
            .join(room, &self.client, &self.claims.sub, info.as_deref());
    }

    /// Whether the join hook lets the connection into `room`, which its claims do not allow:
    /// `FORBIDDEN` if there is no hook for the room or it says no, `UNAVAILABLE` if it gives no
    /// answer.
    async fn ask_join_hook(&self, room: &str) -> Result<bool, Refusal> {
        let hooks = &self.shared.hooks;
        let Some(url) = hooks.join_hook_for(room) else {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "the token does not allow this room",
            ));
        };
        let request = JoinRequest {
            client: &self.client,
            user: &self.claims.sub,
            meta: self.claims.meta.as_deref(),
            room,
            node: &self.shared.node_id,
        };
        match join::decide(&hooks.client, url, &request).await {
            JoinVerdict::Allow => Ok(true),
            JoinVerdict::Deny(reason) => Err(Refusal::new(ErrorCode::Forbidden, reason)),
            JoinVerdict::Unavailable(why) => {
                tracing::warn!(%why, %room, "join hook unavailable");
                Err(Refusal::new(
                    ErrorCode::Unavailable,
                    "the application cannot decide this join now; retry",
                ))
            }
        }
    }

    /// The `joined` answer, with where the room's history stands.
    fn joined(
        &self,
        room: &str,
        reference: Option<u64>,
        cursor: &ReplayCursor,
        by: Option<&str>,
    ) -> Option<Message> {
        self.encode(&ServerFrame::Joined {
            room,
            reference,
            offset: cursor.last.map(|o| o.to_string()),
            recovered: cursor.recovered,
            by,
        })
    }

    /// The token's `info` claim as presence stores it.
    pub(super) fn presence_info(&self) -> Option<Vec<u8>> {
        self.claims
            .info
            .as_ref()
            .and_then(|i| serde_json::to_vec(i).ok())
    }

    /// Opens `target`'s history after `since` for a member (it was joined first); without
    /// `since`, where it stands, from the bus if it knows.
    async fn open(
        &self,
        target: &TargetKey,
        since: Option<Offset>,
    ) -> Result<ReplayCursor, Refusal> {
        if since.is_none()
            && let Some(cursor) = self.shared.bus.known_position(target)
        {
            return Ok(cursor);
        }
        self.shared
            .bus
            .open_replay(target, since)
            .await
            .map_err(|e| Refusal::new(ErrorCode::Unavailable, e.to_string()))
    }
}
