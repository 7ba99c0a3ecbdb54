//! One client connection, from its first frame to its close.
//!
//! A single task owns the socket. After the first frame (`auth_frame`, unless the upgrade
//! carried a token) its loop (`serve`) reads client frames and answers them in order (`frames`,
//! a file per frame), streams replays (`replay`), applies workers' control messages (`control`)
//! and writes what the registry queued for it, a burst per flush (`writer`). The targets every
//! connection is in are in `own_targets`, its rooms in `joined_rooms`. Everything it joined is
//! left when it ends, whatever the reason.

pub mod auth;
pub mod connections;

mod auth_frame;
mod closing;
mod control;
mod encryption;
mod frames;
pub mod identify;
mod joined_rooms;
mod own_targets;
mod rate;
mod replay;
mod rpc_calls;
mod serve;
mod shared;
mod writer;

pub use shared::Shared;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferrocast_protocol::close::{self, ErrorCode};
use ferrocast_protocol::frame::client::ScopeSince;
use ferrocast_protocol::frame::server::{EncryptHello, ServerFrame};
use ferrocast_protocol::{Encoding, Target};
use tracing::Instrument;
use tungstenite::Message;

use crate::bus::Bus;
use crate::fanout::dedup::Seams;
use crate::fanout::outbox::{self, Direct, Fences, Outbox, Queued};
use crate::fanout::registry::{Member, Subscription};
use crate::hooks::lifecycle::Subject;
use crate::ops::metrics::{CodeLabel, ReasonLabel, metrics};
use crate::refusal::Refusal;
use crate::session::auth::{Claims, Verified};
use crate::session::connections::{Life, Pending, Slot};
use crate::session::identify::Peer;
use encryption::Encryption;
use ferrocast_protocol::lifecycle::Lifecycle;
use joined_rooms::JoinedRooms;
use own_targets::OwnTargets;
use rate::TokenBucket;
use writer::close_with;

/// The socket, after the upgrade.
pub type Ws = crate::websocket::WsConn;

/// How long a join may wait for its subscription.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);
/// Close code of a close frame that carried none.
const NO_STATUS: u16 = 1005;
/// Close code recorded when a connection ended without a close frame.
const ABNORMAL: u16 = 1006;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Serves one upgraded connection. `claims` is set when the upgrade carried a valid
/// `Authorization` header; otherwise the first frame must be `auth`. The slots hold the
/// connection's places under the edge's limits until it no longer needs them.
///
/// Not an async fn, and its setup boxed: an async fn keeps its parameters, and whatever it holds
/// across an await, in its state for as long as it runs, and this one runs as long as the
/// connection. What an idle connection keeps is its task's small state, one [`Live`], and its
/// loop's state.
pub fn run<B: Bus>(
    shared: Arc<Shared<B>>,
    ws: Ws,
    encoding: Encoding,
    claims: Option<Verified>,
    peer: Peer,
    open: Slot,
    unauthenticated: Pending,
) -> impl Future<Output = ()> + Send + 'static {
    let opening = Box::pin(open_session(
        shared,
        ws,
        encoding,
        claims,
        peer,
        unauthenticated,
    ));
    async move {
        let m = metrics();
        m.connections_opened.inc();
        m.connections.inc();
        let code = match opening.await {
            Ok(live) => live.serve().await,
            Err(code) => code,
        };
        let m = metrics();
        m.connections.dec();
        m.connections_closed
            .get_or_create(&CodeLabel::of(code))
            .inc();
        drop(open);
    }
}

/// A connection past its setup: all it needs for the rest of its life, in one allocation.
struct Live<B: Bus> {
    session: Session<B>,
    ws: Ws,
    queued: Queued,
    /// Where the client asked to resume its own targets from and the encryption its `auth`
    /// frame agreed, if either (boxed: needed once, and most connections have neither).
    opening: Option<Box<Opening>>,
}

/// What the first frame asked of the greeting.
struct Opening {
    since: ScopeSince,
    /// The channel to encrypt with once `welcome` is written, and the edge's half of the
    /// agreement for `welcome`.
    agreed: Option<(crate::encryption::Channel, EncryptHello)>,
}

/// A connection that asked to resume nothing.
static FROM_NOW: ScopeSince = ScopeSince {
    user: None,
    all: None,
};

impl<B: Bus> Live<B> {
    /// Serves the connection until it ends, then leaves everything it joined. Returns the close
    /// code.
    async fn serve(mut self: Box<Self>) -> u16 {
        let Live {
            session,
            ws,
            queued,
            opening,
        } = &mut *self;
        let span =
            tracing::debug_span!("session", client = %session.client, user = %session.claims.sub);
        // Boxed: held in a local and awaited in one of two ways, the loop's state would otherwise
        // be laid out three times over in this future.
        let serving = Box::pin(session.serve(ws, queued, opening.take()));
        // A disabled span still costs an enter and an exit on every poll.
        let code = if span.is_disabled() {
            serving.await
        } else {
            serving.instrument(span).await
        };
        session.leave_everything();
        if session.welcomed {
            session.report(Lifecycle::Disconnect {
                code,
                reason: close_reason(code).to_owned(),
            });
        }
        session.shared.connections.remove(session.id);
        code
    }
}

