//! The Redis layer both sides use: the emitter and its inbox reader here, and the edge's buses.
//!
//! - [`pool`]: pooled multiplexed connections that drop themselves when broken, and their
//!   revalidation after a Redis restart;
//! - [`errors`]: the one classification of what Redis answered (retry, or give up);
//! - [`backoff`]: the one exponential backoff every reconnecting or retrying loop uses.
//!
//! Publishing (the protocol's script) is [`Emitter`](crate::Emitter); the inbox's two ends, the
//! edge's writer and the workers' reader, are [`inbox`](crate::inbox).

pub mod backoff;
pub mod errors;
pub mod history;
pub mod pool;
pub mod replay;

pub use backoff::Backoff;
