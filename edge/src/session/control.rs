//! A worker's control message for this connection: join a room, leave one, disconnect, or
//! answer one of its calls.

use ferrocast_protocol::frame::server::ServerFrame;

use super::Session;
use super::closing::Closing;
use super::frames::{BY_SERVER, Reply, Start};
use crate::bus::Bus;
use crate::fanout::control::Control;
use crate::ops::metrics::metrics;

impl<B: Bus> Session<B> {
    /// Applies `control`: the frames to send, or the close code and reason to close with.
    pub(super) async fn apply(&mut self, control: &Control) -> Result<Reply, Closing> {
        // Replies are counted as such, by the call they answer.
        if !matches!(control, Control::Reply(_)) {
            metrics().controls_applied.inc();
        }
        match control {
            Control::Join(room) => {
                if let Some(joined) = self.rooms.get_mut(room) {
                    // The worker's say-so now keeps the client there, whatever a later refresh.
                    joined.granted = true;
                    return Ok(Reply::default());
                }
                match self.join(room, Start::Live, None, Some(BY_SERVER)).await {
                    Ok(reply) => Ok(reply),
                    Err(refusal) => {
                        // Nobody asked, so nobody to answer: the worker's log is the place.
                        tracing::warn!(%room, ?refusal, "cannot apply a worker's join");
                        Ok(Reply::default())
                    }
                }
            }
            Control::Leave(room) => {
                if !self.leave(room, BY_SERVER) {
                    return Ok(Reply::default());
                }
                Ok(self
                    .encode(&ServerFrame::Left {
                        room,
                        reference: None,
                        by: Some(BY_SERVER),
                    })
                    .into())
            }
            Control::Disconnect { code, reason } => Err(Closing {
                code: *code,
                reason: reason.clone(),
            }),
            Control::Reply(reply) => Ok(self.on_rpc_reply(reply)),
        }
    }
}
