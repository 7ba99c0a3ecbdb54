//! One client connection, from its first frame to its close.
//!
//! A single task owns the socket: it reads client frames and answers them in order (see
//! [`handlers`]), and writes what the registry queued for it, a whole burst per flush. Everything
//! it joined is left when it ends, whatever the reason.

mod control;
mod handlers;
mod rate;
mod replay;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrocast_protocol::close::{self, ErrorCode};
use ferrocast_protocol::frame::client::{ClientFrame, FrameError, ScopeSince};
use ferrocast_protocol::frame::server::ServerFrame;
use ferrocast_protocol::{Encoding, Target, TargetKey};
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
use crate::connections::{Life, Pending, Slot};
use crate::control::Control;
use crate::metrics::{CodeLabel, ReasonLabel, metrics};
use crate::outbox::{self, Fences, Inbox, Outbound, Outbox};
use crate::recovery::{Seams, Written};
use crate::registry::{Member, SubState};
use handlers::Reply;
use rate::{TokenBucket, Verdict};

/// The socket, after the upgrade.
pub type Ws = WebSocketStream<TcpStream>;

/// How long a join may wait for its subscription.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);
/// How long a closing handshake may take before the socket is simply dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Most queued frames written per flush, so one busy connection cannot starve its own reads.
const BURST: usize = 256;
/// Close code recorded when a connection ended without a close frame.
const ABNORMAL: u16 = 1006;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Serves one upgraded connection. `claims` is set when the upgrade carried a valid
/// `Authorization` header; otherwise the first frame must be `auth`. The slots hold the
/// connection's places under the edge's limits until it no longer needs them.
pub async fn run<B: Bus>(
    shared: Arc<Shared<B>>,
    mut ws: Ws,
    encoding: Encoding,
    claims: Option<Claims>,
    open: Slot,
    unauthenticated: Pending,
) {
    let m = metrics();
    m.connections_opened.inc();
    m.connections.inc();
    let code = serve_connection(&shared, &mut ws, encoding, claims, unauthenticated).await;
    m.connections.dec();
    m.connections_closed
        .get_or_create(&CodeLabel::of(code))
        .inc();
    drop(open);
}

async fn serve_connection<B: Bus>(
    shared: &Arc<Shared<B>>,
    ws: &mut Ws,
    encoding: Encoding,
    claims: Option<Claims>,
    unauthenticated: Pending,
) -> u16 {
    let (claims, since) = match claims {
        Some(claims) => (claims, ScopeSince::default()),
        None => match Box::pin(authenticate(shared, ws)).await {
            Ok(claims) => claims,
            Err((reason, label)) => {
                metrics()
                    .auth_failures
                    .get_or_create(&ReasonLabel { reason: label })
                    .inc();
                tracing::debug!(reason, "authentication failed");
                let code = if label == "too_large" {
                    close::TOO_BIG
                } else {
                    close::AUTH_FAILED
                };
                close_with(ws, code, reason).await;
                return code;
            }
        },
    };
    drop(unauthenticated);
    let config = &shared.config;
    let (outbox, inbox) = outbox::channel(config.outbound_queue, config.outbound_queue_bytes);
    let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let life = shared.connections.add(id, outbox.clone(), claims.exp);
    let client: Arc<str> = uuid::Uuid::new_v4().hyphenated().to_string().into();
    let auto = [
        Target::User(claims.sub.clone()).key(),
        Target::Client(client.to_string()).key(),
        Target::All.key(),
    ];
    let mut session = Session {
        id,
        shared: shared.clone(),
        client,
        claims,
        encoding,
        outbox,
        life,
        rate: TokenBucket::new(config.rate, config.burst),
        upstream_quota: None,
        rooms: HashMap::new(),
        fences: Fences::default(),
        auto,
        auto_topics: [0; 3],
        seams: Seams::default(),
        written: [Written::default(); 2],
    };
    let span =
        tracing::debug_span!("session", client = %session.client, user = %session.claims.sub);
    let serving = session.serve(ws, inbox, since);
    // A disabled span still costs an enter and an exit on every poll.
    let code = if span.is_disabled() {
        serving.await
    } else {
        serving.instrument(span).await
    };
    session.leave_everything();
    shared.connections.remove(id);
    code
}

