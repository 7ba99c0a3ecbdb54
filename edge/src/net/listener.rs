//! The public accept loop: the WebSocket endpoint and nothing else (probes and metrics live on
//! the [`internal`](crate::net::internal) listener, where no client load can starve them). The upgrade
//! is checked (subprotocol, `Authorization` header) before anything is allocated for a session;
//! each step that refuses says so with a `Rejection`.

mod rejection;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrocast_protocol::Encoding;
use tokio::net::{TcpListener, TcpStream};

use crate::bus::Bus;
use crate::config::{Compression, Config};
use crate::net::http::{self, ReadError, Request};
use crate::session;
use crate::session::Shared;
use crate::session::auth::Verified;
use crate::session::connections::{Pending, Slot};
use crate::session::identify::{Denied, Peer};
use crate::websocket::{WsConn, deflate};
use rejection::{OrAnswer, Rejection};

/// Accepts connections until `shutdown` completes.
pub async fn serve<B: Bus>(
    shared: Arc<Shared<B>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((mut stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    // Reserved here, in accept order: a task spawned later may run first, and
                    // the cap must count every connection accepted before this one.
                    let config = &shared.config;
                    match shared.connections.reserve_pending(peer.ip(), config.max_unauthenticated, config.pending_per_ip()) {
                        Ok(pending) => {
                            tokio::spawn(connection(shared.clone(), stream, peer.ip(), pending));
                        }
                        Err(refusal) => {
                            let rejection = Rejection::from(refusal);
                            tokio::spawn(async move { rejection.answer(&mut stream).await });
                        }
                    }
                }
                Err(error) => {
                    // Typically out of file descriptors: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Serves one accepted connection. `unauthenticated` is its place under the cap on connections
/// that have not authenticated yet, held until it authenticates or ends.
///
/// Not an async fn: its parameters would stay in the task's state for the connection's whole
/// life. The HTTP exchange is boxed and freed once done: a task is as large as its largest
/// state, and a WebSocket connection lives on for hours after its handshake.
fn connection<B: Bus>(
    shared: Arc<Shared<B>>,
    stream: TcpStream,
    remote: IpAddr,
    unauthenticated: Pending,
) -> impl Future<Output = ()> + Send + 'static {
    let upgrading = Box::pin(handshake(shared.clone(), stream, remote, unauthenticated));
    async move {
        // Bound by `let`, and moved whole into `run`: an `if let` would keep it (440 bytes) in
        // this state while the session runs.
        let Some(upgraded) = upgrading.await else {
            return;
        };
        upgraded.run(shared).await;
    }
}

/// A connection upgraded to a WebSocket, with what the session needs from the handshake.
struct Upgraded {
    ws: WsConn,
    encoding: Encoding,
    claims: Option<Verified>,
    peer: Peer,
    open: Slot,
    unauthenticated: Pending,
}

impl Upgraded {
    fn run<B: Bus>(self, shared: Arc<Shared<B>>) -> impl Future<Output = ()> + Send + 'static {
        let Upgraded {
            ws,
            encoding,
            claims,
            peer,
            open,
            unauthenticated,
        } = self;
        session::run(shared, ws, encoding, claims, peer, open, unauthenticated)
    }
}

/// Upgrades a request for the WebSocket path; anything else gets 404.
async fn handshake<B: Bus>(
    shared: Arc<Shared<B>>,
    mut stream: TcpStream,
    remote: IpAddr,
    unauthenticated: Pending,
) -> Option<Upgraded> {
    let request = match http::read_request(&mut stream, shared.config.handshake_timeout).await {
        Ok(request) => request,
        Err(ReadError::Gone) => return None,
        Err(ReadError::Bad(status)) => {
            Rejection::bad(status, "bad request")
                .answer(&mut stream)
                .await;
            return None;
        }
    };
    if request.path == shared.config.ws_path {
        return upgrade(&shared, stream, request, remote, unauthenticated).await;
    }
    Rejection::bad(404, "not found").answer(&mut stream).await;
    None
}

/// Upgrades the connection if each step passes, in turn; the first to refuse answers and ends
/// it. The order decides which answer a request that fails several checks gets, and that a
/// connection holds its slot while its token is checked.
async fn upgrade<B: Bus>(
    shared: &Shared<B>,
    mut stream: TcpStream,
    mut request: Request,
    remote: IpAddr,
    unauthenticated: Pending,
) -> Option<Upgraded> {
    // What the client sent past the head is the socket's; taken now, as the key borrows the
    // request until the switch.
    let rest = std::mem::take(&mut request.rest);
    let key = websocket_key(&request).or_answer(&mut stream).await?;
    // Held while a later refusal is answered too: the socket stays open until then.
    let open = admit(shared, &request).or_answer(&mut stream).await?;
    let encoding = subprotocol(&request).or_answer(&mut stream).await?;
    let peer = Peer {
        client: uuid::Uuid::new_v4().hyphenated().to_string().into(),
        remote,
        origin: request.header("origin").map(str::to_owned),
    };
    let claims = header_claims(shared, &request, &peer)
        .await
        .or_answer(&mut stream)
        .await?;
    let ws = switch(&shared.config, stream, &request, key, encoding, rest).await?;
    if shared.config.echo {
        echo(ws).await;
        return None;
    }
    Some(Upgraded {
        ws,
        encoding: encoding.unwrap_or(Encoding::Json),
        claims,
        peer,
        open,
        unauthenticated,
    })
}

/// Checks that the request is a WebSocket handshake (RFC 6455 §4.2.1), and returns its key.
fn websocket_key(request: &Request) -> Result<&str, Rejection> {
    if request.method != "GET" {
        return Err(Rejection::bad(405, "WebSocket upgrades use GET"));
    }
    if !request.header_has_token("upgrade", "websocket")
        || !request.header_has_token("connection", "upgrade")
    {
        return Err(Rejection::bad(426, "expected a WebSocket upgrade")
            .with_headers(&[("upgrade", "websocket")]));
    }
    if request.header("sec-websocket-version") != Some("13") {
        return Err(Rejection::bad(426, "WebSocket version 13 only")
            .with_headers(&[("sec-websocket-version", "13")]));
    }
    request
        .header("sec-websocket-key")
        .ok_or_else(|| Rejection::bad(400, "missing Sec-WebSocket-Key"))
}

/// Admits the connection: not while draining, not from a foreign origin, and only into a free
/// slot under `--max-connections`, which it holds for as long as it is open.
fn admit<B: Bus>(shared: &Shared<B>, request: &Request) -> Result<Slot, Rejection> {
    if shared.connections.is_draining() {
        return Err(Rejection::refused(
            503,
            "draining",
            "edge draining; connect to another",
        ));
    }
    // Browsers send Origin; a page on a foreign site must not open sockets with the user's
    // cookies or tokens (cross-site WebSocket hijacking).
    if let Some(origin) = request.header("origin")
        && !origin_allowed(&shared.config.allowed_origins, origin)
    {
        return Err(Rejection::refused(403, "origin", "origin not allowed"));
    }
    shared
        .connections
        .reserve_open(shared.config.max_connections)
        .ok_or_else(|| Rejection::refused(503, "connection_limit", "edge full; try another"))
}

/// The encoding of the subprotocol the client asked for (`None`: it offered none, and gets JSON).
fn subprotocol(request: &Request) -> Result<Option<Encoding>, Rejection> {
    Encoding::negotiate(request.headers("sec-websocket-protocol")).map_err(|()| {
        Rejection::bad(
            400,
            "unsupported subprotocol: use ferrocast.v1.json or ferrocast.v1.msgpack",
        )
    })
}

/// The claims of the `Authorization` header's Bearer token (`None`: there is no header, and the
/// first frame must be `auth`). The token is read from this header only, never from the URL,
/// which proxies and access logs keep.
async fn header_claims<B: Bus>(
    shared: &Shared<B>,
    request: &Request,
    peer: &Peer,
) -> Result<Option<Verified>, Rejection> {
    let Some(value) = request.header("authorization") else {
        return Ok(None);
    };
    let Some((_, token)) = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
    else {
        return Err(Rejection::unauthorized(
            "malformed",
            "expected a Bearer token",
        ));
    };
    match shared.identify(token.trim(), peer).await {
        Ok(claims) => Ok(Some(claims)),
        Err(Denied::Refused { label, message }) => Err(Rejection::unauthorized(
            label,
            format!("invalid token: {message}"),
        )),
        Err(Denied::Unavailable(_)) => Err(Rejection::auth_unavailable()),
    }
}

/// Answers `101 Switching Protocols` and makes the connection a WebSocket, compressed if both
/// sides want it. `None`: the client is gone.
async fn switch(
    config: &Config,
    mut stream: TcpStream,
    request: &Request,
    key: &str,
    encoding: Option<Encoding>,
    rest: Vec<u8>,
) -> Option<WsConn> {
    let negotiated = (config.compression == Compression::On)
        .then(|| deflate::negotiate(request.headers("sec-websocket-extensions")))
        .flatten();
    let extensions = negotiated.as_ref().map(|(_, response)| response.as_str());
    http::switch_protocols(
        &mut stream,
        key,
        encoding.map(Encoding::subprotocol),
        extensions,
    )
    .await
    .ok()?;
    let deflate = negotiated.map(|(deflate, _)| deflate);
    let limit = if config.echo {
        ECHO_LIMIT
    } else {
        config.max_frame_size
    };
    Some(WsConn::new(
        stream,
        rest,
        limit,
        deflate,
        config.compression_min_bytes,
    ))
}

/// Message limit in echo mode: the conformance suite sends messages of up to 16 MiB.
const ECHO_LIMIT: usize = 16 * 1024 * 1024;

/// Echo mode (`--echo`): every data message straight back, for protocol conformance tests.
async fn echo(mut ws: WsConn) {
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}

/// Whether `origin` is in the allowlist (empty: any origin).
fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    allowed.is_empty()
        || allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
}
