//! The Redis Cluster bus: sharded pub/sub (SSUBSCRIBE) on the master that owns each target's
//! slot, over one cluster connection that holds one connection per node, routes every call by
//! key, follows MOVED redirections and resubscribes after reconnections and topology changes.
//!
//! Live messages arrive as RESP3 pushes. When a node's connection drops (a restart, or a
//! failover to its replica), or Redis moves a channel's slot away, the affected targets'
//! positions are saved and their live messages set aside (they will be in the replay); every
//! half second until it succeeds, each such target is subscribed again, which routes it to its
//! slot's current master (following the failover), and replayed from its saved position, so
//! what was published in between reaches the members, in order, before newer live messages.
//! Which targets a dropped node served is not known, so a drop resyncs them all. A history that
//! did not survive (asynchronous replication can lose the newest entries, a node can restart
//! empty) is a `gap`, told to the members, who stay connected. The edge reports not ready until
//! every target is resynced.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrocast_emitter::Emitter;
use ferrocast_protocol::presence::PresenceEvents;
use ferrocast_protocol::{Envelope, Offset, TargetKey, Upstream};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use super::shared::RedisCore;
use super::unavailable;
use super::{PING_EVERY, RedisSettings, TIMEOUT};
use crate::bus::{
    Appended, Bus, BusError, FROM_START, HistoryPage, InboxStats, ReplayCursor, Sink,
};
use crate::ops::metrics::metrics;

/// How often a resubscription after a dropped connection is tried until it succeeds.
const RESYNC_EVERY: Duration = Duration::from_millis(500);

/// A bus over a Redis Cluster.
pub struct ClusterBus {
    core: RedisCore,
    /// Set once the first connection is made; it reconnects by itself after that.
    conn: tokio::sync::OnceCell<ClusterConnection>,
    /// Targets to subscribe again and replay from these saved positions; their live messages
    /// are set aside meanwhile.
    pending: parking_lot::Mutex<HashMap<TargetKey, Offset>>,
    ready: AtomicBool,
    /// The task keeping the connection, stopped by [`Bus::shutdown`].
    task: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
}

impl ClusterBus {
    /// Starts a bus on the cluster that `nodes` (`redis://host:port`) belong to. Returns at once; the connection is made
    /// in the background, and [`Bus::is_ready`] says when it is up.
    pub fn start(
        nodes: Vec<String>,
        settings: &RedisSettings,
        sink: Arc<dyn Sink>,
    ) -> Result<Arc<ClusterBus>, BusError> {
        let (pushes, received) = tokio::sync::mpsc::unbounded_channel();
        let client = ferrocast_redis::clients::cluster_builder(&nodes, &settings.tls)
            .map_err(|e| BusError::Refused(e.to_string()))?
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .build()
            .map_err(|e| BusError::Refused(format!("invalid Redis Cluster nodes: {e}")))?;
        let bus = Arc::new(ClusterBus {
            core: RedisCore::new(settings, Emitter::cluster_builder(nodes), sink)?,
            conn: tokio::sync::OnceCell::new(),
            pending: parking_lot::Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            task: parking_lot::Mutex::new(None),
        });
        let task = tokio::spawn(bus.clone().maintain(client, received));
        *bus.task.lock() = Some(task.abort_handle());
        Ok(bus)
    }

