//! How an [`Inbox`] is configured and connected.

use std::time::Duration;

use super::StartFrom;

/// Settings for an [`Inbox`](super::Inbox); [`Inbox::builder`](super::Inbox::builder) starts
/// from the defaults.
#[derive(Debug, Clone)]
pub struct InboxBuilder {
    pub(super) url: String,
    pub(super) cluster_nodes: Vec<String>,
    pub(super) partitions: u16,
    pub(super) prefix: String,
    pub(super) group: String,
    pub(super) consumer: String,
    pub(super) batch: usize,
    pub(super) block: Duration,
    pub(super) claim_idle: Duration,
    pub(super) max_deliveries: u64,
    pub(super) dead_letter_len: u64,
    pub(super) start: StartFrom,
    pub(super) timeout: Duration,
    pub(super) tls: ferrocast_redis::Tls,
    pub(super) sentinels: Option<std::sync::Arc<ferrocast_redis::sentinel::Sentinels>>,
}

impl InboxBuilder {
    /// Certificates for `rediss://` URLs (default: the system's roots, no client certificate).
    /// Read them with [`TlsFiles::load`](ferrocast_redis::TlsFiles::load).
    pub fn tls(mut self, tls: ferrocast_redis::Tls) -> Self {
        self.tls = tls;
        self
    }

    /// Reads the inbox in the master a Sentinel group names (asked again whenever the
    /// connection breaks, and followed when the sentinels name another), instead of the Redis
    /// given to [`Inbox::builder`](super::Inbox::builder), whose URL then gives only the scheme
    /// and credentials. Make the group with
    /// [`SentinelArgs::sentinels`](ferrocast_redis::sentinel::SentinelArgs::sentinels).
    pub fn sentinels(
        mut self,
        sentinels: std::sync::Arc<ferrocast_redis::sentinel::Sentinels>,
    ) -> Self {
        self.sentinels = Some(sentinels);
        self
    }

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
    /// instead of the single Redis given to [`Inbox::builder`](super::Inbox::builder).
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
    /// handled twice. ([`Inbox::run`](super::Inbox::run) keeps the messages of a batch waiting behind slow
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
}
