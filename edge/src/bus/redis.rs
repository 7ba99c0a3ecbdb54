//! The Redis bus: one pub/sub connection per edge for live delivery, a small pool for reads, and
//! the emitter for the edge's own publishes.
//!
//! The bus remembers, per subscribed target, the newest offset it has handed to the registry.
//! That position does two jobs: a live message at or below it is a duplicate and is dropped, and
//! when the pub/sub connection drops (or stops answering pings), the bus reports not ready,
//! reconnects with backoff, subscribes again to every target, and replays each one from its
//! position before going live again, so a Redis blip loses nothing still in the history. A target
//! whose history did not survive (Redis restarted empty, or trimmed past the position) has its
//! members closed, so they resume and are told `recovered: false`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrocast_emitter::pool::Manager;
use ferrocast_emitter::{Emitter, Message};
use ferrocast_protocol::offset::StreamId;
use ferrocast_protocol::script::LiveMessage;
use ferrocast_protocol::{Envelope, Keys, Offset, TargetKey, Upstream};
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::Mutex;

use super::{Bus, BusError, MAX_REPLAY, MAX_REPLAY_BYTES, Replay, cap_replay};
use crate::metrics::metrics;
use crate::registry::Registry;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A pub/sub connection that lasted this long resets the reconnection backoff.
const STABLE: Duration = Duration::from_secs(10);
/// Stream entries read per XRANGE.
const PAGE: usize = 500;
/// How long to wait for Redis to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How often the pub/sub connection is pinged, and how long a ping may take: a Redis that stops
/// answering (paused, or a half-open connection) is treated as lost.
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Replay position of a target whose history was empty when it was subscribed: everything
/// its stream holds later is news. No real stream has this epoch.
const FROM_START: Offset = Offset {
    id: StreamId { ms: 0, seq: 0 },
    epoch: StreamId { ms: 0, seq: 0 },
};

/// A bus over one Redis.
pub struct RedisBus {
    keys: Keys,
    client: redis::Client,
    reads: bb8::Pool<Manager>,
    emitter: Emitter,
    registry: Arc<Registry>,
    /// The live connection's command half and every target it is subscribed to. One lock, so a
    /// reconnect and a subscribe cannot interleave.
    live: Mutex<Live>,
    /// Newest offset handed to the registry, per subscribed target.
    positions: parking_lot::Mutex<HashMap<TargetKey, Offset>>,
    /// How long histories live after their last publish.
    history_ttl: Duration,
    /// Approximate cap on each upstream inbox stream.
    inbox_max_len: u64,
    /// Partitions of the upstream inbox.
    inbox_partitions: u16,
    ready: AtomicBool,
}

