//! Keeps the bus subscribed to exactly the targets that have local members.
//!
//! One task, so subscribe and unsubscribe for a target can never overtake each other: each round
//! compares what the registry wants now with what the bus has (its own record, not a copy), and
//! changes only the difference.
//! Subscribes within a round go to the bus as one batch.

use std::sync::Arc;

use crate::bus::Bus;
use crate::fanout::registry::Registry;
use crate::ops::metrics::metrics;

/// Runs until the process ends.
pub async fn run<B: Bus>(registry: Arc<Registry>, bus: Arc<B>) {
    let mut subscribed = 0usize;
    loop {
        registry.changed().await;
        let mut add = Vec::new();
        let mut remove = Vec::new();
        for (target, wanted) in registry.take_changed() {
            match (wanted, bus.is_subscribed(&target)) {
                (true, false) => add.push(target),
                (false, true) => remove.push(target),
                (true, true) => registry.set_live(&target),
                (false, false) => {}
            }
        }
        if !add.is_empty() {
            match bus.subscribe(&add).await {
                Ok(()) => {
                    subscribed += add.len();
                    metrics().subscribed_targets.set(subscribed as i64);
                    for target in add {
                        registry.set_live(&target);
                    }
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
            subscribed = subscribed.saturating_sub(remove.len());
            metrics().subscribed_targets.set(subscribed as i64);
            if let Err(error) = bus.unsubscribe(&remove).await {
                tracing::debug!(%error, targets = remove.len(), "unsubscribe failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ferrocast_protocol::Target;

    use super::*;
    use crate::bus::MemoryBus;
    use crate::fanout::feed::Feed;
    use crate::fanout::registry::Member;

    #[tokio::test]
    async fn targets_with_members_are_subscribed_and_the_last_leave_unsubscribes() {
        let registry = Registry::new();
        let bus = Arc::new(MemoryBus::new(
            Feed::new(registry.clone()),
            10,
            Duration::from_secs(60),
        ));
        let task = tokio::spawn(run(registry.clone(), bus.clone()));
        let room = Target::Room("r".into()).key();
        let first = registry.join(&room, 1, Member::for_test("c1")).state;
        first.expect("pending").live().await.expect("live");
        // A second member joins a live target: live at once, nothing to subscribe.
        let second = registry.join(&room, 2, Member::for_test("c2")).state;
        assert!(second.is_none());
        assert_eq!(registry.targets(), 1);
        registry.leave(&room, 1);
        registry.leave(&room, 2);
        assert_eq!(registry.targets(), 0);
        // Joined again after everyone left: subscribed again, live again.
        let again = registry.join(&room, 3, Member::for_test("c3")).state;
        again.expect("pending").live().await.expect("live again");
        task.abort();
    }
}
