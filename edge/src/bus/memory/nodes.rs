//! The directory of live edges for the in-process bus: only this edge reports to it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::bus::{BusError, NodeDirectory};

/// Statuses by node id, with when each was reported.
#[derive(Default)]
pub struct MemoryNodes(Mutex<HashMap<String, (Instant, Vec<u8>)>>);

impl NodeDirectory for MemoryNodes {
    async fn announce(&self, id: &str, status: &[u8], ttl: Duration) -> Result<(), BusError> {
        let mut nodes = self.0.lock();
        let now = Instant::now();
        nodes.retain(|_, (at, _)| now.duration_since(*at) < ttl);
        nodes.insert(id.to_owned(), (now, status.to_vec()));
        Ok(())
    }

    async fn leave(&self, id: &str) -> Result<(), BusError> {
        self.0.lock().remove(id);
        Ok(())
    }

    async fn list(&self, ttl: Duration) -> Result<Vec<Vec<u8>>, BusError> {
        let now = Instant::now();
        Ok(self
            .0
            .lock()
            .values()
            .filter(|(at, _)| now.duration_since(*at) < ttl)
            .map(|(_, status)| status.clone())
            .collect())
    }
}