#[derive(Default)]
struct Live {
    sink: Option<PubSubSink>,
    targets: HashSet<TargetKey>,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl RedisBus {
    /// Starts a bus on the Redis at `url`; `inbox` is the upstream inbox's length cap and
    /// partition count. Returns at once; the connection is made (and remade)
    /// in the background, and [`Bus::is_ready`] says when it is up.
    pub fn start(
        url: &str,
        prefix: &str,
        registry: Arc<Registry>,
        history_len: u64,
        history_ttl: Duration,
        inbox: (u64, u16),
    ) -> Result<Arc<RedisBus>, BusError> {
        let (inbox_max_len, inbox_partitions) = inbox;
        let client = redis::Client::open(url)
            .map_err(|e| BusError::Refused(format!("invalid Redis URL: {e}")))?;
        let reads = bb8::Pool::builder()
            .max_size(4)
            .test_on_check_out(false)
            .connection_timeout(TIMEOUT)
            .build_unchecked(Manager::new(client.clone(), TIMEOUT, TIMEOUT));
        let emitter = Emitter::builder(url)
            .prefix(prefix)
            .history_len(history_len)
            .history_ttl(history_ttl)
            .connect_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .build()
            .map_err(|e| BusError::Refused(e.to_string()))?;
        let bus = Arc::new(RedisBus {
            keys: Keys::new(prefix),
            client,
            reads,
            emitter,
            registry,
            live: Mutex::new(Live::default()),
            positions: parking_lot::Mutex::new(HashMap::new()),
            history_ttl,
            inbox_max_len: inbox_max_len.max(1),
            inbox_partitions: inbox_partitions.max(1),
            ready: AtomicBool::new(false),
        });
        tokio::spawn(bus.clone().maintain());
        Ok(bus)
    }

    /// Connects, catches up, reads until the connection is lost, and again, forever.
    async fn maintain(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let connected = match self.connect().await {
                Ok(stream) => self.catch_up().await.map(|()| stream),
                Err(error) => Err(error),
            };
            match connected {
                Ok(stream) => {
                    self.ready.store(true, Ordering::SeqCst);
                    tracing::info!("connected to Redis");
                    let connected_at = tokio::time::Instant::now();
                    self.consume(stream).await;
                    self.ready.store(false, Ordering::SeqCst);
                    metrics().bus_reconnects.inc();
                    tracing::warn!("lost the Redis pub/sub connection; reconnecting");
                    // A connection that keeps failing right after it is made backs off too.
                    if connected_at.elapsed() < STABLE {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    } else {
                        backoff = Duration::from_millis(100);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot reach Redis");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Opens a pub/sub connection and subscribes it to every target.
    async fn connect(&self) -> Result<PubSubStream, BusError> {
        let mut live = self.live.lock().await;
        live.sink = None;
        let pubsub = tokio::time::timeout(TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| unavailable("timed out"))?
            .map_err(unavailable)?;
        let (mut sink, stream) = pubsub.split();
        if !live.targets.is_empty() {
            let channels: Vec<String> = live.targets.iter().map(|t| self.keys.live(t)).collect();
            tokio::time::timeout(TIMEOUT, sink.subscribe(&channels))
                .await
                .map_err(|_| unavailable("subscribe timed out"))?
                .map_err(unavailable)?;
        }
        live.sink = Some(sink);
        let targets = &live.targets;
        self.positions.lock().retain(|t, _| targets.contains(t));
        Ok(stream)
    }

    /// Replays every target from its position: what was published while the connection was
    /// down reaches the members, in order, before anything newer.
    async fn catch_up(&self) -> Result<(), BusError> {
        let positions: Vec<(TargetKey, Offset)> = self
            .positions
            .lock()
            .iter()
            .map(|(t, o)| (t.clone(), *o))
            .collect();
        let now = ferrocast_protocol::envelope::now_ms();
        let ttl = self.history_ttl.as_millis() as u64;
        for (target, position) in positions {
            let replay = self.read(&target, Some(position)).await?;
            for (offset, envelope) in &replay.entries {
                self.deliver_if_new(&target, *offset, envelope);
            }
            if replay.recovered || position == FROM_START {
                continue;
            }
            // No history at all, and none published for longer than it lives: it expired on
            // its own, with nothing after the position to lose.
            let expired_quietly = replay.last.is_none() && position.id.ms.saturating_add(ttl) < now;
            if expired_quietly {
                self.positions.lock().insert(target, FROM_START);
            } else {
                self.registry.lost(&target);
            }
        }
        Ok(())
    }

    /// Delivers live messages until the connection ends or stops answering pings.
    async fn consume(&self, mut stream: PubSubStream) {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { return };
                    let Some(target) = self.keys.target_of_live(msg.get_channel_name().as_bytes()) else {
                        continue;
                    };
                    match LiveMessage::parse(msg.get_payload_bytes()) {
                        Some(live) => self.deliver_if_new(&target, live.offset, live.envelope),
                        None => tracing::warn!(%target, "malformed live message skipped"),
                    }
                }
                _ = ping.tick() => {
                    if !self.ping().await {
                        return;
                    }
                }
            }
        }
    }

    async fn ping(&self) -> bool {
        let mut live = self.live.lock().await;
        let Some(sink) = live.sink.as_mut() else {
            return false;
        };
        // In subscriber mode Redis answers PING with a ["pong", ""] array: take any answer.
        matches!(
            tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await,
            Ok(Ok(_))
        )
    }

    /// Hands a message to the registry unless it is at or below the target's position.
    fn deliver_if_new(&self, target: &TargetKey, offset: Offset, envelope: &[u8]) {
        {
            let mut positions = self.positions.lock();
            // No position: the target is being subscribed (its members are not live yet, and
            // the baseline read covers this message) or was just unsubscribed.
            let Some(position) = positions.get_mut(target) else {
                return;
            };
            let newer = position.epoch != offset.epoch || position.id < offset.id;
            if !newer {
                return;
            }
            *position = offset;
        }
        self.registry.deliver(target, offset, envelope);
    }

    /// The newest offset of each target, in one round trip.
    async fn newest(&self, targets: &[TargetKey]) -> Result<Vec<Option<Offset>>, BusError> {
        let mut conn = self.reads.get().await.map_err(unavailable)?;
        let mut pipe = redis::pipe();
        for target in targets {
            pipe.get(self.keys.epoch(target))
                .cmd("XREVRANGE")
                .arg(self.keys.stream(target))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
        }
        let reply = pipe.query_async::<Vec<redis::Value>>(conn.get()).await;
        let values = conn.check(reply).map_err(unavailable)?;
        let mut out = Vec::with_capacity(targets.len());
        let mut values = values.into_iter();
        while let (Some(epoch), Some(newest)) = (values.next(), values.next()) {
            let epoch: Option<String> = redis::from_redis_value(epoch).map_err(unavailable)?;
            out.push(match epoch {
                Some(epoch) => entries(newest, parse_id(&epoch)?)?.pop().map(|(o, _)| o),
                None => None,
            });
        }
        Ok(out)
    }
}

impl Bus for RedisBus {
    async fn subscribe(&self, targets: &[TargetKey]) -> Result<(), BusError> {
        let mut live = self.live.lock().await;
        let sink = live
            .sink
            .as_mut()
            .ok_or_else(|| unavailable("not connected"))?;
        let channels: Vec<String> = targets.iter().map(|t| self.keys.live(t)).collect();
        tokio::time::timeout(TIMEOUT, sink.subscribe(&channels))
            .await
            .map_err(|_| unavailable("subscribe timed out"))?
            .map_err(unavailable)?;
        live.targets.extend(targets.iter().cloned());
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
        let mut positions = self.positions.lock();
        for (target, newest) in targets.iter().zip(newest) {
            positions.insert(target.clone(), newest.unwrap_or(FROM_START));
        }
        Ok(())
    }

    async fn unsubscribe(&self, targets: &[TargetKey]) -> Result<(), BusError> {
        let mut live = self.live.lock().await;
        {
            let mut positions = self.positions.lock();
            for target in targets {
                live.targets.remove(target);
                positions.remove(target);
            }
        }
        let sink = live
            .sink
            .as_mut()
            .ok_or_else(|| unavailable("not connected"))?;
        let channels: Vec<String> = targets.iter().map(|t| self.keys.live(t)).collect();
        tokio::time::timeout(TIMEOUT, sink.unsubscribe(&channels))
            .await
            .map_err(|_| unavailable("unsubscribe timed out"))?
            .map_err(unavailable)
    }

    async fn read(&self, target: &TargetKey, since: Option<Offset>) -> Result<Replay, BusError> {
        let Some(since) = since else {
            let last = self
                .newest(std::slice::from_ref(target))
                .await?
                .pop()
                .flatten();
            return Ok(Replay {
                last,
                ..Replay::default()
            });
        };
        // Taken only now: `newest` takes its own, and holding two at once can exhaust the pool.
        let mut conn = self.reads.get().await.map_err(unavailable)?;
        let stream = self.keys.stream(target);
        let epoch_key = self.keys.epoch(target);
        // The epoch and the first page in one transaction: the page starts *at* `since`, so
        // finding `since` itself proves the history still reaches back that far.
        let reply = redis::pipe()
            .atomic()
            .get(&epoch_key)
            .cmd("XRANGE")
            .arg(&stream)
            .arg(since.id.to_string())
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async::<(Option<String>, redis::Value)>(conn.get())
            .await;
        let (epoch, first_page) = conn.check(reply).map_err(unavailable)?;
        let Some(epoch) = epoch.map(|e| parse_id(&e)).transpose()? else {
            // No epoch: the history expired or Redis lost it.
            return Ok(Replay::default());
        };
        let (mut recovered, mut collected, mut full) = if epoch == since.epoch {
            let mut page = entries(first_page, epoch)?;
            let full = page.len() == PAGE;
            let found = page.first().is_some_and(|(o, _)| o.id == since.id);
            if found {
                page.remove(0);
            }
            (found, page, full)
        } else {
            // A new incarnation of the stream: everything in it is news to this client.
            (false, Vec::new(), true)
        };
        let mut bytes: usize = collected.iter().map(|(_, e)| e.len()).sum();
        while full && collected.len() <= MAX_REPLAY && bytes <= MAX_REPLAY_BYTES {
            let start = match collected.last() {
                Some((offset, _)) => format!("({}", offset.id),
                None if epoch == since.epoch => format!("({}", since.id),
                None => "-".to_owned(),
            };
            let reply = redis::cmd("XRANGE")
                .arg(&stream)
                .arg(start)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query_async::<redis::Value>(conn.get())
                .await;
            let page = entries(conn.check(reply).map_err(unavailable)?, epoch)?;
            full = page.len() == PAGE;
            bytes += page.iter().map(|(_, e)| e.len()).sum::<usize>();
            collected.extend(page);
        }
        if cap_replay(&mut collected) {
            recovered = false;
        }
        let last = collected
            .last()
            .map(|(o, _)| *o)
            .or(recovered.then_some(since));
        Ok(Replay {
            recovered,
            entries: collected,
            last,
        })
    }

    async fn publish(&self, envelope: &Envelope) -> Result<Offset, BusError> {
        let message =
            Message::from_envelope(envelope).map_err(|e| BusError::Refused(e.to_string()))?;
        let mut results = self
            .emitter
            .emit_batch(std::slice::from_ref(&message))
            .await
            .map_err(unavailable)?;
        // The message itself was checked above: what fails now is Redis (out of memory, a
        // read-only replica after a failover, ...), which the client should retry.
        match results.pop() {
            Some(Ok(offset)) => Ok(offset),
            Some(Err(e)) => Err(unavailable(e)),
            None => Err(unavailable("no reply")),
        }
    }

    async fn send_upstream(&self, upstream: &Upstream) -> Result<String, BusError> {
        let bytes = upstream
            .encode()
            .map_err(|e| BusError::Refused(e.to_string()))?;
        let mut conn = self.reads.get().await.map_err(unavailable)?;
        let partition = Keys::inbox_partition_of(&upstream.client, self.inbox_partitions);
        let reply = redis::cmd("XADD")
            .arg(self.keys.inbox_partition(partition, self.inbox_partitions))
            .arg("MAXLEN")
            .arg("~")
            .arg(self.inbox_max_len)
            .arg("*")
            .arg(ferrocast_protocol::upstream::FIELD)
            .arg(bytes)
            .query_async::<String>(conn.get())
            .await;
        // Any failure (unreachable, out of memory, a read-only replica mid-failover) is one
        // the client can retry.
        conn.check(reply).map_err(unavailable)
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

fn parse_id(text: &str) -> Result<StreamId, BusError> {
    text.parse()
        .map_err(|_| unavailable(format!("unexpected stream id {text:?}")))
}

/// Parses an XRANGE / XREVRANGE reply: entries of `[id, [field, value, ...]]`, keeping field `e`.
fn entries(reply: redis::Value, epoch: StreamId) -> Result<Vec<(Offset, Bytes)>, BusError> {
    use redis::Value;
    let Value::Array(items) = reply else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut pair) = item else {
            continue;
        };
        if pair.len() != 2 {
            continue;
        }
        let fields = pair.pop();
        let id = match pair.pop() {
            Some(Value::BulkString(id)) => parse_id(&String::from_utf8_lossy(&id))?,
            Some(Value::SimpleString(id)) => parse_id(&id)?,
            _ => continue,
        };
        let Some(Value::Array(fields)) = fields else {
            continue;
        };
        let envelope = fields.chunks(2).find_map(|kv| match kv {
            [Value::BulkString(k), Value::BulkString(v)] if k == b"e" => {
                Some(Bytes::from(v.clone()))
            }
            _ => None,
        });
        match envelope {
            Some(envelope) => out.push((Offset { id, epoch }, envelope)),
            None => tracing::warn!(%id, "history entry without an envelope skipped"),
        }
    }
    Ok(out)
}
