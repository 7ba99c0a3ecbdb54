//! One client connection, from its first frame to its close.
//!
//! A single task owns the socket: it reads client frames and answers them in order, and writes
//! what the registry queued for it, a whole burst per flush. Everything it joined is left when it
//! ends, whatever the reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrocast_protocol::close::{self, ErrorCode};
use ferrocast_protocol::frame::client::{ClientFrame, FrameError, ScopeSince};
use ferrocast_protocol::frame::server::{Recovered, ServerFrame};
use ferrocast_protocol::{Encoding, Envelope, Offset, Target, TargetKey};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Utf8Bytes;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::Shared;
use crate::auth::Claims;
use crate::bus::{Bus, BusError, Replay};
use crate::outbox::{self, Inbox, Outbound, Outbox};
use crate::recovery::{self, Seams, Written};
use crate::registry::{Member, SubState};

/// The socket, after the upgrade.
pub type Ws = WebSocketStream<TcpStream>;

/// How long a join may wait for its subscription.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);
/// How long a closing handshake may take before the socket is simply dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Most queued frames written per flush, so one busy connection cannot starve its own reads.
const BURST: usize = 256;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Serves one upgraded connection. `claims` is set when the upgrade carried a valid
/// `Authorization` header; otherwise the first frame must be `auth`.
pub async fn run<B: Bus>(
    shared: Arc<Shared<B>>,
    mut ws: Ws,
    encoding: Encoding,
    claims: Option<Claims>,
) {
    let (claims, since) = match claims {
        Some(claims) => (claims, ScopeSince::default()),
        None => match authenticate(&shared, &mut ws).await {
            Ok(claims) => claims,
            Err(reason) => {
                tracing::debug!(reason, "authentication failed");
                close_with(&mut ws, close::AUTH_FAILED, reason).await;
                return;
            }
        },
    };
    let (outbox, inbox) = outbox::channel(shared.config.outbound_queue);
    let client: Arc<str> = uuid::Uuid::new_v4().hyphenated().to_string().into();
    let auto = [
        Target::User(claims.sub.clone()).key(),
        Target::Client(client.to_string()).key(),
        Target::All.key(),
    ];
    let mut session = Session {
        id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
        shared,
        client,
        claims,
        encoding,
        outbox,
        rooms: HashMap::new(),
        auto,
        auto_topics: [0; 3],
        seams: Seams::default(),
        written: [Written::default(); 2],
    };
    let span =
        tracing::debug_span!("session", client = %session.client, user = %session.claims.sub);
    session.serve(&mut ws, inbox, since).instrument(span).await;
    session.leave_everything();
}

/// Waits for the `auth` frame and checks its token. The error is the close reason.
async fn authenticate<B: Bus>(
    shared: &Shared<B>,
    ws: &mut Ws,
) -> Result<(Claims, ScopeSince), &'static str> {
    let deadline = tokio::time::Instant::now() + shared.config.auth_timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err("authentication timed out"),
            Ok(None | Some(Err(_))) => return Err("connection closed before authentication"),
            Ok(Some(Ok(Message::Text(text)))) => ClientFrame::from_json(text.as_bytes()),
            Ok(Some(Ok(Message::Binary(bytes)))) => ClientFrame::from_msgpack(&bytes),
            Ok(Some(Ok(_))) => continue,
        };
        return match frame {
            Ok(ClientFrame::Auth { token, since }) => shared
                .verifier
                .verify(&token)
                .map(|c| (c, since))
                .map_err(|e| {
                    tracing::debug!(error = %e, "token refused");
                    "invalid token"
                }),
            _ => Err("the first frame must be auth"),
        };
    }
}

struct Session<B: Bus> {
    id: u64,
    shared: Arc<Shared<B>>,
    client: Arc<str>,
    claims: Claims,
    encoding: Encoding,
    outbox: Outbox,
    /// Joined rooms and their registry topics.
    rooms: HashMap<String, u64>,
    /// The user, client and `all` targets every connection is in.
    auto: [TargetKey; 3],
    /// Their registry topics, in the same order.
    auto_topics: [u64; 3],
    seams: Seams,
    /// What was written live for the user and `all` scopes (see [`Written`]).
    written: [Written; 2],
}

/// An error answer: code and message.
type Refusal = (ErrorCode, String);

const USER: usize = 0;
const ALL: usize = 2;

