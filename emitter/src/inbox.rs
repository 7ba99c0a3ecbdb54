//! `Inbox`: how workers consume what clients `send` upstream.
//!
//! Edges append every accepted `send` to the inbox stream `P:{inbox}`. Workers share it through a
//! Redis consumer group: each message goes to one consumer, and stays pending until that
//! consumer acknowledges it. A consumer that dies before acknowledging leaves its messages
//! pending; after `claim_idle` another consumer claims them (XAUTOCLAIM) and handles them again.
//! A message that keeps failing (a poison message) is moved to the dead-letter stream
//! `P:{inbox}:dead` after `max_deliveries` attempts, so it never blocks the others.
//!
//! ```no_run
//! # async fn example() -> Result<(), ferrocast_emitter::InboxError> {
//! use ferrocast_emitter::{Emitter, Inbox};
//! let emitter = Emitter::connect("redis://127.0.0.1:6379").await.expect("redis");
//! let mut inbox = Inbox::builder("redis://127.0.0.1:6379", "chat", "worker-1")
//!     .connect()
//!     .await?;
//! inbox
//!     .run(|received| {
//!         let emitter = emitter.clone();
//!         async move {
//!             // Answer the sender; an error leaves the message pending for a retry.
//!             emitter
//!                 .to_client(&received.message.client)
//!                 .emit("echo", &serde_json::json!({"ok": true}))
//!                 .await
//!                 .map(|_offset| ())
//!         }
//!     })
//!     .await
//! # }
//! ```

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use ferrocast_protocol::Keys;
use ferrocast_protocol::upstream::{self, Upstream};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamInfoConsumersReply, StreamPendingCountReply,
    StreamReadReply,
};
use thiserror::Error;

/// Longest wait between two attempts after Redis failed, in [`Inbox::run`].
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Moves an inbox entry to the dead letters: a failed XADD raises, so XACK never runs without
/// it. Both keys share the `{inbox}` hash tag, so this also runs on a Redis Cluster.
static DEAD_LETTER: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2], 'entry', ARGV[3], 'group', ARGV[4], 'deliveries', ARGV[5], 'problem', ARGV[6])
return redis.call('XACK', KEYS[2], ARGV[4], ARGV[3])",
    )
});

/// Why the inbox could not be read.
#[derive(Debug, Error)]
pub enum InboxError {
    /// The Redis URL cannot be used.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// A setting is out of range (an empty group or consumer name, a bad prefix).
    #[error("invalid inbox setting: {0}")]
    InvalidSetting(&'static str),
    /// Redis could not be reached, or the connection broke; retry.
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error.
    #[error("Redis refused: {0}")]
    Redis(redis::RedisError),
}

impl InboxError {
    /// Whether waiting and trying again can help: an outage, or a Redis that is loading, read
    /// only or failing over, but not a misconfiguration (a key of the wrong type, no
    /// permission) that only a person can fix.
    pub fn is_transient(&self) -> bool {
        match self {
            InboxError::Unavailable(_) => true,
            InboxError::Redis(e) => !matches!(
                e.code(),
                Some("WRONGTYPE" | "NOPERM" | "NOAUTH" | "WRONGPASS" | "ERR")
            ),
            InboxError::InvalidUrl(_) | InboxError::InvalidSetting(_) => false,
        }
    }
}

impl From<redis::RedisError> for InboxError {
    fn from(e: redis::RedisError) -> Self {
        if crate::error::is_unreachable(&e) {
            InboxError::Unavailable(e.to_string())
        } else {
            InboxError::Redis(e)
        }
    }
}

/// Where a consumer group created by this inbox starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// Everything still in the inbox stream (the default: messages sent before the first
    /// worker started are handled too).
    Beginning,
    /// Only messages sent after the group was created.
    New,
}

/// Settings for an [`Inbox`]; [`Inbox::builder`] starts from the defaults.
#[derive(Debug, Clone)]
pub struct InboxBuilder {
    url: String,
    cluster_nodes: Vec<String>,
    partitions: u16,
    prefix: String,
    group: String,
    consumer: String,
    batch: usize,
    block: Duration,
    claim_idle: Duration,
    max_deliveries: u64,
    dead_letter_len: u64,
    start: StartFrom,
    timeout: Duration,
}

