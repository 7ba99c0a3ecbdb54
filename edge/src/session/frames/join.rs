//! `join`, and joining for a worker: the permission (claims, public patterns or the join hook),
//! membership, the replay a `since` asks for, and presence.

use std::collections::HashSet;

use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::server::ServerFrame;
use ferrocast_protocol::{Offset, Target, TargetKey};
use tokio::sync::OwnedSemaphorePermit;
use tungstenite::Message;

use super::{Reply, SINCE_COST};
use crate::bus::{Bus, HistoryPage, ReplayCursor};
use crate::fanout::dedup::Written;
use crate::fanout::outbox::Direct;
use crate::fanout::recovery;
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
        rewind: Option<u32>,
        reference: Option<u64>,
    ) -> Result<Reply, Refusal> {
        let start = match (since, rewind) {
            (Some(since), _) => Start::Since(since),
            (None, Some(count)) => Start::Rewind(count),
            (None, None) => Start::Live,
        };
        if start != Start::Live {
            self.rate.charge(SINCE_COST);
        }
        self.join(room, start, reference, None).await
    }

    /// Joins a room: subscribes, then opens its history as `start` asks. Answers `joined`, to be
    /// followed by the replay or the rewound messages. `by` is `Some("server")` for a worker's
    /// join, which needs no permission from the token. A room the connection is in already is
    /// answered with where its history stands, and nothing more: its messages reach it live.
    pub(in crate::session) async fn join(
        &mut self,
        room: &str,
        start: Start<'_>,
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
        let (topic, opened) = self.subscribe(&target, start).await?;
        self.enter(room, Room { topic, granted }, by);
        match opened {
            Opened::Replay(cursor) => {
                // A seam only where there is a replay: with no usable `since`, queued live
                // messages are all new to the client.
                if let (Start::Since(since), Some(last)) = (start, cursor.last)
                    && since.parse::<Offset>().is_ok()
                {
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
                    budget: None,
                })
            }
            Opened::Rewound(page, budget) => {
                // The page was read after the subscription was live: live messages up to its
                // newest are in it, and those after it are queued behind the answer.
                if let Some(newest) = page.newest {
                    self.seams.set(topic, newest);
                }
                let cursor = ReplayCursor::finished(false, page.newest);
                let joined = self.joined(room, reference, &cursor, by);
                let rewound = recovery::frames(
                    &page.entries,
                    &self.client,
                    self.encoding,
                    &Written::default(),
                    &mut HashSet::new(),
                );
                Ok(Reply {
                    frames: joined.into_iter().chain(rewound).collect(),
                    replays: Vec::new(),
                    close: None,
                    budget: Some(budget),
                })
            }
        }
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
    /// as `start` asks: the topic, and the replay to stream or the messages rewound. On failure
    /// the membership is undone, and whatever of the topic was queued meanwhile is fenced off.
    async fn subscribe(
        &mut self,
        target: &TargetKey,
        start: Start<'_>,
    ) -> Result<(u64, Opened), Refusal> {
        let joined = self
            .shared
            .registry
            .join(target, self.id, self.member(Direct::Yes));
        let opened = match wait_live(joined.state).await {
            Ok(()) => match start {
                Start::Rewind(count) => match self.page_budget().await {
                    Ok(budget) => self
                        .shared
                        .bus
                        .history(target, None, count as usize)
                        .await
                        .map(|page| Opened::Rewound(page, budget))
                        .map_err(Refusal::from),
                    Err(refusal) => Err(refusal),
                },
                Start::Since(since) => {
                    let since = since.parse::<Offset>().ok();
                    self.open(target, since).await.map(Opened::Replay)
                }
                Start::Live => self.open(target, None).await.map(Opened::Replay),
            },
            Err(refusal) => Err(refusal),
        };
        match opened {
            Ok(opened) => Ok((joined.topic, opened)),
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
    pub(super) async fn ask_join_hook(&self, room: &str) -> Result<bool, Refusal> {
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

/// Where a join starts the client in the room's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::session) enum Start<'a> {
    /// From now: live messages only.
    Live,
    /// After this offset, as the client sent it (one that cannot be read replays nothing).
    Since(&'a str),
    /// The last this many messages first (v1.2).
    Rewind(u32),
}

/// A joined room's history, opened as its [`Start`] asked.
enum Opened {
    /// A replay to stream after `joined` (empty without `since`).
    Replay(ReplayCursor),
    /// The newest messages, read once the room was live, and the share of the replay budget
    /// they hold until written.
    Rewound(HistoryPage, OwnedSemaphorePermit),
}
