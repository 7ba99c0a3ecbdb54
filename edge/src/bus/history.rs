//! Reading targets' histories, and keeping each subscribed target's position in it: what both
//! Redis buses (one Redis, or a cluster) share. The functions take any Redis connection; every
//! call touches one target's keys only, so it runs on that target's slot in a cluster.

use std::collections::HashMap;

use bytes::Bytes;
use ferrocast_protocol::offset::StreamId;
use ferrocast_protocol::{Keys, Offset, TargetKey};
use redis::aio::ConnectionLike;

use super::{BusError, ReplayCursor, Sink};

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

/// Opens a replay of `target` after `since` (see [`ReplayCursor`]): the epoch, the newest entry
/// and whether `since` itself is still there, in one transaction, so `recovered` and `last` are
/// one consistent look at the history. No entry is read yet: a client whose offset belongs to
/// another epoch costs no wasted page.
pub async fn open<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    target: &TargetKey,
    since: Option<Offset>,
) -> Result<ReplayCursor, BusError> {
    let stream = keys.stream(target);
    let mut pipe = redis::pipe();
    pipe.atomic()
        .get(keys.epoch(target))
        .cmd("XREVRANGE")
        .arg(&stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1);
    if let Some(since) = since {
        // Finding `since` itself proves the history still reaches back that far.
        pipe.cmd("XRANGE")
            .arg(&stream)
            .arg(since.id.to_string())
            .arg(since.id.to_string());
    }
    let mut values = pipe
        .query_async::<Vec<redis::Value>>(conn)
        .await
        .map_err(unavailable)?
        .into_iter();
    let (Some(epoch), Some(newest)) = (values.next(), values.next()) else {
        return Err(unavailable("short reply"));
    };
    let epoch: Option<String> = redis::from_redis_value(epoch).map_err(unavailable)?;
    let Some(epoch) = epoch.map(|e| parse_id(&e)).transpose()? else {
        // No epoch: the history expired or Redis lost it.
        return Ok(ReplayCursor::finished(false, None));
    };
    let last = entries(newest, epoch)?.pop().map(|(o, _)| o);
    let Some(since) = since else {
        return Ok(ReplayCursor::finished(false, last));
    };
    if since.epoch != epoch {
        // A new incarnation of the stream: everything in it is news to this client.
        return Ok(ReplayCursor::new(false, last, None));
    }
    let found = values
        .next()
        .map(|v| entries(v, epoch))
        .transpose()?
        .is_some_and(|e| !e.is_empty());
    Ok(ReplayCursor::new(
        found,
        last.or(found.then_some(since)),
        Some(since.id),
    ))
}

/// Reads the next page of a replay (empty once it is done), checking in the same transaction
/// that the history is still the epoch the replay started in.
pub async fn page<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    target: &TargetKey,
    cursor: &mut ReplayCursor,
) -> Result<Vec<(Offset, Bytes)>, BusError> {
    let Some(last) = cursor.last.filter(|_| !cursor.is_done()) else {
        return Ok(Vec::new());
    };
    let start = match cursor.after() {
        Some(after) => format!("({after}"),
        None => "-".to_owned(),
    };
    let stream = keys.stream(target);
    // The entry the page follows, to tell a history trimmed past the cursor meanwhile.
    let after = cursor.after().map(|a| a.to_string());
    let follows = after.as_deref().unwrap_or("0-1");
    let (epoch, reply, previous) = redis::pipe()
        .atomic()
        .get(keys.epoch(target))
        .cmd("XRANGE")
        .arg(&stream)
        .arg(start)
        .arg(last.id.to_string())
        .arg("COUNT")
        .arg(cursor.count())
        .cmd("XRANGE")
        .arg(&stream)
        .arg(follows)
        .arg(follows)
        .query_async::<(Option<String>, redis::Value, redis::Value)>(conn)
        .await
        .map_err(unavailable)?;
    let epoch = epoch.map(|e| parse_id(&e)).transpose()?;
    let page = entries(reply, cursor.epoch())?;
    let still_there = after.is_none() || !entries(previous, cursor.epoch())?.is_empty();
    Ok(cursor.take(page, epoch, still_there))
}

/// Newest offset handed to the sink, per subscribed target.
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

    /// Hands a message to the sink unless it is at or below the target's position: live
    /// messages that a catch-up already delivered, and the reverse, are dropped here.
    pub fn deliver_if_new(
        &self,
        sink: &dyn Sink,
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
        sink.deliver(target, offset, envelope);
    }

    /// Replays `target` from `position`: what was published while its live messages could not
    /// arrive reaches the members, in order, a page at a time. A history that did not survive
    /// (Redis lost it, or it was trimmed past the position) is a gap: the members are told with
    /// a `gap` frame and delivery goes on after the history's newest offset. One that expired
    /// quietly, past its TTL with nothing after the position, is not a loss.
    pub async fn catch_up<C: ConnectionLike>(
        &self,
        conn: &mut C,
        keys: &Keys,
        sink: &dyn Sink,
        target: &TargetKey,
        position: Offset,
        history_ttl_ms: u64,
    ) -> Result<(), BusError> {
        let mut cursor = open(conn, keys, target, Some(position)).await?;
        if cursor.recovered || position == FROM_START {
            while !cursor.is_done() {
                for (offset, envelope) in page(conn, keys, target, &mut cursor).await? {
                    self.deliver_if_new(sink, target, offset, &envelope);
                }
            }
            if !cursor.was_interrupted() {
                return Ok(());
            }
            // Redis lost the history while it was being read: a gap after all.
            cursor = open(conn, keys, target, None).await?;
        }
        let now = ferrocast_protocol::envelope::now_ms();
        let expired_quietly =
            cursor.last.is_none() && position.id.ms.saturating_add(history_ttl_ms) < now;
        if !expired_quietly {
            sink.gap(target, cursor.last);
        }
        self.set(target.clone(), cursor.last.unwrap_or(FROM_START));
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
    // The message itself was checked above: what fails now is Redis (out of memory, a
    // read-only replica after a failover, ...), which the client should retry.
    emitter.publish(&message).await.map_err(unavailable)
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
