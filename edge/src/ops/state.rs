//! The edge's state as gauges in `/metrics`: readiness, the bus's connection, the configured
//! limits an alert compares usage with, and the free replay budget.
//!
//! Readiness and the bus's connection change without an event the edge could count (a ping
//! unanswered, a cap reached), so they are read when the metrics are rendered, from the same
//! state `/readyz` reads: a scrape and a probe never disagree.

use std::sync::Arc;

use crate::bus::Bus;
use crate::ops::metrics::{StateProbe, metrics};
use crate::session::Shared;

/// Sets the configured limits' gauges now, and returns the probe that reads the rest of
/// `shared`'s state at each render (nothing once the edge is gone).
pub fn probe<B: Bus>(shared: &Arc<Shared<B>>) -> StateProbe {
    let m = metrics();
    m.max_connections
        .set(i64::try_from(shared.config.max_connections).unwrap_or(i64::MAX));
    // Before any replay took a share: the whole budget, as clamped at start.
    m.replay_budget_bytes
        .set(gauge(shared.replay_budget.available_permits()));
    let shared = Arc::downgrade(shared);
    Box::new(move |m| {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        m.ready.set(i64::from(shared.not_ready().is_none()));
        m.bus_connected.set(i64::from(shared.bus.is_ready()));
        m.replay_budget_free_bytes
            .set(gauge(shared.replay_budget.available_permits()));
    })
}

fn gauge(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
