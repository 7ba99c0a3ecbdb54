//! The Redis bus: one pub/sub connection per edge for live delivery, a small pool for reads, and
//! the emitter for the edge's own publishes.
//!
//! When the pub/sub connection drops, the edge reports not ready, reconnects with backoff and
//! subscribes again to every target it had.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferrocast_emitter::pool::Manager;
use ferrocast_emitter::{Emitter, Message};
use ferrocast_protocol::script::LiveMessage;
use ferrocast_protocol::{Envelope, Keys, Offset, TargetKey};
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::Mutex;

use super::{Bus, BusError};
use crate::registry::Registry;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long to wait for Redis to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Starts a bus on the Redis at `url`. Returns at once; the connection is made (and remade)
    /// in the background, and [`Bus::is_ready`] says when it is up.
    pub fn start(
        url: &str,
        prefix: &str,
        registry: Arc<Registry>,
    ) -> Result<Arc<RedisBus>, BusError> {
        let client = redis::Client::open(url)
            .map_err(|e| BusError::Refused(format!("invalid Redis URL: {e}")))?;
        let reads = bb8::Pool::builder()
            .max_size(4)
            .test_on_check_out(false)
            .connection_timeout(TIMEOUT)
            .build_unchecked(Manager::new(client.clone(), TIMEOUT, TIMEOUT));
        let emitter = Emitter::builder(url)
            .prefix(prefix)
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
            ready: AtomicBool::new(false),
        });
        tokio::spawn(bus.clone().maintain());
        Ok(bus)
    }

    /// Connects, reads until the connection drops, and connects again, forever.
    async fn maintain(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.connect().await {
                Ok(stream) => {
                    backoff = Duration::from_millis(100);
                    tracing::info!("connected to Redis");
                    self.read(stream).await;
                    self.ready.store(false, Ordering::SeqCst);
                    tracing::warn!("lost the Redis pub/sub connection; reconnecting");
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot reach Redis");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

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
            sink.subscribe(&channels).await.map_err(unavailable)?;
        }
        live.sink = Some(sink);
        self.ready.store(true, Ordering::SeqCst);
        Ok(stream)
    }

    async fn read(&self, mut stream: PubSubStream) {
        while let Some(msg) = stream.next().await {
            let channel = msg.get_channel_name().as_bytes();
            let Some(target) = self.keys.target_of_live(channel) else {
                continue;
            };
            match LiveMessage::parse(msg.get_payload_bytes()) {
                Some(live) => self.registry.deliver(&target, live.offset, live.envelope),
                None => tracing::warn!(%target, "malformed live message skipped"),
            }
        }
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
        Ok(())
    }

    async fn unsubscribe(&self, targets: &[TargetKey]) -> Result<(), BusError> {
        let mut live = self.live.lock().await;
        for target in targets {
            live.targets.remove(target);
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

    async fn last_offset(&self, target: &TargetKey) -> Result<Option<Offset>, BusError> {
        let mut conn = self.reads.get().await.map_err(unavailable)?;
        let reply = redis::pipe()
            .cmd("XREVRANGE")
            .arg(self.keys.stream(target))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .get(self.keys.epoch(target))
            .query_async::<(redis::streams::StreamRangeReply, Option<String>)>(conn.get())
            .await;
        let (range, epoch) = conn.check(reply).map_err(unavailable)?;
        let (Some(entry), Some(epoch)) = (range.ids.first(), epoch) else {
            return Ok(None);
        };
        match (entry.id.parse(), epoch.parse()) {
            (Ok(id), Ok(epoch)) => Ok(Some(Offset { id, epoch })),
            _ => Err(unavailable(format!(
                "unexpected stream id {} / epoch {epoch}",
                entry.id
            ))),
        }
    }

    async fn publish(&self, envelope: &Envelope) -> Result<Offset, BusError> {
        let message =
            Message::from_envelope(envelope).map_err(|e| BusError::Refused(e.to_string()))?;
        let mut results = self
            .emitter
            .emit_batch(std::slice::from_ref(&message))
            .await
            .map_err(unavailable)?;
        match results.pop() {
            Some(Ok(offset)) => Ok(offset),
            Some(Err(e)) => Err(BusError::Refused(e.to_string())),
            None => Err(unavailable("no reply")),
        }
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}
