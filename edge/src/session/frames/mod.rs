//! Answers to client frames, one file per frame (as mini-redis has one per command): what each
//! checks, what it asks of the bus and the registry, and the answer it writes. [`handle`] only
//! dispatches, and turns every refusal into its `error` answer in one place, so none loses the
//! close that a refusal may ask for.
//!
//! [`handle`]: Session::handle

mod checks;
mod history;
mod join;

pub(super) use join::Start;
mod leave;
mod presence;
mod publish;
mod refresh;
mod resume;
mod rpc;
mod send;

use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::client::ClientFrame;
use ferrocast_protocol::frame::server::ServerFrame;
use tokio::sync::OwnedSemaphorePermit;
use tungstenite::Message;

use super::Session;
use super::replay::Replaying;
use crate::bus::Bus;
use crate::refusal::Refusal;

/// Rate-limit tokens a `since` costs beyond its frame: a replay makes Redis read history, so
/// join/leave loops with `since` must run out of tokens long before they cost Redis much.
pub(super) const SINCE_COST: f64 = 4.0;

/// How the moves of the edge (a refresh taking rooms away) and of workers are marked in
/// `joined` and `left`.
pub(super) const BY_SERVER: &str = "server";

/// What answering a frame writes: its frames, then any replays, a page at a time.
#[derive(Default)]
pub(super) struct Reply {
    /// Frames to write first.
    pub frames: Vec<Message>,
    /// Replays to stream after them.
    pub replays: Vec<Replaying>,
    /// The close code to close the connection with once they are written.
    pub close: Option<u16>,
    /// The share of the edge-wide replay budget (`--replay-memory`) held by a page of history
    /// among the frames, until they are written (within the replay's write timeout).
    pub budget: Option<OwnedSemaphorePermit>,
}

impl From<Option<Message>> for Reply {
    fn from(frame: Option<Message>) -> Reply {
        Reply {
            frames: frame.into_iter().collect(),
            replays: Vec::new(),
            close: None,
            budget: None,
        }
    }
}

impl<B: Bus> Session<B> {
    /// Answers one frame: the answer first, then any replays; a refusal as its `error`.
    pub(super) async fn handle(&mut self, frame: ClientFrame) -> Reply {
        let reference = frame.reference();
        let answered = match frame {
            ClientFrame::Join {
                room,
                since,
                rewind,
                reference,
            } => {
                self.on_join(&room, since.as_deref(), rewind, reference)
                    .await
            }
            ClientFrame::History {
                room,
                limit,
                before,
                reference,
            } => {
                self.on_history(&room, limit, before.as_deref(), reference)
                    .await
            }
            ClientFrame::Leave { room, reference } => self.on_leave(&room, reference),
            ClientFrame::Publish {
                room,
                event,
                data,
                echo,
                id,
                reference,
            } => {
                self.on_publish(room, &event, data, echo, id.as_deref(), reference)
                    .await
            }
            ClientFrame::Send {
                event,
                data,
                id,
                reference,
            } => self.on_send(event, data, id.as_deref(), reference).await,
            ClientFrame::Rpc {
                event,
                data,
                id,
                reference,
                timeout_ms,
            } => {
                self.on_rpc(event, data, id.as_deref(), reference, timeout_ms)
                    .await
            }
            ClientFrame::Ping { reference } => {
                Ok(self.encode(&ServerFrame::Pong { reference }).into())
            }
            ClientFrame::Presence { room, reference } => self.on_presence(&room, reference).await,
            ClientFrame::PresenceStats { room, reference } => {
                self.on_presence_stats(&room, reference).await
            }
            ClientFrame::Resume { since, reference } => self.on_resume(&since, reference).await,
            ClientFrame::Refresh { token } => self.on_refresh(&token).await,
            ClientFrame::Auth { .. } => {
                Err(Refusal::new(ErrorCode::BadFrame, "already authenticated"))
            }
            // The first frame's is taken before this (see `set_up_encryption`).
            ClientFrame::Encrypt { .. } => Err(Refusal::new(
                ErrorCode::BadFrame,
                if self.encryption == super::encryption::Encryption::On {
                    "encryption is already set up"
                } else {
                    "encrypt must be the first frame after a header authentication \
                     (an auth frame carries encrypt itself)"
                },
            )),
        };
        answered.unwrap_or_else(|refusal| self.refused(reference, &refusal))
    }

    /// The `error` answer to frame `reference` for `refusal`, and the close after it if the
    /// refusal asks for one: the one way a refusal reaches the client.
    pub(super) fn refused(&self, reference: Option<u64>, refusal: &Refusal) -> Reply {
        let mut reply = Reply::from(self.encode(&ServerFrame::Error {
            reference,
            code: refusal.code,
            message: &refusal.message,
            retry_after: refusal.retry_after,
        }));
        reply.close = refusal.close_after;
        reply
    }
}
