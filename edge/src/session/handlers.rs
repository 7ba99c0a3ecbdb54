//! Answers to client frames: join, leave, publish, resume, ping, refresh.

use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::client::{ClientFrame, ScopeSince};
use ferrocast_protocol::frame::server::{Recovered, ServerFrame};
use ferrocast_protocol::{Envelope, Offset, Target, TargetKey, Upstream};
use tungstenite::Message;

use super::rate::UpstreamQuota;
use super::replay::Replaying;
use super::{ALL, Refusal, Room, Session, USER, wait_live};
use crate::bus::{Bus, BusError, ReplayCursor};
use crate::metrics::metrics;
use crate::recovery::Written;

/// Rate-limit tokens a `since` costs beyond its frame: a replay makes Redis read history, so
/// join/leave loops with `since` must run out of tokens long before they cost Redis much.
const SINCE_COST: f64 = 4.0;

/// What answering a frame writes: its frames, then any replays, a page at a time.
#[derive(Default)]
pub(super) struct Reply {
    /// Frames to write first.
    pub frames: Vec<Message>,
    /// Replays to stream after them.
    pub replays: Vec<Replaying>,
}

impl From<Option<Message>> for Reply {
    fn from(frame: Option<Message>) -> Reply {
        Reply {
            frames: frame.into_iter().collect(),
            replays: Vec::new(),
        }
    }
}

