//! Publish Ferrocast messages through Redis, and consume what clients send upstream.
//!
//! Workers link this crate; cron jobs and scripts use the `emitter` binary built on it. A publish
//! never talks to an edge: it runs the protocol's publish script in Redis, which appends the
//! message to the target's history and announces it on the target's live channel, and every edge
//! with a matching client delivers it. Control messages (make sessions join or leave a room,
//! disconnect them) travel the same way. Upstream, [`Inbox`] reads the clients' `send`s from the
//! inbox stream through a consumer group, and their `rpc` calls, which a worker answers with
//! [`Emitter::reply`] or [`Emitter::reply_error`] on the received message.
//!
//! Its Redis plumbing (connection settings, pools, error classes, backoff, history reads) is the
//! `ferrocast-redis` crate, which the edge uses too; the edge also uses [`Emitter`] for client
//! publishes and the writing end of the [`inbox`], so both sides talk to Redis the same way. Over
//! HTTP, the command's `--edge` client and the edge's hook client make their requests through
//! [`http`].

mod error;
pub mod http;
pub mod inbox;
mod publish;

pub mod cli;

pub use error::EmitError;
pub use ferrocast_protocol::Offset;
pub use ferrocast_protocol::Upstream;
pub use ferrocast_protocol::lifecycle::Lifecycle;
pub use ferrocast_protocol::presence::{PresenceMember, PresenceStats};
pub use inbox::{Inbox, InboxBuilder, InboxError, Received, StartFrom};
pub use publish::{
    Emitter, EmitterBuilder, Message, PresenceChanges, PresenceList, PresenceUpdate, Publication,
    current_traceparent, presence_json,
};
