//! Presence records, apart from the broker: who is in a room is stored, not carried, as
//! centrifuge keeps its `PresenceManager` apart from its `Broker`. Redis keeps the records
//! through the emitter's scripts (one Redis or a Cluster alike, so both Redis buses share one
//! implementation, in `redis/presence.rs`); the in-process bus keeps them in memory
//! ([`MemoryPresenceStore`](super::MemoryPresenceStore)). Telling other edges about joins and
//! leaves is the broker's ([`Bus::presence_announce`](super::Bus::presence_announce)).

use std::future::Future;
use std::time::Duration;

use ferrocast_emitter::{PresenceChanges, PresenceList, PresenceUpdate};
use ferrocast_protocol::presence::PresenceStats;

use super::BusError;

/// Where rooms' presence records live. Every implementation keeps the rules of
/// [`ferrocast_protocol::presence`]: entries expire unless refreshed, an update removes a bounded
/// number of expired ones and reports them removed, readers count only unexpired entries.
pub trait PresenceStore: Send + Sync + 'static {
    /// Applies an edge's changes to `room`, entries expiring `ttl` from now, and removes some
    /// expired entries; what changed.
    fn update(
        &self,
        room: &str,
        update: &PresenceUpdate,
        ttl: Duration,
    ) -> impl Future<Output = Result<PresenceChanges, BusError>> + Send;

    /// `room`'s present clients, unless there are more than `max`.
    fn list(
        &self,
        room: &str,
        max: u64,
    ) -> impl Future<Output = Result<PresenceList, BusError>> + Send;

    /// How many clients and users are present in `room`.
    fn stats(&self, room: &str) -> impl Future<Output = Result<PresenceStats, BusError>> + Send;
}
