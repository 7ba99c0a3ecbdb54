//! The presence task: applies pending joins and leaves in batches, refreshes members before they
//! expire, and announces what changed to rooms whose events are on.

use std::sync::Arc;
use std::time::Duration;

use ferrocast_protocol::presence::PresenceEvents;

use super::{Presence, RoomBatch, WINDOW};
use crate::bus::{Bus, BusError, PresenceStore};

/// How long to wait after the bus failed a batch before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Runs until `stopping` completes, then applies what is pending and returns: the edge stops it
/// after draining, so the drained clients' leaves reach Redis (and the rooms' other members)
/// at once instead of when their entries expire.
pub async fn run<B: Bus>(
    presence: Arc<Presence>,
    bus: Arc<B>,
    stopping: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stopping);
    // Every member is refreshed once per round of `slots` ticks, about half a TTL.
    let tick = (presence.ttl / 4).min(Duration::from_secs(1));
    let slots = ((presence.ttl / 2).as_millis() / tick.as_millis().max(1)).max(1) as u64;
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut slot = 0;
    loop {
        tokio::select! {
            _ = presence.pending.notified() => {
                // Whatever else arrives meanwhile goes in the same batch.
                tokio::time::sleep(WINDOW).await;
                if flush(&presence, &*bus, None).await.is_err() {
                    tokio::time::sleep(RETRY_AFTER).await;
                    presence.pending.notify_one();
                }
            }
            _ = ticker.tick() => {
                let _guard = presence.applying.lock().await;
                let due = presence.due(slot, slots);
                slot = (slot + 1) % slots;
                for batch in due {
                    if let Err(error) = apply(&presence, &*bus, &batch).await {
                        tracing::debug!(%error, room = %batch.room, "presence refresh failed");
                    }
                }
            }
            () = &mut stopping => break,
        }
    }
    let _ = flush(&presence, &*bus, None).await;
}

/// Applies what is pending for `room` (or every room) now: a `presence` query flushes its room
/// first, so a client sees its own join.
pub async fn flush<B: Bus>(
    presence: &Presence,
    bus: &B,
    room: Option<&str>,
) -> Result<(), BusError> {
    let _guard = presence.applying.lock().await;
    let mut result = Ok(());
    for batch in presence.take_pending(room) {
        if let Err(error) = apply(presence, bus, &batch).await {
            tracing::warn!(%error, room = %batch.room, "presence update failed; will retry");
            presence.requeue(&batch);
            result = Err(error);
        }
    }
    result
}

/// Tells the bus about one batch, and the room's members (on every edge) about what changed.
async fn apply<B: Bus>(presence: &Presence, bus: &B, batch: &RoomBatch) -> Result<(), BusError> {
    let m = crate::ops::metrics::metrics();
    let changes = bus
        .presence()
        .update(&batch.room, &batch.update, presence.ttl)
        .await
        .inspect_err(|_| {
            m.presence_errors.inc();
        })?;
    m.presence_updates.inc();
    if !presence.announces(&batch.room) {
        return Ok(());
    }
    let events = PresenceEvents {
        join: changes
            .added
            .iter()
            .filter_map(|client| batch.joining.get(client).cloned())
            .collect(),
        leave: changes.removed,
    };
    if !events.is_empty() {
        // Best effort (docs/protocol.md): the change itself is recorded; a lost announcement is not
        // retried.
        if let Err(error) = bus.presence_announce(&batch.room, &events).await {
            tracing::debug!(%error, room = %batch.room, "presence announcement lost");
        }
    }
    Ok(())
}
