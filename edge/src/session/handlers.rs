//! Answers to client frames: join, leave, publish, resume, ping, refresh.

use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::client::{ClientFrame, ScopeSince};
use ferrocast_protocol::frame::server::{Recovered, ServerFrame};
use ferrocast_protocol::{Envelope, Offset, Target, TargetKey};
use tungstenite::Message;

use super::{ALL, Refusal, Session, USER, wait_live};
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
            } => match self.join(&room, since.as_deref(), reference).await {
                Ok(frames) => return frames,
                Err((code, message)) => self.error(reference, code, &message),
            },
            ClientFrame::Leave { room, reference } => match self.rooms.remove(&room) {
                Some(topic) => {
                    self.shared
                        .registry
                        .leave(&Target::Room(room.clone()).key(), self.id);
                    self.seams.forget(topic);
                    metrics().room_memberships.dec();
                    self.encode(&ServerFrame::Left {
                        room: &room,
                        reference,
                        by: None,
                    })
                }
                None => self.error(reference, ErrorCode::NotJoined, "not in that room"),
            },
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
            ClientFrame::Send { reference, .. } => self.error(
                reference,
                ErrorCode::Forbidden,
                "upstream messages are not enabled on this edge",
            ),
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
                    self.encode(&ServerFrame::Refreshed { exp })
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
    /// by the replayed messages.
    async fn join(
        &mut self,
        room: &str,
        since: Option<&str>,
        reference: Option<u64>,
    ) -> Result<Vec<Message>, Refusal> {
        let target = Target::Room(room.to_owned()).key();
        if self.rooms.contains_key(room) {
            // Already live here: nothing to replay, just the current position.
            let replay = self.read(&target, None).await?;
            return Ok(self.joined(room, reference, &replay).into_iter().collect());
        }
        if !self.shared.bus.is_ready() {
            return Err((
                ErrorCode::Unavailable,
                "the bus is reconnecting; retry".into(),
            ));
        }
        if !self.claims.rooms.allows(room) && !self.shared.public_rooms.allows(room) {
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
                return Err(refusal);
            }
        };
        self.rooms.insert(room.to_owned(), joined.topic);
        metrics().room_memberships.inc();
        // A seam only where there was a replay: with no usable `since`, queued live messages
        // are all new to the client.
        if let (Some(Ok(_)), Some(last)) = (since.map(str::parse::<Offset>), replay.last) {
            self.seams.set(joined.topic, last);
        }
        let frames = recovery::frames(&replay, &self.client, self.encoding, Written::default());
        Ok(self
            .joined(room, reference, &replay)
            .into_iter()
            .chain(frames)
            .collect())
    }

    fn joined(&self, room: &str, reference: Option<u64>, replay: &Replay) -> Option<Message> {
        self.encode(&ServerFrame::Joined {
            room,
            reference,
            offset: replay.last.map(|o| o.to_string()),
            recovered: replay.recovered,
            by: None,
        })
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