/// Waits for the `auth` frame and checks its token. The error is the close reason and the
/// metric label.
async fn authenticate<B: Bus>(
    shared: &Shared<B>,
    ws: &mut Ws,
) -> Result<(Claims, ScopeSince), (&'static str, &'static str)> {
    let deadline = tokio::time::Instant::now() + shared.config.auth_timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(("authentication timed out", "timeout")),
            Ok(Some(Err(tungstenite::Error::Capacity(_)))) => {
                return Err(("frame too large", "too_large"));
            }
            Ok(None | Some(Err(_))) => {
                return Err(("connection closed before authentication", "closed"));
            }
            Ok(Some(Ok(Message::Text(text)))) => ClientFrame::from_json(text.as_bytes()),
            Ok(Some(Ok(Message::Binary(bytes)))) => ClientFrame::from_msgpack(&bytes),
            Ok(Some(Ok(_))) => continue,
        };
        return match frame {
            Ok(ClientFrame::Auth { token, since }) => shared
                .verifier
                .verify(&token)
                .map(|c| (c, since))
                .map_err(|e| ("invalid token", e.reason())),
            _ => Err(("the first frame must be auth", "no_auth_frame")),
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
    life: Arc<Life>,
    rate: TokenBucket,
    /// What it may still `send` upstream (made on its first `send`).
    upstream_quota: Option<Box<rate::UpstreamQuota>>,
    /// Joined rooms.
    rooms: HashMap<String, Room>,
    /// Topics left whose earlier frames may still be queued.
    fences: Fences,
    /// The user, client and `all` targets every connection is in.
    auto: [TargetKey; 3],
    /// Their registry topics, in the same order.
    auto_topics: [u64; 3],
    seams: Seams,
    /// What was written live for the user and `all` scopes (see [`Written`]).
    written: [Written; 2],
}

/// How long a client is told to wait after `UNAVAILABLE` (the bus reconnects within about this).
const UNAVAILABLE_RETRY_MS: u64 = 1000;

/// Why a frame was refused: what its `error` answer says.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    code: ErrorCode,
    message: String,
    /// Milliseconds before the same frame can succeed (`RATE_LIMITED`, `UNAVAILABLE`).
    retry_after: Option<u64>,
}

impl Refusal {
    /// A refusal with `code`; `UNAVAILABLE` says to retry after a second.
    fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            retry_after: (code == ErrorCode::Unavailable).then_some(UNAVAILABLE_RETRY_MS),
        }
    }

    /// `RATE_LIMITED`, to retry after `ms`.
    fn rate_limited(message: impl Into<String>, ms: u64) -> Refusal {
        Refusal {
            code: ErrorCode::RateLimited,
            message: message.into(),
            retry_after: Some(ms),
        }
    }
}

/// How long a client is told to wait when the upstream inbox is full: workers need a moment.
const INBOX_FULL_RETRY_MS: u64 = 5000;

/// The one mapping from what the bus says to what the client is told.
impl From<BusError> for Refusal {
    fn from(error: BusError) -> Refusal {
        match error {
            BusError::Unavailable(e) => Refusal::new(ErrorCode::Unavailable, e),
            BusError::Full(e) => Refusal {
                code: ErrorCode::Unavailable,
                message: e,
                retry_after: Some(INBOX_FULL_RETRY_MS),
            },
            BusError::Refused(e) => Refusal::new(ErrorCode::BadFrame, e),
        }
    }
}

/// A room the connection is in.
#[derive(Debug, Clone, Copy)]
struct Room {
    /// Its registry topic.
    topic: u64,
    /// Whether a worker put the connection there (so no token claim is needed to stay).
    by_server: bool,
}

const USER: usize = 0;
const ALL: usize = 2;

