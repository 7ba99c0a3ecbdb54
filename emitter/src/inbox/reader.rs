//! Reading the inbox as one consumer of a group: new entries, acknowledgements, and the loop
//! that hands each to a handler.

use ferrocast_protocol::Keys;
use ferrocast_redis::Backoff;
use ferrocast_redis::endpoint::Endpoint;
use ferrocast_redis::pool::Manager;
use ferrocast_redis::reconnecting::Reconnecting;
use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use redis::streams::{StreamInfoConsumersReply, StreamReadReply};

use super::builder::InboxBuilder;
use super::{InboxError, Received, StartFrom};

/// Longest wait between two attempts after Redis failed, in [`Inbox::run`].
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A consumer of the upstream inbox, in a consumer group.
pub struct Inbox {
    pub(super) conn: Conn,
    pub(super) parts: Vec<Partition>,
    /// The partition read first next time, so none is favoured.
    pub(super) turn: usize,
    pub(super) settings: InboxBuilder,
}

/// One partition of the inbox: its stream, dead letters, and the scan of its stale messages.
pub(super) struct Partition {
    pub(super) stream: String,
    pub(super) dead: String,
    /// Where the scan of stale pending messages goes on from.
    pub(super) claim_cursor: String,
    /// When the scan of stale pending messages last went all the way round.
    pub(super) last_claim: Option<Instant>,
}

