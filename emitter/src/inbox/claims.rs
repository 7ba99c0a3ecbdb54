//! Taking back what consumers left pending too long, and moving what cannot be handled to the
//! dead-letter stream, so it never blocks the rest.

use std::collections::HashMap;
use std::time::Instant;

use ferrocast_protocol::upstream::{self, Upstream};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply};

use super::{Inbox, InboxError, Received};

/// Moves an inbox entry to the dead letters: a failed XADD raises, so XACK never runs without
/// it. Both keys share the `{inbox}` hash tag, so this also runs on a Redis Cluster.
static DEAD_LETTER: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2], 'entry', ARGV[3], 'group', ARGV[4], 'deliveries', ARGV[5], 'problem', ARGV[6])
return redis.call('XACK', KEYS[2], ARGV[4], ARGV[3])",
    )
});

impl Inbox {
    /// Claims messages left pending by any consumer for longer than `claim_idle`. The pending
    /// list is scanned a page per call, and a full scan is started at most every half
    /// `claim_idle`, so a busy worker spends little on it.
    pub(super) async fn claim_stale(
        &mut self,
        p: usize,
        max: usize,
    ) -> Result<Vec<Received>, InboxError> {
        let idle = self.settings.claim_idle;
        let part = &self.parts[p];
        let scan_due = part.last_claim.is_none_or(|at| at.elapsed() >= idle / 2);
        if part.claim_cursor == "0-0" && !scan_due {
            return Ok(Vec::new());
        }
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&part.stream)
            .arg(&self.settings.group)
            .arg(&self.settings.consumer)
            .arg(idle.as_millis() as u64)
            .arg(&part.claim_cursor)
            .arg("COUNT")
            .arg(max)
            .query_async(&mut self.conn)
            .await
            .or_else(|e| match e.code() {
                Some("NOGROUP") => Ok(StreamAutoClaimReply::default()),
                _ => Err(e),
            })?;
        let part = &mut self.parts[p];
        part.claim_cursor = if reply.next_stream_id.is_empty() {
            "0-0".to_owned()
        } else {
            reply.next_stream_id
        };
        if part.claim_cursor == "0-0" {
            part.last_claim = Some(Instant::now());
        }
        if reply.claimed.is_empty() {
            return Ok(Vec::new());
        }
        // XAUTOCLAIM does not say how often each was delivered; the pending list does, one
        // exact id at a time (a range could be filled by other pending ids in between).
        let mut pipe = redis::pipe();
        for entry in &reply.claimed {
            pipe.cmd("XPENDING")
                .arg(&self.parts[p].stream)
                .arg(&self.settings.group)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let pending: Vec<StreamPendingCountReply> = pipe.query_async(&mut self.conn).await?;
        let counts: HashMap<String, u64> = pending
            .into_iter()
            .flat_map(|p| p.ids)
            .map(|p| (p.id, p.times_delivered as u64))
            .collect();
        let mut out = Vec::new();
        for entry in reply.claimed {
            // Not pending any more (acknowledged meanwhile): nothing to do.
            let Some(deliveries) = counts.get(&entry.id).copied() else {
                continue;
            };
            match self.accept(p, entry, deliveries).await {
                Ok(Some(received)) => out.push(received),
                Ok(None) => {}
                // Still pending: the next scan tries again. The others are not held back.
                Err(error) => tracing::warn!(%error, "cannot move a message to the dead letters"),
            }
        }
        Ok(out)
    }

    /// Turns an entry into a message to handle, or moves it to the dead-letter stream when it
    /// was delivered too often or cannot be decoded.
    pub(super) async fn accept(
        &mut self,
        p: usize,
        entry: StreamId,
        deliveries: u64,
    ) -> Result<Option<Received>, InboxError> {
        let bytes = match entry.map.get(upstream::FIELD) {
            Some(redis::Value::BulkString(bytes)) => bytes.clone(),
            _ => Vec::new(),
        };
        let problem = if deliveries > self.settings.max_deliveries {
            "too many failed deliveries".to_owned()
        } else {
            match Upstream::decode(&bytes) {
                Ok(message) => {
                    return Ok(Some(Received {
                        entry: entry.id,
                        partition: p as u16,
                        deliveries,
                        message,
                    }));
                }
                Err(error) => format!("undecodable: {error}"),
            }
        };
        tracing::warn!(entry = %entry.id, deliveries, %problem, "moving an inbox message to the dead-letter stream");
        self.dead_letter(p, &entry.id, &bytes, deliveries, &problem)
            .await?;
        Ok(None)
    }

    /// Copies an entry to the dead-letter stream and acknowledges it, in one script: the
    /// acknowledgement happens only if the copy was written, so the entry is never lost.
    pub(super) async fn dead_letter(
        &mut self,
        p: usize,
        entry: &str,
        bytes: &[u8],
        deliveries: u64,
        problem: &str,
    ) -> Result<(), InboxError> {
        DEAD_LETTER
            .key(&self.parts[p].dead)
            .key(&self.parts[p].stream)
            .arg(self.settings.dead_letter_len)
            .arg(bytes)
            .arg(entry)
            .arg(&self.settings.group)
            .arg(deliveries)
            .arg(problem)
            .invoke_async::<()>(&mut self.conn)
            .await?;
        Ok(())
    }
}
