//! The Ferrocast edge: a stateless WebSocket server. It authenticates clients, keeps track of
//! which local connections are in which rooms, subscribes the bus to exactly those targets, and
//! writes each published message to every local member.
//!
//! The folders are the stages a message passes, each importing only those below it:
//! - [`net`]: the listeners: WebSocket upgrades on the public one, probes and metrics on the
//!   internal one;
//! - [`session`]: one client connection, from authentication to close: its frames, its writer,
//!   its replays, and the table of every connection (limits, heartbeats, drain);
//! - [`hooks`]: the application's say: connect and join hooks, lifecycle events to workers;
//! - [`presence`]: this edge's members of presence rooms, batched and refreshed onto the bus;
//! - [`fanout`]: from a received message to the queues of the local members it is for;
//! - [`bus`]: how messages reach the edge (Redis, a Redis Cluster, or in-process) and where its
//!   own publishes and clients' `send`s go;
//! - [`ops`]: metrics, logs and traces;
//! - [`websocket`]: the frame path every connection reads and writes through;
//! - [`encryption`]: payload encryption per connection (part E): the key agreement, and the
//!   channel the frame path seals and opens `enc` frames with.
//!
//! [`Edge`] starts the parts and stops them; [`config`] is what they are configured with.

pub mod bus;
pub mod cli;
pub mod config;
pub mod encryption;
pub mod fanout;
pub mod history;
pub mod hooks;
pub mod net;
pub mod ops;
pub mod presence;
pub mod refusal;
pub mod session;
pub mod websocket;

pub use session::Shared;

mod edge;
pub mod peer;
mod preflight;

pub use edge::{Edge, Listeners, random_node_id};

use crate::config::Config;

/// Binds the configured addresses, serves until SIGTERM or SIGINT, then drains and stops. A
/// second signal exits at once.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config).await?;
    let edge = Edge::start(config, listeners).await?;
    shutdown_signal().await;
    tracing::info!("shutdown requested: draining (a second signal exits at once)");
    tokio::spawn(async {
        shutdown_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
    edge.stop().await;
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
