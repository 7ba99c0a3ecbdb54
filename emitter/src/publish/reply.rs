//! Answering a client's `rpc` (v1.2): a `reply` envelope published to the calling client's own
//! target, which the edge holding that client turns into the `reply` frame (or the `RPC_ERROR`
//! error). Like control messages, replies are never replayed to a later connection.
//!
//! A call the client named (an `id`) may be retried from another connection, on any edge: its
//! reply goes to the user's target instead, where every connection of the user hears it and the
//! ones waiting for that call answer it, and it is kept in Redis for the call's retries for as
//! long as the id is remembered.
//!
//! ```no_run
//! # async fn example(emitter: ferrocast_emitter::Emitter, received: ferrocast_emitter::Received)
//! # -> Result<(), ferrocast_emitter::EmitError> {
//! let call = &received.message;
//! if call.expects_reply() && !call.rpc_expired() {
//!     match call.event.as_str() {
//!         "time" => {
//!             emitter
//!                 .reply(call, &serde_json::json!({"now": 1_700_000_000_000u64}))
//!                 .await?;
//!         }
//!         _ => {
//!             emitter
//!                 .reply_error(call, "unknown call", Some(&serde_json::json!({"event": call.event})))
//!                 .await?;
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```

use ferrocast_protocol::offset::Offset;
use ferrocast_protocol::request_id;
use ferrocast_protocol::{Envelope, Target, Upstream};
use serde::Serialize;

use super::{Emitter, Message, current_traceparent};
use crate::error::EmitError;

impl Emitter {
    /// Answers the call `call` (a received inbox message from an `rpc` frame) with `data`
    /// serialized as JSON: its client gets `{"type":"reply","ref":N,"data":...}`. Fails with
    /// [`EmitError::NotACall`] for a message that expects no reply (a `send`).
    ///
    /// A reply that arrives after the client's timeout, or after it disconnected, is dropped by
    /// the edge (and counted there): check [`Upstream::rpc_expired`] first to skip work nobody
    /// waits for.
    pub async fn reply<T: Serialize + ?Sized>(
        &self,
        call: &Upstream,
        data: &T,
    ) -> Result<Offset, EmitError> {
        self.reply_raw(call, serde_json::to_vec(data)?).await
    }

    /// Like [`reply`](Emitter::reply), with `json` already JSON text: it reaches JSON clients
    /// byte for byte.
    pub async fn reply_raw(
        &self,
        call: &Upstream,
        json: impl Into<Vec<u8>>,
    ) -> Result<Offset, EmitError> {
        self.publish_reply(call, json.into(), None).await
    }

    /// Refuses the call `call`: its client gets
    /// `{"type":"error","ref":N,"code":"RPC_ERROR","message":message,"data":data}` (`data` only
    /// when given). `message` is shown to the client: at most 1024 bytes, and nothing secret.
    pub async fn reply_error(
        &self,
        call: &Upstream,
        message: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<Offset, EmitError> {
        let json = match data {
            Some(data) => serde_json::to_vec(data)?,
            None => Vec::new(),
        };
        self.publish_reply(call, json, Some(message.to_owned()))
            .await
    }

    async fn publish_reply(
        &self,
        call: &Upstream,
        json: Vec<u8>,
        error: Option<String>,
    ) -> Result<Offset, EmitError> {
        let rpc = call.rpc.as_ref().ok_or(EmitError::NotACall)?;
        let to = match rpc.reply_key {
            Some(_) => Target::User(call.user.clone()),
            None => Target::Client(call.client.clone()),
        };
        let mut envelope = Envelope::reply(&to, rpc.reference, call.id, json, error);
        envelope.trace = current_traceparent();
        let message = Message::from_envelope(&envelope)?;
        if let Some(key) = &rpc.reply_key {
            // Kept before it is published: a retry that then finds nothing kept is already
            // listening on the user's target, and hears the publish.
            let mut keep = redis::cmd("SET");
            keep.arg(key)
                .arg(&message.envelope[..])
                .arg("EX")
                .arg(request_id::REMEMBER_SECS);
            self.command::<()>(&keep).await?;
        }
        // The reply's own id: a retried publish of it is dropped by the edge as a duplicate.
        self.publish(&message).await
    }
}