impl<B: Bus> Session<B> {
    /// Answers one frame: the answer first, then any replays.
    pub(super) async fn handle(&mut self, frame: ClientFrame) -> Reply {
        let answer = match frame {
            ClientFrame::Join {
                room,
                since,
                reference,
            } => {
                if since.is_some() {
                    self.rate.charge(SINCE_COST);
                }
                match self.join(&room, since.as_deref(), reference, None).await {
                    Ok(reply) => return reply,
                    Err(refusal) => self.refuse(reference, &refusal),
                }
            }
            ClientFrame::Leave { room, reference } => {
                if self.leave(&room) {
                    self.encode(&ServerFrame::Left {
                        room: &room,
                        reference,
                        by: None,
                    })
                } else {
                    self.error(reference, ErrorCode::NotJoined, "not in that room")
                }
            }
            ClientFrame::Publish {
                room,
                event,
                data,
                echo,
                reference,
            } => match self.publish(room, &event, data, echo).await {
                Ok(offset) => self.encode(&ServerFrame::Ack {
                    reference,
                    offset: Some(offset),
                    id: None,
                }),
                Err(refusal) => self.refuse(reference, &refusal),
            },
            ClientFrame::Send {
                event,
                data,
                reference,
            } => match self.send_upstream(event, data).await {
                Ok(id) => self.encode(&ServerFrame::Ack {
                    reference,
                    offset: None,
                    id: Some(id),
                }),
                Err(refusal) => self.refuse(reference, &refusal),
            },
            ClientFrame::Ping { reference } => self.encode(&ServerFrame::Pong { reference }),
            ClientFrame::Resume { since, reference } => match self.resume(&since).await {
                Ok((recovered, replays)) => {
                    let answer = self.encode(&ServerFrame::Resumed {
                        reference,
                        recovered,
                    });
                    return Reply {
                        frames: answer.into_iter().collect(),
                        replays,
                    };
                }
                Err(e) => self.error(reference, ErrorCode::Unavailable, &e.to_string()),
            },
            ClientFrame::Refresh { token } => match self.shared.verifier.verify(&token) {
                Ok(claims) if claims.sub == self.claims.sub => {
                    let exp = claims.exp;
                    self.claims = claims;
                    self.life.set_exp(exp);
                    let refreshed = self.encode(&ServerFrame::Refreshed { exp });
                    return Reply {
                        frames: refreshed.into_iter().chain(self.revoke_rooms()).collect(),
                        replays: Vec::new(),
                    };
                }
                Ok(_) => self.error(
                    None,
                    ErrorCode::Forbidden,
                    "a refreshed token must keep the same sub",
                ),
                Err(e) => self.error(None, ErrorCode::Forbidden, &format!("token refused: {e}")),
            },
            ClientFrame::Auth { .. } => {
                self.error(None, ErrorCode::BadFrame, "already authenticated")
            }
        };
        answer.into()
    }

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
        if self.rooms.contains_key(room) {
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
        if by.is_none() && !self.claims.rooms.allows(room) && !self.shared.public_rooms.allows(room)
        {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "the token does not allow this room",
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
        let joined = self.shared.registry.join(&target, self.id, self.member());
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
        let by_server = by.is_some();
        self.rooms.insert(
            room.to_owned(),
            Room {
                topic: joined.topic,
                by_server,
            },
        );
        metrics().room_memberships.inc();
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
                cursor,
                written: Written::default(),
            }],
        })
    }

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

    /// Leaves a room; false if the connection was not in it. Nothing of the room is written
    /// after this, even what was queued before.
    pub(super) fn leave(&mut self, room: &str) -> bool {
        let Some(Room { topic, .. }) = self.rooms.remove(room) else {
            return false;
        };
        self.shared
            .registry
            .leave(&Target::Room(room.to_owned()).key(), self.id);
        self.seams.forget(topic);
        self.fence(topic);
        metrics().room_memberships.dec();
        true
    }

    /// Drops whatever of `topic`, which the registry no longer holds this connection in, is
    /// still queued (see [`Fences`](crate::outbox::Fences)).
    fn fence(&mut self, topic: u64) {
        self.fences.raise(topic);
        self.outbox.push(crate::outbox::Outbound::Fence(topic));
    }

    /// Leaves, each with `left` `by: "server"`, the rooms that neither the token's claims, nor a
    /// public pattern, nor a worker's join allow any longer (after a `refresh`).
    fn revoke_rooms(&mut self) -> Vec<Message> {
        let revoked: Vec<String> = self
            .rooms
            .iter()
            .filter(|(room, joined)| {
                !joined.by_server
                    && !self.claims.rooms.allows(room)
                    && !self.shared.public_rooms.allows(room)
            })
            .map(|(room, _)| room.clone())
            .collect();
        let mut frames = Vec::with_capacity(revoked.len());
        for room in revoked {
            if self.leave(&room) {
                frames.extend(self.encode(&ServerFrame::Left {
                    room: &room,
                    reference: None,
                    by: Some("server"),
                }));
            }
        }
        frames
    }

    /// Opens the user and `all` scopes' history after the offsets the client sent; returns what
    /// was recovered and the replays to stream after the answer.
    pub(super) async fn resume(
        &mut self,
        since: &ScopeSince,
    ) -> Result<(Recovered, Vec<Replaying>), BusError> {
        if since.user.is_some() || since.all.is_some() {
            self.rate.charge(SINCE_COST);
        }
        let mut recovered = Recovered::default();
        let mut replays = Vec::new();
        for (index, since) in [(USER, &since.user), (ALL, &since.all)] {
            let Some(since) = since else {
                continue;
            };
            let target = self.auto[index].clone();
            let cursor = self
                .shared
                .bus
                .open_replay(&target, since.parse().ok())
                .await?;
            match index {
                USER => recovered.user = cursor.recovered,
                _ => recovered.all = cursor.recovered,
            }
            if let Some(last) = cursor.last {
                self.seams.set(self.auto_topics[index], last);
            }
            replays.push(Replaying {
                target,
                cursor,
                written: self.written[usize::from(index == ALL)],
            });
        }
        Ok((recovered, replays))
    }

    async fn open(
        &self,
        target: &TargetKey,
        since: Option<Offset>,
    ) -> Result<ReplayCursor, Refusal> {
        self.shared
            .bus
            .open_replay(target, since)
            .await
            .map_err(|e| Refusal::new(ErrorCode::Unavailable, e.to_string()))
    }

    async fn publish(
        &mut self,
        room: String,
        event: &str,
        data: Vec<u8>,
        echo: bool,
    ) -> Result<String, Refusal> {
        if !self.claims.publish.allows(&room) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "the token does not allow publishing to this room",
            ));
        }
        if !self.rooms.contains_key(&room) {
            return Err(Refusal::new(
                ErrorCode::NotJoined,
                "join the room before publishing to it",
            ));
        }
        self.check_data(&data)?;
        let mut envelope = Envelope::message(&Target::Room(room), event, data);
        if !echo {
            envelope.except.push(self.client.to_string());
        }
        Ok(self.shared.bus.publish(&envelope).await?.to_string())
    }

    /// Checks `data` of a `publish` or `send`: not over `--max-data-size`, and JSON that every
    /// client's encoding can carry (refused now rather than acked and skipped later).
    fn check_data(&self, data: &[u8]) -> Result<(), Refusal> {
        let max = self.shared.config.max_data_size;
        if data.len() > max {
            return Err(Refusal::new(
                ErrorCode::TooLarge,
                format!("data is {} bytes; at most {max} allowed", data.len()),
            ));
        }
        ferrocast_protocol::data::check(data)
            .map_err(|e| Refusal::new(ErrorCode::BadFrame, e.to_string()))
    }

    /// Appends a `send` to the upstream inbox; returns its stream id once Redis has it.
    async fn send_upstream(&mut self, event: String, data: Vec<u8>) -> Result<String, Refusal> {
        if !self.shared.upstream_events.allows(&event) {
            let message = if self.shared.config.upstream_events.is_empty() {
                "upstream messages are not enabled on this edge"
            } else {
                "this event may not be sent upstream"
            };
            return Err(Refusal::new(ErrorCode::Forbidden, message));
        }
        if let Some(send) = &self.claims.send
            && !send.allows(&event)
        {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "the token does not allow sending this event",
            ));
        }
        self.check_data(&data)?;
        let config = &self.shared.config;
        // Made on the first `send`: most connections never send, and idle ones stay small.
        let quota = self.upstream_quota.get_or_insert_with(|| {
            Box::new(UpstreamQuota::new(
                config.upstream_rate,
                config.upstream_burst,
                config.upstream_bytes_rate,
                config.max_data_size,
            ))
        });
        if let Err(wait) = quota.take(data.len(), std::time::Instant::now()) {
            metrics().rate_limited.inc();
            return Err(Refusal::rate_limited(
                "upstream quota exceeded (--upstream-rate, --upstream-bytes-rate)",
                wait,
            ));
        }
        if !self.shared.bus.is_ready() {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "the bus is reconnecting; retry",
            ));
        }
        let span = tracing::info_span!("upstream", %event);
        let upstream = Upstream {
            v: ferrocast_protocol::envelope::VERSION,
            id: uuid::Uuid::now_v7(),
            client: self.client.to_string(),
            user: self.claims.sub.clone(),
            node: self.shared.node_id.clone(),
            event,
            data,
            meta: self
                .claims
                .meta
                .as_ref()
                .and_then(|meta| serde_json::to_vec(meta).ok()),
            ts: ferrocast_protocol::envelope::now_ms(),
            trace: span.in_scope(ferrocast_emitter::current_traceparent),
        };
        let id = self.shared.bus.send_upstream(&upstream).await?;
        metrics().upstream_appends.inc();
        Ok(id)
    }

    /// Joins the user, client and `all` targets and waits until they are live.
    pub(super) async fn join_auto(&mut self) -> bool {
        let joined: Vec<_> = self
            .auto
            .iter()
            .map(|t| self.shared.registry.join(t, self.id, self.member()))
            .collect();
        for (index, joined) in joined.into_iter().enumerate() {
            self.auto_topics[index] = joined.topic;
            if let Err(refusal) = wait_live(joined.state).await {
                tracing::warn!(?refusal, "cannot subscribe a new connection's own targets");
                return false;
            }
        }
        true
    }
}
