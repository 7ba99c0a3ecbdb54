//! The edge's side of the upstream inbox beyond appending (which is
//! [`InboxWriter`](ferrocast_emitter::inbox::InboxWriter), beside the workers' reader): keeping
//! its size and lag in `/metrics`.

/// How often the upstream inbox's size and lag are read for /metrics.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps the inbox metrics current: how much the streams hold, and how far behind each consumer
/// group is (what makes `send` answer UNAVAILABLE once the inbox is full). Ends at once on a bus
/// without an inbox.
pub async fn watch<B: super::Bus>(bus: std::sync::Arc<B>) {
    use crate::ops::metrics::{GroupLabel, metrics};
    let mut interval = tokio::time::interval(WATCH_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match bus.inbox_stats().await {
            Ok(Some(stats)) => {
                let m = metrics();
                m.inbox_entries
                    .set(i64::try_from(stats.entries).unwrap_or(i64::MAX));
                m.inbox_lag.clear();
                for (group, lag) in stats.lag {
                    m.inbox_lag
                        .get_or_create(&GroupLabel { group })
                        .set(i64::try_from(lag).unwrap_or(i64::MAX));
                }
            }
            Ok(None) => return,
            Err(error) => tracing::debug!(%error, "cannot read the inbox's lag"),
        }
    }
}
