//! Answers to client frames: join, leave, publish, resume, ping, refresh.

use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::client::{ClientFrame, ScopeSince};
use ferrocast_protocol::frame::server::{Recovered, ServerFrame};
use ferrocast_protocol::{Envelope, Offset, Target, TargetKey, Upstream};
use tungstenite::Message;

use super::{ALL, Refusal, Room, Session, USER, wait_live};
use crate::bus::{Bus, BusError, Replay};
use crate::metrics::metrics;
use crate::recovery::{self, Written};

impl<B: Bus> Session<B> {
    /// Answers one frame: the answer first, then any replayed messages.
    pub(super) async fn handle(&mut self, frame: ClientFrame) -> Vec<Message> {
        let answer = match frame {
            ClientFrame::Join {
                room,
                since,
                reference,
            } => match self.join(&room, since.as_deref(), reference, None).await {
                Ok(frames) => return frames,
                Err((code, message)) => self.error(reference, code, &message),
            },
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
                Err((code, message)) => self.error(reference, code, &message),
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
                Err((code, message)) => self.error(reference, code, &message),
            },
            ClientFrame::Ping { reference } => self.encode(&ServerFrame::Pong { reference }),
            ClientFrame::Resume { since, reference } => match self.resume(&since).await {
                Ok((recovered, replayed)) => {
                    let answer = self.encode(&ServerFrame::Resumed {
                        reference,
                        recovered,
                    });
                    return answer.into_iter().chain(replayed).collect();
                }
                Err(e) => self.error(reference, ErrorCode::Unavailable, &e.to_string()),
            },
            ClientFrame::Refresh { token } => match self.shared.verifier.verify(&token) {
                Ok(claims) if claims.sub == self.claims.sub => {
                    let exp = claims.exp;
                    self.claims = claims;
                    self.life.set_exp(exp);
                    let refreshed = self.encode(&ServerFrame::Refreshed { exp });
                    return refreshed.into_iter().chain(self.revoke_rooms()).collect();
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
        answer.into_iter().collect()
    }

    /// Joins a room: subscribes, then reads its history after `since`. Answers `joined` followed
    /// by the replayed messages. `by` is `Some("server")` for a worker's join, which needs no
    /// permission from the token.
    pub(super) async fn join(
        &mut self,
        room: &str,
        since: Option<&str>,
        reference: Option<u64>,
        by: Option<&'static str>,
    ) -> Result<Vec<Message>, Refusal> {
        let target = Target::Room(room.to_owned()).key();
        if self.rooms.contains_key(room) {
            // Already live here: nothing to replay, just the current position.
            let replay = self.read(&target, None).await?;
            return Ok(self
                .joined(room, reference, &replay, by)
                .into_iter()
                .collect());
        }
        if !self.shared.bus.is_ready() {
            return Err((
                ErrorCode::Unavailable,
                "the bus is reconnecting; retry".into(),
            ));
        }
        if by.is_none() && !self.claims.rooms.allows(room) && !self.shared.public_rooms.allows(room)
        {
            return Err((
                ErrorCode::Forbidden,
                "the token does not allow this room".into(),
            ));
        }
        if self.rooms.len() >= self.shared.config.max_rooms {
            return Err((
                ErrorCode::TooManyRooms,
                format!(
                    "at most {} rooms per connection",
                    self.shared.config.max_rooms
                ),
            ));
        }
        let joined = self.shared.registry.join(&target, self.id, self.member());
        let replay = match wait_live(joined.state).await {
            Ok(()) => self.read(&target, since.and_then(|s| s.parse().ok())).await,
            Err(refusal) => Err(refusal),
        };
        let replay = match replay {
            Ok(replay) => replay,
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
        // A seam only where there was a replay: with no usable `since`, queued live messages
        // are all new to the client.
        if let (Some(Ok(_)), Some(last)) = (since.map(str::parse::<Offset>), replay.last) {
            self.seams.set(joined.topic, last);
        }
        let frames = recovery::frames(&replay, &self.client, self.encoding, Written::default());
        Ok(self
            .joined(room, reference, &replay, by)
            .into_iter()
            .chain(frames)
            .collect())
    }

    fn joined(
        &self,
        room: &str,
        reference: Option<u64>,
        replay: &Replay,
        by: Option<&str>,
    ) -> Option<Message> {
        self.encode(&ServerFrame::Joined {
            room,
            reference,
            offset: replay.last.map(|o| o.to_string()),
            recovered: replay.recovered,
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

    /// Reads the user and `all` scopes' history after the offsets the client sent; returns what
    /// was recovered and the frames to send after the answer.
    pub(super) async fn resume(
        &mut self,
        since: &ScopeSince,
    ) -> Result<(Recovered, Vec<Message>), BusError> {
        let mut recovered = Recovered::default();
        let mut frames = Vec::new();
        for (index, since) in [(USER, &since.user), (ALL, &since.all)] {
            let Some(since) = since else {
                continue;
            };
            let replay = self
                .shared
                .bus
                .read(&self.auto[index], since.parse().ok())
                .await?;
            match index {
                USER => recovered.user = replay.recovered,
                _ => recovered.all = replay.recovered,
            }
            let written = self.written[usize::from(index == ALL)];
            frames.extend(recovery::frames(
                &replay,
                &self.client,
                self.encoding,
                written,
            ));
            if let Some(last) = replay.last {
                self.seams.set(self.auto_topics[index], last);
            }
        }
        Ok((recovered, frames))
    }

    async fn read(&self, target: &TargetKey, since: Option<Offset>) -> Result<Replay, Refusal> {
        self.shared
            .bus
            .read(target, since)
            .await
            .map_err(|e| (ErrorCode::Unavailable, e.to_string()))
    }

    async fn publish(
        &mut self,
        room: String,
        event: &str,
        data: Vec<u8>,
        echo: bool,
    ) -> Result<String, Refusal> {
        if !self.claims.publish.allows(&room) {
            return Err((
                ErrorCode::Forbidden,
                "the token does not allow publishing to this room".into(),
            ));
        }
        if !self.rooms.contains_key(&room) {
            return Err((
                ErrorCode::NotJoined,
                "join the room before publishing to it".into(),
            ));
        }
        self.check_data(&data)?;
        let mut envelope = Envelope::message(&Target::Room(room), event, data);
        if !echo {
            envelope.except.push(self.client.to_string());
        }
        match self.shared.bus.publish(&envelope).await {
            Ok(offset) => Ok(offset.to_string()),
            Err(BusError::Unavailable(e)) => Err((ErrorCode::Unavailable, e)),
            Err(BusError::Refused(e)) => Err((ErrorCode::BadFrame, e)),
        }
    }

    /// Checks `data` of a `publish` or `send`: not over `--max-data-size`, and JSON that every
    /// client's encoding can carry (refused now rather than acked and skipped later).
    fn check_data(&self, data: &[u8]) -> Result<(), Refusal> {
        let max = self.shared.config.max_data_size;
        if data.len() > max {
            return Err((
                ErrorCode::TooLarge,
                format!("data is {} bytes; at most {max} allowed", data.len()),
            ));
        }
        ferrocast_protocol::data::check(data).map_err(|e| (ErrorCode::BadFrame, e.to_string()))
    }

    /// Appends a `send` to the upstream inbox; returns its stream id once Redis has it.
    async fn send_upstream(&mut self, event: String, data: Vec<u8>) -> Result<String, Refusal> {
        if !self.shared.upstream_events.allows(&event) {
            let message = if self.shared.config.upstream_events.is_empty() {
                "upstream messages are not enabled on this edge"
            } else {
                "this event may not be sent upstream"
            };
            return Err((ErrorCode::Forbidden, message.into()));
        }
        self.check_data(&data)?;
        if !self.shared.bus.is_ready() {
            return Err((
                ErrorCode::Unavailable,
                "the bus is reconnecting; retry".into(),
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
        match self.shared.bus.send_upstream(&upstream).await {
            Ok(id) => {
                metrics().upstream_appends.inc();
                Ok(id)
            }
            Err(BusError::Unavailable(e)) => Err((ErrorCode::Unavailable, e)),
            Err(BusError::Refused(e)) => Err((ErrorCode::Internal, e)),
        }
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
            if let Err((_, error)) = wait_live(joined.state).await {
                tracing::warn!(%error, "cannot subscribe a new connection's own targets");
                return false;
            }
        }
        true
    }
}
