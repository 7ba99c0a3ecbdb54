//! What both Redis buses share: the keys, the emitter for the edge's own publishes, the inbox
//! writer, each target's position, and every operation that runs on any connection to a target's
//! slot. The buses differ only in what Redis Cluster really changes: how they subscribe, and how
//! they get a connection and notice it broke.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrocast_emitter::Emitter;
use ferrocast_emitter::inbox::{Appended, InboxStats, InboxWriter};
use ferrocast_protocol::presence;
use ferrocast_protocol::script::LiveMessage;
use ferrocast_protocol::{Envelope, Keys, Offset, TargetKey, Upstream};
use ferrocast_redis::history as reads;
use redis::aio::ConnectionLike;

use super::RedisSettings;
use super::positions::Positions;
use crate::bus::{BusError, FROM_START, HistoryPage, PAGE_BYTES, ReplayCursor, Sink};

/// The state and operations the single-Redis and cluster buses share.
pub struct RedisCore {
    /// Key names.
    pub keys: Keys,
    /// The edge's own publishes (client `publish` frames).
    pub emitter: Emitter,
    /// Where what arrives goes.
    pub sink: Arc<dyn Sink>,
    /// Newest offset handed to the sink, per subscribed target.
    pub positions: Positions,
    /// How long histories live after their last publish.
    pub history_ttl: Duration,
    /// Where client `send`s go.
    pub inbox: InboxWriter,
}

impl RedisCore {
    /// The core of a bus configured with `settings`, publishing through `emitter` (one Redis or
    /// a cluster) and delivering to `sink`.
    pub fn new(
        settings: &RedisSettings,
        emitter: ferrocast_emitter::EmitterBuilder,
        sink: Arc<dyn Sink>,
    ) -> Result<RedisCore, BusError> {
        Ok(RedisCore {
            keys: Keys::new(&settings.prefix),
            emitter: settings.emitter(emitter)?,
            sink,
            positions: Positions::default(),
            history_ttl: settings.history_ttl,
            inbox: settings.inbox(),
        })
    }

    /// The newest offset of each target, in one round trip (a cluster: one target per call).
    pub async fn newest<C: ConnectionLike>(
        &self,
        conn: &mut C,
        targets: &[TargetKey],
    ) -> Result<Vec<Option<Offset>>, BusError> {
        Ok(reads::newest(conn, &self.keys, targets).await?)
    }

    /// Where `target`'s history stands, from the newest offset handed to the sink, while that
    /// is surely still there: `target` is subscribed, so anything newer is on its way to the
    /// members, and less than half the history's lifetime has passed since that offset was
    /// published, so the history has not expired (its lifetime restarts with every publish).
    /// Saves a join to a live target its Redis round trip.
    pub fn known_position(&self, target: &TargetKey) -> Option<ReplayCursor> {
        let position = self.positions.get(target)?;
        if position == FROM_START {
            // Nothing in the history when it was subscribed, nothing published since.
            return Some(ReplayCursor::finished(false, None));
        }
        let ttl = self.history_ttl.as_millis() as u64;
        let fresh_until = position.id.ms.saturating_add(ttl / 2);
        (ferrocast_protocol::envelope::now_ms() < fresh_until)
            .then(|| ReplayCursor::finished(false, Some(position)))
    }

    /// Opens a replay of `target` after `since`.
    pub async fn open_replay<C: ConnectionLike>(
        &self,
        conn: &mut C,
        target: &TargetKey,
        since: Option<Offset>,
    ) -> Result<ReplayCursor, BusError> {
        Ok(reads::open(conn, &self.keys, target, since).await?)
    }

    /// A page of `target`'s history before `before`.
    pub async fn history<C: ConnectionLike>(
        &self,
        conn: &mut C,
        target: &TargetKey,
        before: Option<Offset>,
        limit: usize,
    ) -> Result<HistoryPage, BusError> {
        Ok(reads::before(conn, &self.keys, target, before, limit, PAGE_BYTES).await?)
    }

    /// The next page of a replay.
    pub async fn replay_page<C: ConnectionLike>(
        &self,
        conn: &mut C,
        target: &TargetKey,
        cursor: &mut ReplayCursor,
    ) -> Result<Vec<(Offset, Bytes)>, BusError> {
        Ok(reads::page(conn, &self.keys, target, cursor).await?)
    }

    /// Replays `target` from `position` to the sink (see [`Positions::catch_up`]).
    pub async fn catch_up<C: ConnectionLike>(
        &self,
        conn: &mut C,
        target: &TargetKey,
        position: Offset,
    ) -> Result<(), BusError> {
        let ttl = self.history_ttl.as_millis() as u64;
        self.positions
            .catch_up(conn, &self.keys, &*self.sink, target, position, ttl)
            .await
    }

    /// Publishes a checked envelope (history, then live).
    pub async fn publish(&self, envelope: &Envelope, idempotent: bool) -> Result<Offset, BusError> {
        let mut message = ferrocast_emitter::Message::from_envelope(envelope)
            .map_err(|e| BusError::Refused(e.to_string()))?;
        if idempotent {
            message = message.once(envelope.id);
        }
        // The message itself was checked above: what fails now is Redis (out of memory, a
        // read-only replica after a failover, ...), which the client should retry.
        self.emitter
            .publish(&message)
            .await
            .map_err(super::unavailable)
    }

    /// Hands a live channel's payload to the sink: a message, unless it is newer than the
    /// target's position, or a presence batch.
    pub fn live(&self, target: &TargetKey, payload: &[u8]) {
        if let Some(batch) = payload.strip_prefix(presence::LIVE_MARK) {
            match presence::PresenceEvents::decode(batch) {
                Ok(events) => self.sink.presence(target, events),
                Err(error) => tracing::warn!(%target, %error, "malformed presence batch skipped"),
            }
            return;
        }
        match LiveMessage::parse(payload) {
            Some(live) => {
                self.positions
                    .deliver_if_new(&*self.sink, target, live.offset, live.envelope)
            }
            None => tracing::warn!(%target, "malformed live message skipped"),
        }
    }

    /// Announces presence changes of `room` to every edge.
    pub async fn presence_announce(
        &self,
        room: &str,
        events: &presence::PresenceEvents,
    ) -> Result<(), BusError> {
        Ok(self.emitter.presence_announce(room, events).await?)
    }

    /// Appends a client's `send` to the inbox.
    pub async fn send_upstream<C: ConnectionLike>(
        &self,
        conn: &mut C,
        upstream: &Upstream,
        request: Option<&str>,
    ) -> Result<Appended, BusError> {
        let appended = self.inbox.append(conn, upstream, request).await;
        if let Err(ferrocast_emitter::inbox::WriteError::Full(_)) = &appended {
            crate::ops::metrics::metrics().dropped("inbox_full");
        }
        Ok(appended?)
    }

    /// How far behind the inbox's workers are.
    pub async fn inbox_stats<C: ConnectionLike>(
        &self,
        conn: &mut C,
    ) -> Result<InboxStats, BusError> {
        Ok(self.inbox.stats(conn).await?)
    }
}
