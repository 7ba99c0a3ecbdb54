//! The edge's end of the upstream inbox: appending client `send`s, and reporting how far behind
//! the workers are. (The workers' end is the [`Inbox`](super::Inbox) reader beside it.)
//!
//! The inbox is never trimmed past what workers have not read. Each stream holds at most
//! `max_len` entries; when one is full, the append script first trims what every consumer group
//! has read and acknowledged (up to the oldest entry still pending or undelivered in any group),
//! and if that frees nothing, the `send` is refused with [`WriteError::Full`]: the client is told
//! to retry later, instead of an acknowledged message being trimmed away unread. With no
//! consumer group at all nothing counts as read, so an inbox nobody consumes fills up and then
//! pushes back.

use ferrocast_protocol::rpc::RpcCall;
use ferrocast_protocol::{Keys, Upstream};
use redis::aio::ConnectionLike;
use thiserror::Error;

/// Why an entry was not appended.
#[derive(Debug, Error)]
pub enum WriteError {
    /// The stream holds this many entries some consumer group has not read: retry once the
    /// workers catch up.
    #[error("the upstream inbox holds {0} messages the workers have not read yet")]
    Full(u64),
    /// The entry could not be encoded.
    #[error("cannot encode the inbox entry: {0}")]
    Encode(String),
    /// Redis failed (see [`is_transient`](ferrocast_redis::errors::is_transient)).
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// Appends one entry unless the stream is full of entries some group still needs.
/// KEYS[1] the inbox stream; ARGV[1] the most entries it may hold; ARGV[2] the field; ARGV[3]
/// the entry. With KEYS[2], a request the client named: if KEYS[2] holds an entry id, that entry
/// was appended already and its id is the answer; otherwise the new entry's id is kept there
/// for ARGV[4] seconds. KEYS[3], for a named call, is where its reply is kept once a worker
/// answers. Returns {entry id, the kept reply or false}, or false when the inbox is full.
const APPEND: &str = r#"
if #KEYS > 1 then
  local seen = redis.call('GET', KEYS[2])
  if seen then
    if #KEYS > 2 then return {seen, redis.call('GET', KEYS[3])} end
    return {seen, false}
  end
end
local function before(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end
local cap = tonumber(ARGV[1])
if redis.call('XLEN', KEYS[1]) >= cap then
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
  local floor = nil
  if ok and #groups > 0 then
    for _, group in ipairs(groups) do
      local info = {}
      for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
      local keep = info['last-delivered-id']
      if tonumber(info['pending']) > 0 then
        local oldest = redis.call('XPENDING', KEYS[1], info['name'])[2]
        if before(oldest, keep) then keep = oldest end
      end
      if floor == nil or before(keep, floor) then floor = keep end
    end
  end
  if floor then
    redis.call('XTRIM', KEYS[1], 'MINID', floor)
  end
  if redis.call('XLEN', KEYS[1]) >= cap then
    return false
  end
end
local id = redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[3])
if #KEYS > 1 then
  redis.call('SET', KEYS[2], id, 'EX', ARGV[4])
end
return {id, false}
"#;

/// An entry in the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Its stream id.
    pub id: String,
    /// For a retried named call a worker has answered already: the reply it published (an
    /// encoded envelope), to answer the retry with.
    pub reply: Option<Vec<u8>>,
}

/// Appends client `send`s to the upstream inbox, each client's to one partition.
pub struct InboxWriter {
    keys: Keys,
    max_len: u64,
    partitions: u16,
    script: redis::Script,
}

/// How far behind the workers are, across the inbox's partitions.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct InboxStats {
    /// Entries the inbox streams hold.
    pub entries: u64,
    /// Per consumer group: entries not delivered to it yet.
    pub lag: Vec<(String, u64)>,
}

impl InboxWriter {
    /// An inbox of `partitions` streams, each holding at most `max_len` entries.
    pub fn new(keys: Keys, max_len: u64, partitions: u16) -> InboxWriter {
        InboxWriter {
            keys,
            max_len: max_len.max(1),
            partitions: partitions.max(1),
            script: redis::Script::new(APPEND),
        }
    }