    /// Connects, then handles pushes and pings for as long as the edge runs.
    async fn maintain(
        self: Arc<Self>,
        client: ClusterClient,
        mut pushes: UnboundedReceiver<PushInfo>,
    ) {
        let mut backoff = super::reconnect_backoff();
        let conn = loop {
            match client.get_async_connection().await {
                Ok(conn) => break conn,
                Err(error) => {
                    tracing::warn!(%error, "cannot reach the Redis Cluster");
                    backoff.wait().await;
                }
            }
        };
        let conn = self.conn.get_or_init(|| async { conn }).await.clone();
        tracing::info!("connected to the Redis Cluster");
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resync = tokio::time::interval(RESYNC_EVERY);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                push = pushes.recv() => match push {
                    Some(push) => self.on_push(push).await,
                    None => return,
                },
                _ = resync.tick(), if !self.pending.lock().is_empty() => self.resync().await,
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(
                        TIMEOUT,
                        redis::cmd("PING").query_async::<()>(&mut conn.clone()),
                    )
                    .await;
                    let up = matches!(answered, Ok(Ok(())));
                    if self.ready.swap(up, Ordering::SeqCst) != up {
                        tracing::info!(up, "Redis Cluster reachability changed");
                    }
                }
            }
        }
    }

    async fn on_push(&self, push: PushInfo) {
        match push.kind {
            PushKind::SMessage => {
                let [Value::BulkString(channel), Value::BulkString(payload)] = &push.data[..]
                else {
                    return;
                };
                let Some(target) = self.core.keys.target_of_live(channel) else {
                    return;
                };
                if self.pending.lock().contains_key(&target) {
                    return; // Its replay from the saved position will carry it.
                }
                self.core.live(&target, payload);
            }
            PushKind::SUnsubscribe => {
                // Redis unsubscribes shard channels whose slot moved to another node (a
                // resharding); one we still want must be subscribed again where it went.
                let Some(Value::BulkString(channel)) = push.data.first() else {
                    return;
                };
                if let Some(target) = self.core.keys.target_of_live(channel)
                    && let Some(position) = self.core.positions.get(&target)
                {
                    tracing::info!(%target, "shard channel moved; resubscribing");
                    self.pending.lock().entry(target).or_insert(position);
                }
            }
            PushKind::Disconnection => {
                metrics().bus_reconnects.inc();
                let mut pending = self.pending.lock();
                for (target, position) in self.core.positions.snapshot() {
                    pending.entry(target).or_insert(position);
                }
                tracing::warn!("a Redis Cluster connection dropped; resubscribing every target");
            }
            _ => {}
        }
    }

    /// Subscribes each pending target again (on its slot's current master) and replays it from
    /// its saved position; a target that fails stays pending for the next round, and does not
    /// hold the others back.
    async fn resync(&self) {
        let Ok(mut conn) = self.connection() else {
            return;
        };
        let pending: Vec<(TargetKey, Offset)> = self
            .pending
            .lock()
            .iter()
            .map(|(t, o)| (t.clone(), *o))
            .collect();
        let mut failed = 0;
        for (target, saved) in pending {
            if self.core.positions.get(&target).is_none() {
                // Left meanwhile: nothing to resubscribe.
                self.pending.lock().remove(&target);
                continue;
            }
            let channel = self.core.keys.live(&target);
            let resynced = async {
                tokio::time::timeout(TIMEOUT, conn.ssubscribe(&channel))
                    .await
                    .map_err(|_| unavailable("subscribe timed out"))?
                    .map_err(unavailable)?;
                if self.core.positions.get(&target).is_none() {
                    // Left while subscribing: undo, or the cluster keeps sending it.
                    let _ = conn.sunsubscribe(&channel).await;
                    return Ok(());
                }
                self.catch_up(&target, saved).await
            }
            .await;
            match resynced {
                Ok(()) => {
                    self.pending.lock().remove(&target);
                }
                Err(error) => {
                    failed += 1;
                    tracing::debug!(%target, %error, "cannot resync yet");
                }
            }
        }
        if failed > 0 {
            tracing::warn!(failed, "targets not resubscribed yet; retrying");
        } else {
            tracing::info!("every target subscribed again and replayed");
        }
    }

    async fn catch_up(&self, target: &TargetKey, position: Offset) -> Result<(), BusError> {
        let mut conn = self.connection()?;
        self.core.catch_up(&mut conn, target, position).await
    }

    fn connection(&self) -> Result<ClusterConnection, BusError> {
        self.conn
            .get()
            .cloned()
            .ok_or_else(|| unavailable("not connected to the Redis Cluster yet"))
    }

    async fn newest(&self, target: &TargetKey) -> Result<Option<Offset>, BusError> {
        let mut conn = self.connection()?;
        // One target per call: a call must stay in one slot.
        let newest = self
            .core
            .newest(&mut conn, std::slice::from_ref(target))
            .await?;
        Ok(newest.into_iter().next().flatten())
    }
}

