//! Edge configuration: every flag has an environment variable, and no flag is required.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ferrocast_protocol::script;
use ferrocast_redis::settings::parse_duration;

mod choices;
mod event_rate;
pub mod file;
mod hooks;
pub mod patterns;
mod presence;
mod redis;

pub use choices::{Compression, JwtAlg, LogFormat};
pub use event_rate::{EventRate, parse_event_rate};
pub use hooks::{HookConfig, LifecycleKind};
pub use presence::PresenceConfig;
pub use redis::RedisConfig;

/// The JWT secret of development mode (no key configured). It is published, so anyone can mint
/// tokens with it: in development mode the edge listens on loopback only.
pub const DEV_JWT_SECRET: &str = "ferrocast-dev-secret";

/// Shortest HS256 secret accepted, in bytes: RFC 7518 asks for a key at least as long as the hash.
pub const MIN_SECRET_LEN: usize = 32;

/// The HTTP API key of development mode (no JWT key and no --api-key configured). Published,
/// like [`DEV_JWT_SECRET`]: development mode listens on loopback only.
pub const DEV_API_KEY: &str = "ferrocast-dev-api-key";

/// Ferrocast edge: a WebSocket server that authenticates clients with JWTs, lets them join rooms
/// and delivers what workers publish through Redis. With no flags it runs as a single node with
/// an in-process bus and a development JWT secret: fine for trying it out, not for production.
#[derive(Debug, Clone, Parser)]
#[command(name = "edge", version)]
pub struct Config {
    /// Public address: the WebSocket path only. In development mode (no JWT key configured) a
    /// non-loopback address is replaced by loopback on the same port.
    #[arg(long, env = "FERROCAST_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Internal address: /healthz, /readyz and /metrics, apart from the public port so that no
    /// client load can fail a probe. Never route a public ingress to it. Loopback only in
    /// development mode.
    #[arg(
        long,
        env = "FERROCAST_INTERNAL_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub internal_listen: SocketAddr,

    /// Path of the WebSocket endpoint.
    #[arg(long, env = "FERROCAST_WS_PATH", default_value = "/ws")]
    pub ws_path: String,

    /// Where Redis is: an address, a Sentinel group or a Cluster, and TLS to it.
    #[command(flatten)]
    pub redis: RedisConfig,

    /// Key prefix shared with the emitters.
    #[arg(long, env = "FERROCAST_PREFIX", default_value = "fc")]
    pub prefix: String,

