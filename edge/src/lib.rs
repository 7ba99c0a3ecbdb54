//! The Ferrocast edge: a stateless WebSocket server. It authenticates clients, keeps track of
//! which local connections are in which rooms, subscribes the bus to exactly those targets, and
//! writes each published message to every local member.
//!
//! A message's path through the crate: [`bus`] receives it, [`registry`] finds the members,
//! [`delivery`] encodes it once per encoding, [`outbox`] queues it, and [`session`] writes it.

pub mod auth;
pub mod bus;
pub mod config;
pub mod dedup;
pub mod delivery;
pub mod http;
pub mod listener;
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
use crate::bus::{Bus, MemoryBus, RedisBus};
use crate::config::Config;
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
    /// Local membership.
    pub registry: Arc<Registry>,
    /// The bus.
    pub bus: Arc<B>,
    /// WebSocket limits and buffer sizes.
    pub ws_config: WebSocketConfig,
}

/// Binds the configured address and serves until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    serve(config, listener, shutdown_signal()).await
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let verifier = Verifier::from_config(&config)?;
    if verifier.is_dev_secret {
        tracing::warn!(
            "NO JWT KEY CONFIGURED: using the public development secret {:?}; anyone can mint tokens. \
             Set --jwt-secret or --jwt-public-key-file in production.",
            config::DEV_JWT_SECRET
        );
    }
    if !ferrocast_protocol::Keys::is_valid_prefix(&config.prefix) {
        anyhow::bail!("--prefix must be non-empty printable ASCII without braces");
    }
    let registry = Registry::new();
    match &config.redis_url {
        Some(url) => {
            let bus = RedisBus::start(
                url,
                &config.prefix,
                registry.clone(),
                config.history_len,
                config.history_ttl,
            )?;
            start(config, verifier, registry, bus, listener, shutdown).await
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
            start(config, verifier, registry, bus, listener, shutdown).await
        }
    }
}

async fn start<B: Bus>(
    config: Config,
    verifier: Verifier,
    registry: Arc<Registry>,
    bus: Arc<B>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::spawn(subscriptions::run(registry.clone(), bus.clone()));
    let node_id = config
        .node_id
        .clone()
        .unwrap_or_else(|| format!("edge-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(16 * 1024 * 1024)
        .max_message_size(Some(config.max_frame_size))
        .max_frame_size(Some(config.max_frame_size));
    let shared = Arc::new(Shared {
        public_rooms: Patterns::from(config.public_rooms.clone()),
        config,
        node_id,
        verifier,
        registry,
        bus,
        ws_config,
    });
    tracing::info!(
        listen = %listener.local_addr()?,
        node = %shared.node_id,
        path = %shared.config.ws_path,
        "edge listening"
    );
    listener::serve(shared, listener, shutdown).await;
    tracing::info!("shutting down");
    Ok(())
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
