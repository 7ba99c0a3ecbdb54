//! The bus: how messages reach this edge from publishers. A trait with three implementations:
//! one Redis or a Redis Cluster (many edges, in `redis/`), and in-process (one edge, no set-up,
//! in `memory/`). Presence records are kept apart from the broker, in a [`PresenceStore`].
//!
//! A bus hands every message of a subscribed target to the [`Sink`] it was built with, in the
//! target's offset order. It knows nothing of what is above it: the edge's fan-out is the sink.

use std::future::Future;

use bytes::Bytes;
pub use ferrocast_emitter::inbox::Appended;
use ferrocast_protocol::presence::PresenceEvents;
use ferrocast_protocol::{Envelope, Offset, TargetKey, Upstream};
use thiserror::Error;

pub mod inbox;
pub mod memory;
pub mod nodes;
pub mod presence;
pub mod redis;

pub use ferrocast_emitter::inbox::InboxStats;
pub use ferrocast_redis::history::HistoryPage;
pub use ferrocast_redis::replay::{PAGE_BYTES, ReplayCursor};
pub use memory::MemoryBus;
pub use memory::presence::MemoryPresenceStore;
pub use nodes::NodeDirectory;
pub use presence::PresenceStore;
pub use redis::{ClusterBus, RedisBus, RedisSettings};

/// Replay position of a target whose history was empty when it was subscribed: everything
/// its stream holds later is news. No real stream has this epoch.
pub const FROM_START: Offset = Offset {
    id: ferrocast_protocol::offset::StreamId { ms: 0, seq: 0 },
    epoch: ferrocast_protocol::offset::StreamId { ms: 0, seq: 0 },
};

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

    /// Where the deployment's edges report their statuses.
    type Nodes: NodeDirectory;

    /// Its directory of edges.
    fn nodes(&self) -> &Self::Nodes;

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

    /// Up to `limit` of `target`'s newest messages before `before` (exclusive; `None`: the
    /// newest), oldest first, within [`PAGE_BYTES`] (at least one), and where its history stands:
    /// one read of Redis.
    fn history(
        &self,
        target: &TargetKey,
        before: Option<Offset>,
        limit: usize,
    ) -> impl Future<Output = Result<HistoryPage, BusError>> + Send;

    /// Publishes a checked envelope to its target (history, then live). With `idempotent`, the
    /// envelope's id was chosen by the publisher: publishing it again answers the first offset
    /// and publishes nothing (as the emitter's [`id`](ferrocast_emitter::Publication::id) does).
    fn publish(
        &self,
        envelope: &Envelope,
        idempotent: bool,
    ) -> impl Future<Output = Result<Offset, BusError>> + Send;

    /// Appends a client's `send` (or `rpc`) to the upstream inbox; answers its stream id once
    /// stored. With `request`, the client's id for it: the same user's same request again
    /// within ten minutes stores nothing and answers the first id, and the reply to a call a
    /// worker has answered already.
    fn send_upstream(
        &self,
        upstream: &Upstream,
        request: Option<&str>,
    ) -> impl Future<Output = Result<Appended, BusError>> + Send;

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
