//! Where Redis is: one address, a Sentinel group or a Cluster, and the certificates for TLS to
//! it. Absent, the edge runs on its in-process bus.

use clap::Args;

/// Redis connection settings.
#[derive(Debug, Clone, Args)]
pub struct RedisConfig {
    /// Redis to receive messages through (e.g. redis://127.0.0.1:6379, rediss://host:6380 for TLS).
    /// With --redis-sentinels, only its scheme and credentials are used, for the master the
    /// sentinels name. Absent (and no sentinels or Cluster): single-node mode with an in-process
    /// bus, for development and trying it out.
    #[arg(
        id = "redis_url",
        long = "redis-url",
        value_name = "URL",
        env = "FERROCAST_REDIS_URL",
        hide_env_values = true
    )]
    pub url: Option<String>,

    /// A Redis Cluster to use instead of --redis-url: some of its nodes, comma-separated
    /// (host:port,host:port,...; the others are discovered). Live messages then travel by
    /// sharded pub/sub (SSUBSCRIBE on each target's master).
    #[arg(
        id = "redis_cluster_nodes",
        long = "redis-cluster-nodes",
        value_name = "HOST:PORT,...",
        env = "FERROCAST_REDIS_CLUSTER_NODES",
        hide_env_values = true,
        value_delimiter = ',',
        conflicts_with = "redis_url"
    )]
    pub cluster_nodes: Vec<String>,

    /// TLS to Redis, for rediss:// URLs and Cluster nodes.
    #[command(flatten)]
    pub tls: ferrocast_redis::TlsFiles,

    /// Redis behind Sentinel.
    #[command(flatten)]
    pub sentinel: ferrocast_redis::sentinel::SentinelArgs,
}

impl RedisConfig {
    /// Whether Redis is configured (an address, a Sentinel group or a Cluster): otherwise the
    /// edge runs on its in-process bus.
    pub fn is_configured(&self) -> bool {
        self.url.is_some() || !self.cluster_nodes.is_empty() || !self.sentinel.sentinels.is_empty()
    }
}
