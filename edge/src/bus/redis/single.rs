//! The Redis bus: one pub/sub connection per edge for live delivery, a small pool for reads, and
//! the emitter for the edge's own publishes.
//!
//! The bus remembers, per subscribed target, the newest offset it has handed to the sink.
//! That position does two jobs: a live message at or below it is a duplicate and is dropped, and
//! when the pub/sub connection drops (or stops answering pings), the bus reports not ready,
//! reconnects with backoff, subscribes again to every target, and replays each one from its
//! position before going live again, so a Redis blip loses nothing still in the history. A target
//! whose history did not survive (Redis restarted empty, or trimmed past the position) gets a
//! `gap` frame to its members, who stay connected (see [`Positions::catch_up`](super::positions::Positions::catch_up)).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrocast_emitter::Emitter;
use ferrocast_protocol::presence::PresenceEvents;
use ferrocast_protocol::{Envelope, Offset, TargetKey, Upstream};
use ferrocast_redis::pool::{Conn, Manager};
use futures_util::future::OptionFuture;
use tokio::sync::Mutex;

use super::shared::RedisCore;
use super::unavailable;
use super::{PING_EVERY, RedisSettings, TIMEOUT};
use crate::bus::{
    Appended, Bus, BusError, FROM_START, HistoryPage, InboxStats, ReplayCursor, Sink,
};
use crate::ops::metrics::metrics;
use ferrocast_redis::endpoint::Endpoint;
use ferrocast_redis::pubsub::{Commands, Connector, Held, Reader};
use ferrocast_redis::sentinel::Sentinels;

/// A pub/sub connection that lasted this long resets the reconnection backoff.
const STABLE: Duration = Duration::from_secs(10);
/// How long a ping of the pub/sub connection may take: a Redis that stops answering (paused,
/// or a half-open connection) is treated as lost.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// A bus over one Redis.
pub struct RedisBus {
    core: RedisCore,
    /// Opens the live (pub/sub) connection.
    connector: Connector,
    reads: bb8::Pool<Manager>,
    /// The live connection's command half. Held while subscribing, so a reconnect and a
    /// subscribe cannot interleave; what it is subscribed to is the core's
    /// [`Positions`](super::positions::Positions).
    live: Mutex<Option<Arc<Commands>>>,
    ready: AtomicBool,
    /// The task keeping the connection, stopped by [`Bus::shutdown`].
    task: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
}

impl RedisBus {
    /// Starts a bus on the Redis at `url`. Returns at once; the connection is made (and remade)
    /// in the background, and [`Bus::is_ready`] says when it is up.
    pub fn start(
        url: &str,
        sentinels: Option<Arc<Sentinels>>,
        settings: &RedisSettings,
        sink: Arc<dyn Sink>,
    ) -> Result<Arc<RedisBus>, BusError> {
        let endpoint = match &sentinels {
            Some(sentinels) => Endpoint::Sentinel(sentinels.clone()),
            None => Endpoint::Fixed(Box::new(
                ferrocast_redis::clients::client(url, &settings.tls)
                    .map_err(|e| BusError::Refused(e.to_string()))?,
            )),
        };
        let connector = Connector::new(endpoint.clone(), &settings.tls)?;
        let mut emitter = Emitter::builder(url);
        if let Some(sentinels) = sentinels {
            emitter = emitter.sentinels(sentinels);
        }
        let reads = bb8::Pool::builder()
            .max_size(4)
            // Behind Sentinel only: a connection to a demoted master is not handed out.
            .test_on_check_out(endpoint.checks_role())
            .connection_timeout(TIMEOUT)
            .build_unchecked(Manager::new(endpoint, TIMEOUT, TIMEOUT));
        let bus = Arc::new(RedisBus {
            core: RedisCore::new(settings, emitter, sink)?,
            connector,
            reads,
            live: Mutex::new(None),
            ready: AtomicBool::new(false),
            task: parking_lot::Mutex::new(None),
        });
        let task = tokio::spawn(bus.clone().maintain());
        *bus.task.lock() = Some(task.abort_handle());
        Ok(bus)
    }

