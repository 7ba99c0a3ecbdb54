//! `Inbox`: how workers consume what clients `send` upstream.
//!
//! Edges append every accepted `send` to the inbox stream `P:{inbox}`. Workers share it through a
//! Redis consumer group: each message goes to one consumer, and stays pending until that
//! consumer acknowledges it. A consumer that dies before acknowledging leaves its messages
//! pending; after `claim_idle` another consumer claims them (XAUTOCLAIM) and handles them again.
//! A message that keeps failing (a poison message) is moved to the dead-letter stream
//! `P:{inbox}:dead` after `max_deliveries` attempts, so it never blocks the others.
//!
//! ```no_run
//! # async fn example() -> Result<(), ferrocast_emitter::InboxError> {
//! use ferrocast_emitter::{Emitter, Inbox};
//! let emitter = Emitter::connect("redis://127.0.0.1:6379").await.expect("redis");
//! let mut inbox = Inbox::builder("redis://127.0.0.1:6379", "chat", "worker-1")
//!     .connect()
//!     .await?;
//! inbox
//!     .run(|received| {
//!         let emitter = emitter.clone();
//!         async move {
//!             // Answer the sender; an error leaves the message pending for a retry.
//!             emitter
//!                 .to_client(&received.message.client)
//!                 .emit("echo", &serde_json::json!({"ok": true}))
//!                 .await
//!                 .map(|_offset| ())
//!         }
//!     })
//!     .await
//! # }
//! ```

mod builder;
mod claims;
mod reader;
pub mod writer;

pub use builder::InboxBuilder;
pub use reader::Inbox;
pub use writer::{Appended, InboxStats, InboxWriter, WriteError};

use ferrocast_protocol::upstream::Upstream;
use thiserror::Error;

/// Why the inbox could not be read.
#[derive(Debug, Error)]
pub enum InboxError {
    /// The Redis URL cannot be used.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// A setting is out of range (an empty group or consumer name, a bad prefix).
    #[error("invalid inbox setting: {0}")]
    InvalidSetting(&'static str),
    /// Redis could not be reached, or the connection broke; retry.
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error.
    #[error("Redis refused: {0}")]
    Redis(redis::RedisError),
}

impl InboxError {
    /// Whether waiting and trying again can help: an outage, or a Redis that is loading, read
    /// only or failing over, but not a misconfiguration (a key of the wrong type, no
    /// permission) that only a person can fix.
    pub fn is_transient(&self) -> bool {
        match self {
            InboxError::Unavailable(_) => true,
            InboxError::Redis(e) => !matches!(
                e.code(),
                Some("WRONGTYPE" | "NOPERM" | "NOAUTH" | "WRONGPASS" | "ERR")
            ),
            InboxError::InvalidUrl(_) | InboxError::InvalidSetting(_) => false,
        }
    }
}

impl From<redis::RedisError> for InboxError {
    fn from(e: redis::RedisError) -> Self {
        if ferrocast_redis::errors::is_transient(&e) {
            InboxError::Unavailable(e.to_string())
        } else {
            InboxError::Redis(e)
        }
    }
}

/// Where a consumer group created by this inbox starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// Everything still in the inbox stream (the default: messages sent before the first
    /// worker started are handled too).
    Beginning,
    /// Only messages sent after the group was created.
    New,
}

/// A message taken from the inbox, to handle and then [`Inbox::ack`].
#[derive(Debug, Clone)]
pub struct Received {
    /// Its inbox stream id (what the sender's `ack` carried).
    pub entry: String,
    /// The inbox partition it came from.
    pub partition: u16,
    /// How many times it has been handed to a consumer, this time included.
    pub deliveries: u64,
    /// The message.
    pub message: Upstream,
}

impl Received {
    /// The lifecycle event this message is (`$connect`, `$disconnect`, `$join`, `$leave`, sent
    /// by edges with `--upstream-lifecycle`), or `None` for a client's `send`.
    pub fn lifecycle(&self) -> Option<ferrocast_protocol::lifecycle::Lifecycle> {
        ferrocast_protocol::lifecycle::Lifecycle::parse(&self.message.event, &self.message.data)
    }
}
