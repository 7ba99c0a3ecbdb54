//! Applying a worker's control message to this connection.

use ferrocast_protocol::frame::server::ServerFrame;
use tungstenite::Message;

use super::Session;
use crate::bus::Bus;
use crate::control::Control;
use crate::metrics::metrics;

/// How a worker's move is marked in `joined` and `left`.
const BY_SERVER: &str = "server";

impl<B: Bus> Session<B> {
    /// Applies `control`: the frames to send, or the close code and reason to close with.
    pub(super) async fn apply(&mut self, control: &Control) -> Result<Vec<Message>, (u16, String)> {
        metrics().controls_applied.inc();
        match control {
            Control::Join(room) => {
                if self.rooms.contains_key(room) {
                    return Ok(Vec::new());
                }
                match self.join(room, None, None, Some(BY_SERVER)).await {
                    Ok(frames) => Ok(frames),
                    Err((code, error)) => {
                        // Nobody asked, so nobody to answer: the worker's log is the place.
                        tracing::warn!(%room, ?code, %error, "cannot apply a worker's join");
                        Ok(Vec::new())
                    }
                }
            }
            Control::Leave(room) => {
                if !self.leave(room) {
                    return Ok(Vec::new());
                }
                Ok(self
                    .encode(&ServerFrame::Left {
                        room,
                        reference: None,
                        by: Some(BY_SERVER),
                    })
                    .into_iter()
                    .collect())
            }
            Control::Disconnect { code, reason } => Err((*code, reason.clone())),
        }
    }
}