    /// Connects, catches up, reads until the connection is lost, and again, forever.
    async fn maintain(self: Arc<Self>) {
        let mut backoff = super::reconnect_backoff();
        loop {
            let connected = match self.connect().await {
                Ok((commands, mut reader, mut held)) => {
                    // Read meanwhile: a subscribe made during the catch-up is answered, and
                    // what arrives is held here rather than left to fill Redis's output
                    // buffer (which disconnects a subscriber that falls far behind).
                    match reader.settle(self.catch_up(), &mut held).await {
                        Ok(Ok(())) => Ok((commands, reader, held)),
                        Ok(Err(error)) => Err(error),
                        Err(error) => Err(error.into()),
                    }
                }
                Err(error) => Err(error),
            };
            match connected {
                Ok((commands, reader, held)) => {
                    self.ready.store(true, Ordering::SeqCst);
                    tracing::info!("connected to Redis");
                    let connected_at = tokio::time::Instant::now();
                    self.consume(commands, reader, held).await;
                    self.ready.store(false, Ordering::SeqCst);
                    metrics().bus_reconnects.inc();
                    tracing::warn!("lost the Redis pub/sub connection; reconnecting");
                    // A connection that keeps failing right after it is made backs off too.
                    if connected_at.elapsed() < STABLE {
                        backoff.wait().await;
                    } else {
                        backoff.reset();
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot reach Redis");
                    backoff.wait().await;
                }
            }
        }
    }

    /// Opens a pub/sub connection and subscribes it to every target. Messages that arrive
    /// before the subscriptions are confirmed are held, to follow the catch-up.
    async fn connect(&self) -> Result<(Arc<Commands>, Reader, Vec<Held>), BusError> {
        let mut live = self.live.lock().await;
        *live = None;
        let (commands, mut reader) = tokio::time::timeout(TIMEOUT, self.connector.connect())
            .await
            .map_err(|_| unavailable("timed out"))??;
        let targets = self.core.positions.targets();
        let channels: Vec<String> = targets.iter().map(|t| self.core.keys.live(t)).collect();
        let mut held = Vec::new();
        reader
            .settle(commands.subscribe(&channels), &mut held)
            .await??;
        let commands = Arc::new(commands);
        *live = Some(commands.clone());
        Ok((commands, reader, held))
    }

    /// Replays every target from its position: what was published while the connection was
    /// down reaches the members, in order, before anything newer.
    async fn catch_up(&self) -> Result<(), BusError> {
        // Pooled connections from before a Redis restart are dead: find them now, not one
        // failed read here (or client command, and 1013) at a time.
        ferrocast_redis::pool::revalidate(&self.reads, PING_TIMEOUT).await;
        self.core.emitter.revalidate().await;
        for (target, position) in self.core.positions.snapshot() {
            let mut conn = ferrocast_redis::pool::checkout(&self.reads)
                .await
                .map_err(unavailable)?;
            let caught_up = self.core.catch_up(conn.get(), &target, position).await;
            checked(&mut conn, caught_up)?;
        }
        Ok(())
    }

    /// Delivers live messages (first those held while connecting) until the connection ends
    /// or stops answering pings.
    async fn consume(&self, commands: Arc<Commands>, mut reader: Reader, held: Vec<Held>) {
        {
            let _batch = self.core.sink.batch();
            for (channel, payload) in held {
                self.live(&channel, &payload);
            }
        }
        let mut ping_every = tokio::time::interval(PING_EVERY);
        ping_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The ping is answered through the reader: it is awaited beside the reads, never
        // instead of them.
        let mut ping = None;
        // Behind Sentinel: whether the master moved, asked on every ping's tick.
        let mut moved = None;
        loop {
            tokio::select! {
                read = reader.fill() => {
                    if let Err(error) = read {
                        tracing::debug!(%error, "pub/sub connection ended");
                        return;
                    }
                    // Everything that has arrived goes out together: each client gets the
                    // batch's frames in one write.
                    let _batch = self.core.sink.batch();
                    if let Err(error) = reader.drain(|channel, payload| self.live(channel, payload)) {
                        tracing::warn!(%error, "pub/sub connection dropped");
                        return;
                    }
                }
                _ = ping_every.tick(), if ping.is_none() => {
                    let commands = commands.clone();
                    ping = Some(Box::pin(async move {
                        tokio::time::timeout(PING_TIMEOUT, commands.ping()).await
                    }));
                    if moved.is_none() {
                        moved = Some(Box::pin(tokio::time::timeout(
                            PING_TIMEOUT,
                            self.connector.master_moved(),
                        )));
                    }
                }
                Some(answer) = OptionFuture::from(moved.as_mut()), if moved.is_some() => {
                    moved = None;
                    if answer == Ok(true) {
                        tracing::warn!("the sentinels name a new master; reconnecting to it");
                        return;
                    }
                }
                Some(answered) = OptionFuture::from(ping.as_mut()), if ping.is_some() => {
                    if !matches!(answered, Ok(Ok(()))) {
                        return;
                    }
                    ping = None;
                }
            }
        }
    }

    /// Hands a live channel's payload to the core.
    fn live(&self, channel: &[u8], payload: &[u8]) {
        if let Some(target) = self.core.keys.target_of_live(channel) {
            self.core.live(&target, payload);
        }
    }

    /// The newest offset of each target, in one round trip.
    async fn newest(&self, targets: &[TargetKey]) -> Result<Vec<Option<Offset>>, BusError> {
        let mut conn = ferrocast_redis::pool::checkout(&self.reads)
            .await
            .map_err(unavailable)?;
        let newest = self.core.newest(conn.get(), targets).await;
        checked(&mut conn, newest)
    }
}

/// Passes `result` through, marking the pooled connection broken when Redis could not answer,
/// so the pool replaces it.
fn checked<T>(conn: &mut Conn, result: Result<T, BusError>) -> Result<T, BusError> {
    if let Err(BusError::Unavailable(_)) = &result {
        conn.mark_broken();
    }
    result
}

impl Bus for RedisBus {
    type Presence = Emitter;