impl InboxBuilder {
    /// Key prefix shared with the edges (default `fc`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many partitions the inbox is split into: the edges' `--inbox-partitions` (default 1).
    /// Every partition is read, in turn, each waiting its share of `block`, so a message can
    /// wait up to about `block` for its turn in a quiet inbox. Changing the count strands what
    /// the old partitions still hold: drain them first (or read them with the old count).
    pub fn partitions(mut self, partitions: u16) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// Reads the inbox in a Redis Cluster, given some of its nodes (`redis://host:port` each),
    /// instead of the single Redis given to [`Inbox::builder`].
    pub fn cluster(mut self, nodes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.cluster_nodes = nodes.into_iter().map(Into::into).collect();
        self
    }

    /// Most messages read at once (default 64).
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// How long one read waits for new messages before returning empty (default 2 s). Also how
    /// long a claim of stale messages can be delayed by a quiet inbox.
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block.max(Duration::from_millis(1));
        self
    }

    /// How long a message may stay unacknowledged with one consumer before another claims it
    /// (default 30 s). Make it at least twice your slowest handler's time, or a message can be
    /// handled twice. ([`Inbox::run`] keeps the messages of a batch waiting behind slow
    /// handlers from being claimed.)
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle.max(Duration::from_millis(1));
        self
    }

    /// How many deliveries a message gets before it moves to the dead-letter stream (default 5).
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.max_deliveries = n.max(1);
        self
    }

    /// Approximate cap on the dead-letter stream (default 10 000 entries).
    pub fn dead_letter_len(mut self, len: u64) -> Self {
        self.dead_letter_len = len.max(1);
        self
    }

    /// Where a consumer group this inbox creates starts (default [`StartFrom::Beginning`]). An
    /// existing group keeps its position.
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// How long to wait for Redis to connect or answer, on top of a read's `block` (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

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
            let client = redis::Client::open(self.url.as_str())
                .map_err(|e| InboxError::InvalidUrl(e.to_string()))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.block + self.timeout))
                .set_number_of_retries(1);
            Conn::Single(client.get_connection_manager_with_config(config).await?)
        } else {
            let client = redis::cluster::ClusterClientBuilder::new(self.cluster_nodes.clone())
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

/// A consumer of the upstream inbox, in a consumer group.
pub struct Inbox {
    conn: Conn,
    parts: Vec<Partition>,
    /// The partition read first next time, so none is favoured.
    turn: usize,
    settings: InboxBuilder,
}

/// One partition of the inbox: its stream, dead letters, and the scan of its stale messages.
struct Partition {
    stream: String,
    dead: String,
    /// Where the scan of stale pending messages goes on from.
    claim_cursor: String,
    /// When the scan of stale pending messages last went all the way round.
    last_claim: Option<Instant>,
}

/// The connection: one Redis (reconnecting by itself) or a cluster (routing by key).
enum Conn {
    Single(ConnectionManager),
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

/// A message taken from the inbox, to handle and then [`Inbox::ack`].
#[derive(Debug, Clone)]
pub struct Received {
    /// Its inbox stream id (what the sender's `ack` carried).
    pub entry: String,
    /// The inbox partition it came from.
    pub partition: u16,
    /// How many times it has been handed to a consumer, this time included.
    pub deliveries: u64,
    /// The message.
    pub message: Upstream,
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

    async fn ack_entry(&mut self, partition: u16, entry: &str) -> Result<(), InboxError> {
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
        let mut backoff = Duration::from_millis(100);
        loop {
            let batch = match self.next().await {
                Ok(batch) => batch,
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, retry_in = ?backoff, "inbox unavailable");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                Err(other) => return Err(other),
            };
            backoff = Duration::from_millis(100);
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
    async fn forget_departed(&mut self) {
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

    async fn create_group(&mut self) -> Result<(), InboxError> {
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
    async fn keep(&mut self, received: &Received) -> Result<bool, InboxError> {
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

    async fn read_new(
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

    /// Claims messages left pending by any consumer for longer than `claim_idle`. The pending
    /// list is scanned a page per call, and a full scan is started at most every half
    /// `claim_idle`, so a busy worker spends little on it.
    async fn claim_stale(&mut self, p: usize, max: usize) -> Result<Vec<Received>, InboxError> {
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
    async fn accept(
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
    async fn dead_letter(
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
