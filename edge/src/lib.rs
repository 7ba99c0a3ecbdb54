//! The Ferrocast edge: a stateless WebSocket server. It authenticates clients, keeps track of
//! which local connections are in which rooms, subscribes the bus to exactly those targets, and
//! writes each published message to every local member.
//!
//! A message's path through the crate: [`bus`] receives it, [`registry`] finds the members,
//! [`delivery`] encodes it once per encoding, [`outbox`] queues it, and [`session`] writes it.

pub mod auth;
pub mod bus;
pub mod config;
pub mod connections;
pub mod control;
pub mod dedup;
pub mod delivery;
pub mod http;
pub mod internal;
pub mod listener;
pub mod metrics;
pub mod outbox;
pub mod recovery;
pub mod registry;
pub mod session;
pub mod subscriptions;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tungstenite::protocol::WebSocketConfig;

use crate::auth::{Patterns, Verifier};
use crate::bus::{Bus, ClusterBus, MemoryBus, RedisBus, RedisSettings};
use crate::config::Config;
use crate::connections::Connections;
use crate::registry::Registry;

/// What every connection of an edge shares.
pub struct Shared<B> {
    /// The configuration.
    pub config: Config,
    /// This edge's id.
    pub node_id: String,
    /// Token verification.
    pub verifier: Verifier,
    /// Rooms anyone may join.
    pub public_rooms: Patterns,
    /// Events clients may send upstream.
    pub upstream_events: Patterns,
    /// Local membership.
    pub registry: Arc<Registry>,
    /// The bus.
    pub bus: Arc<B>,
    /// WebSocket limits and buffer sizes.
    pub ws_config: WebSocketConfig,
    /// Every open connection.
    pub connections: Arc<Connections>,
    /// Bytes of history replay the edge may hold at once (`--replay-memory`).
    pub replay_budget: Arc<tokio::sync::Semaphore>,
}

impl<B: Bus> Shared<B> {
    /// Why a new connection would not be welcomed now, if it would not: the bus is down, the
    /// edge is draining, or it holds `--max-connections` already. `/readyz` says exactly this.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.connections.is_draining() {
            Some("draining")
        } else if !self.bus.is_ready() {
            Some("bus unavailable")
        } else if self.connections.open() >= self.config.max_connections {
            Some("at --max-connections")
        } else {
            None
        }
    }
}

/// The two listeners of an edge.
pub struct Listeners {
    /// The WebSocket endpoint.
    pub public: TcpListener,
    /// Probes and metrics.
    pub internal: TcpListener,
}

/// Binds the configured addresses (loopback only in development mode) and serves until SIGTERM
/// or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (public, internal) = config.bind_addresses();
    let listeners = Listeners {
        public: TcpListener::bind(public)
            .await
            .with_context(|| format!("cannot listen on {public}"))?,
        internal: TcpListener::bind(internal)
            .await
            .with_context(|| format!("cannot listen on {internal} (--internal-listen)"))?,
    };
    serve(config, listeners, shutdown_signal()).await
}

/// Serves on `listeners` until `shutdown` completes.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // clap reads an empty environment variable as unset, which would quietly turn an empty
    // FERROCAST_JWT_SECRET into development mode: it is a configured secret, and too short.
    if config.jwt_secret.is_none()
        && std::env::var_os("FERROCAST_JWT_SECRET").is_some_and(|v| v.is_empty())
    {
        return Err(auth::AuthConfigError::WeakSecret(0).into());
    }
    let verifier = Verifier::from_config(&config)?;
    for listener in [&listeners.public, &listeners.internal] {
        let address = listener.local_addr()?;
        anyhow::ensure!(
            !verifier.is_dev_secret || address.ip().is_loopback(),
            "development mode (no JWT key configured) listens on loopback only, not {address}"
        );
    }
    if verifier.is_dev_secret {
        tracing::warn!(
            "DEVELOPMENT MODE: no JWT key configured, so the published development secret {:?} \
             verifies tokens and anyone can mint them; listening on loopback only. Set \
             --jwt-secret (32+ bytes) or --jwt-public-key-file in production.",
            config::DEV_JWT_SECRET
        );
    }
    if config.jwt_public_key_file.is_some() && config.jwt_audience.is_none() {
        tracing::warn!(
            "no --jwt-audience: any token signed by this key gets in, including those your \
             identity provider issues for other applications. Set --jwt-audience."
        );
    }
    if config.echo {
        tracing::warn!(
            "ECHO MODE: the WebSocket endpoint echoes every message with no authentication. \
             For protocol conformance tests only."
        );
    }
    if !config.upstream_events.is_empty()
        && config.redis_url.is_none()
        && config.redis_cluster_nodes.is_empty()
    {
        anyhow::bail!(
            "--upstream-events needs --redis-url or --redis-cluster-nodes: workers read upstream messages from Redis"
        );
    }
    if !ferrocast_protocol::Keys::is_valid_prefix(&config.prefix) {
        anyhow::bail!("--prefix must be non-empty printable ASCII without braces");
    }
    // Each connection is a file descriptor; container runtimes often set a low soft limit under
    // a high hard one.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open file limit"),
    }
    let registry = Registry::new();
    let settings = RedisSettings::from_config(&config);
    if !config.redis_cluster_nodes.is_empty() {
        let nodes = ferrocast_emitter::cli::node_urls(&config.redis_cluster_nodes);
        let bus = ClusterBus::start(nodes, &settings, registry.clone())?;
        return start(config, verifier, registry, bus, listeners, shutdown).await;
    }
    match &config.redis_url {
        Some(url) => {
            let bus = RedisBus::start(url, &settings, registry.clone())?;
            start(config, verifier, registry, bus, listeners, shutdown).await
        }
        None => {
            tracing::warn!(
                "SINGLE-NODE MODE: no --redis-url, so messages travel on an in-process bus and only \
                 clients of this edge see them. Set --redis-url to run several edges."
            );
            let bus = Arc::new(MemoryBus::new(
                registry.clone(),
                config.history_len,
                config.history_ttl,
            ));
            start(config, verifier, registry, bus, listeners, shutdown).await
        }
    }
}