    fn presence(&self) -> &Emitter {
        &self.core.emitter
    }

    type Nodes = Emitter;

    fn nodes(&self) -> &Emitter {
        &self.core.emitter
    }

    async fn subscribe(&self, targets: &[TargetKey]) -> Result<(), BusError> {
        let live = self.live.lock().await;
        let commands = live.as_ref().ok_or_else(|| unavailable("not connected"))?;
        let channels: Vec<String> = targets.iter().map(|t| self.core.keys.live(t)).collect();
        commands.subscribe(&channels).await?;
        self.core.positions.subscribing(targets);
        drop(live);
        // Where each target's history stands now: a reconnect replays from here.
        let newest = match self.newest(targets).await {
            Ok(newest) => newest,
            Err(error) => {
                // Without a position the subscription is useless: undo it rather than leak it.
                let _ = self.unsubscribe(targets).await;
                return Err(error);
            }
        };
        for (target, newest) in targets.iter().zip(newest) {
            self.core
                .positions
                .set(target.clone(), newest.unwrap_or(FROM_START));
        }
        Ok(())
    }

    async fn unsubscribe(&self, targets: &[TargetKey]) -> Result<(), BusError> {
        let live = self.live.lock().await;
        for target in targets {
            self.core.positions.remove(target);
        }
        let commands = live.as_ref().ok_or_else(|| unavailable("not connected"))?;
        let channels: Vec<String> = targets.iter().map(|t| self.core.keys.live(t)).collect();
        Ok(commands.unsubscribe(&channels).await?)
    }

    fn known_position(&self, target: &TargetKey) -> Option<ReplayCursor> {
        self.core.known_position(target)
    }

    async fn open_replay(
        &self,
        target: &TargetKey,
        since: Option<Offset>,
    ) -> Result<ReplayCursor, BusError> {
        let mut conn = ferrocast_redis::pool::checkout(&self.reads)
            .await
            .map_err(unavailable)?;
        let opened = self.core.open_replay(conn.get(), target, since).await;
        checked(&mut conn, opened)
    }

    async fn history(
        &self,
        target: &TargetKey,
        before: Option<Offset>,
        limit: usize,
    ) -> Result<HistoryPage, BusError> {
        let mut conn = ferrocast_redis::pool::checkout(&self.reads)
            .await
            .map_err(unavailable)?;
        let page = self.core.history(conn.get(), target, before, limit).await;
        checked(&mut conn, page)
    }

    async fn replay_page(
        &self,
        target: &TargetKey,
        cursor: &mut ReplayCursor,
    ) -> Result<Vec<(Offset, Bytes)>, BusError> {
        let mut conn = ferrocast_redis::pool::checkout(&self.reads)
            .await
            .map_err(unavailable)?;
        let page = self.core.replay_page(conn.get(), target, cursor).await;
        checked(&mut conn, page)
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
        let mut conn = ferrocast_redis::pool::checkout(&self.reads)
            .await
            .map_err(unavailable)?;
        let appended = self.core.send_upstream(conn.get(), upstream, request).await;
        checked(&mut conn, appended)
    }

    async fn inbox_stats(&self) -> Result<Option<InboxStats>, BusError> {
        let mut conn = ferrocast_redis::pool::checkout(&self.reads)
            .await
            .map_err(unavailable)?;
        let stats = self.core.inbox_stats(conn.get()).await;
        checked(&mut conn, stats).map(Some)
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
        self.ready.load(Ordering::SeqCst)
    }
}
