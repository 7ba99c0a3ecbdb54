//! `refresh`: a new token for the same user. Its claims replace the old ones; rooms they no
//! longer allow are left, and presence shows a changed `info`.

use ferrocast_protocol::close::{self, ErrorCode};
use ferrocast_protocol::frame::server::ServerFrame;
use tungstenite::Message;

use super::{BY_SERVER, Reply};
use crate::bus::Bus;
use crate::refusal::Refusal;
use crate::session::Session;
use crate::session::encryption::Encryption;
use crate::session::identify::{Denied, Peer};

impl<B: Bus> Session<B> {
    /// Replaces the connection's claims with those of `token` (same user), then leaves the
    /// rooms they no longer allow; answers `refreshed` and a `left` for each.
    pub(super) async fn on_refresh(&mut self, token: &str) -> Result<Reply, Refusal> {
        let peer = Peer {
            client: self.client.clone(),
            remote: self.remote,
            origin: None,
        };
        let claims = match self.shared.identify(token, &peer).await {
            // A token that requires encryption cannot be held by a connection without it: the
            // client is told, and closed as one that did not set it up (4004).
            Ok(verified) if verified.enc && self.encryption != Encryption::On => {
                return Err(Refusal {
                    close_after: Some(close::ENCRYPTION_REQUIRED),
                    ..Refusal::new(
                        ErrorCode::Forbidden,
                        "the new token requires encryption, which this connection did not set up",
                    )
                });
            }
            Ok(verified) if verified.claims.sub == self.claims.sub => verified.claims,
            Ok(_) => {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "a refreshed token must keep the same sub",
                ));
            }
            Err(Denied::Refused { message, .. }) => {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    format!("token refused: {message}"),
                ));
            }
            Err(Denied::Unavailable(_)) => {
                return Err(Refusal::new(
                    ErrorCode::Unavailable,
                    "authentication unavailable; retry the refresh",
                ));
            }
        };
        let exp = claims.exp;
        let info_changed = claims.info != self.claims.info;
        self.claims = claims;
        self.life.set_exp(exp);
        let refreshed = self.encode(&ServerFrame::Refreshed { exp });
        let frames = refreshed.into_iter().chain(self.revoke_rooms()).collect();
        if info_changed {
            self.present_again();
        }
        Ok(Reply {
            frames,
            replays: Vec::new(),
            close: None,
            budget: None,
        })
    }

    /// Records the connection in its presence rooms again, with the `info` of a refreshed
    /// token: `presence` answers show it once the next batch is applied.
    fn present_again(&self) {
        let info = self.presence_info();
        for (room, _) in self.rooms.iter() {
            self.shared
                .presence
                .join(room, &self.client, &self.claims.sub, info.as_deref());
        }
    }

    /// Leaves, each with `left` `by: "server"`, the rooms that neither the token's claims, nor a
    /// public pattern, nor a worker's join allow any longer.
    fn revoke_rooms(&mut self) -> Vec<Message> {
        let revoked: Vec<String> = self
            .rooms
            .iter()
            .filter(|(room, joined)| {
                !joined.granted
                    && !self.claims.rooms.allows(room)
                    && !self.shared.public_rooms.allows(room)
            })
            .map(|(room, _)| room.to_owned())
            .collect();
        let mut frames = Vec::with_capacity(revoked.len());
        for room in revoked {
            if self.leave(&room, BY_SERVER) {
                frames.extend(self.encode(&ServerFrame::Left {
                    room: &room,
                    reference: None,
                    by: Some(BY_SERVER),
                }));
            }
        }
        frames
    }
}