    /// Appends `upstream`, or answers [`WriteError::Full`]. With `request`, the client's id for
    /// it (v1.2), the same request from the same user within
    /// [`REMEMBER_SECS`](ferrocast_protocol::request_id::REMEMBER_SECS) appends nothing and
    /// answers the first entry's id (and, for a call, its reply if a worker gave one). Such a
    /// request goes to its user's partition rather than its connection's, so a retry from
    /// another connection meets the first in the same slot.
    pub async fn append<C: ConnectionLike>(
        &self,
        conn: &mut C,
        upstream: &Upstream,
        request: Option<&str>,
    ) -> Result<Appended, WriteError> {
        let by = if request.is_some() {
            &upstream.user
        } else {
            &upstream.client
        };
        let partition = Keys::inbox_partition_of(by, self.partitions);
        let mut invocation = self.script.prepare_invoke();
        invocation.key(self.keys.inbox_partition(partition, self.partitions));
        // The worker learns from a named call where to keep its reply: it cannot tell the
        // edge's partitions.
        let reply_key = match (request, &upstream.rpc) {
            (Some(request), Some(_)) => {
                Some(
                    self.keys
                        .inbox_reply(partition, self.partitions, &upstream.user, request),
                )
            }
            _ => None,
        };
        let encoded = match (&reply_key, &upstream.rpc) {
            (Some(key), Some(call)) => Upstream {
                rpc: Some(RpcCall {
                    reply_key: Some(key.clone()),
                    ..call.clone()
                }),
                ..upstream.clone()
            }
            .encode(),
            _ => upstream.encode(),
        };
        let bytes = encoded.map_err(|e| WriteError::Encode(e.to_string()))?;
        if let Some(request) = request {
            invocation.key(self.keys.inbox_request(
                partition,
                self.partitions,
                &upstream.user,
                request,
            ));
        }
        if let Some(key) = reply_key {
            invocation.key(key);
        }
        invocation
            .arg(self.max_len)
            .arg(ferrocast_protocol::upstream::FIELD)
            .arg(bytes)
            .arg(ferrocast_protocol::request_id::REMEMBER_SECS);
        // Any other failure (unreachable, out of memory, a read-only replica mid-failover) is
        // one the client can retry.
        let appended: Option<(String, Option<Vec<u8>>)> = invocation.invoke_async(conn).await?;
        let (id, reply) = appended.ok_or(WriteError::Full(self.max_len))?;
        Ok(Appended { id, reply })
    }

    /// Entries held and each group's lag, summed over the partitions. Partitions are read one
    /// call each, so this works on a cluster too.
    pub async fn stats<C: ConnectionLike>(
        &self,
        conn: &mut C,
    ) -> Result<InboxStats, redis::RedisError> {
        let mut stats = InboxStats::default();
        for partition in 0..self.partitions {
            let stream = self.keys.inbox_partition(partition, self.partitions);
            let mut replies = redis::pipe()
                .ignore_errors()
                .cmd("XLEN")
                .arg(&stream)
                .cmd("XINFO")
                .arg("GROUPS")
                .arg(&stream)
                .query_async::<Vec<redis::RedisResult<redis::Value>>>(conn)
                .await?
                .into_iter();
            let len = replies.next().ok_or_else(|| {
                redis::RedisError::from((redis::ErrorKind::Parse, "short reply to XLEN"))
            })?;
            stats.entries += redis::from_redis_value::<u64>(len?)?;
            // No stream yet: no groups either (XINFO answers an error).
            let groups = match replies.next() {
                Some(Ok(groups)) => redis::from_redis_value::<Vec<redis::Value>>(groups)?,
                _ => Vec::new(),
            };
            for group in groups {
                let Ok(fields) = redis::from_redis_value::<
                    std::collections::HashMap<String, redis::Value>,
                >(group) else {
                    continue;
                };
                let name = fields
                    .get("name")
                    .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok());
                // Redis reports no lag when it cannot tell (after deletions): counted as 0.
                let lag = fields
                    .get("lag")
                    .and_then(|v| redis::from_redis_value::<u64>(v.clone()).ok())
                    .unwrap_or(0);
                if let Some(name) = name {
                    match stats.lag.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, total)) => *total += lag,
                        None => stats.lag.push((name, lag)),
                    }
                }
            }
        }
        Ok(stats)
    }
}
