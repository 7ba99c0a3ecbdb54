//! Answers to client frames: join, leave, publish, resume, ping, refresh.

use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::client::ClientFrame;
use ferrocast_protocol::frame::server::ServerFrame;
use ferrocast_protocol::{Envelope, Target, Upstream};
use tungstenite::Message;

use super::Session;
use super::identify::{Denied, Peer};
use super::rate::{ByteQuota, TokenBucket, UpstreamQuota, Verdict};
use super::refusal::Refusal;
use super::replay::Replaying;
use crate::bus::Bus;
use crate::ops::metrics::metrics;

/// Rate-limit tokens a `since` costs beyond its frame: a replay makes Redis read history, so
/// join/leave loops with `since` must run out of tokens long before they cost Redis much.
pub(super) const SINCE_COST: f64 = 4.0;

/// Refusals in a row by one `--event-rate` rule (at least; its burst if larger) after which the
/// client is closed with 4008: it is not waiting as long as it is told.
const EVENT_RATE_PATIENCE: u32 = 10;

/// What answering a frame writes: its frames, then any replays, a page at a time.
#[derive(Default)]
pub(super) struct Reply {
    /// Frames to write first.
    pub frames: Vec<Message>,
    /// Replays to stream after them.
    pub replays: Vec<Replaying>,
    /// The close code to close the connection with once they are written.
    pub close: Option<u16>,
}

impl From<Option<Message>> for Reply {
    fn from(frame: Option<Message>) -> Reply {
        Reply {
            frames: frame.into_iter().collect(),
            replays: Vec::new(),
            close: None,
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
                if self.leave(&room, "client") {
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
                Err(refusal) => return self.refused(reference, &refusal),
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
                Err(refusal) => return self.refused(reference, &refusal),
            },
            ClientFrame::Ping { reference } => self.encode(&ServerFrame::Pong { reference }),
            ClientFrame::Presence { room, reference } => {
                // A list makes Redis read up to --presence-max entries: it costs like a `since`.
                self.rate.charge(SINCE_COST);
                match self.presence(&room).await {
                    Ok(clients) => self.encode(&ServerFrame::Presence {
                        room: &room,
                        reference,
                        clients,
                    }),
                    Err(refusal) => self.refuse(reference, &refusal),
                }
            }
            ClientFrame::PresenceStats { room, reference } => {
                match self.presence_stats(&room).await {
                    Ok(stats) => self.encode(&ServerFrame::PresenceStats {
                        room: &room,
                        reference,
                        clients: stats.clients,
                        users: stats.users,
                    }),
                    Err(refusal) => self.refuse(reference, &refusal),
                }
            }
            ClientFrame::Resume { since, reference } => match self.resume(&since).await {
                Ok((recovered, replays)) => {
                    let answer = self.encode(&ServerFrame::Resumed {
                        reference,
                        recovered,
                    });
                    return Reply {
                        frames: answer.into_iter().collect(),
                        replays,
                        close: None,
                    };
                }
                Err(e) => self.error(reference, ErrorCode::Unavailable, &e.to_string()),
            },
            ClientFrame::Refresh { token } => return self.refresh(&token).await,
            ClientFrame::Auth { .. } => {
                self.error(None, ErrorCode::BadFrame, "already authenticated")
            }
        };
        answer.into()
    }

    /// Replaces the connection's claims with those of `token` (same user), then leaves the
    /// rooms they no longer allow.
    async fn refresh(&mut self, token: &str) -> Reply {
        let peer = Peer {
            client: self.client.clone(),
            remote: self.remote,
            origin: None,
        };
        let answer = match self.shared.identify(token, &peer).await {
            Ok(claims) if claims.sub == self.claims.sub => {
                let exp = claims.exp;
                let info_changed = claims.info != self.claims.info;
                self.claims = claims;
                self.life.set_exp(exp);
                let refreshed = self.encode(&ServerFrame::Refreshed { exp });
                let frames = refreshed.into_iter().chain(self.revoke_rooms()).collect();
                if info_changed {
                    self.present_again();
                }
                return Reply {
                    frames,
                    replays: Vec::new(),
                    close: None,
                };
            }
            Ok(_) => self.error(
                None,
                ErrorCode::Forbidden,
                "a refreshed token must keep the same sub",
            ),
            Err(Denied::Refused { message, .. }) => self.error(
                None,
                ErrorCode::Forbidden,
                &format!("token refused: {message}"),
            ),
            Err(Denied::Unavailable(_)) => self.refuse(
                None,
                &Refusal::new(
                    ErrorCode::Unavailable,
                    "authentication unavailable; retry the refresh",
                ),
            ),
        };
        answer.into()
    }

