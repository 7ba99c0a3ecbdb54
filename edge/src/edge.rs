//! A running edge as one value: [`Edge::start`] wires the parts together and starts their tasks,
//! [`Edge::stop`] drains the clients and stops every task in order. So a whole edge can be
//! started and stopped inside a test, and the binary is a signal handler around the two.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrocast_protocol::Upstream;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::bus::{self, Bus, ClusterBus, MemoryBus, RedisBus, RedisSettings};
use crate::config::Config;
use crate::fanout::feed::Feed;
use crate::fanout::registry::Registry;
use crate::fanout::subscriptions;
use crate::hooks::Hooks;
use crate::net::{internal, listener};
use crate::presence::Presence;
use crate::session::Shared;
use crate::session::auth::{Patterns, Verifier};
use crate::session::connections::{self, Connections};

/// The two listeners of an edge.
pub struct Listeners {
    /// The WebSocket endpoint.
    pub public: TcpListener,
    /// Probes and metrics.
    pub internal: TcpListener,
}

impl Listeners {
    /// Binds the configured addresses (loopback only in development mode).
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let (public, internal) = config.bind_addresses();
        Ok(Listeners {
            public: TcpListener::bind(public)
                .await
                .with_context(|| format!("cannot listen on {public}"))?,
            internal: TcpListener::bind(internal)
                .await
                .with_context(|| format!("cannot listen on {internal} (--internal-listen)"))?,
        })
    }
}

/// How long a stopping edge goes on handing Redis the lifecycle events and presence changes its
/// drain queued (with `--drain-timeout` and its 5 s grace, inside Kubernetes' default 45 s grace
/// period).
const FINISH_WITHIN: Duration = Duration::from_secs(5);

/// A running edge, owning its tasks.
pub struct Edge {
    public: SocketAddr,
    internal: SocketAddr,
    connections: Arc<Connections>,
    drain_timeout: Duration,
    /// Tells the listeners to stop accepting (after the drain: probes answer until then).
    stop_listening: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    /// Tasks that hand Redis what sessions queued (lifecycle events, presence changes): stopped
    /// with the listeners, after which each hands over what the drain queued.
    finishing: Vec<JoinHandle<()>>,
    /// Tasks that run as long as the edge: subscriptions, the sweep, the inbox watch.
    background: JoinSet<()>,
    /// Stops the bus's own tasks (its connection to Redis).
    stop_bus: Box<dyn FnOnce() + Send>,
}

impl Edge {
    /// Checks `config`, connects the bus (in the background: the edge reports not ready until it
    /// is up) and serves on `listeners`.
    pub async fn start(config: Config, listeners: Listeners) -> anyhow::Result<Edge> {
        let verifier = crate::preflight::check(&config, [&listeners.public, &listeners.internal])?;
        // Each connection is a file descriptor; container runtimes often set a low soft limit
        // under a high hard one.
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => tracing::info!(limit, "open file limit"),
            Err(error) => tracing::warn!(%error, "cannot raise the open file limit"),
        }
        let registry = Registry::new();
        let feed = Feed::new(registry.clone());
        let settings = RedisSettings::from_config(&config)?;
        if !config.redis.cluster_nodes.is_empty() {
            let nodes = ferrocast_redis::settings::node_urls(&config.redis.cluster_nodes);
            let bus = ClusterBus::start(nodes, &settings, feed)?;
            return Edge::launch(config, verifier, registry, bus, listeners);
        }
        let sentinels = config
            .redis
            .sentinel
            .sentinels(config.redis.url.as_deref(), &settings.tls)?
            .map(Arc::new);
        if sentinels.is_some() || config.redis.url.is_some() {
            let url = config.redis.url.as_deref().unwrap_or_default();
            let bus = RedisBus::start(url, sentinels, &settings, feed)?;
            return Edge::launch(config, verifier, registry, bus, listeners);
        }
        let bus = Arc::new(MemoryBus::new(feed, config.history_len, config.history_ttl));
        Edge::launch(config, verifier, registry, bus, listeners)
    }

    /// Starts the edge's tasks on `bus` and serves on `listeners`.
    fn launch<B: Bus>(
        config: Config,
        verifier: Verifier,
        registry: Arc<Registry>,
        bus: Arc<B>,
        listeners: Listeners,
    ) -> anyhow::Result<Edge> {
        let connections = Arc::new(Connections::default());
        let background = run_background(&config, &registry, &bus, &connections);
        let node_id = config.node_id.clone().unwrap_or_else(random_node_id);
        let drain_timeout = config.drain_timeout;
        let presence = Presence::new(&config.presence, &node_id);
        let (stop_listening, stop) = watch::channel(false);
        let (hooks, lifecycle) = Hooks::new(&config, &node_id).map_err(anyhow::Error::msg)?;
        let mut finishing = run_finishing(&config, lifecycle, &presence, &bus, &stop);
        let shared = Arc::new(Shared {
            public_rooms: Patterns::from(config.public_rooms.clone()),
            upstream_events: Patterns::from(config.upstream_events.clone()),
            replay_budget: Arc::new(tokio::sync::Semaphore::new(
                // At least a page, or no replay could ever start.
                config
                    .replay_memory
                    .clamp(bus::PAGE_BYTES, tokio::sync::Semaphore::MAX_PERMITS),
            )),
            presence,
            hooks,
            config,
            node_id,
            verifier,
            registry,
            bus: bus.clone(),
            connections: connections.clone(),
        });
        crate::ops::metrics::metrics().watch_state(crate::ops::state::probe(&shared));
        finishing.push(tokio::spawn(crate::ops::node_status::report(
            shared.clone(),
            stop.clone(),
        )));
        let (public, internal, listeners) = start_listening(shared, listeners, &stop)?;
        Ok(Edge {
            public,
            internal,
            connections,
            drain_timeout,
            stop_listening,
            listeners,
            finishing,
            background,
            stop_bus: Box::new(move || bus.shutdown()),
        })
    }

    /// The public (WebSocket) address.
    pub fn public_addr(&self) -> SocketAddr {
        self.public
    }

    /// The internal (probes, metrics) address.
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal
    }

    /// Drains: reports not ready, closes every client with 1001 spread over the drain window,
    /// then stops accepting and stops every task.
    pub async fn stop(mut self) {
        self.connections.drain(self.drain_timeout).await;
        let _ = self.stop_listening.send(true);
        for listener in self.listeners.drain(..) {
            let _ = listener.await;
        }
        // The drain queued every session's `$disconnect` and presence leaves: handed over
        // while the bus is still up, for as long as Redis lets them be.
        let aborts: Vec<_> = self.finishing.iter().map(|t| t.abort_handle()).collect();
        let finished = futures_util::future::join_all(self.finishing.drain(..));
        if tokio::time::timeout(FINISH_WITHIN, finished).await.is_err() {
            aborts.iter().for_each(|abort| abort.abort());
            tracing::warn!(
                "lifecycle events or presence changes left after {FINISH_WITHIN:?}: dropped"
            );
        }
        self.background.shutdown().await;
        (self.stop_bus)();
        tracing::info!("drained; stopped");
    }
}

