//! A message being addressed: target, exclusions, id, trace; then published, or made into a
//! [`Message`] for a batch.

use ferrocast_protocol::keys::Target;
use ferrocast_protocol::names::NameError;
use ferrocast_protocol::offset::Offset;
use ferrocast_protocol::{Envelope, Scope};
use serde::Serialize;
use uuid::Uuid;

use crate::error::EmitError;

use super::{Emitter, Message, current_traceparent};

/// A message being addressed; finish it with [`emit`](Publication::emit),
/// [`emit_raw`](Publication::emit_raw) or, for a batch, [`message`](Publication::message).
#[must_use = "a publication does nothing until emitted"]
pub struct Publication<'e> {
    pub(super) emitter: &'e Emitter,
    pub(super) target: Result<Target, NameError>,
    pub(super) except: Vec<String>,
    pub(super) id: Option<Uuid>,
    pub(super) trace: Option<String>,
}

impl Publication<'_> {
    /// Leaves out one connection, typically the client whose action caused the message.
    pub fn except(mut self, client: impl Into<String>) -> Self {
        self.except.push(client.into());
        self
    }

    /// Uses a message id of the caller's instead of a fresh UUID v7.
    pub fn id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }

    /// Continues the W3C trace `traceparent` in the edges that deliver the message. Without it,
    /// the current `tracing` span's OpenTelemetry context is used, if it has one.
    pub fn trace(mut self, traceparent: impl Into<String>) -> Self {
        self.trace = Some(traceparent.into());
        self
    }

    /// Publishes `data` serialized as JSON. Returns the message's offset.
    pub async fn emit<T: Serialize + ?Sized>(
        self,
        event: &str,
        data: &T,
    ) -> Result<Offset, EmitError> {
        let emitter = self.emitter;
        let message = self.message(event, data)?;
        emitter.publish(&message).await
    }

    /// Publishes `json`, which must be JSON text; it reaches JSON clients byte for byte.
    pub async fn emit_raw(
        self,
        event: &str,
        json: impl Into<Vec<u8>>,
    ) -> Result<Offset, EmitError> {
        let emitter = self.emitter;
        let message = self.message_raw(event, json.into())?;
        emitter.publish(&message).await
    }

    /// Makes the target's sessions join `room`, whatever their tokens allow (the worker decides);
    /// each gets `joined` with `"by":"server"`. Sessions already in the room, or in as many
    /// rooms as an edge allows, are left as they are. Acts on sessions connected now: a client
    /// that resumes later does not replay it.
    pub async fn join_room(self, room: &str) -> Result<Offset, EmitError> {
        let target = self.target.clone()?;
        self.control(Envelope::join(&target, room)).await
    }

    /// Makes the target's sessions leave `room`; each member gets `left` with `"by":"server"`.
    pub async fn leave_room(self, room: &str) -> Result<Offset, EmitError> {
        let target = self.target.clone()?;
        self.control(Envelope::leave(&target, room)).await
    }

    /// Closes the target's sessions with close code 4010 and `reason` (at most 123 bytes).
    pub async fn disconnect(self, reason: &str) -> Result<Offset, EmitError> {
        self.disconnect_with_code(ferrocast_protocol::close::DISCONNECTED, reason)
            .await
    }

    /// Closes the target's sessions with an application close code (4010-4999) and `reason`.
    pub async fn disconnect_with_code(self, code: u16, reason: &str) -> Result<Offset, EmitError> {
        let target = self.target.clone()?;
        self.control(Envelope::disconnect(&target, code, reason))
            .await
    }

    pub(super) async fn control(self, mut envelope: Envelope) -> Result<Offset, EmitError> {
        for client in &self.except {
            Target::new(Scope::Client, client)?;
        }
        envelope.except = self.except;
        envelope.trace = self.trace.or_else(current_traceparent);
        if let Some(id) = self.id {
            envelope.id = id;
        }
        let mut message = Message::from_envelope(&envelope)?;
        message.chosen_id = self.id;
        self.emitter.publish(&message).await
    }

    /// Prepares the message for [`Emitter::emit_batch`].
    pub fn message<T: Serialize + ?Sized>(
        self,
        event: &str,
        data: &T,
    ) -> Result<Message, EmitError> {
        let json = serde_json::to_vec(data)?;
        self.message_raw(event, json)
    }

    /// Prepares a message whose data is already JSON text, for [`Emitter::emit_batch`].
    pub fn message_raw(self, event: &str, json: Vec<u8>) -> Result<Message, EmitError> {
        Message::build(self.target?, event, json, self.except, self.id, self.trace)
    }
}
