//! The directory of live edges (`GET /api/nodes`, the console): each edge reports its status
//! every few seconds, kept for a while unless reported again, so a dead edge drops out by
//! itself. Redis keeps it through the emitter (one Redis or a Cluster alike, in
//! `redis/nodes.rs`); the in-process bus, which has one edge, in memory (`memory/nodes.rs`).

use std::future::Future;
use std::time::Duration;

use super::BusError;

/// Where edges' statuses are kept. The statuses are JSON text the edge defines
/// ([`NodeStatus`](crate::ops::node_status::NodeStatus)).
pub trait NodeDirectory: Send + Sync + 'static {
    /// Reports node `id`'s `status`, kept for `ttl` unless reported again.
    fn announce(
        &self,
        id: &str,
        status: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Removes node `id` at once (a draining edge).
    fn leave(&self, id: &str) -> impl Future<Output = Result<(), BusError>> + Send;

    /// The statuses reported within `ttl`.
    fn list(&self, ttl: Duration) -> impl Future<Output = Result<Vec<Vec<u8>>, BusError>> + Send;
}
