//! The bus: how messages reach this edge from publishers. A trait with two implementations that
//! pass the same tests: Redis (many edges) and in-process (one edge, no set-up).
//!
//! A bus delivers every message of a subscribed target to the [`Registry`](crate::registry::Registry)
//! it was built with, in the target's offset order.

use std::future::Future;

use ferrocast_protocol::{Envelope, Offset, TargetKey};
use thiserror::Error;

pub mod memory;
pub mod redis;

pub use memory::MemoryBus;
pub use redis::RedisBus;

/// The bus could not do what was asked.
#[derive(Debug, Error)]
pub enum BusError {
    /// Redis is unreachable or the connection broke; retry later.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The message was refused.
    #[error("publish refused: {0}")]
    Refused(String),
}

/// Where messages come from, and where an edge's own publishes go.
pub trait Bus: Send + Sync + 'static {
    /// Starts delivery of `targets`; returns once messages published from now on will arrive.
    fn subscribe(&self, targets: &[TargetKey])
    -> impl Future<Output = Result<(), BusError>> + Send;

    /// Stops delivery of `targets`.
    fn unsubscribe(
        &self,
        targets: &[TargetKey],
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// The newest offset in `target`'s history, if it has any.
    fn last_offset(
        &self,
        target: &TargetKey,
    ) -> impl Future<Output = Result<Option<Offset>, BusError>> + Send;

    /// Publishes a checked envelope to its target (history, then live).
    fn publish(&self, envelope: &Envelope)
    -> impl Future<Output = Result<Offset, BusError>> + Send;

    /// Whether the bus can take new subscriptions and publishes right now.
    fn is_ready(&self) -> bool;
}