impl<B: Bus> Session<B> {
    async fn serve(&mut self, ws: &mut Ws, mut inbox: Inbox, since: ScopeSince) {
        if !self.join_auto().await {
            close_with(ws, close::TRY_LATER, "bus unavailable").await;
            return;
        }
        let (recovered, replayed) = match self.resume(&since).await {
            Ok(resumed) => resumed,
            Err(_) => {
                close_with(ws, close::TRY_LATER, "bus unavailable").await;
                return;
            }
        };
        let welcome = ServerFrame::Welcome {
            client: &self.client,
            user: &self.claims.sub,
            node: &self.shared.node_id,
            heartbeat: self.shared.config.heartbeat.as_millis() as u64,
            recovered,
        };
        let Some(welcome) = self.encode(&welcome) else {
            return;
        };
        if write_all(ws, std::iter::once(welcome).chain(replayed))
            .await
            .is_err()
        {
            return;
        }
        loop {
            tokio::select! {
                biased;
                code = inbox.kick.requested() => {
                    close_with(ws, code, kick_reason(code)).await;
                    return;
                }
                Some(first) = inbox.rx.recv() => {
                    // A write stuck on a client that does not read must not outlive its queue.
                    let kicked = tokio::select! {
                        written = self.write_burst(ws, first, &mut inbox.rx) => match written {
                            Ok(()) => None,
                            Err(_) => Some(close::SLOW_CONSUMER),
                        },
                        code = inbox.kick.requested() => Some(code),
                    };
                    if let Some(code) = kicked {
                        close_with(ws, code, kick_reason(code)).await;
                        return;
                    }
                }
                incoming = ws.next() => {
                    let frame = match incoming {
                        None => return,
                        Some(Ok(Message::Text(text))) => ClientFrame::from_json(text.as_bytes()),
                        Some(Ok(Message::Binary(bytes))) => ClientFrame::from_msgpack(&bytes),
                        Some(Ok(_)) => continue,
                        Some(Err(tungstenite::Error::Capacity(_))) => {
                            close_with(ws, close::TOO_BIG, "frame too large").await;
                            return;
                        }
                        Some(Err(_)) => return,
                    };
                    let replies = match frame {
                        Ok(frame) => self.handle(frame).await,
                        Err(FrameError { reference, code, message }) => {
                            self.error(reference, code, &message).into_iter().collect()
                        }
                    };
                    if write_all(ws, replies).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Answers one frame: the answer first, then any replayed messages.
    async fn handle(&mut self, frame: ClientFrame) -> Vec<Message> {
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
        if let (Some(_), Some(last)) = (since, replay.last) {
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
    async fn resume(&mut self, since: &ScopeSince) -> Result<(Recovered, Vec<Message>), BusError> {
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
    async fn join_auto(&mut self) -> bool {
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

    /// Writes `first` and whatever else is queued (up to a burst), then flushes once. Frames a
    /// replay already sent are dropped.
    async fn write_burst(
        &mut self,
        ws: &mut Ws,
        first: Outbound,
        rx: &mut tokio::sync::mpsc::Receiver<Outbound>,
    ) -> Result<(), tungstenite::Error> {
        let mut next = Some(first);
        let mut count = 0;
        while let Some(item) = next {
            if self.seams.admit(item.topic, item.offset) {
                if let Some(offset) = item.offset {
                    if item.topic == self.auto_topics[USER] {
                        self.written[0].note(offset);
                    } else if item.topic == self.auto_topics[ALL] {
                        self.written[1].note(offset);
                    }
                }
                ws.feed(item.frame).await?;
            }
            count += 1;
            next = if count < BURST {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        ws.flush().await
    }

    fn leave_everything(&mut self) {
        let registry = &self.shared.registry;
        for target in &self.auto {
            registry.leave(target, self.id);
        }
        for (room, _) in self.rooms.drain() {
            registry.leave(&Target::Room(room).key(), self.id);
        }
    }

    fn member(&self) -> Member {
        Member {
            client: self.client.clone(),
            encoding: self.encoding,
            outbox: self.outbox.clone(),
        }
    }

    fn error(&self, reference: Option<u64>, code: ErrorCode, message: &str) -> Option<Message> {
        self.encode(&ServerFrame::Error {
            reference,
            code,
            message,
        })
    }

    fn encode(&self, frame: &ServerFrame<'_>) -> Option<Message> {
        match frame.encode(self.encoding) {
            Ok(bytes) => Some(match self.encoding {
                Encoding::Json => match String::from_utf8(bytes) {
                    Ok(text) => Message::Text(Utf8Bytes::from(text)),
                    Err(_) => return None,
                },
                Encoding::MsgPack => Message::Binary(Bytes::from(bytes)),
            }),
            Err(error) => {
                tracing::error!(%error, "cannot encode a control frame");
                None
            }
        }
    }
}

/// Waits until a joined target's subscription is live.
async fn wait_live(mut state: watch::Receiver<SubState>) -> Result<(), Refusal> {
    match tokio::time::timeout(SUBSCRIBE_WAIT, state.wait_for(|s| *s == SubState::Live)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err((
            ErrorCode::Unavailable,
            "the bus is unavailable; retry".into(),
        )),
        Err(_) => Err((
            ErrorCode::Unavailable,
            "subscribing timed out; retry".into(),
        )),
    }
}

/// Writes frames and flushes once.
async fn write_all(
    ws: &mut Ws,
    frames: impl IntoIterator<Item = Message>,
) -> Result<(), tungstenite::Error> {
    for frame in frames {
        ws.feed(frame).await?;
    }
    ws.flush().await
}

fn kick_reason(code: u16) -> &'static str {
    match code {
        close::SLOW_CONSUMER => "slow consumer",
        close::INTERNAL => "message history lost; reconnect and resume",
        _ => "closed by the edge",
    }
}

/// Sends a close frame and waits briefly for the client's answer.
async fn close_with(ws: &mut Ws, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if ws.close(Some(frame)).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}
