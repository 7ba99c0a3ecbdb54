//! The bus: how messages reach this edge from publishers. A trait with three implementations:
//! one Redis or a Redis Cluster (many edges), and in-process (one edge, no set-up).
//!
//! A bus hands every message of a subscribed target to the [`Sink`] it was built with, in the
//! target's offset order. It knows nothing of what is above it: the edge's fan-out is the sink.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use ferrocast_protocol::presence::PresenceEvents;
use ferrocast_protocol::{Envelope, Keys, Offset, TargetKey, Upstream};
use thiserror::Error;

pub mod cluster;
pub mod core;
pub mod history;
pub mod inbox;
pub mod memory;
mod memory_presence;
pub mod presence;
pub mod redis;

pub use cluster::ClusterBus;
pub use ferrocast_emitter::inbox::InboxStats;
pub use ferrocast_redis::replay::{PAGE_BYTES, ReplayCursor};
pub use memory::MemoryBus;
pub use memory_presence::MemoryPresenceStore;
pub use presence::PresenceStore;
pub use redis::RedisBus;

/// The bus could not do what was asked.
#[derive(Debug, Error)]
pub enum BusError {
    /// Redis is unreachable or the connection broke; retry later.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The message was refused.
    #[error("publish refused: {0}")]
    Refused(String),
    /// The upstream inbox is full of messages workers have not read: retry once they catch up.
    #[error("{0}")]
    Full(String),
}

/// Redis failed: whatever the reason, the client may retry (what cannot be retried, a refused
/// message, is checked before it reaches Redis).
impl From<::redis::RedisError> for BusError {
    fn from(error: ::redis::RedisError) -> BusError {
        BusError::Unavailable(error.to_string())
    }
}

/// What the pub/sub connection says, as the bus says it.
impl From<ferrocast_redis::pubsub::PubSubError> for BusError {
    fn from(error: ferrocast_redis::pubsub::PubSubError) -> BusError {
        use ferrocast_redis::pubsub::PubSubError;
        match error {
            PubSubError::Unavailable(e) => BusError::Unavailable(e),
            PubSubError::Refused(e) => BusError::Refused(e),
        }
    }
}

/// What the emitter says, as the bus says it: a bad name is refused; anything else is Redis
/// failing (unreachable, out of memory, a replica after a failover), which may be retried.
impl From<ferrocast_emitter::EmitError> for BusError {
    fn from(error: ferrocast_emitter::EmitError) -> BusError {
        match error {
            ferrocast_emitter::EmitError::InvalidName(e) => BusError::Refused(e.to_string()),
            other => BusError::Unavailable(other.to_string()),
        }
    }
}

/// What the inbox writer says, as the bus says it.
impl From<ferrocast_emitter::inbox::WriteError> for BusError {
    fn from(error: ferrocast_emitter::inbox::WriteError) -> BusError {
        use ferrocast_emitter::inbox::WriteError;
        match error {
            WriteError::Full(_) => BusError::Full(error.to_string()),
            WriteError::Encode(e) => BusError::Refused(e),
            WriteError::Redis(e) => BusError::Unavailable(e.to_string()),
        }
    }
}

/// How long the Redis buses wait for Redis to answer.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);
/// How often the Redis buses ping Redis to decide whether it is reachable.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(1);
/// The Redis buses' waits between attempts to connect: 100 ms doubling up to 500 ms. Short,
/// because the edge is not ready meanwhile: it must be ready again within a second of Redis
/// answering. A refused connection attempt costs Redis (and the edge) next to nothing.
pub(crate) fn reconnect_backoff() -> ferrocast_redis::Backoff {
    ferrocast_redis::Backoff::new(Duration::from_millis(100), Duration::from_millis(500))
}

/// What both Redis buses (one Redis, or a cluster) are configured with.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Key prefix shared with the emitters.
    pub prefix: String,
    /// History length of the edge's own publishes.
    pub history_len: u64,
    /// How long histories live after their last publish.
    pub history_ttl: Duration,
    /// Most entries each upstream inbox stream holds.
    pub inbox_max_len: u64,
    /// Partitions of the upstream inbox.
    pub inbox_partitions: u16,
    /// Certificates for `rediss://`.
    pub tls: ferrocast_redis::Tls,
}

impl RedisSettings {
    /// The settings from the edge's configuration, its certificate files read.
    pub fn from_config(
        config: &crate::config::Config,
    ) -> Result<RedisSettings, ferrocast_redis::tls::TlsError> {
        Ok(RedisSettings {
            prefix: config.prefix.clone(),
            history_len: config.history_len,
            history_ttl: config.history_ttl,
            inbox_max_len: config.inbox_max_len,
            inbox_partitions: config.inbox_partitions,
            tls: config.redis.tls.load()?,
        })
    }

