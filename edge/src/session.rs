//! One client connection, from its first frame to its close.
//!
//! A single task owns the socket: it reads client frames and answers them in order, and writes
//! what the registry queued for it, a whole burst per flush. Everything it joined is left when it
//! ends, whatever the reason.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrocast_protocol::close::{self, ErrorCode};
use ferrocast_protocol::frame::client::{ClientFrame, FrameError};
use ferrocast_protocol::frame::server::{Recovered, ServerFrame};
use ferrocast_protocol::{Encoding, Envelope, Target, TargetKey};
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
use crate::bus::{Bus, BusError};
use crate::outbox::{self, Inbox, Outbox};
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
    let claims = match claims {
        Some(claims) => claims,
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
        rooms: HashSet::new(),
        auto,
    };
    let span =
        tracing::debug_span!("session", client = %session.client, user = %session.claims.sub);
    session.serve(&mut ws, inbox).instrument(span).await;
    session.leave_everything();
}

/// Waits for the `auth` frame and checks its token. The error is the close reason.
async fn authenticate<B: Bus>(shared: &Shared<B>, ws: &mut Ws) -> Result<Claims, &'static str> {
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
            Ok(ClientFrame::Auth { token, .. }) => shared.verifier.verify(&token).map_err(|e| {
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
    rooms: HashSet<String>,
    /// The user, client and `all` targets every connection is in.
    auto: [TargetKey; 3],
}

/// An error answer: code and message.
type Refusal = (ErrorCode, String);

impl<B: Bus> Session<B> {
    async fn serve(&mut self, ws: &mut Ws, mut inbox: Inbox) {
        if !self.join_auto().await {
            close_with(ws, close::TRY_LATER, "bus unavailable").await;
            return;
        }
        let welcome = ServerFrame::Welcome {
            client: &self.client,
            user: &self.claims.sub,
            node: &self.shared.node_id,
            heartbeat: self.shared.config.heartbeat.as_millis() as u64,
            recovered: Recovered::default(),
        };
        if self.send(ws, &welcome).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                biased;
                _ = inbox.overflow.notified() => {
                    close_with(ws, close::SLOW_CONSUMER, "slow consumer").await;
                    return;
                }
                Some(first) = inbox.rx.recv() => {
                    // A write stuck on a client that does not read must not outlive its queue.
                    let written = tokio::select! {
                        written = write_burst(ws, first, &mut inbox.rx) => written.is_ok(),
                        _ = inbox.overflow.notified() => false,
                    };
                    if !written {
                        close_with(ws, close::SLOW_CONSUMER, "slow consumer").await;
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
                    let reply = match frame {
                        Ok(frame) => self.handle(frame).await,
                        Err(FrameError { reference, code, message }) => self.error(reference, code, &message),
                    };
                    if let Some(reply) = reply
                        && ws.send(reply).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Answers one frame. `None`: nothing to send.
    async fn handle(&mut self, frame: ClientFrame) -> Option<Message> {
        match frame {
            ClientFrame::Join {
                room,
                since,
                reference,
            } => match self.join(&room, since.is_some(), reference).await {
                Ok(joined) => joined,
                Err((code, message)) => self.error(reference, code, &message),
            },
            ClientFrame::Leave { room, reference } => {
                if self.rooms.remove(&room) {
                    self.shared
                        .registry
                        .leave(&Target::Room(room.clone()).key(), self.id);
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
            ClientFrame::Send { reference, .. } => self.error(
                reference,
                ErrorCode::Forbidden,
                "upstream messages are not enabled on this edge",
            ),
            ClientFrame::Ping { reference } => self.encode(&ServerFrame::Pong { reference }),
            ClientFrame::Resume { reference, .. } => self.encode(&ServerFrame::Resumed {
                reference,
                recovered: Recovered::default(),
            }),
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
        }
    }

    async fn join(
        &mut self,
        room: &str,
        with_since: bool,
        reference: Option<u64>,
    ) -> Result<Option<Message>, Refusal> {
        let target = Target::Room(room.to_owned()).key();
        if !self.rooms.contains(room) {
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
            let state = self.shared.registry.join(&target, self.id, self.member());
            if let Err(refusal) = wait_live(state).await {
                self.shared.registry.leave(&target, self.id);
                return Err(refusal);
            }
            self.rooms.insert(room.to_owned());
        }
        let offset = match self.shared.bus.last_offset(&target).await {
            Ok(offset) => offset,
            Err(e) => {
                self.rooms.remove(room);
                self.shared.registry.leave(&target, self.id);
                return Err((ErrorCode::Unavailable, e.to_string()));
            }
        };
        // Resuming from `since` is not implemented yet: say honestly that nothing was recovered.
        let _ = with_since;
        Ok(self.encode(&ServerFrame::Joined {
            room,
            reference,
            offset: offset.map(|o| o.to_string()),
            recovered: false,
            by: None,
        }))
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
        if !self.rooms.contains(&room) {
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
        let states: Vec<_> = self
            .auto
            .iter()
            .map(|t| self.shared.registry.join(t, self.id, self.member()))
            .collect();
        for state in states {
            if let Err((_, error)) = wait_live(state).await {
                tracing::warn!(%error, "cannot subscribe a new connection's own targets");
                return false;
            }
        }
        true
    }

    fn leave_everything(&mut self) {
        let registry = &self.shared.registry;
        for target in &self.auto {
            registry.leave(target, self.id);
        }
        for room in self.rooms.drain() {
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

    async fn send(&self, ws: &mut Ws, frame: &ServerFrame<'_>) -> Result<(), ()> {
        let message = self.encode(frame).ok_or(())?;
        ws.send(message).await.map_err(|_| ())
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

/// Writes `first` and whatever else is queued (up to a burst), then flushes once.
async fn write_burst(
    ws: &mut Ws,
    first: Message,
    rx: &mut tokio::sync::mpsc::Receiver<Message>,
) -> Result<(), tungstenite::Error> {
    ws.feed(first).await?;
    for _ in 1..BURST {
        match rx.try_recv() {
            Ok(frame) => ws.feed(frame).await?,
            Err(_) => break,
        }
    }
    ws.flush().await
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
