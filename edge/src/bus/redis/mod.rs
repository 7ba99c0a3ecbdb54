//! The Redis buses: one Redis (`single`) or a Redis Cluster (`cluster`), which differ only in
//! what Cluster really changes: how they subscribe, and how they get a connection and notice it
//! broke. What they share is in `shared` (the keys, the emitter for the edge's own publishes,
//! the inbox writer, history reads) and `positions` (each subscribed target's place in its
//! history, and catching up from it after a reconnect); presence records are the emitter's
//! (`presence`).

pub mod cluster;
mod nodes;
pub mod positions;
mod presence;
pub mod shared;
pub mod single;

pub use cluster::ClusterBus;
pub use single::RedisBus;

use std::time::Duration;

use ferrocast_protocol::Keys;

use super::BusError;

/// Redis could not answer: the client may retry.
pub fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// How long the Redis buses wait for Redis to answer.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);
/// How often the Redis buses ping Redis to decide whether it is reachable.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(1);
/// The Redis buses' waits between attempts to connect: 100 ms doubling up to 500 ms. Short,
/// because the edge is not ready meanwhile: it must be ready again within a second of Redis
/// answering. A refused connection attempt costs Redis (and the edge) next to nothing.
pub(crate) fn reconnect_backoff() -> ferrocast_redis::Backoff {
    ferrocast_redis::Backoff::new(Duration::from_millis(100), Duration::from_millis(500))
}

/// What both Redis buses (one Redis, or a cluster) are configured with.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Key prefix shared with the emitters.
    pub prefix: String,
    /// History length of the edge's own publishes.
    pub history_len: u64,
    /// How long histories live after their last publish.
    pub history_ttl: Duration,
    /// Most entries each upstream inbox stream holds.
    pub inbox_max_len: u64,
    /// Partitions of the upstream inbox.
    pub inbox_partitions: u16,
    /// Certificates for `rediss://`.
    pub tls: ferrocast_redis::Tls,
}

impl RedisSettings {
    /// The settings from the edge's configuration, its certificate files read.
    pub fn from_config(
        config: &crate::config::Config,
    ) -> Result<RedisSettings, ferrocast_redis::tls::TlsError> {
        Ok(RedisSettings {
            prefix: config.prefix.clone(),
            history_len: config.history_len,
            history_ttl: config.history_ttl,
            inbox_max_len: config.inbox_max_len,
            inbox_partitions: config.inbox_partitions,
            tls: config.redis.tls.load()?,
        })
    }

    /// The emitter for the edge's own publishes, from `builder` (one Redis or a cluster).
    fn emitter(
        &self,
        builder: ferrocast_emitter::EmitterBuilder,
    ) -> Result<ferrocast_emitter::Emitter, BusError> {
        builder
            .tls(self.tls.clone())
            .prefix(&self.prefix)
            .history_len(self.history_len)
            .history_ttl(self.history_ttl)
            .connect_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .build()
            .map_err(|e| BusError::Refused(e.to_string()))
    }

    /// Where client `send`s go.
    fn inbox(&self) -> ferrocast_emitter::inbox::InboxWriter {
        ferrocast_emitter::inbox::InboxWriter::new(
            Keys::new(&self.prefix),
            self.inbox_max_len,
            self.inbox_partitions,
        )
    }
}
