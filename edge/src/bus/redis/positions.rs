//! Each subscribed target's position in its history, and catching up from it after a
//! reconnect: what both Redis buses (one Redis, or a cluster) share. The history reads
//! themselves are in the shared Redis layer ([`ferrocast_redis::history`]).

use std::collections::HashMap;

use ferrocast_protocol::{Keys, Offset, TargetKey};
use redis::aio::ConnectionLike;

use ferrocast_redis::history::{open, page};

use super::unavailable;
use crate::bus::{BusError, FROM_START, Sink};

/// Newest offset handed to the sink, per subscribed target: the bus's one record of what it is
/// subscribed to (every connection has two targets of its own, so a second set would cost each
/// connection its share of another table).
#[derive(Default)]
pub struct Positions(parking_lot::Mutex<HashMap<TargetKey, Option<Offset>>>);

impl Positions {
    /// Records `targets` as subscribed, with no position yet (until [`Positions::set`]):
    /// nothing of theirs is delivered meanwhile.
    pub fn subscribing(&self, targets: &[TargetKey]) {
        let mut positions = self.0.lock();
        for target in targets {
            positions.entry(target.clone()).or_insert(None);
        }
    }

    /// Sets `target`'s position (on subscribing).
    pub fn set(&self, target: TargetKey, offset: Offset) {
        self.0.lock().insert(target, Some(offset));
    }

    /// Moves `target`'s position, unless it was unsubscribed meanwhile: a catch-up that ends
    /// after its target was left must not make it look subscribed again.
    fn update(&self, target: &TargetKey, offset: Offset) {
        if let Some(position) = self.0.lock().get_mut(target) {
            *position = Some(offset);
        }
    }

    /// Forgets `target` (on unsubscribing).
    pub fn remove(&self, target: &TargetKey) {
        self.0.lock().remove(target);
    }

    /// Whether `target` is subscribed (or being subscribed).
    pub fn contains(&self, target: &TargetKey) -> bool {
        self.0.lock().contains_key(target)
    }

    /// Every subscribed target.
    pub fn targets(&self) -> Vec<TargetKey> {
        self.0.lock().keys().cloned().collect()
    }

    /// Every target that has a position, and its position.
    pub fn snapshot(&self) -> Vec<(TargetKey, Offset)> {
        self.0
            .lock()
            .iter()
            .filter_map(|(t, o)| Some((t.clone(), (*o)?)))
            .collect()
    }

    /// `target`'s position, if it is subscribed and has one.
    pub fn get(&self, target: &TargetKey) -> Option<Offset> {
        self.0.lock().get(target).copied().flatten()
    }

    /// Hands a message to the sink unless it is at or below the target's position: live
    /// messages that a catch-up already delivered, and the reverse, are dropped here.
    pub fn deliver_if_new(
        &self,
        sink: &dyn Sink,
        target: &TargetKey,
        offset: Offset,
        envelope: &[u8],
    ) {
        {
            let mut positions = self.0.lock();
            // No position: the target is being subscribed (its members are not live yet, and
            // the baseline read covers this message) or was just unsubscribed.
            let Some(Some(position)) = positions.get_mut(target) else {
                return;
            };
            let newer = position.epoch != offset.epoch || position.id < offset.id;
            if !newer {
                return;
            }
            *position = offset;
        }
        sink.deliver(target, offset, envelope);
    }

    /// Replays `target` from `position`: what was published while its live messages could not
    /// arrive reaches the members, in order, a page at a time. A history that did not survive
    /// (Redis lost it, or it was trimmed past the position) is a gap: the members are told with
    /// a `gap` frame and delivery goes on after the history's newest offset. One that expired
    /// quietly, past its TTL with nothing after the position, is not a loss.
    pub async fn catch_up<C: ConnectionLike>(
        &self,
        conn: &mut C,
        keys: &Keys,
        sink: &dyn Sink,
        target: &TargetKey,
        position: Offset,
        history_ttl_ms: u64,
    ) -> Result<(), BusError> {
        let mut cursor = open(conn, keys, target, Some(position))
            .await
            .map_err(unavailable)?;
        if cursor.recovered || position == FROM_START {
            while !cursor.is_done() {
                for (offset, envelope) in page(conn, keys, target, &mut cursor)
                    .await
                    .map_err(unavailable)?
                {
                    self.deliver_if_new(sink, target, offset, &envelope);
                }
            }
            if !cursor.was_interrupted() {
                return Ok(());
            }
            // Redis lost the history while it was being read: a gap after all.
            cursor = open(conn, keys, target, None).await.map_err(unavailable)?;
        }
        let now = ferrocast_protocol::envelope::now_ms();
        let expired_quietly =
            cursor.last.is_none() && position.id.ms.saturating_add(history_ttl_ms) < now;
        if !expired_quietly {
            sink.gap(target, cursor.last);
        }
        self.update(target, cursor.last.unwrap_or(FROM_START));
        Ok(())
    }
}
