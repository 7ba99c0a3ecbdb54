//! The Redis Cluster bus: sharded pub/sub (SSUBSCRIBE) on the master that owns each target's
//! slot, over one cluster connection that holds one connection per node, routes every call by
//! key, follows MOVED redirections and resubscribes after reconnections and topology changes.
//!
//! Live messages arrive as RESP3 pushes. When a node's connection drops (a restart, or a
//! failover to its replica), the bus does not wait for the cluster connection to notice the new
//! topology on its own (it only does when a call fails): every half second until it succeeds,
//! it subscribes every target again, which routes each to its slot's current master (following
//! the failover), and then replays the target from its position, so what was published in
//! between reaches the members, in order, before newer live messages. A history that did not
//! survive the failover (asynchronous replication can lose the newest entries) closes the
//! members, who resume and are told `recovered: false`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferrocast_emitter::Emitter;
use ferrocast_protocol::script::LiveMessage;
use ferrocast_protocol::{Envelope, Keys, Offset, TargetKey, Upstream};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use super::history::{self, FROM_START, InboxWriter, Positions, unavailable};
use super::{Bus, BusError, Replay};
use crate::metrics::metrics;
use crate::registry::Registry;

/// How long to wait for the cluster to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How often the cluster is pinged to decide readiness.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Longest wait between attempts to make the first connection.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a resubscription after a dropped connection is tried until it succeeds.
const RESYNC_EVERY: Duration = Duration::from_millis(500);

/// A bus over a Redis Cluster.
pub struct ClusterBus {
    keys: Keys,
    /// Set once the first connection is made; it reconnects by itself after that.
    conn: tokio::sync::OnceCell<ClusterConnection>,
    emitter: Emitter,
    registry: Arc<Registry>,
    positions: Positions,
    /// Subscribed targets whose subscription the cluster has confirmed: a second confirmation
    /// is a resubscription, after which the target is replayed.
    confirmed: parking_lot::Mutex<HashSet<TargetKey>>,
    inbox: InboxWriter,
    history_ttl: Duration,
    ready: AtomicBool,
    /// A node's connection dropped: every target must be subscribed again and replayed.
    resync: AtomicBool,
}

impl ClusterBus {
    /// Starts a bus on the cluster that `nodes` (`redis://host:port`) belong to; `inbox` is the
    /// upstream inbox's length cap and partition count. Returns at once; the connection is made
    /// in the background, and [`Bus::is_ready`] says when it is up.
    pub fn start(
        nodes: Vec<String>,
        prefix: &str,
        registry: Arc<Registry>,
        history_len: u64,
        history_ttl: Duration,
        inbox: (u64, u16),
    ) -> Result<Arc<ClusterBus>, BusError> {
        let (pushes, received) = tokio::sync::mpsc::unbounded_channel();
        let client = ClusterClientBuilder::new(nodes.clone())
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .build()
            .map_err(|e| BusError::Refused(format!("invalid Redis Cluster nodes: {e}")))?;
        let emitter = Emitter::cluster_builder(nodes)
            .prefix(prefix)
            .history_len(history_len)
            .history_ttl(history_ttl)
            .connect_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .build()
            .map_err(|e| BusError::Refused(e.to_string()))?;
        let bus = Arc::new(ClusterBus {
            keys: Keys::new(prefix),
            conn: tokio::sync::OnceCell::new(),
            emitter,
            registry,
            positions: Positions::default(),
            confirmed: parking_lot::Mutex::new(HashSet::new()),
            inbox: InboxWriter::new(Keys::new(prefix), inbox.0, inbox.1),
            history_ttl,
            ready: AtomicBool::new(false),
            resync: AtomicBool::new(false),
        });
        tokio::spawn(bus.clone().maintain(client, received));
        Ok(bus)
    }