/// Authenticates the connection (unless its upgrade did) and sets its session up. Returns the
/// connection ready to serve, or the code it was closed with.
async fn open_session<B: Bus>(
    shared: Arc<Shared<B>>,
    mut ws: Ws,
    encoding: Encoding,
    claims: Option<Verified>,
    peer: Peer,
    unauthenticated: Pending,
) -> Result<Box<Live<B>>, u16> {
    let config = &shared.config;
    // One bucket for the connection's whole life: frames before `auth` count too.
    let mut rate = TokenBucket::new(config.rate, config.burst);
    // A header-authenticated client's first frame may set encryption up, and must when it is
    // required; an `auth` frame settles it (see `auth_frame`).
    let mut encryption = Encryption::Off;
    let (claims, since, agreed) = match claims {
        Some(Verified { claims, enc }) => {
            encryption = if config.require_encryption || enc {
                Encryption::Required
            } else {
                Encryption::Offered
            };
            (claims, ScopeSince::default(), None)
        }
        None => {
            match Box::pin(auth_frame::authenticate(&shared, &mut ws, &peer, &mut rate)).await {
                Ok(auth) => (auth.claims, auth.since, auth.agreed),
                Err(failure) => {
                    metrics()
                        .auth_failures
                        .get_or_create(&ReasonLabel {
                            reason: failure.label(),
                        })
                        .inc();
                    tracing::debug!(reason = failure.reason(), "authentication failed");
                    close_with(&mut ws, failure.code(), failure.reason()).await;
                    return Err(failure.code());
                }
            }
        }
    };
    drop(unauthenticated);
    // A connection that authenticated after a drain began would outlive it.
    if shared.connections.is_draining() {
        close_with(
            &mut ws,
            close::GOING_AWAY,
            "edge going away; reconnect and resume",
        )
        .await;
        return Err(close::GOING_AWAY);
    }
    let (outbox, queued) = outbox::channel(
        config.outbound_queue,
        config.outbound_queue_bytes,
        Some(ws.socket()),
    );
    let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let life = shared.connections.add(id, outbox.clone(), claims.exp);
    let client = peer.client;
    let own = OwnTargets::new(&claims.sub, &client);
    let session = Session {
        id,
        shared: shared.clone(),
        client,
        remote: peer.remote,
        claims,
        encoding,
        outbox,
        life,
        rate,
        upstream_quota: None,
        publish_quota: None,
        event_limits: None,
        rpc_calls: None,
        rooms: JoinedRooms::default(),
        fences: Fences::default(),
        own,
        seams: Seams::default(),
        welcomed: false,
        encryption,
    };
    let opening =
        (since != FROM_NOW || agreed.is_some()).then(|| Box::new(Opening { since, agreed }));
    Ok(Box::new(Live {
        session,
        ws,
        queued,
        opening,
    }))
}

/// What a close code means, for the `$disconnect` lifecycle event.
fn close_reason(code: u16) -> &'static str {
    match code {
        close::NORMAL => "closed by the client",
        NO_STATUS => "closed by the client, with no code",
        ABNORMAL => "connection lost",
        close::GOING_AWAY => "going away (the client left, or the edge drained)",
        code => writer::kick_reason(code),
    }
}

struct Session<B: Bus> {
    id: u64,
    shared: Arc<Shared<B>>,
    client: Arc<str>,
    /// Its IP address, for the connect hook on `refresh`.
    remote: std::net::IpAddr,
    claims: Claims,
    encoding: Encoding,
    outbox: Outbox,
    life: Arc<Life>,
    rate: TokenBucket,
    /// What it may still `send` upstream (made on its first `send`).
    upstream_quota: Option<Box<rate::UpstreamQuota>>,
    /// Bytes of data this connection may `publish` (made on its first publish).
    publish_quota: Option<Box<rate::ByteQuota>>,
    /// Its buckets for the `--event-rate` rules, by rule (made on first use).
    event_limits: Option<Box<[Option<TokenBucket>]>>,
    /// Its calls waiting for replies, and their timer (made on its first `rpc`).
    rpc_calls: Option<Box<rpc_calls::RpcCalls>>,
    /// Joined rooms.
    rooms: JoinedRooms,
    /// Topics left whose earlier frames may still be queued.
    fences: Fences,
    /// The user, client and `all` targets every connection is in.
    own: OwnTargets,
    seams: Seams,
    /// Whether its `welcome` went out (and `$connect` with it): only then is `$disconnect` due.
    welcomed: bool,
    /// Where it stands with payload encryption.
    encryption: Encryption,
}

impl<B: Bus> Session<B> {
    fn leave_everything(&mut self) {
        let registry = &self.shared.registry;
        for own in self.own.each() {
            registry.leave(&own.key, self.id);
        }
        metrics().room_memberships.dec_by(self.rooms.len() as i64);
        for room in self.rooms.take() {
            self.shared.presence.leave(&room, &self.client);
            self.report(Lifecycle::Leave {
                room: room.clone(),
                by: "disconnect".into(),
            });
            registry.leave(&Target::Room(room).key(), self.id);
        }
    }

    /// Reports a lifecycle event to workers, if the edge reports that kind.
    fn report(&self, event: Lifecycle) {
        if let Some(lifecycle) = &self.shared.hooks.lifecycle {
            let subject = Subject {
                client: &self.client,
                user: &self.claims.sub,
                meta: self.claims.meta.as_deref(),
            };
            lifecycle.report(event, &subject);
        }
    }

    /// The connection as a member of a target; `direct`: see [`Member::direct`].
    fn member(&self, direct: Direct) -> Member {
        Member {
            client: self.client.clone(),
            encoding: self.encoding,
            outbox: self.outbox.clone(),
            direct,
        }
    }

    /// `frame` as a WebSocket message in the connection's encoding.
    fn encode(&self, frame: &ServerFrame<'_>) -> Option<Message> {
        crate::fanout::delivery::message(frame, self.encoding)
    }
}

/// Waits until a joined target's subscription is live (`None`: it is already).
async fn wait_live(state: Option<Arc<Subscription>>) -> Result<(), Refusal> {
    let Some(state) = state else {
        return Ok(());
    };
    match tokio::time::timeout(SUBSCRIBE_WAIT, state.live()).await {
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
