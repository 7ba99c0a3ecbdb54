//! How an [`Emitter`] is configured and connected.

use std::sync::Arc;
use std::time::Duration;

use ferrocast_protocol::keys::Keys;
use ferrocast_protocol::names::NameError;
use ferrocast_protocol::script::PUBLISH_SCRIPT;

use crate::error::EmitError;
use ferrocast_redis::endpoint::Endpoint;
use ferrocast_redis::pool::Manager;

use super::{Backend, Emitter, Inner};

/// Settings for an [`Emitter`]; [`Emitter::builder`] starts from the defaults.
#[derive(Debug, Clone)]
pub struct EmitterBuilder {
    pub(super) url: String,
    pub(super) cluster_nodes: Vec<String>,
    pub(super) prefix: String,
    pub(super) history_len: u64,
    pub(super) history_ttl: Duration,
    pub(super) pool_size: u32,
    pub(super) connect_timeout: Duration,
    pub(super) response_timeout: Duration,
    pub(super) retries: u32,
    pub(super) retry_backoff: Duration,
    pub(super) tls: ferrocast_redis::Tls,
    pub(super) sentinels: Option<std::sync::Arc<ferrocast_redis::sentinel::Sentinels>>,
}

impl EmitterBuilder {
    /// How often a publish that found Redis unreachable is tried again (default 2), and the
    /// first wait before retrying (default 100 ms, doubling each time, at most 2 s). A publish
    /// then fails with [`EmitError::Unavailable`] after at most `retries + 1` attempts, each
    /// bounded by the connect and response timeouts.
    pub fn retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.retry_backoff = backoff;
        self
    }

    /// Certificates for `rediss://` URLs (default: the system's roots, no client certificate).
    /// Read them with [`TlsFiles::load`](ferrocast_redis::TlsFiles::load).
    pub fn tls(mut self, tls: ferrocast_redis::Tls) -> Self {
        self.tls = tls;
        self
    }

    /// Publishes to the master a Sentinel group names (asked again whenever a connection
    /// breaks, so a failover is followed) instead of the URL's address; the URL's scheme and
    /// credentials still apply to the master. Make the group with
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

    /// Approximate number of messages kept per target for resuming clients (default 1000).
    pub fn history_len(mut self, len: u64) -> Self {
        self.history_len = len;
        self
    }

    /// How long a target's history lives after its last publish (default 10 minutes).
    pub fn history_ttl(mut self, ttl: Duration) -> Self {
        self.history_ttl = ttl;
        self
    }

    /// Most pooled Redis connections (default 4; each carries many requests at once).
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long to wait for a Redis connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for Redis to answer a command (default 5 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connects, and loads the publish script so the first publish needs no extra round trip.
    /// Fails with [`EmitError::Unavailable`] if Redis cannot be reached now.
    pub async fn connect(self) -> Result<Emitter, EmitError> {
        let emitter = self.build()?;
        emitter
            .retrying(|| async {
                let inner = &emitter.inner;
                match &inner.backend {
                    Backend::Single(pool) => {
                        let mut conn = pool.dedicated_connection().await?;
                        let loaded = inner.script.prepare_invoke().load_async(conn.get()).await;
                        conn.check(loaded)?;
                        // A full pool refuses the connection; it is then simply dropped.
                        let _ = pool.add(conn);
                    }
                    // Each master loads the script on its first use (EVALSHA falls back).
                    Backend::Cluster(conn) => {
                        redis::cmd("PING")
                            .query_async::<()>(&mut conn.clone())
                            .await?;
                    }
                }
                Ok(())
            })
            .await?;
        Ok(emitter)
    }

    /// Builds the emitter without connecting: connections are made on first use, so this only
    /// fails on bad settings. For long-running processes that must start while Redis is down.
    pub fn build(self) -> Result<Emitter, EmitError> {
        if !Keys::is_valid_prefix(&self.prefix) {
            return Err(EmitError::InvalidName(NameError::Character {
                what: "prefix",
            }));
        }
        let backend = if self.cluster_nodes.is_empty() {
            let endpoint = match &self.sentinels {
                Some(sentinels) => Endpoint::Sentinel(sentinels.clone()),
                None => Endpoint::Fixed(Box::new(
                    ferrocast_redis::clients::client(&self.url, &self.tls)
                        .map_err(|e| EmitError::InvalidUrl(e.to_string()))?,
                )),
            };
            Backend::Single(
                bb8::Pool::builder()
                    .max_size(self.pool_size)
                    // Behind Sentinel only: a connection to a demoted master is not handed out.
                    .test_on_check_out(endpoint.checks_role())
                    // Our own retry loop decides how often to try; bb8 would retry silently
                    // until its timeout.
                    .retry_connection(false)
                    .connection_timeout(self.connect_timeout)
                    .build_unchecked(Manager::new(
                        endpoint,
                        self.connect_timeout,
                        self.response_timeout,
                    )),
            )
        } else {
            // One cluster connection: it keeps a multiplexed connection per node, routes each
            // call to its slot's master and follows MOVED redirections itself.
            let client = ferrocast_redis::clients::cluster_builder(&self.cluster_nodes, &self.tls)
                .map_err(|e| EmitError::InvalidUrl(e.to_string()))?
                .connection_timeout(self.connect_timeout)
                .response_timeout(self.response_timeout)
                .retries(2)
                .build()
                .map_err(|e| EmitError::InvalidUrl(e.to_string()))?;
            Backend::Cluster(
                client.get_pending_async_connection_with_config(
                    redis::cluster::ClusterConfig::new()
                        .set_connection_timeout(self.connect_timeout)
                        .set_response_timeout(self.response_timeout),
                ),
            )
        };
        Ok(Emitter {
            inner: Arc::new(Inner {
                backend,
                keys: Keys::new(&self.prefix),
                script: redis::Script::new(PUBLISH_SCRIPT),
                history_len: self.history_len.max(1),
                history_ttl_ms: self.history_ttl.as_millis().clamp(1, u64::MAX as u128) as u64,
                retries: self.retries,
                retry_backoff: self.retry_backoff,
            }),
        })
    }
}
