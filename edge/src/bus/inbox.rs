//! The edge's end of the upstream inbox: appending client `send`s, and reporting how far behind
//! the workers are.
//!
//! The inbox is never trimmed past what workers have not read. Each stream holds at most
//! `max_len` entries; when one is full, the append script first trims what every consumer group
//! has read and acknowledged (up to the oldest entry still pending or undelivered in any group),
//! and if that frees nothing, the `send` is refused with [`BusError::Full`]: the client is told
//! to retry later, instead of an acknowledged message being trimmed away unread. With no
//! consumer group at all nothing counts as read, so an inbox nobody consumes fills up and then
//! pushes back.

use ferrocast_protocol::{Keys, Upstream};
use redis::aio::ConnectionLike;

use super::BusError;
use super::history::unavailable;

/// Appends one entry unless the stream is full of entries some group still needs.
/// KEYS[1] the inbox stream; ARGV[1] the most entries it may hold; ARGV[2] the field; ARGV[3]
/// the entry. Returns the new entry's id, or false when the inbox is full.
const APPEND: &str = r#"
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
return redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[3])
"#;

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

    /// Appends `upstream`; its stream id once Redis has it, or [`BusError::Full`].
    pub async fn append<C: ConnectionLike>(
        &self,
        conn: &mut C,
        upstream: &Upstream,
    ) -> Result<String, BusError> {
        let bytes = upstream
            .encode()
            .map_err(|e| BusError::Refused(e.to_string()))?;
        let partition = Keys::inbox_partition_of(&upstream.client, self.partitions);
        // Any other failure (unreachable, out of memory, a read-only replica mid-failover) is
        // one the client can retry.
        let id: Option<String> = self
            .script
            .key(self.keys.inbox_partition(partition, self.partitions))
            .arg(self.max_len)
            .arg(ferrocast_protocol::upstream::FIELD)
            .arg(bytes)
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        id.ok_or_else(|| {
            crate::ops::metrics::metrics().dropped("inbox_full");
            BusError::Full(format!(
                "the upstream inbox holds {} messages the workers have not read yet",
                self.max_len
            ))
        })
    }

    /// Entries held and each group's lag, summed over the partitions. Partitions are read one
    /// call each, so this works on a cluster too.
    pub async fn stats<C: ConnectionLike>(&self, conn: &mut C) -> Result<InboxStats, BusError> {
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
                .await
                .map_err(unavailable)?
                .into_iter();
            let len = replies.next().ok_or_else(|| unavailable("short reply"))?;
            stats.entries +=
                redis::from_redis_value::<u64>(len.map_err(unavailable)?).map_err(unavailable)?;
            // No stream yet: no groups either (XINFO answers an error).
            let groups = match replies.next() {
                Some(Ok(groups)) => {
                    redis::from_redis_value::<Vec<redis::Value>>(groups).map_err(unavailable)?
                }
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

/// How often the upstream inbox's size and lag are read for /metrics.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps the inbox metrics current: how much the streams hold, and how far behind each consumer
/// group is (what makes `send` answer UNAVAILABLE once the inbox is full). Ends at once on a bus
/// without an inbox.
pub async fn watch<B: super::Bus>(bus: std::sync::Arc<B>) {
    use crate::ops::metrics::{GroupLabel, metrics};
    let mut interval = tokio::time::interval(WATCH_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match bus.inbox_stats().await {
            Ok(Some(stats)) => {
                let m = metrics();
                m.inbox_entries
                    .set(i64::try_from(stats.entries).unwrap_or(i64::MAX));
                m.inbox_lag.clear();
                for (group, lag) in stats.lag {
                    m.inbox_lag
                        .get_or_create(&GroupLabel { group })
                        .set(i64::try_from(lag).unwrap_or(i64::MAX));
                }
            }
            Ok(None) => return,
            Err(error) => tracing::debug!(%error, "cannot read the inbox's lag"),
        }
    }
}
