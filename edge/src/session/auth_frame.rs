//! A connection's first frame, when it was not authenticated by header: it must be `auth`.

use ferrocast_protocol::frame::client::{ClientFrame, ScopeSince};
use tungstenite::Message;

use crate::bus::Bus;
use crate::session::auth::Claims;
use crate::session::identify::{Denied, Peer};
use crate::websocket::WsError;

use super::Ws;
use super::refusal::AuthFailure;
use super::shared::Shared;

/// Waits for the `auth` frame and checks its token. The error is the close reason and the
/// metric label.
pub(super) async fn authenticate<B: Bus>(
    shared: &Shared<B>,
    ws: &mut Ws,
    peer: &Peer,
) -> Result<(Claims, ScopeSince), AuthFailure> {
    let deadline = tokio::time::Instant::now() + shared.config.auth_timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(AuthFailure::new("authentication timed out", "timeout")),
            Ok(Some(Err(WsError::Closed(1009)))) => {
                return Err(AuthFailure::new("frame too large", "too_large"));
            }
            Ok(None | Some(Err(_))) => {
                return Err(AuthFailure::new(
                    "connection closed before authentication",
                    "closed",
                ));
            }
            Ok(Some(Ok(Message::Text(text)))) => ClientFrame::from_json(text.as_bytes()),
            Ok(Some(Ok(Message::Binary(bytes)))) => ClientFrame::from_msgpack(&bytes),
            Ok(Some(Ok(_))) => continue,
        };
        return match frame {
            // The connect hook's own timeout applies; the auth deadline bounds both.
            Ok(ClientFrame::Auth { token, since }) => {
                match tokio::time::timeout_at(deadline, shared.identify(&token, peer)).await {
                    Ok(Ok(claims)) => Ok((claims, since)),
                    Ok(Err(Denied::Refused { label, .. })) => {
                        Err(AuthFailure::new("invalid token", label))
                    }
                    Ok(Err(Denied::Unavailable(_))) | Err(_) => Err(AuthFailure::new(
                        "authentication unavailable; try again later",
                        "hook_unavailable",
                    )),
                }
            }
            _ => Err(AuthFailure::new(
                "the first frame must be auth",
                "no_auth_frame",
            )),
        };
    }
}
