//! The directory of live edges in Redis, through the emitter.

use std::time::Duration;

use ferrocast_emitter::Emitter;

use crate::bus::{BusError, NodeDirectory};

impl NodeDirectory for Emitter {
    async fn announce(&self, id: &str, status: &[u8], ttl: Duration) -> Result<(), BusError> {
        Ok(self.node_announce(id, status, ttl).await?)
    }

    async fn leave(&self, id: &str) -> Result<(), BusError> {
        Ok(self.node_leave(id).await?)
    }

    async fn list(&self, ttl: Duration) -> Result<Vec<Vec<u8>>, BusError> {
        Ok(self.nodes(ttl).await?)
    }
}
