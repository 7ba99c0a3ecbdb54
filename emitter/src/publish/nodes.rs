//! The directory of live edges (v1.2, `GET /api/nodes`): each edge reports its status every few
//! seconds with a TTL, so a dead edge drops out by itself. The statuses are opaque JSON here:
//! the edge defines them. A sorted set of ids by report time lists them without a SCAN, which a
//! Cluster could not do in one call; it shares the statuses' slot, so one MGET reads them all.

use std::time::Duration;

use ferrocast_protocol::envelope::now_ms;

use super::Emitter;
use crate::error::EmitError;

/// Keeps a status (KEYS[2]) for ARGV[2] ms and notes node ARGV[1] in the directory (KEYS[1]) at
/// ARGV[3] (now, Unix ms), dropping ids not reported for ARGV[2] ms.
const ANNOUNCE: &str = r#"
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[2]))
return 1
"#;

impl Emitter {
    /// Reports node `id`'s `status` (JSON text), kept for `ttl` unless reported again.
    pub async fn node_announce(
        &self,
        id: &str,
        status: &[u8],
        ttl: Duration,
    ) -> Result<(), EmitError> {
        let keys = &self.inner.keys;
        let script = redis::Script::new(ANNOUNCE);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(keys.nodes())
            .key(keys.node(id))
            .arg(id)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(now_ms())
            .arg(status);
        self.invoke::<i64>(&invocation).await.map(drop)
    }

    /// Removes node `id` from the directory at once (a draining edge).
    pub async fn node_leave(&self, id: &str) -> Result<(), EmitError> {
        let keys = &self.inner.keys;
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(keys.nodes()).arg(id);
        self.command::<i64>(&zrem).await?;
        let mut del = redis::cmd("DEL");
        del.arg(keys.node(id));
        self.command::<i64>(&del).await.map(drop)
    }

    /// The statuses of the nodes reported within `ttl`, as they reported them.
    pub async fn nodes(&self, ttl: Duration) -> Result<Vec<Vec<u8>>, EmitError> {
        let keys = &self.inner.keys;
        let since = now_ms().saturating_sub(ttl.as_millis() as u64);
        let mut live = redis::cmd("ZRANGEBYSCORE");
        live.arg(keys.nodes()).arg(since).arg("+inf");
        let ids: Vec<String> = self.command(&live).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut read = redis::cmd("MGET");
        for id in &ids {
            read.arg(keys.node(id));
        }
        let statuses: Vec<Option<Vec<u8>>> = self.command(&read).await?;
        Ok(statuses.into_iter().flatten().collect())
    }
}
