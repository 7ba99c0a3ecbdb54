//! Joining and leaving rooms: membership, the replay a `since` asks for, presence, and what a
//! refresh takes away.

use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::server::ServerFrame;
use ferrocast_protocol::{Offset, Target, TargetKey};
use tungstenite::Message;

use super::handlers::Reply;
use super::refusal::Refusal;
use super::replay::Replaying;
use super::{Room, Session, wait_live};
use crate::bus::{Bus, ReplayCursor};
use crate::fanout::dedup::Written;
use crate::fanout::outbox::Direct;
use crate::hooks::join::{self, JoinRequest, JoinVerdict};
use crate::ops::metrics::metrics;
use ferrocast_protocol::lifecycle::Lifecycle;

impl<B: Bus> Session<B> {
    /// Joins a room: subscribes, then opens its history after `since`. Answers `joined`, to be
    /// followed by the replay. `by` is `Some("server")` for a worker's join, which needs no
    /// permission from the token.
    pub(super) async fn join(
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
        if !self.shared.bus.is_ready() {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "the bus is reconnecting; retry",
            ));
        }
        if self.rooms.len() >= self.shared.config.max_rooms {
            return Err(Refusal::new(
                ErrorCode::TooManyRooms,
                format!(
                    "at most {} rooms per connection",
                    self.shared.config.max_rooms
                ),
            ));
        }
        let claimed = self.claims.rooms.allows(room) || self.shared.public_rooms.allows(room);
        // A room the claims do not cover may still be the application's to grant.
        let granted = by.is_some() || (!claimed && self.ask_join_hook(room).await?);
        let joined = self
            .shared
            .registry
            .join(&target, self.id, self.member(Direct::Yes));
        let since = since.and_then(|s| s.parse::<Offset>().ok());
        let cursor = match wait_live(joined.state).await {
            Ok(()) => self.open(&target, since).await,
            Err(refusal) => Err(refusal),
        };
        let cursor = match cursor {
            Ok(cursor) => cursor,
            Err(refusal) => {
                self.shared.registry.leave(&target, self.id);
                self.fence(joined.topic);
                return Err(refusal);
            }
        };
        self.rooms.insert(
            room,
            Room {
                topic: joined.topic,
                granted,
            },
        );
        metrics().room_memberships.inc();
        self.report(Lifecycle::Join {
            room: room.to_owned(),
            by: by.unwrap_or("client").to_owned(),
        });
        let info = self.presence_info();
        self.shared
            .presence
            .join(room, &self.client, &self.claims.sub, info.as_deref());
        // A seam only where there is a replay: with no usable `since`, queued live messages
        // are all new to the client.
        if let (Some(_), Some(last)) = (since, cursor.last) {
            self.seams.set(joined.topic, last);
        }
        Ok(Reply {
            frames: self
                .joined(room, reference, &cursor, by)
                .into_iter()
                .collect(),
            replays: vec![Replaying {
                target,
                topic: joined.topic,
                cursor,
                written: Written::default(),
            }],
            close: None,
        })
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

    pub(super) fn joined(
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

    /// Leaves a room; false if the connection was not in it. Nothing of the room is written
    /// after this, even what was queued before.
    pub(super) fn leave(&mut self, room: &str, by: &str) -> bool {
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
        self.outbox
            .push(crate::fanout::outbox::Outbound::Fence(topic));
    }

    /// The token's `info` claim as presence stores it.
    fn presence_info(&self) -> Option<Vec<u8>> {
        self.claims
            .info
            .as_ref()
            .and_then(|i| serde_json::to_vec(i).ok())
    }

    /// Records the connection in its presence rooms again, with the `info` of a refreshed
    /// token: `presence` answers show it once the next batch is applied.
    pub(super) fn present_again(&self) {
        let info = self.presence_info();
        for (room, _) in self.rooms.iter() {
            self.shared
                .presence
                .join(room, &self.client, &self.claims.sub, info.as_deref());
        }
    }

    /// Leaves, each with `left` `by: "server"`, the rooms that neither the token's claims, nor a
    /// public pattern, nor a worker's join allow any longer (after a `refresh`).
    pub(super) fn revoke_rooms(&mut self) -> Vec<Message> {
        let revoked: Vec<String> = self
            .rooms
            .iter()
            .filter(|(room, joined)| {
                !joined.granted
                    && !self.claims.rooms.allows(room)
                    && !self.shared.public_rooms.allows(room)
            })
            .map(|(room, _)| room.to_owned())
            .collect();
        let mut frames = Vec::with_capacity(revoked.len());
        for room in revoked {
            if self.leave(&room, "server") {
                frames.extend(self.encode(&ServerFrame::Left {
                    room: &room,
                    reference: None,
                    by: Some("server"),
                }));
            }
        }
        frames
    }

    /// Opens `target`'s history after `since` for a member (it was joined first); without
    /// `since`, where it stands, from the bus if it knows.
    pub(super) async fn open(
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