impl<B: Bus> Session<B> {
    /// Serves the authenticated connection until it ends; returns the close code.
    async fn serve(&mut self, ws: &mut Ws, mut inbox: Inbox, since: ScopeSince) -> u16 {
        // The rarely taken paths are boxed: an async state machine is as large as its largest
        // await, and an idle connection's task would otherwise carry a join's or a bus
        // call's worth of state all its life.
        if !Box::pin(self.join_auto()).await {
            close_with(ws, close::TRY_LATER, "bus unavailable").await;
            return close::TRY_LATER;
        }
        let Ok((recovered, replays)) = Box::pin(self.resume(&since)).await else {
            close_with(ws, close::TRY_LATER, "bus unavailable").await;
            return close::TRY_LATER;
        };
        let welcome = self.encode(&ServerFrame::Welcome {
            client: &self.client,
            user: &self.claims.sub,
            node: &self.shared.node_id,
            heartbeat: self.shared.config.heartbeat.as_millis() as u64,
            recovered,
        });
        let kick = inbox.kick.clone();
        // One wait for the whole connection, not one per loop turn: registering and dropping a
        // waiter on every wake-up was a measurable share of a delivery's user-space cost.
        let kick_request = kick.requested();
        tokio::pin!(kick_request);
        // Every write races the kick: a client that stops reading mid-answer (a long replay, say)
        // must still be closed when the edge asks, not hold its task and memory forever.
        let welcome = Reply {
            frames: welcome.into_iter().collect(),
            replays,
        };
        match Box::pin(self.answer(ws, kick_request.as_mut(), welcome)).await {
            Ok(()) => {}
            Err(Some(code)) => return self.kicked(ws, code).await,
            Err(None) => return ABNORMAL,
        }
        loop {
            // Not biased: a connection whose queue never empties must still have its frames
            // (and pongs) read.
            tokio::select! {
                code = &mut kick_request => return self.kicked(ws, code).await,
                Some(first) = inbox.rx.recv() => {
                    // A write stuck on a client that does not read must not outlive its queue.
                    let control = tokio::select! {
                        written = self.write_burst(ws, first, &mut inbox) => match written {
                            Ok(control) => control,
                            Err(_) => return ABNORMAL,
                        },
                        code = &mut kick_request => return self.kicked(ws, code).await,
                    };
                    let Some(control) = control else { continue };
                    let reply = match Box::pin(self.apply(&control)).await {
                        Ok(reply) => reply,
                        Err((code, reason)) => {
                            close_with(ws, code, &reason).await;
                            return code;
                        }
                    };
                    match Box::pin(self.answer(ws, kick_request.as_mut(), reply)).await {
                        Ok(()) => {}
                        Err(Some(code)) => return self.kicked(ws, code).await,
                        Err(None) => return ABNORMAL,
                    }
                }
                incoming = ws.next() => {
                    self.life.heard(&self.shared.connections.clock);
                    let frame = match incoming {
                        Some(Err(tungstenite::Error::Capacity(_))) => {
                            close_with(ws, close::TOO_BIG, "frame too large").await;
                            return close::TOO_BIG;
                        }
                        None | Some(Err(_)) => return ABNORMAL,
                        Some(Ok(Message::Close(frame))) => {
                            // tungstenite answers the close; read on until the socket ends.
                            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                                while let Some(Ok(_)) = ws.next().await {}
                            })
                            .await;
                            return frame.map_or(1005, |f| u16::from(f.code));
                        }
                        Some(Ok(Message::Text(text))) => ClientFrame::from_json(text.as_bytes()),
                        Some(Ok(Message::Binary(bytes))) => ClientFrame::from_msgpack(&bytes),
                        Some(Ok(_)) => {
                            // Pings and pongs count against the rate limit like any frame: a
                            // ping flood is a flood. tungstenite answers each ping on its own;
                            // a refused one also gets RATE_LIMITED, as every refused frame does.
                            match self.rate.take(Instant::now()) {
                                Verdict::Allow => {}
                                Verdict::Refuse => {
                                    metrics().rate_limited.inc();
                                    let wait = self.rate.retry_after_ms(Instant::now());
                                    let refused = self.refuse(None, &Refusal::rate_limited("slow down", wait));
                                    match send_unless_kicked(ws, kick_request.as_mut(), refused).await {
                                        Ok(()) => {}
                                        Err(Some(code)) => return self.kicked(ws, code).await,
                                        Err(None) => return ABNORMAL,
                                    }
                                }
                                Verdict::Close => {
                                    metrics().rate_limited.inc();
                                    close_with(ws, close::RATE_LIMITED, "rate limit exceeded").await;
                                    return close::RATE_LIMITED;
                                }
                            }
                            continue;
                        }
                    };
                    let reply = match self.rate.take(Instant::now()) {
                        Verdict::Allow => match frame {
                            Ok(frame) => Box::pin(self.handle(frame)).await,
                            Err(FrameError { reference, code, message }) => {
                                self.error(reference, code, &message).into()
                            }
                        },
                        Verdict::Refuse => {
                            metrics().rate_limited.inc();
                            let reference = frame.as_ref().ok().and_then(ClientFrame::reference);
                            let wait = self.rate.retry_after_ms(Instant::now());
                            self.refuse(reference, &Refusal::rate_limited("slow down", wait)).into()
                        }
                        Verdict::Close => {
                            metrics().rate_limited.inc();
                            close_with(ws, close::RATE_LIMITED, "rate limit exceeded").await;
                            return close::RATE_LIMITED;
                        }
                    };
                    match Box::pin(self.answer(ws, kick_request.as_mut(), reply)).await {
                        Ok(()) => {}
                        Err(Some(code)) => return self.kicked(ws, code).await,
                        Err(None) => return ABNORMAL,
                    }
                }
            }
        }
    }

    /// Writes a reply: its frames, then each of its replays a page at a time.
    async fn answer(
        &mut self,
        ws: &mut Ws,
        mut kick: Pin<&mut impl Future<Output = u16>>,
        reply: Reply,
    ) -> Result<(), Option<u16>> {
        send_unless_kicked(ws, kick.as_mut(), reply.frames).await?;
        for replay in reply.replays {
            self.stream(ws, kick.as_mut(), replay).await?;
        }
        Ok(())
    }

    /// Closes the connection as the edge asked (slow consumer, heartbeat, expiry, drain, ...).
    async fn kicked(&self, ws: &mut Ws, code: u16) -> u16 {
        if code == close::SLOW_CONSUMER {
            metrics().slow_consumer_closes.inc();
        }
        close_with(ws, code, kick_reason(code)).await;
        code
    }

    /// Writes `first` and whatever else is queued (up to a burst), then flushes once. Frames a
    /// replay already sent are dropped. A control message ends the burst and is returned, to be
    /// applied after what came before it and before what follows.
    async fn write_burst(
        &mut self,
        ws: &mut Ws,
        first: Outbound,
        inbox: &mut Inbox,
    ) -> Result<Option<Arc<Control>>, tungstenite::Error> {
        let m = metrics();
        m.outbound_queue_depth.observe(inbox.rx.len() as f64 + 1.0);
        let now_ms = ferrocast_protocol::envelope::now_ms();
        let mut next = Some(first);
        let mut count = 0;
        let mut delivered = 0;
        let mut oldest_ts = None;
        let mut control = None;
        while let Some(item) = next {
            inbox.taken(&item);
            let frame = match item {
                Outbound::Frame(frame) => Some(frame),
                Outbound::Control(c) => {
                    control = Some(c);
                    break;
                }
                Outbound::Fence(topic) => {
                    self.fences.passed(topic);
                    None
                }
            };
            if let Some(frame) = frame
                && !self.fences.holds(frame.topic)
                && self.seams.admit(frame.topic, frame.offset)
            {
                if let Some(offset) = frame.offset {
                    if frame.topic == self.auto_topics[USER] {
                        self.written[0].note(offset);
                    } else if frame.topic == self.auto_topics[ALL] {
                        self.written[1].note(offset);
                    }
                    delivered += 1;
                    oldest_ts.get_or_insert(frame.ts);
                }
                ws.feed(frame.message.clone()).await?;
            }
            count += 1;
            next = if count < BURST {
                inbox.rx.try_recv().ok()
            } else {
                None
            };
        }
        // Shared metrics are touched once per burst, not per frame: every connection's task
        // updates them, and the latency histogram takes a lock. The latency is the burst's
        // first (so longest-waiting) message's.
        if delivered > 0 {
            m.deliveries.inc_by(delivered);
        }
        if let Some(ts) = oldest_ts {
            m.delivery_latency
                .observe(now_ms.saturating_sub(ts) as f64 / 1000.0);
        }
        ws.flush().await?;
        Ok(control)
    }

    fn leave_everything(&mut self) {
        let registry = &self.shared.registry;
        for target in &self.auto {
            registry.leave(target, self.id);
        }
        metrics().room_memberships.dec_by(self.rooms.len() as i64);
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
        self.refuse(reference, &Refusal::new(code, message))
    }

    /// The `error` answer to the frame `reference` for `refusal`.
    fn refuse(&self, reference: Option<u64>, refusal: &Refusal) -> Option<Message> {
        self.encode(&ServerFrame::Error {
            reference,
            code: refusal.code,
            message: &refusal.message,
            retry_after: refusal.retry_after,
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
        Ok(Err(_)) => Err(Refusal::new(
            ErrorCode::Unavailable,
            "the bus is unavailable; retry",
        )),
        Err(_) => Err(Refusal::new(
            ErrorCode::Unavailable,
            "subscribing timed out; retry",
        )),
    }
}

/// Writes frames and flushes once, unless the edge asks the connection to close first.
/// `Err(Some(code))`: closing was asked for; `Err(None)`: the socket failed.
async fn send_unless_kicked(
    ws: &mut Ws,
    kick_request: Pin<&mut impl Future<Output = u16>>,
    frames: impl IntoIterator<Item = Message>,
) -> Result<(), Option<u16>> {
    tokio::select! {
        written = write_all(ws, frames) => written.map_err(|_| None),
        code = kick_request => Err(Some(code)),
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
        close::HEARTBEAT_TIMEOUT => "heartbeat timeout",
        close::TOKEN_EXPIRED => "token expired",
        close::GOING_AWAY => "edge going away; reconnect and resume",
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
