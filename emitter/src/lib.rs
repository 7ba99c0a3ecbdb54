//! Publish Ferrocast messages through Redis.
//!
//! Workers link this crate; cron jobs and scripts use the `emitter` binary built on it. A publish
//! never talks to an edge: it runs the protocol's publish script in Redis, which appends the
//! message to the target's history and announces it on the target's live channel, and every edge
//! with a matching client delivers it.

mod emitter;
mod error;
pub mod pool;

pub mod cli;

pub use emitter::{Emitter, EmitterBuilder, Message, Publication};
pub use error::EmitError;
pub use ferrocast_protocol::Offset;