/// Starts the tasks that run as long as the edge: the bus's subscriptions, the watch on the
/// upstream inbox (when anything goes upstream), and the sweep of connections.
fn run_background<B: Bus>(
    config: &Config,
    registry: &Arc<Registry>,
    bus: &Arc<B>,
    connections: &Arc<Connections>,
) -> JoinSet<()> {
    let mut background = JoinSet::new();
    background.spawn(subscriptions::run(registry.clone(), bus.clone()));
    if !config.upstream_events.is_empty() || !config.hooks.upstream_lifecycle.is_empty() {
        background.spawn(bus::inbox::watch(bus.clone()));
    }
    background.spawn(connections::sweep_forever(
        connections.clone(),
        config.heartbeat,
        config.idle_timeout,
        config.jwt_leeway,
    ));
    background
}

/// Starts the tasks that hand Redis what sessions queue (lifecycle events, presence changes),
/// each to stop once `stop` says so and it has handed over what the drain queued.
fn run_finishing<B: Bus>(
    config: &Config,
    lifecycle: Option<mpsc::Receiver<Upstream>>,
    presence: &Arc<Presence>,
    bus: &Arc<B>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut finishing = Vec::new();
    if let Some(events) = lifecycle {
        let append = crate::hooks::lifecycle::run(events, bus.clone(), stopped(stop));
        finishing.push(tokio::spawn(append));
    }
    if !config.presence.presence_rooms.is_empty() {
        let apply = crate::presence::flush::run(presence.clone(), bus.clone(), stopped(stop));
        finishing.push(tokio::spawn(apply));
    }
    finishing
}

/// Serves the public and the internal listener until `stop` says to stop; returns their
/// addresses and tasks.
fn start_listening<B: Bus>(
    shared: Arc<Shared<B>>,
    listeners: Listeners,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, SocketAddr, Vec<JoinHandle<()>>)> {
    let (public, internal) = (
        listeners.public.local_addr()?,
        listeners.internal.local_addr()?,
    );
    tracing::info!(
        listen = %public,
        %internal,
        node = %shared.node_id,
        path = %shared.config.ws_path,
        "edge listening"
    );
    let tasks = vec![
        tokio::spawn(listener::serve(
            shared.clone(),
            listeners.public,
            stopped(stop),
        )),
        tokio::spawn(internal::serve(shared, listeners.internal, stopped(stop))),
    ];
    Ok((public, internal, tasks))
}

/// Completes once `stop` says to stop, or its sender is gone.
fn stopped(stop: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|s| *s).await;
    }
}

/// A random node id, when none is configured.
pub fn random_node_id() -> String {
    format!("edge-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}
