//! This edge's status in the deployment's directory of edges (`GET /api/nodes`, the console):
//! reported every [`REPORT_EVERY`], kept for [`KEEP_FOR`], so an edge that dies drops out within
//! seconds and one that drains leaves at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::bus::{Bus, NodeDirectory};
use crate::ops::metrics::{ReasonLabel, metrics};
use crate::session::Shared;

/// How often an edge reports.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// How long a report is kept: three missed reports and the edge is gone.
pub const KEEP_FOR: Duration = Duration::from_secs(15);

/// Rooms each edge names among its largest (the console sums them over the edges).
const TOP_ROOMS: usize = 10;

/// What an edge reports of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The edge's id (`--node-id`).
    pub node: String,
    /// Its version.
    pub version: String,
    /// When it started, Unix milliseconds.
    pub started: u64,
    /// When it made this report, Unix milliseconds.
    pub updated: u64,
    /// Seconds since it started.
    pub uptime_s: u64,
    /// Open WebSocket connections.
    pub connections: u64,
    /// Rooms with at least one member on this edge.
    pub rooms: u64,
    /// Deliveries per second over the last report's interval.
    pub deliveries_per_s: f64,
    /// Frames dropped for clients too slow to read them, since it started.
    pub outbound_drops: u64,
    /// Whether it takes new connections (`/readyz`).
    pub ready: bool,
    /// Its bus: `up`, `down` (reconnecting to Redis), or `local` (single-node mode).
    pub redis: String,
    /// Its largest rooms by local members, largest first.
    pub top_rooms: Vec<RoomMembers>,
}

/// A room and its members on one edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomMembers {
    /// The room.
    pub room: String,
    /// Its members on the edge.
    pub members: u64,
}

/// Reports this edge's status until `stop` says so, then removes it from the directory.
pub async fn report<B: Bus>(shared: Arc<Shared<B>>, mut stop: watch::Receiver<bool>) {
    let started = Instant::now();
    let started_ms = ferrocast_protocol::envelope::now_ms();
    let mut last = (Instant::now(), metrics().deliveries.get());
    let mut ticks = tokio::time::interval(REPORT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stopping| *stopping) => break,
        }
        let now = (Instant::now(), metrics().deliveries.get());
        let seconds = now.0.duration_since(last.0).as_secs_f64();
        let per_s = if seconds > 0.0 {
            now.1.saturating_sub(last.1) as f64 / seconds
        } else {
            0.0
        };
        last = now;
        let status = status(&shared, started, started_ms, per_s);
        let Ok(json) = serde_json::to_vec(&status) else {
            continue;
        };
        if let Err(error) = shared
            .bus
            .nodes()
            .announce(&status.node, &json, KEEP_FOR)
            .await
        {
            tracing::debug!(%error, "status not reported");
        }
    }
    if let Err(error) = shared.bus.nodes().leave(&shared.node_id).await {
        tracing::debug!(%error, "not removed from the directory of edges");
    }
}

fn status<B: Bus>(
    shared: &Shared<B>,
    started: Instant,
    started_ms: u64,
    deliveries_per_s: f64,
) -> NodeStatus {
    let (rooms, largest) = shared.registry.rooms(TOP_ROOMS);
    let redis = if !shared.config.redis.is_configured() {
        "local"
    } else if shared.bus.is_ready() {
        "up"
    } else {
        "down"
    };
    NodeStatus {
        node: shared.node_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started: started_ms,
        updated: ferrocast_protocol::envelope::now_ms(),
        uptime_s: started.elapsed().as_secs(),
        connections: shared.connections.open() as u64,
        rooms: rooms as u64,
        deliveries_per_s: (deliveries_per_s * 10.0).round() / 10.0,
        outbound_drops: metrics()
            .frames_dropped
            .get_or_create(&ReasonLabel {
                reason: "queue_full",
            })
            .get(),
        ready: shared.not_ready().is_none(),
        redis: redis.to_owned(),
        top_rooms: largest
            .into_iter()
            .map(|(room, members)| RoomMembers {
                room,
                members: members as u64,
            })
            .collect(),
    }
}