    /// The emitter for the edge's own publishes, from `builder` (one Redis or a cluster).
    fn emitter(
        &self,
        builder: ferrocast_emitter::EmitterBuilder,
    ) -> Result<ferrocast_emitter::Emitter, BusError> {
        builder
            .tls(self.tls.clone())
            .prefix(&self.prefix)
            .history_len(self.history_len)
            .history_ttl(self.history_ttl)
            .connect_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .build()
            .map_err(|e| BusError::Refused(e.to_string()))
    }

    /// Where client `send`s go.
    fn inbox(&self) -> ferrocast_emitter::inbox::InboxWriter {
        ferrocast_emitter::inbox::InboxWriter::new(
            Keys::new(&self.prefix),
            self.inbox_max_len,
            self.inbox_partitions,
        )
    }
}

/// Where a bus hands what it receives, in each target's offset order.
pub trait Sink: Send + Sync + 'static {
    /// A message (or a worker's control message) of `target` at `offset`: its envelope bytes,
    /// as Redis holds them.
    fn deliver(&self, target: &TargetKey, offset: Offset, envelope: &[u8]);

    /// The same, already decoded and checked (the in-process bus has the envelope at hand).
    fn deliver_envelope(&self, target: &TargetKey, offset: Offset, envelope: Envelope);

    /// Joins and leaves of room `target`, from whichever edge saw them.
    fn presence(&self, target: &TargetKey, events: PresenceEvents);

    /// Messages of `target` up to `offset` may have been lost (its history vanished while the
    /// bus was reconnecting); delivery goes on after `offset`.
    fn gap(&self, target: &TargetKey, offset: Option<Offset>);

    /// Several deliveries follow on this thread, with no `.await` between them, until the
    /// returned guard drops: the sink may gather its writes until then.
    fn batch(&self) -> Box<dyn std::any::Any> {
        Box::new(())
    }
}

/// Where messages come from, and where an edge's own publishes go: the broker. Presence
/// records are kept apart, in its [`PresenceStore`].
pub trait Bus: Send + Sync + 'static {
    /// Where this bus keeps presence records.
    type Presence: PresenceStore;

    /// Its presence records.
    fn presence(&self) -> &Self::Presence;

    /// Starts delivery of `targets`; returns once messages published from now on will arrive.
    fn subscribe(&self, targets: &[TargetKey])
    -> impl Future<Output = Result<(), BusError>> + Send;

    /// Stops delivery of `targets`.
    fn unsubscribe(
        &self,
        targets: &[TargetKey],
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Where `target`'s history stands, if the bus knows without asking Redis: for a joining
    /// member, the same answer as [`Bus::open_replay`] without `since`, or one older only by
    /// messages on their way to the members (which then reach the joiner live). `None`: ask.
    fn known_position(&self, _target: &TargetKey) -> Option<ReplayCursor> {
        None
    }

    /// Opens a replay of `target`'s history after `since`: whether it is complete, and its
    /// newest offset. Without `since` there is nothing to replay, just the newest offset.
    fn open_replay(
        &self,
        target: &TargetKey,
        since: Option<Offset>,
    ) -> impl Future<Output = Result<ReplayCursor, BusError>> + Send;

    /// The next page of a replay, oldest first; empty once the cursor is done.
    fn replay_page(
        &self,
        target: &TargetKey,
        cursor: &mut ReplayCursor,
    ) -> impl Future<Output = Result<Vec<(Offset, Bytes)>, BusError>> + Send;

    /// Publishes a checked envelope to its target (history, then live). With `idempotent`, the
    /// envelope's id was chosen by the publisher: publishing it again answers the first offset
    /// and publishes nothing (as the emitter's [`id`](ferrocast_emitter::Publication::id) does).
    fn publish(
        &self,
        envelope: &Envelope,
        idempotent: bool,
    ) -> impl Future<Output = Result<Offset, BusError>> + Send;

    /// Appends a client's `send` to the upstream inbox; returns its stream id once stored.
    fn send_upstream(
        &self,
        upstream: &Upstream,
    ) -> impl Future<Output = Result<String, BusError>> + Send;

    /// How far behind the workers reading the upstream inbox are (`None` without an inbox).
    fn inbox_stats(&self) -> impl Future<Output = Result<Option<InboxStats>, BusError>> + Send;

    /// Tells every edge with members in `room` about joins and leaves (not stored).
    fn presence_announce(
        &self,
        room: &str,
        events: &PresenceEvents,
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Whether `target` is subscribed: the bus's own record, which the
    /// [`subscriptions`](crate::fanout::subscriptions) task compares the registry's wishes with
    /// (a second record of every connection's own targets would cost each connection memory).
    fn is_subscribed(&self, target: &TargetKey) -> bool;

    /// Whether the bus can take new subscriptions and publishes right now.
    fn is_ready(&self) -> bool;

    /// Stops the bus's own background tasks (its connection to Redis), for an edge that stops.
    fn shutdown(&self) {}
}