/// The connection: one Redis, or the master of a Sentinel group (either remade when it breaks),
/// or a cluster (routing by key).
pub(super) enum Conn {
    Single(Box<Reconnecting>),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Inbox {
    /// Settings for consumer `consumer` of group `group`, reading the inbox in the Redis at
    /// `url`. Consumers of one group share the messages; each group gets all of them.
    pub fn builder(
        url: impl Into<String>,
        group: impl Into<String>,
        consumer: impl Into<String>,
    ) -> InboxBuilder {
        InboxBuilder {
            url: url.into(),
            cluster_nodes: Vec::new(),
            partitions: 1,
            prefix: ferrocast_protocol::keys::DEFAULT_PREFIX.to_owned(),
            group: group.into(),
            consumer: consumer.into(),
            batch: 64,
            block: Duration::from_secs(2),
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
            dead_letter_len: 10_000,
            start: StartFrom::Beginning,
            timeout: Duration::from_secs(5),
            tls: ferrocast_redis::Tls::default(),
            sentinels: None,
        }
    }

    /// The next messages to handle: stale ones claimed from other consumers first, otherwise
    /// new ones, waiting up to `block` for some. Empty when nothing arrived in time. Messages
    /// that failed too often, or cannot be decoded, go to the dead-letter stream instead.
    pub async fn next(&mut self) -> Result<Vec<Received>, InboxError> {
        self.next_up_to(self.settings.batch).await
    }

    /// Like [`Inbox::next`], taking at most `max` messages (and at most the batch size).
    pub async fn next_up_to(&mut self, max: usize) -> Result<Vec<Received>, InboxError> {
        let max = max.clamp(1, self.settings.batch);
        let n = self.parts.len();
        self.turn = (self.turn + 1) % n;
        let order: Vec<usize> = (0..n).map(|i| (self.turn + i) % n).collect();
        for &p in &order {
            let claimed = self.claim_stale(p, max).await?;
            if !claimed.is_empty() {
                return Ok(claimed);
            }
        }
        // Each partition waits its share of `block`, so a quiet inbox is waited on for about
        // `block` in all, whichever partition a message arrives in.
        let block = self.settings.block / n as u32;
        for &p in &order {
            let read = self.read_new(p, max, block).await;
            let reply = match read {
                Err(InboxError::Redis(e)) if e.code() == Some("NOGROUP") => {
                    // The stream or group vanished (Redis restarted empty, or it was deleted).
                    self.create_group().await?;
                    self.read_new(p, max, block).await?
                }
                other => other?,
            };
            let mut out = Vec::new();
            for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                if let Some(received) = self.accept(p, entry, 1).await? {
                    out.push(received);
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
        Ok(Vec::new())
    }

    /// Acknowledges a handled message: it will not be delivered again.
    pub async fn ack(&mut self, received: &Received) -> Result<(), InboxError> {
        self.ack_entry(received.partition, &received.entry).await
    }

    /// Acknowledges handled messages, one `XACK` per partition they came from: for a worker
    /// that handles a batch at once, one round trip instead of one per message.
    pub async fn ack_all(&mut self, received: &[Received]) -> Result<(), InboxError> {
        for (index, part) in self.parts.iter().enumerate() {
            let entries: Vec<&str> = received
                .iter()
                .filter(|r| usize::from(r.partition) % self.parts.len() == index)
                .map(|r| r.entry.as_str())
                .collect();
            if entries.is_empty() {
                continue;
            }
            redis::cmd("XACK")
                .arg(&part.stream)
                .arg(&self.settings.group)
                .arg(&entries)
                .query_async::<u64>(&mut self.conn)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn ack_entry(
        &mut self,
        partition: u16,
        entry: &str,
    ) -> Result<(), InboxError> {
        let part = &self.parts[usize::from(partition) % self.parts.len()];
        redis::cmd("XACK")
            .arg(&part.stream)
            .arg(&self.settings.group)
            .arg(entry)
            .query_async::<u64>(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Handles messages forever, one at a time: acknowledges each after `handler` succeeds.
    /// A failed message is logged and left pending, to be claimed again after `claim_idle`
    /// (by this consumer or another) until it reaches the dead-letter stream. Outages (and a
    /// Redis loading or failing over) are waited out with backoff; only an error no retry can
    /// fix (see [`InboxError::is_transient`]) ends the loop.
    pub async fn run<F, Fut, E>(&mut self, mut handler: F) -> Result<(), InboxError>
    where
        F: FnMut(Received) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let mut backoff = Backoff::new(Duration::from_millis(100), MAX_BACKOFF);
        loop {
            let batch = match self.next().await {
                Ok(batch) => batch,
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, "inbox unavailable");
                    backoff.wait().await;
                    continue;
                }
                Err(other) => return Err(other),
            };
            backoff.reset();
            let read_at = Instant::now();
            for received in batch {
                // The idle time of every message in the batch started at the read: one that
                // waited behind slow handlers for half of claim_idle is claimed back for this
                // consumer first, so no other consumer takes it meanwhile.
                if read_at.elapsed() >= self.settings.claim_idle / 2 {
                    match self.keep(&received).await {
                        Ok(true) => {}
                        Ok(false) => continue, // Taken by another consumer already.
                        Err(error) => {
                            tracing::warn!(entry = %received.entry, %error, "cannot keep a message; it may be redelivered");
                        }
                    }
                }
                let (entry, partition) = (received.entry.clone(), received.partition);
                let deliveries = received.deliveries;
                match handler(received).await {
                    Ok(()) => {
                        if let Err(error) = self.ack_entry(partition, &entry).await {
                            // Not acknowledged: it comes back after claim_idle. Handlers should
                            // be idempotent for this reason.
                            tracing::warn!(%entry, %error, "cannot acknowledge; it will be redelivered");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%entry, deliveries, %error, "handler failed; left for redelivery");
                    }
                }
            }
        }
    }

    /// Removes consumers of the group that hold no messages and have not read for a day
    /// (workers named after pods that are gone), so the group does not collect them forever.
    /// Best effort: a failure only leaves them for next time.
    pub(super) async fn forget_departed(&mut self) {
        const DEPARTED_MS: usize = 24 * 3600 * 1000;
        for p in 0..self.parts.len() {
            let Ok(info) = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&self.parts[p].stream)
                .arg(&self.settings.group)
                .query_async::<StreamInfoConsumersReply>(&mut self.conn)
                .await
            else {
                continue;
            };
            for consumer in info.consumers {
                if consumer.pending == 0
                    && consumer.idle > DEPARTED_MS
                    && consumer.name != self.settings.consumer
                {
                    let _ = redis::cmd("XGROUP")
                        .arg("DELCONSUMER")
                        .arg(&self.parts[p].stream)
                        .arg(&self.settings.group)
                        .arg(&consumer.name)
                        .query_async::<u64>(&mut self.conn)
                        .await;
                }
            }
        }
    }

    pub(super) async fn create_group(&mut self) -> Result<(), InboxError> {
        let start = match self.settings.start {
            StartFrom::Beginning => "0",
            StartFrom::New => "$",
        };
        for p in 0..self.parts.len() {
            let created = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&self.parts[p].stream)
                .arg(&self.settings.group)
                .arg(start)
                .arg("MKSTREAM")
                .query_async::<()>(&mut self.conn)
                .await;
            match created {
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Resets a pending message's idle time, if this consumer still owns it.
    pub(super) async fn keep(&mut self, received: &Received) -> Result<bool, InboxError> {
        let part = &self.parts[usize::from(received.partition) % self.parts.len()];
        let kept: Vec<String> = redis::cmd("XCLAIM")
            .arg(&part.stream)
            .arg(&self.settings.group)
            .arg(&self.settings.consumer)
            .arg(0)
            .arg(&received.entry)
            .arg("JUSTID")
            .query_async(&mut self.conn)
            .await?;
        Ok(!kept.is_empty())
    }

    pub(super) async fn read_new(
        &mut self,
        p: usize,
        max: usize,
        block: Duration,
    ) -> Result<StreamReadReply, InboxError> {
        Ok(redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.settings.group)
            .arg(&self.settings.consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg((block.as_millis() as u64).max(1))
            .arg("STREAMS")
            .arg(&self.parts[p].stream)
            .arg(">")
            .query_async::<Option<StreamReadReply>>(&mut self.conn)
            .await?
            .unwrap_or_default())
    }
}

/// Connecting is the reader's business: it builds the partitions and the consumer group.
impl InboxBuilder {
    /// Connects and creates the consumer group if it is missing.
    pub async fn connect(self) -> Result<Inbox, InboxError> {
        if self.group.is_empty() || self.consumer.is_empty() {
            return Err(InboxError::InvalidSetting(
                "group and consumer names must not be empty",
            ));
        }
        if !Keys::is_valid_prefix(&self.prefix) {
            return Err(InboxError::InvalidSetting(
                "the prefix must be printable ASCII without braces",
            ));
        }
        let conn = if self.cluster_nodes.is_empty() {
            let endpoint = match &self.sentinels {
                Some(sentinels) => Endpoint::Sentinel(sentinels.clone()),
                None => Endpoint::Fixed(Box::new(
                    ferrocast_redis::clients::client(&self.url, &self.tls)
                        .map_err(|e| InboxError::InvalidUrl(e.to_string()))?,
                )),
            };
            let manager = Manager::new(endpoint, self.timeout, self.block + self.timeout);
            Conn::Single(Box::new(Reconnecting::new(manager)))
        } else {
            let client = ferrocast_redis::clients::cluster_builder(&self.cluster_nodes, &self.tls)
                .map_err(|e| InboxError::InvalidUrl(e.to_string()))?
                .connection_timeout(self.timeout)
                .response_timeout(self.block + self.timeout)
                .build()
                .map_err(|e| InboxError::InvalidUrl(e.to_string()))?;
            Conn::Cluster(client.get_async_connection().await?)
        };
        let keys = Keys::new(&self.prefix);
        let parts = (0..self.partitions)
            .map(|i| Partition {
                stream: keys.inbox_partition(i, self.partitions),
                dead: keys.dead_letter_partition(i, self.partitions),
                claim_cursor: "0-0".to_owned(),
                last_claim: None,
            })
            .collect();
        let mut inbox = Inbox {
            conn,
            parts,
            turn: 0,
            settings: self,
        };
        inbox.create_group().await?;
        inbox.forget_departed().await;
        Ok(inbox)
    }
}
