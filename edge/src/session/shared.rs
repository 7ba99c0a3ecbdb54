//! What every connection of an edge shares: configuration, token verification, membership, the
//! bus and the table of connections.

use std::sync::Arc;

use crate::bus::Bus;
use crate::config::Config;
use crate::fanout::registry::Registry;
use crate::session::auth::{Patterns, Verifier};
use crate::session::connections::Connections;

/// What every connection of an edge shares.
pub struct Shared<B> {
    /// The configuration.
    pub config: Config,
    /// This edge's id.
    pub node_id: String,
    /// Token verification.
    pub verifier: Verifier,
    /// Rooms anyone may join.
    pub public_rooms: Patterns,
    /// Events clients may send upstream.
    pub upstream_events: Patterns,
    /// Local membership.
    pub registry: Arc<Registry>,
    /// The bus.
    pub bus: Arc<B>,
    /// Every open connection.
    pub connections: Arc<Connections>,
    /// Bytes of history replay the edge may hold at once (`--replay-memory`).
    pub replay_budget: Arc<tokio::sync::Semaphore>,
    /// The application's hooks.
    pub hooks: crate::hooks::Hooks,
    /// This edge's presence members.
    pub presence: Arc<crate::presence::Presence>,
}

impl<B: Bus> Shared<B> {
    /// Why a new connection would not be welcomed now, if it would not: the bus is down, the
    /// edge is draining, or it holds `--max-connections` already. `/readyz` says exactly this.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.connections.is_draining() {
            Some("draining")
        } else if !self.bus.is_ready() {
            Some("bus unavailable")
        } else if self.connections.open() >= self.config.max_connections {
            Some("at --max-connections")
        } else {
            None
        }
    }
}
