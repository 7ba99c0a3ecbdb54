//! Reading a target's history: its newest offset, and replays opened after an offset and read a
//! page at a time (see [`ReplayCursor`]). Every call touches one target's keys only, so it runs
//! on that target's slot in a cluster; the functions take any Redis connection.

use bytes::Bytes;
use ferrocast_protocol::offset::StreamId;
use ferrocast_protocol::{Keys, Offset, TargetKey};
use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisError, RedisResult};

use super::replay::ReplayCursor;

/// A reply of a shape Redis does not send: something else answered, or the data is damaged.
fn bad_reply(what: &'static str, detail: &str) -> RedisError {
    RedisError::from((ErrorKind::Parse, what, detail.to_owned()))
}

/// The newest offset of each target, in one pipeline (so, on a cluster, one target per call).
pub async fn newest<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    targets: &[TargetKey],
) -> RedisResult<Vec<Option<Offset>>> {
    // Commands sized up front: every subscription (each connection's own targets included)
    // makes this read, and growing the argument buffers arg by arg showed in the churn profile.
    let mut pipe = redis::Pipeline::with_capacity(2 * targets.len());
    for target in targets {
        let (epoch, stream) = (keys.epoch(target), keys.stream(target));
        let mut get = redis::Cmd::with_capacity(2, 3 + epoch.len());
        get.arg("GET").arg(epoch);
        let mut newest = redis::Cmd::with_capacity(6, 19 + stream.len());
        newest
            .arg("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        pipe.add_command(get).add_command(newest);
    }
    let values = pipe.query_async::<Vec<redis::Value>>(conn).await?;
    let mut out = Vec::with_capacity(targets.len());
    let mut values = values.into_iter();
    while let (Some(epoch), Some(newest)) = (values.next(), values.next()) {
        let epoch: Option<String> = redis::from_redis_value(epoch)?;
        out.push(match epoch {
            Some(epoch) => entries(newest, parse_id(&epoch)?)?.pop().map(|(o, _)| o),
            None => None,
        });
    }
    Ok(out)
}

/// A transaction that begins with where `target`'s history (its `stream`) stands: its epoch,
/// then its newest entry. The callers add what they read besides, in the same look.
fn where_it_stands(keys: &Keys, target: &TargetKey, stream: &str) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .get(keys.epoch(target))
        .cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1);
    pipe
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
) -> RedisResult<ReplayCursor> {
    let stream = keys.stream(target);
    let mut pipe = where_it_stands(keys, target, &stream);
    if let Some(since) = since {
        // Finding `since` itself proves the history still reaches back that far.
        pipe.cmd("XRANGE")
            .arg(&stream)
            .arg(since.id.to_string())
            .arg(since.id.to_string());
    }
    let mut values = pipe
        .query_async::<Vec<redis::Value>>(conn)
        .await?
        .into_iter();
    let (Some(epoch), Some(newest)) = (values.next(), values.next()) else {
        return Err(bad_reply("short reply", ""));
    };
    let epoch: Option<String> = redis::from_redis_value(epoch)?;
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
) -> RedisResult<Vec<(Offset, Bytes)>> {
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
        .await?;
    let epoch = epoch.map(|e| parse_id(&e)).transpose()?;
    let page = entries(reply, cursor.epoch())?;
    let still_there = after.is_none() || !entries(previous, cursor.epoch())?.is_empty();
    Ok(cursor.take(page, epoch, still_there))
}

/// A page of a target's history read backwards (see [`before`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// The history's newest offset (not the page's): `None` for an empty history.
    pub newest: Option<Offset>,
    /// The page's entries, oldest first.
    pub entries: Vec<(Offset, Bytes)>,
    /// Whether older entries remain before the page's first.
    pub more: bool,
}

/// Up to `limit` of `target`'s newest entries before `before` (exclusive; `None`: the newest),
/// and where the history stands, in one transaction. The page keeps the entries nearest
/// `before` within `max_bytes` (at least one), and says `more` when older ones remain: a client
/// pages backwards with the oldest offset it got. An offset of another epoch (a history that
/// expired or was lost since) has nothing before it in this one.
pub async fn before<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    target: &TargetKey,
    before: Option<Offset>,
    limit: usize,
    max_bytes: usize,
) -> RedisResult<HistoryPage> {
    let stream = keys.stream(target);
    let mut pipe = where_it_stands(keys, target, &stream);
    // Nothing comes before the first possible id, and Redis refuses the range `(0-0`.
    let reaches_back = before.is_none_or(|b| b.id != StreamId { ms: 0, seq: 0 });
    if reaches_back {
        let end = before.map_or_else(|| "+".to_owned(), |o| format!("({}", o.id));
        pipe.cmd("XREVRANGE")
            .arg(&stream)
            .arg(end)
            .arg("-")
            .arg("COUNT")
            // One more than asked for says whether older ones remain.
            .arg(limit.saturating_add(1));
    }
    let mut values = pipe
        .query_async::<Vec<redis::Value>>(conn)
        .await?
        .into_iter();
    let (Some(epoch), Some(newest)) = (values.next(), values.next()) else {
        return Err(bad_reply("short reply", ""));
    };
    let older = values.next().unwrap_or(redis::Value::Nil);
    let epoch: Option<String> = redis::from_redis_value(epoch)?;
    let Some(epoch) = epoch.map(|e| parse_id(&e)).transpose()? else {
        return Ok(HistoryPage::default());
    };
    let newest = entries(newest, epoch)?.pop().map(|(o, _)| o);
    if before.is_some_and(|b| b.epoch != epoch) {
        return Ok(HistoryPage {
            newest,
            entries: Vec::new(),
            more: false,
        });
    }
    let mut page = entries(older, epoch)?;
    let mut more = page.len() > limit;
    page.truncate(limit);
    let mut bytes = 0;
    let fits = page
        .iter()
        .position(|(_, e)| {
            bytes += e.len();
            bytes > max_bytes
        })
        .map_or(page.len(), |at| at.max(1));
    if fits < page.len() {
        page.truncate(fits);
        more = true;
    }
    page.reverse();
    Ok(HistoryPage {
        newest,
        entries: page,
        more,
    })
}

/// Parses a stream id from Redis.
pub fn parse_id(text: &str) -> RedisResult<StreamId> {
    text.parse()
        .map_err(|_| bad_reply("unexpected stream id", text))
}

/// Parses an XRANGE / XREVRANGE reply: entries of `[id, [field, value, ...]]`, keeping field `e`.
pub fn entries(reply: redis::Value, epoch: StreamId) -> RedisResult<Vec<(Offset, Bytes)>> {
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