    pub(super) async fn publish(
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
        self.check_event_rate(event)?;
        if !self.rooms.contains(&room) {
            return Err(Refusal::new(
                ErrorCode::NotJoined,
                "join the room before publishing to it",
            ));
        }
        self.check_data(&data)?;
        let config = &self.shared.config;
        // Made on the first `publish`: most connections never publish, and idle ones stay small.
        let quota = self.publish_quota.get_or_insert_with(|| {
            Box::new(ByteQuota::new(
                config.publish_bytes_rate,
                config.max_data_size,
            ))
        });
        if let Err(wait) = quota.take(data.len(), std::time::Instant::now()) {
            metrics().rate_limited.inc();
            return Err(Refusal::rate_limited(
                "publish quota exceeded (--publish-bytes-rate)",
                wait,
            ));
        }
        let mut envelope = Envelope::message(&Target::Room(room), event, data);
        if !echo {
            envelope.except.push(self.client.to_string());
        }
        Ok(self.shared.bus.publish(&envelope, false).await?.to_string())
    }

    /// The error answer to frame `reference` for `refusal`, and the close after it if the
    /// refusal asks for one.
    fn refused(&self, reference: Option<u64>, refusal: &Refusal) -> Reply {
        let mut reply = Reply::from(self.refuse(reference, refusal));
        reply.close = refusal.close_after;
        reply
    }

    /// Applies the first `--event-rate` rule `event` matches, if any: its bucket is made on the
    /// connection's first frame of that rule.
    fn check_event_rate(&mut self, event: &str) -> Result<(), Refusal> {
        let rules = &self.shared.config.event_rates;
        let Some(index) = rules
            .iter()
            .position(|rule| crate::session::auth::matches(&rule.pattern, event))
        else {
            return Ok(());
        };
        let buckets = self
            .event_limits
            .get_or_insert_with(|| rules.iter().map(|_| None).collect());
        let rule = &rules[index];
        // A small burst must not make a client that retries a little late a flooder.
        let patience = rule.burst.max(EVENT_RATE_PATIENCE);
        let bucket = buckets[index].get_or_insert_with(|| {
            TokenBucket::with_patience(rule.per_second, rule.burst, patience)
        });
        let now = std::time::Instant::now();
        let refused = |bucket: &TokenBucket| {
            metrics().rate_limited.inc();
            Refusal::rate_limited(
                format!(
                    "at most {} {} frames a second (--event-rate)",
                    rule.per_second, rule.pattern
                ),
                bucket.retry_after_ms(now),
            )
        };
        match bucket.take(now) {
            Verdict::Allow => Ok(()),
            Verdict::Refuse => Err(refused(bucket)),
            Verdict::Close => {
                let mut refusal = refused(bucket);
                refusal.close_after = Some(ferrocast_protocol::close::RATE_LIMITED);
                Err(refusal)
            }
        }
    }

    /// Checks `data` of a `publish` or `send`: not over `--max-data-size`, and JSON that every
    /// client's encoding can carry (refused now rather than acked and skipped later).
    pub(super) fn check_data(&self, data: &[u8]) -> Result<(), Refusal> {
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
    pub(super) async fn send_upstream(
        &mut self,
        event: String,
        data: Vec<u8>,
    ) -> Result<String, Refusal> {
        if !self.shared.upstream_events.allows(&event) {
            let message = if self.shared.config.upstream_events.is_empty() {
                "upstream messages are not enabled on this edge"
            } else {
                "this event may not be sent upstream"
            };
            return Err(Refusal::new(ErrorCode::Forbidden, message));
        }
        self.check_event_rate(&event)?;
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
}