    /// HS256 secret (the raw bytes of this string), at least 32 bytes: a shorter or empty one
    /// is refused at start. Without it and without a public key the edge runs in development
    /// mode: a published secret, loopback listeners only, and a warning.
    #[arg(
        long,
        env = "FERROCAST_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_public_key_file"
    )]
    pub jwt_secret: Option<String>,

    /// PEM public key for RS256, ES256 or EdDSA tokens (set --jwt-alg).
    #[arg(long, env = "FERROCAST_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// Token algorithm. Fixed here: a token's own `alg` header never chooses it.
    #[arg(long, env = "FERROCAST_JWT_ALG", value_enum, default_value_t = JwtAlg::Hs256)]
    pub jwt_alg: JwtAlg,

    /// Required `iss` claim, if set.
    #[arg(long, env = "FERROCAST_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim, if set. Set it with a public key: without it, any token your
    /// identity provider issues for other applications gets in too (warned at start).
    #[arg(long, env = "FERROCAST_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew allowed on a token's `exp` and `nbf`, at authentication and when closing a
    /// connection whose token expired (4003).
    #[arg(long, env = "FERROCAST_JWT_LEEWAY", default_value = "30s", value_parser = parse_duration)]
    pub jwt_leeway: Duration,

    /// Room patterns anyone may join, comma-separated: exact names, or prefixes ending in `*`.
    /// Every other room needs a matching `rooms` claim in the token.
    #[arg(long, env = "FERROCAST_PUBLIC_ROOMS", value_delimiter = ',')]
    pub public_rooms: Vec<String>,

    /// This edge's id, reported to clients and workers (default: random).
    #[arg(long, env = "FERROCAST_NODE_ID")]
    pub node_id: Option<String>,

    /// How long a connection may take to send its `auth` frame (when not authenticated by header).
    #[arg(long, env = "FERROCAST_AUTH_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub auth_timeout: Duration,

    /// How long a client may take to send its HTTP upgrade request.
    #[arg(long, env = "FERROCAST_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Server ping interval (pings go out from a sweep that runs once a second), announced to
    /// clients in `welcome`.
    #[arg(long, env = "FERROCAST_HEARTBEAT", default_value = "25s", value_parser = parse_duration)]
    pub heartbeat: Duration,

    /// A connection from which nothing (frame or pong) arrived for this long is closed (4002).
    #[arg(long, env = "FERROCAST_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Inbound frames per second allowed per connection (token bucket refill rate). Excess
    /// frames get RATE_LIMITED; a client refused this many times in a row is closed (4008).
    #[arg(long, env = "FERROCAST_RATE", default_value_t = 20.0)]
    pub rate: f64,

    /// Inbound frames a connection may send in a burst (token bucket size).
    #[arg(long, env = "FERROCAST_BURST", default_value_t = 50)]
    pub burst: u32,

    /// Most WebSocket connections at once; beyond it upgrades get HTTP 503 (and /readyz too).
    #[arg(long, env = "FERROCAST_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,

    /// Most connections at once that have not authenticated yet (from TCP accept to `welcome`);
    /// beyond it new connections get HTTP 503.
    #[arg(long, env = "FERROCAST_MAX_UNAUTHENTICATED", default_value_t = 1_000)]
    pub max_unauthenticated: usize,

    /// Most unauthenticated connections at once from one peer IP address (IPv6: one /64, what
    /// a host usually holds; an IPv4 client of a dual-stack listener counts as its IPv4
    /// address), so one host cannot hold every place under --max-unauthenticated; beyond it new
    /// connections get HTTP 503. Default: a quarter of --max-unauthenticated. It must be below
    /// --max-unauthenticated; 0 turns the cap off (only behind a proxy whose address every
    /// connection shares).
    #[arg(long, env = "FERROCAST_MAX_PENDING_PER_IP")]
    pub max_pending_per_ip: Option<usize>,

    /// Browser origins allowed to open WebSockets, comma-separated (e.g.
    /// `https://app.example.com`), or `*`. Upgrades from other origins get HTTP 403; requests
    /// without an Origin header (non-browser clients) are allowed. Unset: any origin, with a
    /// warning in the log.
    #[arg(long, env = "FERROCAST_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Bytes queued for one connection before it counts as a slow consumer and is closed (4009).
    #[arg(long, env = "FERROCAST_OUTBOUND_QUEUE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub outbound_queue_bytes: usize,

    /// On SIGTERM or SIGINT: how long to spread closing (1001) every connection over before
    /// exiting. A second signal exits at once.
    #[arg(long, env = "FERROCAST_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Most rooms one connection may be in.
    #[arg(long, env = "FERROCAST_MAX_ROOMS", default_value_t = 100)]
    pub max_rooms: usize,

    /// Every client must set payload encryption up (PROTOCOL.md part E) in its first exchange:
    /// `encrypt` in its `auth` frame, or an `encrypt` frame first after a header
    /// authentication; otherwise it is closed with 4004. Without it, only tokens with the claim
    /// `"enc":true` must, and other clients may.
    #[arg(long, env = "FERROCAST_REQUIRE_ENCRYPTION")]
    pub require_encryption: bool,

    /// Largest inbound WebSocket message, in bytes; larger ones close the connection with 1009.
    #[arg(long, env = "FERROCAST_MAX_FRAME_SIZE", default_value_t = 64 * 1024)]
    pub max_frame_size: usize,

    /// Frames queued for one connection before it counts as a slow consumer and is closed (4009).
    #[arg(long, env = "FERROCAST_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,

    /// Events clients may `send` upstream to workers, comma-separated: exact names, or prefixes
    /// ending in `*` (e.g. chat.*). Unset: upstream is off and every `send` gets FORBIDDEN.
    /// Needs --redis-url or --redis-cluster-nodes: workers read the inbox stream in Redis.
    #[arg(long, env = "FERROCAST_UPSTREAM_EVENTS", value_delimiter = ',')]
    pub upstream_events: Vec<String>,

    /// `send` frames one connection may send per second (token bucket refill rate); beyond it
    /// RATE_LIMITED with `retry_after`.
    #[arg(long, env = "FERROCAST_UPSTREAM_RATE", default_value_t = 10.0)]
    pub upstream_rate: f64,

    /// `send` frames one connection may send in a burst.
    #[arg(long, env = "FERROCAST_UPSTREAM_BURST", default_value_t = 20)]
    pub upstream_burst: u32,

    /// Bytes of `send` data one connection may send per second (bursts of a second's worth, or
    /// of one --max-data-size message if larger); beyond it RATE_LIMITED with `retry_after`.
    #[arg(long, env = "FERROCAST_UPSTREAM_BYTES_RATE", default_value_t = 64 * 1024)]
    pub upstream_bytes_rate: usize,

    /// Bytes of `data` per second one connection may `publish` (what it writes into room
    /// histories, kept for --history-ttl); over it: RATE_LIMITED with `retry_after`. A message of
    /// --max-data-size always passes once the quota has refilled.
    #[arg(long, env = "FERROCAST_PUBLISH_BYTES_RATE", default_value_t = 64 * 1024)]
    pub publish_bytes_rate: usize,

    /// A per-event rate limit on `publish` and `send` frames, per connection:
    /// `PATTERN=N/PERIOD[,BURST]` (e.g. `chat.*=5/1s,10`: 5 per second, bursts of 10; BURST
    /// defaults to N). PATTERN is an event name or a prefix ending in `*`. Repeatable (in the
    /// environment variable, separate rules with `;`); an event takes the first rule it
    /// matches. Beyond it RATE_LIMITED with `retry_after`; a client that keeps going after
    /// BURST refusals in a row is closed (4008). Other events are not affected.
    #[arg(long = "event-rate", env = "FERROCAST_EVENT_RATE", value_delimiter = ';', value_parser = parse_event_rate)]
    pub event_rates: Vec<EventRate>,

    /// Partitions of the upstream inbox (`P:{inbox:0}` ..., each in its own Redis Cluster
    /// slot, so upstream traffic can spread over shards); 1 keeps the single stream `P:{inbox}`. A client's sends
    /// always go to the same partition, in order. Workers must read as many.
    #[arg(long, env = "FERROCAST_INBOX_PARTITIONS", default_value_t = 1)]
    pub inbox_partitions: u16,

    /// Most entries each upstream inbox stream (partition) holds. At the cap, entries every
    /// consumer group has read and acknowledged are trimmed; unread ones never are: a `send`
    /// then gets UNAVAILABLE with `retry_after` until the workers catch up (ferrocast_inbox_lag).
    #[arg(long, env = "FERROCAST_INBOX_MAX_LEN", default_value_t = 100_000)]
    pub inbox_max_len: u64,

    /// Largest `data` of a client `publish` or `send`, in bytes of JSON text; larger ones get
    /// TOO_LARGE. By default as large as a frame may be, so only --max-frame-size applies.
    #[arg(long, env = "FERROCAST_MAX_DATA_SIZE", default_value_t = 64 * 1024)]
    pub max_data_size: usize,

    /// Bytes of history replay (`since` on join, auth or resume; `history` pages and `rewind`)
    /// the edge holds at once, across all connections; replays beyond it wait their turn. Each
    /// holds one page (256 KiB, or one larger message) at a time.
    #[arg(long, env = "FERROCAST_REPLAY_MEMORY", default_value_t = 64 * 1024 * 1024)]
    pub replay_memory: usize,

    /// permessage-deflate (RFC 7692) for clients that offer it (browsers, Node `ws` and Python
    /// `websockets` do), with no context takeover on either side: `on` or `off`.
    #[arg(long, env = "FERROCAST_COMPRESSION", default_value = "on", value_enum)]
    pub compression: Compression,

    /// Outbound messages at least this large go out compressed to clients that negotiated it
    /// (each compressed once per edge, shared by all its recipients); smaller ones gain little.
    #[arg(long, env = "FERROCAST_COMPRESSION_MIN_BYTES", default_value_t = 512)]
    pub compression_min_bytes: usize,

    /// Back-end hooks: --connect-hook, --join-hook, --upstream-lifecycle and their settings.
    #[command(flatten)]
    pub hooks: HookConfig,

    /// Presence: --presence-rooms, --presence-events, --presence-ttl, --presence-max.
    #[command(flatten)]
    pub presence: PresenceConfig,

    /// Keys of the HTTP API on the internal listener (`Authorization: Bearer KEY` or
    /// `X-API-Key: KEY`), comma-separated so a new key can be rolled out before the old one is
    /// dropped. Unset: the API is off, except in development mode, where it takes
    /// the published key `ferrocast-dev-api-key`.
    #[arg(
        long = "api-key",
        env = "FERROCAST_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,

    /// Messages kept per target by the in-process bus (single-node mode).
    #[arg(long, env = "FERROCAST_HISTORY_LEN", default_value_t = script::DEFAULT_HISTORY_LEN)]
    pub history_len: u64,

    /// How long the in-process bus keeps a target's history after its last publish.
    #[arg(long, env = "FERROCAST_HISTORY_TTL", default_value = "10m", value_parser = parse_duration)]
    pub history_ttl: Duration,

    /// Conformance-testing mode: the WebSocket endpoint skips authentication and echoes every
    /// message back, with 16 MiB message limits (for the Autobahn test suite). Never in
    /// production.
    #[arg(long, env = "FERROCAST_ECHO")]
    pub echo: bool,

    /// OTLP/HTTP collector to export traces to (e.g. http://otel-collector:4318; `/v1/traces`
    /// is added). Unset: no traces. The OTEL_BSP_* variables tune the batching.
    #[arg(long, env = "FERROCAST_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Log format.
    #[arg(long, env = "FERROCAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Log filter (tracing env-filter syntax, e.g. `info` or `ferrocast_edge=debug`).
    #[arg(long, env = "FERROCAST_LOG", default_value = "info")]
    pub log: String,

    /// A TOML file of settings, one top-level key per flag (`max-connections = 5000`). A flag
    /// beats its environment variable, which beats the file, which beats the default. Unknown
    /// keys are refused, with their line.
    #[arg(long = "config", env = "FERROCAST_CONFIG", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