async fn start<B: Bus>(
    config: Config,
    verifier: Verifier,
    registry: Arc<Registry>,
    bus: Arc<B>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::spawn(subscriptions::run(registry.clone(), bus.clone()));
    let node_id = config
        .node_id
        .clone()
        .unwrap_or_else(|| format!("edge-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let ws_config = WebSocketConfig::default()
        // Small: idle connections are what an edge has most of; it grows for a large frame.
        .read_buffer_size(1024)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(16 * 1024 * 1024)
        .max_message_size(Some(config.max_frame_size))
        .max_frame_size(Some(config.max_frame_size));
    if !config.upstream_events.is_empty() {
        tokio::spawn(watch_inbox(bus.clone()));
    }
    let connections = Arc::new(Connections::default());
    tokio::spawn(connections::sweep_forever(
        connections.clone(),
        config.heartbeat,
        config.idle_timeout,
        config.jwt_leeway,
    ));
    if config.allowed_origins.is_empty() {
        tracing::warn!(
            "no --allowed-origins: pages on any site may open WebSockets to this edge. \
             List your front ends' origins in production."
        );
    }
    let replay_memory = config.replay_memory;
    let shared = Arc::new(Shared {
        public_rooms: Patterns::from(config.public_rooms.clone()),
        upstream_events: Patterns::from(config.upstream_events.clone()),
        config,
        node_id,
        verifier,
        registry,
        bus,
        ws_config,
        connections: connections.clone(),
        replay_budget: Arc::new(tokio::sync::Semaphore::new(
            // At least a page, or no replay could ever start.
            replay_memory.clamp(bus::replay::PAGE_BYTES, tokio::sync::Semaphore::MAX_PERMITS),
        )),
    });
    tracing::info!(
        listen = %listeners.public.local_addr()?,
        internal = %listeners.internal.local_addr()?,
        node = %shared.node_id,
        path = %shared.config.ws_path,
        "edge listening"
    );
    // The listeners keep answering during the drain (probes see 503, upgrades are refused).
    let (stop_listening, stopped) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let serving = tokio::spawn(listener::serve(shared.clone(), listeners.public, stopped()));
    let probing = tokio::spawn(internal::serve(
        shared.clone(),
        listeners.internal,
        stopped(),
    ));
    shutdown.await;
    tracing::info!("shutdown requested: draining (a second signal exits at once)");
    tokio::spawn(async {
        shutdown_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
    connections.drain(shared.config.drain_timeout).await;
    let _ = stop_listening.send(true);
    let _ = serving.await;
    let _ = probing.await;
    tracing::info!("drained; exiting");
    Ok(())
}

/// How often the upstream inbox's size and lag are read for /metrics.
const INBOX_WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps the inbox metrics current: how much the streams hold, and how far behind each consumer
/// group is (what makes `send` answer UNAVAILABLE once the inbox is full).
async fn watch_inbox<B: Bus>(bus: Arc<B>) {
    let mut interval = tokio::time::interval(INBOX_WATCH_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match bus.inbox_stats().await {
            Ok(Some(stats)) => {
                let m = metrics::metrics();
                m.inbox_entries
                    .set(i64::try_from(stats.entries).unwrap_or(i64::MAX));
                m.inbox_lag.clear();
                for (group, lag) in stats.lag {
                    m.inbox_lag
                        .get_or_create(&metrics::GroupLabel { group })
                        .set(i64::try_from(lag).unwrap_or(i64::MAX));
                }
            }
            Ok(None) => return,
            Err(error) => tracing::debug!(%error, "cannot read the inbox's lag"),
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