impl Bus for ClusterBus {
    type Presence = Emitter;

    fn presence(&self) -> &Emitter {
        &self.core.emitter
    }

    type Nodes = Emitter;

    fn nodes(&self) -> &Emitter {
        &self.core.emitter
    }

    async fn subscribe(&self, targets: &[TargetKey]) -> Result<(), BusError> {
        let conn = self.connection()?;
        // All at once: one call per target (a call's channels must share a slot), and the
        // cluster connection pipelines them per node.
        let subscribed = futures_util::future::join_all(targets.iter().map(|target| {
            let mut conn = conn.clone();
            async move {
                tokio::time::timeout(TIMEOUT, conn.ssubscribe(self.core.keys.live(target)))
                    .await
                    .map_err(|_| unavailable("subscribe timed out"))?
                    .map_err(unavailable)?;
                // Where the history stands now: a resubscription replays from here.
                self.newest(target).await
            }
        }))
        .await;
        if subscribed.iter().any(Result::is_err) {
            // Without positions the subscriptions are useless: undo them rather than leak them.
            let _ = self.unsubscribe(targets).await;
            let error = subscribed.into_iter().find_map(Result::err);
            return Err(error.unwrap_or_else(|| unavailable("subscribe failed")));
        }
        for (target, newest) in targets.iter().zip(subscribed) {
            if let Ok(newest) = newest {
                self.core
                    .positions
                    .set(target.clone(), newest.unwrap_or(FROM_START));
            }
        }
        Ok(())
    }

    async fn unsubscribe(&self, targets: &[TargetKey]) -> Result<(), BusError> {
        let mut conn = self.connection()?;
        let mut result = Ok(());
        for target in targets {
            self.core.positions.remove(target);
            self.pending.lock().remove(target);
            let unsubscribed =
                tokio::time::timeout(TIMEOUT, conn.sunsubscribe(self.core.keys.live(target)))
                    .await
                    .map_err(|_| unavailable("unsubscribe timed out"))
                    .and_then(|r| r.map_err(unavailable));
            if unsubscribed.is_err() {
                result = unsubscribed;
            }
        }
        result
    }

    fn known_position(&self, target: &TargetKey) -> Option<ReplayCursor> {
        self.core.known_position(target)
    }

    async fn open_replay(
        &self,
        target: &TargetKey,
        since: Option<Offset>,
    ) -> Result<ReplayCursor, BusError> {
        let mut conn = self.connection()?;
        self.core.open_replay(&mut conn, target, since).await
    }

    async fn history(
        &self,
        target: &TargetKey,
        before: Option<Offset>,
        limit: usize,
    ) -> Result<HistoryPage, BusError> {
        let mut conn = self.connection()?;
        self.core.history(&mut conn, target, before, limit).await
    }

    async fn replay_page(
        &self,
        target: &TargetKey,
        cursor: &mut ReplayCursor,
    ) -> Result<Vec<(Offset, Bytes)>, BusError> {
        let mut conn = self.connection()?;
        self.core.replay_page(&mut conn, target, cursor).await
    }

    async fn publish(&self, envelope: &Envelope, idempotent: bool) -> Result<Offset, BusError> {
        self.core.publish(envelope, idempotent).await
    }

    async fn presence_announce(&self, room: &str, events: &PresenceEvents) -> Result<(), BusError> {
        self.core.presence_announce(room, events).await
    }

    async fn send_upstream(
        &self,
        upstream: &Upstream,
        request: Option<&str>,
    ) -> Result<Appended, BusError> {
        let mut conn = self.connection()?;
        self.core.send_upstream(&mut conn, upstream, request).await
    }

    async fn inbox_stats(&self) -> Result<Option<InboxStats>, BusError> {
        let mut conn = self.connection()?;
        self.core.inbox_stats(&mut conn).await.map(Some)
    }

    fn shutdown(&self) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }

    fn is_subscribed(&self, target: &TargetKey) -> bool {
        self.core.positions.contains(target)
    }

    fn is_ready(&self) -> bool {
        // Like the single-Redis bus: not ready until every target is live again.
        self.ready.load(Ordering::SeqCst) && self.pending.lock().is_empty()
    }
}
