//! Reading targets' histories, and keeping each subscribed target's position in it: what both
//! Redis buses (one Redis, or a cluster) share. The functions take any Redis connection; every
//! call touches one target's keys only, so it runs on that target's slot in a cluster.

use std::collections::HashMap;

use bytes::Bytes;
use ferrocast_protocol::offset::StreamId;
use ferrocast_protocol::{Keys, Offset, TargetKey};
use redis::aio::ConnectionLike;

use super::{BusError, MAX_REPLAY, MAX_REPLAY_BYTES, Replay, cap_replay};
use crate::registry::Registry;

/// Stream entries read per XRANGE.
const PAGE: usize = 500;

/// Replay position of a target whose history was empty when it was subscribed: everything
/// its stream holds later is news. No real stream has this epoch.
pub const FROM_START: Offset = Offset {
    id: StreamId { ms: 0, seq: 0 },
    epoch: StreamId { ms: 0, seq: 0 },
};

/// Redis could not answer: the client may retry.
pub fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// The newest offset of each target, in one pipeline (so, on a cluster, one target per call).
pub async fn newest<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    targets: &[TargetKey],
) -> Result<Vec<Option<Offset>>, BusError> {
    let mut pipe = redis::pipe();
    for target in targets {
        pipe.get(keys.epoch(target))
            .cmd("XREVRANGE")
            .arg(keys.stream(target))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
    }
    let values = pipe
        .query_async::<Vec<redis::Value>>(conn)
        .await
        .map_err(unavailable)?;
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

/// What `target`'s history holds after `since`.
pub async fn read<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    target: &TargetKey,
    since: Offset,
) -> Result<Replay, BusError> {
    let stream = keys.stream(target);
    // The epoch and the first page in one transaction: the page starts *at* `since`, so
    // finding `since` itself proves the history still reaches back that far.
    let (epoch, first_page) = redis::pipe()
        .atomic()
        .get(keys.epoch(target))
        .cmd("XRANGE")
        .arg(&stream)
        .arg(since.id.to_string())
        .arg("+")
        .arg("COUNT")
        .arg(PAGE)
        .query_async::<(Option<String>, redis::Value)>(conn)
        .await
        .map_err(unavailable)?;
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
            .query_async::<redis::Value>(conn)
            .await
            .map_err(unavailable)?;
        let page = entries(reply, epoch)?;
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

/// Newest offset handed to the registry, per subscribed target.
#[derive(Default)]
pub struct Positions(parking_lot::Mutex<HashMap<TargetKey, Offset>>);

impl Positions {
    /// Sets `target`'s position (on subscribing).
    pub fn set(&self, target: TargetKey, offset: Offset) {
        self.0.lock().insert(target, offset);
    }

    /// Forgets `target` (on unsubscribing).
    pub fn remove(&self, target: &TargetKey) {
        self.0.lock().remove(target);
    }

    /// Keeps only the targets `keep` says yes to.
    pub fn retain(&self, mut keep: impl FnMut(&TargetKey) -> bool) {
        self.0.lock().retain(|t, _| keep(t));
    }

    /// Every target and its position.
    pub fn snapshot(&self) -> Vec<(TargetKey, Offset)> {
        self.0.lock().iter().map(|(t, o)| (t.clone(), *o)).collect()
    }

    /// `target`'s position, if it is subscribed.
    pub fn get(&self, target: &TargetKey) -> Option<Offset> {
        self.0.lock().get(target).copied()
    }

    /// Hands a message to the registry unless it is at or below the target's position: live
    /// messages that a catch-up already delivered, and the reverse, are dropped here.
    pub fn deliver_if_new(
        &self,
        registry: &Registry,
        target: &TargetKey,
        offset: Offset,
        envelope: &[u8],
    ) {
        {
            let mut positions = self.0.lock();
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
        registry.deliver(target, offset, envelope);
    }

    /// Replays `target` from `position`: what was published while its live messages could not
    /// arrive reaches the members, in order. A history that did not survive (Redis lost it, or
    /// it was trimmed past the position) closes the members, so they resume and are told
    /// `recovered: false`; one that expired quietly, past its TTL with nothing after the
    /// position, is not a loss.
    pub async fn catch_up<C: ConnectionLike>(
        &self,
        conn: &mut C,
        keys: &Keys,
        registry: &Registry,
        target: &TargetKey,
        position: Offset,
        history_ttl_ms: u64,
    ) -> Result<(), BusError> {
        let replay = read(conn, keys, target, position).await?;
        for (offset, envelope) in &replay.entries {
            self.deliver_if_new(registry, target, *offset, envelope);
        }
        if replay.recovered || position == FROM_START {
            return Ok(());
        }
        let now = ferrocast_protocol::envelope::now_ms();
        let expired_quietly =
            replay.last.is_none() && position.id.ms.saturating_add(history_ttl_ms) < now;
        if expired_quietly {
            self.set(target.clone(), FROM_START);
        } else {
            registry.lost(target);
        }
        Ok(())
    }
}

/// Publishes a checked envelope through the emitter (history, then live).
pub async fn publish(
    emitter: &ferrocast_emitter::Emitter,
    envelope: &ferrocast_protocol::Envelope,
) -> Result<Offset, BusError> {
    let message = ferrocast_emitter::Message::from_envelope(envelope)
        .map_err(|e| BusError::Refused(e.to_string()))?;
    let mut results = emitter
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

/// Appends client `send`s to the upstream inbox, each client's to one partition.
pub struct InboxWriter {
    keys: Keys,
    max_len: u64,
    partitions: u16,
}

impl InboxWriter {
    /// An inbox of `partitions` streams, each capped (approximately) at `max_len` entries.
    pub fn new(keys: Keys, max_len: u64, partitions: u16) -> InboxWriter {
        InboxWriter {
            keys,
            max_len: max_len.max(1),
            partitions: partitions.max(1),
        }
    }

    /// Appends `upstream`; its stream id once Redis has it.
    pub async fn append<C: ConnectionLike>(
        &self,
        conn: &mut C,
        upstream: &ferrocast_protocol::Upstream,
    ) -> Result<String, BusError> {
        let bytes = upstream
            .encode()
            .map_err(|e| BusError::Refused(e.to_string()))?;
        let partition = Keys::inbox_partition_of(&upstream.client, self.partitions);
        // Any failure (unreachable, out of memory, a read-only replica mid-failover) is one
        // the client can retry.
        redis::cmd("XADD")
            .arg(self.keys.inbox_partition(partition, self.partitions))
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_len)
            .arg("*")
            .arg(ferrocast_protocol::upstream::FIELD)
            .arg(bytes)
            .query_async::<String>(conn)
            .await
            .map_err(unavailable)
    }
}

/// Parses a stream id from Redis.
pub fn parse_id(text: &str) -> Result<StreamId, BusError> {
    text.parse()
        .map_err(|_| unavailable(format!("unexpected stream id {text:?}")))
}

/// Parses an XRANGE / XREVRANGE reply: entries of `[id, [field, value, ...]]`, keeping field `e`.
pub fn entries(reply: redis::Value, epoch: StreamId) -> Result<Vec<(Offset, Bytes)>, BusError> {
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
