//! Keeps the bus subscribed to exactly the targets that have local members.
//!
//! One task, so subscribe and unsubscribe for a target can never overtake each other: each round
//! compares what the registry wants now with what the bus has, and changes only the difference.
//! Subscribes within a round go to the bus as one batch.

use std::collections::HashSet;
use std::sync::Arc;

use ferrocast_protocol::TargetKey;

use crate::bus::Bus;
use crate::fanout::registry::Registry;
use crate::ops::metrics::metrics;

/// Runs until the process ends.
pub async fn run<B: Bus>(registry: Arc<Registry>, bus: Arc<B>) {
    let mut subscribed: HashSet<TargetKey> = HashSet::new();
    loop {
        registry.changed().await;
        let mut add = Vec::new();
        let mut remove = Vec::new();
        for (target, wanted) in registry.take_changed() {
            match (wanted, subscribed.contains(&target)) {
                (true, false) => add.push(target),
                (false, true) => remove.push(target),
                (true, true) => registry.set_live(&target),
                (false, false) => {}
            }
        }
        if !add.is_empty() {
            match bus.subscribe(&add).await {
                Ok(()) => {
                    for target in add {
                        registry.set_live(&target);
                        subscribed.insert(target);
                    }
                    metrics().subscribed_targets.set(subscribed.len() as i64);
                }
                Err(error) => {
                    tracing::warn!(%error, targets = add.len(), "subscribe failed");
                    for target in &add {
                        registry.fail(target);
                    }
                }
            }
        }
        if !remove.is_empty() {
            for target in &remove {
                subscribed.remove(target);
            }
            metrics().subscribed_targets.set(subscribed.len() as i64);
            if let Err(error) = bus.unsubscribe(&remove).await {
                tracing::debug!(%error, targets = remove.len(), "unsubscribe failed");
            }
        }
    }
}