impl Config {
    /// The cap on unauthenticated connections per peer address (0: none): as configured, or a
    /// quarter of the edge's cap, so one address never holds every place.
    pub fn pending_per_ip(&self) -> usize {
        self.max_pending_per_ip
            .unwrap_or((self.max_unauthenticated / 4).max(1))
    }

    /// Whether no JWT key and no connect hook is configured: development mode, with the
    /// published secret.
    pub fn is_development(&self) -> bool {
        self.jwt_secret.is_none()
            && self.jwt_public_key_file.is_none()
            && self.hooks.connect_hook.is_none()
    }

    /// The keys the HTTP API accepts: the configured ones, or the development key in
    /// development mode; none (the API is off) otherwise.
    pub fn api_keys(&self) -> Vec<String> {
        let keys: Vec<String> = self
            .api_keys
            .iter()
            .filter(|k| !k.is_empty())
            .cloned()
            .collect();
        if keys.is_empty() && self.is_development() {
            vec![DEV_API_KEY.to_owned()]
        } else {
            keys
        }
    }

    /// The public and internal addresses to bind: as configured, except that development mode
    /// never listens beyond loopback, because anyone can mint tokens with its secret.
    pub fn bind_addresses(&self) -> (SocketAddr, SocketAddr) {
        if self.is_development() {
            (loopback(self.listen), loopback(self.internal_listen))
        } else {
            (self.listen, self.internal_listen)
        }
    }
}

/// `addr` if it is a loopback address, else loopback (of the same IP version) on its port.
pub fn loopback(addr: SocketAddr) -> SocketAddr {
    use std::net::{Ipv4Addr, Ipv6Addr};
    match addr.ip() {
        ip if ip.is_loopback() => addr,
        std::net::IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port())),
        std::net::IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_mode_binds_loopback_only() {
        let dev = Config::parse_from(["edge"]);
        assert!(dev.is_development());
        let (public, internal) = dev.bind_addresses();
        assert_eq!(public, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(internal, "127.0.0.1:9090".parse().unwrap());
        let v6 = Config::parse_from(["edge", "--listen", "[::]:80"]);
        assert_eq!(v6.bind_addresses().0, "[::1]:80".parse().unwrap());

        let secret = "x".repeat(MIN_SECRET_LEN);
        let production = Config::parse_from(["edge", "--jwt-secret", &secret]);
        assert!(!production.is_development());
        assert_eq!(
            production.bind_addresses().0,
            "0.0.0.0:8080".parse().unwrap()
        );
    }
}
