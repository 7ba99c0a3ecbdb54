//! Request and response (v1.2): a client's `rpc` frame goes to the workers through the inbox
//! like a `send`, marked with what a reply needs ([`RpcCall`]); a worker's reply comes back as a
//! `reply` envelope to the client's own target, and the edge holding the client answers the
//! frame. The limits both sides share are here.

use serde::{Deserialize, Serialize};

/// How long a call waits for its reply when the frame gives no `timeout`, milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// The longest `timeout` a call may ask for, milliseconds.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// Calls one connection may have waiting for their replies at once.
pub const MAX_PENDING: usize = 32;

/// Longest worker's refusal message (`reply_error`), bytes: it is shown to a client, and a
/// sentence is enough.
pub const MAX_ERROR_BYTES: usize = 1024;

/// The mark of an inbox message that expects a reply (its `rpc` field): the client to answer is
/// the message's `client`, and the call it answers is the message's `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcCall {
    /// The `ref` of the client's `rpc` frame, echoed in the answer.
    #[serde(rename = "ref")]
    pub reference: u64,
    /// When the client stops waiting, Unix milliseconds: a worker that finds it past can skip
    /// the call, whose client has had its `TIMEOUT` already.
    pub deadline: u64,
    /// For a call the client named (an `id`), the Redis key where the reply is kept for the
    /// call's retries, beside the memory of its id. Such a reply goes to the user's target,
    /// not the client's: a retry may come from another connection, on any edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_key: Option<String>,
}

impl RpcCall {
    /// Whether the client has stopped waiting at `now_ms` (Unix milliseconds).
    pub fn expired_at(&self, now_ms: u64) -> bool {
        now_ms >= self.deadline
    }
}
