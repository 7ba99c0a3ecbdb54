//! The public accept loop: the WebSocket endpoint and nothing else (probes and metrics live on
//! the [`internal`](crate::net::internal) listener, where no client load can starve them). The upgrade
//! is checked (subprotocol, `Authorization` header) before anything is allocated for a session.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrocast_protocol::Encoding;
use tokio::net::{TcpListener, TcpStream};

use crate::bus::Bus;
use crate::net::http::{self, ReadError, Request};
use crate::ops::metrics::{ReasonLabel, metrics};
use crate::session;
use crate::session::Shared;
use crate::session::auth::Claims;
use crate::session::connections::{Pending, PendingRefusal, Slot};
use crate::session::identify::{Denied, Peer};
use crate::websocket::{WsConn, deflate};

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
                            let reason = match refusal {
                                PendingRefusal::Total => "unauthenticated_limit",
                                PendingRefusal::PerIp => "pending_per_ip_limit",
                            };
                            tokio::spawn(async move {
                                refuse(&mut stream, 503, reason, "too many pending connections").await;
                            });
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
    claims: Option<Claims>,
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
            http::respond(&mut stream, status, &[], "bad request").await;
            return None;
        }
    };
    if request.path == shared.config.ws_path {
        return upgrade(&shared, stream, request, remote, unauthenticated).await;
    }
    http::respond(&mut stream, 404, &[], "not found").await;
    None
}

async fn refuse(stream: &mut TcpStream, status: u16, reason: &'static str, body: &str) {
    metrics()
        .refused
        .get_or_create(&ReasonLabel { reason })
        .inc();
    http::respond(stream, status, &[], body).await;
}

async fn upgrade<B: Bus>(
    shared: &Shared<B>,
    mut stream: TcpStream,
    request: Request,
    remote: IpAddr,
    unauthenticated: Pending,
) -> Option<Upgraded> {
    if request.method != "GET" {
        http::respond(&mut stream, 405, &[], "WebSocket upgrades use GET").await;
        return None;
    }
    if !request.header_has_token("upgrade", "websocket")
        || !request.header_has_token("connection", "upgrade")
    {
        http::respond(
            &mut stream,
            426,
            &[("upgrade", "websocket")],
            "expected a WebSocket upgrade",
        )
        .await;
        return None;
    }
    if request.header("sec-websocket-version") != Some("13") {
        http::respond(
            &mut stream,
            426,
            &[("sec-websocket-version", "13")],
            "WebSocket version 13 only",
        )
        .await;
        return None;
    }
    let Some(key) = request.header("sec-websocket-key") else {
        http::respond(&mut stream, 400, &[], "missing Sec-WebSocket-Key").await;
        return None;
    };
    if shared.connections.is_draining() {
        refuse(
            &mut stream,
            503,
            "draining",
            "edge draining; connect to another",
        )
        .await;
        return None;
    }
    // Browsers send Origin; a page on a foreign site must not open sockets with the user's
    // cookies or tokens (cross-site WebSocket hijacking).
    if let Some(origin) = request.header("origin")
        && !origin_allowed(&shared.config.allowed_origins, origin)
    {
        refuse(&mut stream, 403, "origin", "origin not allowed").await;
        return None;
    }
    let Some(open) = shared
        .connections
        .reserve_open(shared.config.max_connections)
    else {
        refuse(
            &mut stream,
            503,
            "connection_limit",
            "edge full; try another",
        )
        .await;
        return None;
    };
    let Ok(encoding) = Encoding::negotiate(request.headers("sec-websocket-protocol")) else {
        http::respond(
            &mut stream,
            400,
            &[],
            "unsupported subprotocol: use ferrocast.v1.json or ferrocast.v1.msgpack",
        )
        .await;
        return None;
    };
    let peer = Peer {
        client: uuid::Uuid::new_v4().hyphenated().to_string().into(),
        remote,
        origin: request.header("origin").map(str::to_owned),
    };
    // The token is read from the Authorization header only, never from the URL.
    let claims = match request.header("authorization") {
        None => None,
        Some(value) => {
            let token = value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim());
            let identified = match token {
                Some(token) => Some(shared.identify(token, &peer).await),
                None => None,
            };
            match identified {
                Some(Ok(claims)) => Some(claims),
                Some(Err(Denied::Refused { label, message })) => {
                    metrics()
                        .auth_failures
                        .get_or_create(&ReasonLabel { reason: label })
                        .inc();
                    let body = format!("invalid token: {message}");
                    http::respond(&mut stream, 401, &[("www-authenticate", "Bearer")], &body).await;
                    return None;
                }
                Some(Err(Denied::Unavailable(_))) => {
                    metrics()
                        .auth_failures
                        .get_or_create(&ReasonLabel {
                            reason: "hook_unavailable",
                        })
                        .inc();
                    let body = "authentication unavailable; try again later";
                    http::respond(&mut stream, 503, &[("retry-after", "5")], body).await;
                    return None;
                }
                None => {
                    metrics()
                        .auth_failures
                        .get_or_create(&ReasonLabel {
                            reason: "malformed",
                        })
                        .inc();
                    http::respond(
                        &mut stream,
                        401,
                        &[("www-authenticate", "Bearer")],
                        "expected a Bearer token",
                    )
                    .await;
                    return None;
                }
            }
        }
    };
    let config = &shared.config;
    let negotiated = (config.compression == crate::config::Compression::On)
        .then(|| deflate::negotiate(request.headers("sec-websocket-extensions")))
        .flatten();
    let extensions = negotiated.as_ref().map(|(_, response)| response.as_str());
    if http::switch_protocols(
        &mut stream,
        key,
        encoding.map(Encoding::subprotocol),
        extensions,
    )
    .await
    .is_err()
    {
        return None;
    }
    let deflate = negotiated.map(|(deflate, _)| deflate);
    let min_compress = config.compression_min_bytes;
    if config.echo {
        let ws = WsConn::new(stream, request.rest, ECHO_LIMIT, deflate, min_compress);
        echo(ws).await;
        return None;
    }
    let ws = WsConn::new(
        stream,
        request.rest,
        config.max_frame_size,
        deflate,
        min_compress,
    );
    Some(Upgraded {
        ws,
        encoding: encoding.unwrap_or(Encoding::Json),
        claims,
        peer,
        open,
        unauthenticated,
    })
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