    /// Connects, then handles pushes and pings for as long as the edge runs.
    async fn maintain(
        self: Arc<Self>,
        client: ClusterClient,
        mut pushes: UnboundedReceiver<PushInfo>,
    ) {
        let mut backoff = Duration::from_millis(100);
        let conn = loop {
            match client.get_async_connection().await {
                Ok(conn) => break conn,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot reach the Redis Cluster");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
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
                _ = resync.tick(), if self.resync.load(Ordering::SeqCst) => {
                    match self.resync_all().await {
                        Ok(()) => {
                            self.resync.store(false, Ordering::SeqCst);
                            tracing::info!("every target subscribed again and replayed");
                        }
                        Err(error) => tracing::warn!(%error, "cannot resubscribe yet; retrying"),
                    }
                }
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
                let Some(target) = self.keys.target_of_live(channel) else {
                    return;
                };
                match LiveMessage::parse(payload) {
                    Some(live) => self.positions.deliver_if_new(
                        &self.registry,
                        &target,
                        live.offset,
                        live.envelope,
                    ),
                    None => tracing::warn!(%target, "malformed live message skipped"),
                }
            }
            PushKind::SSubscribe => {
                let Some(Value::BulkString(channel)) = push.data.first() else {
                    return;
                };
                let Some(target) = self.keys.target_of_live(channel) else {
                    return;
                };
                let Some(position) = self.positions.get(&target) else {
                    return;
                };
                if self.confirmed.lock().insert(target.clone()) {
                    return; // The first confirmation, of our own subscribe.
                }
                // Subscribed again after a reconnection or a topology change: live messages
                // flow again from here, so what was published in between is in the history.
                if let Err(error) = self.catch_up(&target, position).await {
                    tracing::warn!(%target, %error, "cannot replay a resubscribed target; closing its members");
                    self.registry.lost(&target);
                }
            }
            PushKind::SUnsubscribe => {
                // Redis unsubscribes shard channels whose slot moved to another node (a
                // resharding); one we still want must be subscribed again where it went.
                let Some(Value::BulkString(channel)) = push.data.first() else {
                    return;
                };
                if let Some(target) = self.keys.target_of_live(channel)
                    && self.positions.get(&target).is_some()
                {
                    tracing::info!(%target, "shard channel moved; resubscribing");
                    self.resync.store(true, Ordering::SeqCst);
                }
            }
            PushKind::Disconnection => {
                metrics().bus_reconnects.inc();
                self.resync.store(true, Ordering::SeqCst);
                tracing::warn!("a Redis Cluster connection dropped; resubscribing every target");
            }
            _ => {}
        }
    }

    /// Subscribes every target again (on its slot's current master) and replays it from its
    /// position. Subscribing first: a message published in between is then either in the
    /// replay or live, and positions drop the copy.
    async fn resync_all(&self) -> Result<(), BusError> {
        let mut conn = self.connection()?;
        for (target, _) in self.positions.snapshot() {
            tokio::time::timeout(TIMEOUT, conn.ssubscribe(self.keys.live(&target)))
                .await
                .map_err(|_| unavailable("subscribe timed out"))?
                .map_err(unavailable)?;
            // Read now, not from the snapshot: live messages may have moved it on.
            if let Some(position) = self.positions.get(&target) {
                self.catch_up(&target, position).await?;
            }
        }
        Ok(())
    }

    async fn catch_up(&self, target: &TargetKey, position: Offset) -> Result<(), BusError> {
        let mut conn = self.connection()?;
        let ttl = self.history_ttl.as_millis() as u64;
        self.positions
            .catch_up(&mut conn, &self.keys, &self.registry, target, position, ttl)
            .await
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
        Ok(
            history::newest(&mut conn, &self.keys, std::slice::from_ref(target))
                .await?
                .pop()
                .flatten(),
        )
    }
}

impl Bus for ClusterBus {
    async fn subscribe(&self, targets: &[TargetKey]) -> Result<(), BusError> {
        let mut conn = self.connection()?;
        for (done, target) in targets.iter().enumerate() {
            let subscribed = async {
                tokio::time::timeout(TIMEOUT, conn.ssubscribe(self.keys.live(target)))
                    .await
                    .map_err(|_| unavailable("subscribe timed out"))?
                    .map_err(unavailable)?;
                // Where the history stands now: a resubscription replays from here.
                self.newest(target).await
            }
            .await;
            match subscribed {
                Ok(newest) => self
                    .positions
                    .set(target.clone(), newest.unwrap_or(FROM_START)),
                Err(error) => {
                    // Without a position the subscription is useless: undo it rather than
                    // leak it.
                    let _ = self.unsubscribe(&targets[..=done]).await;
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    async fn unsubscribe(&self, targets: &[TargetKey]) -> Result<(), BusError> {
        let mut conn = self.connection()?;
        let mut result = Ok(());
        for target in targets {
            self.positions.remove(target);
            self.confirmed.lock().remove(target);
            let unsubscribed =
                tokio::time::timeout(TIMEOUT, conn.sunsubscribe(self.keys.live(target)))
                    .await
                    .map_err(|_| unavailable("unsubscribe timed out"))
                    .and_then(|r| r.map_err(unavailable));
            if unsubscribed.is_err() {
                result = unsubscribed;
            }
        }
        result
    }

    async fn read(&self, target: &TargetKey, since: Option<Offset>) -> Result<Replay, BusError> {
        let Some(since) = since else {
            return Ok(Replay {
                last: self.newest(target).await?,
                ..Replay::default()
            });
        };
        let mut conn = self.connection()?;
        history::read(&mut conn, &self.keys, target, since).await
    }

    async fn publish(&self, envelope: &Envelope) -> Result<Offset, BusError> {
        history::publish(&self.emitter, envelope).await
    }

    async fn send_upstream(&self, upstream: &Upstream) -> Result<String, BusError> {
        let mut conn = self.connection()?;
        self.inbox.append(&mut conn, upstream).await
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}
