//! Presence records in Redis: the emitter's scripts, the same on one Redis and on a Cluster.

use std::time::Duration;

use ferrocast_emitter::{Emitter, PresenceChanges, PresenceList, PresenceUpdate};
use ferrocast_protocol::presence::PresenceStats;

use crate::bus::{BusError, PresenceStore};

/// Presence in Redis, through the emitter's scripts.
impl PresenceStore for Emitter {
    async fn update(
        &self,
        room: &str,
        update: &PresenceUpdate,
        ttl: Duration,
    ) -> Result<PresenceChanges, BusError> {
        Ok(self.presence_update(room, update, ttl).await?)
    }

    async fn list(&self, room: &str, max: u64) -> Result<PresenceList, BusError> {
        Ok(self.presence_limited(room, max).await?)
    }

    async fn stats(&self, room: &str) -> Result<PresenceStats, BusError> {
        Ok(self.presence_stats(room).await?)
    }
}
