//! A connection's first frame, when it was not authenticated by header: it must be `auth`.

use std::time::Instant;

use ferrocast_protocol::frame::client::{ClientFrame, ScopeSince};
use tungstenite::Message;

use ferrocast_protocol::frame::server::EncryptHello;

use crate::bus::Bus;
use crate::encryption::{Channel, agreement};
use crate::session::auth::{Claims, Verified};
use crate::session::identify::{Denied, Peer};
use crate::websocket::WsError;

use super::Ws;
use super::closing::AuthFailure;
use super::rate::{TokenBucket, Verdict};
use super::shared::Shared;

/// What a good `auth` frame gives the connection.
pub(super) struct Authenticated {
    /// The token's claims.
    pub claims: Claims,
    /// Where to resume the user and `all` scopes from.
    pub since: ScopeSince,
    /// The encryption it asked for (v1.2, part E): the channel, and the edge's half of the
    /// agreement for `welcome`.
    pub agreed: Option<(Channel, EncryptHello)>,
}

/// Waits for the `auth` frame and checks its token. WebSocket pings before it count against
/// `rate`, as every frame of the connection does: an allowed one is answered, a refused one is
/// not, and a client that keeps at it is closed (4008). The error says how to close, and what to
/// count. Encryption asked for is agreed here, and encryption required and not asked for
/// refused (4004), before anything else is sent.
pub(super) async fn authenticate<B: Bus>(
    shared: &Shared<B>,
    ws: &mut Ws,
    peer: &Peer,
    rate: &mut TokenBucket,
) -> Result<Authenticated, AuthFailure> {
    let deadline = tokio::time::Instant::now() + shared.config.auth_timeout;
    loop {
        let read = std::future::poll_fn(|cx| ws.poll_read(cx));
        let read = tokio::time::timeout_at(deadline, read)
            .await
            .map_err(|_| AuthFailure::TimedOut)?;
        let settled = ws.settle(read);
        // The frames a fragmented `auth` came in count too.
        rate.charge(f64::from(ws.take_extra_frames()));
        let frame = match settled {
            Some(Err(WsError::Closed(1009))) => {
                return Err(AuthFailure::TooLarge);
            }
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                return Err(AuthFailure::Closed);
            }
            Some(Ok(Message::Text(text))) => ClientFrame::from_json(text.as_bytes()),
            Some(Ok(Message::Binary(bytes))) => ClientFrame::from_msgpack(&bytes),
            Some(Ok(control)) => {
                match rate.take(Instant::now()) {
                    Verdict::Allow => {}
                    Verdict::Refuse => continue,
                    Verdict::Close => {
                        return Err(AuthFailure::RateLimited);
                    }
                }
                if let Message::Ping(payload) = control {
                    ws.pong(payload);
                    // Within the auth deadline, like everything before the welcome.
                    match tokio::time::timeout_at(deadline, ws.flush()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return Err(AuthFailure::Closed),
                        Err(_) => return Err(AuthFailure::TimedOut),
                    }
                }
                continue;
            }
        };
        return match frame {
            // The connect hook's own timeout applies; the auth deadline bounds both.
            Ok(ClientFrame::Auth {
                token,
                since,
                encrypt,
            }) => match tokio::time::timeout_at(deadline, shared.identify(&token, peer)).await {
                Ok(Ok(Verified { claims, enc })) => {
                    let agreed = match encrypt {
                        Some(key) => Some(
                            agreement::respond(&key, shared.config.max_frame_size)
                                .map_err(AuthFailure::BadKey)?,
                        ),
                        None if shared.config.require_encryption || enc => {
                            return Err(AuthFailure::EncryptionRequired);
                        }
                        None => None,
                    };
                    Ok(Authenticated {
                        claims,
                        since,
                        agreed,
                    })
                }
                Ok(Err(Denied::Refused { label, .. })) => Err(AuthFailure::InvalidToken { label }),
                Ok(Err(Denied::Unavailable(_))) | Err(_) => Err(AuthFailure::HookUnavailable),
            },
            _ => Err(AuthFailure::NoAuthFrame),
        };
    }
}
