//! Support for Ferrocast's end-to-end tests: a private redis-server, edge processes, WebSocket
//! clients and tokens. Everything waits for conditions with deadlines; nothing sleeps and hopes.
//!
//! The edge and emitter binaries must be built first (`cargo build --bins`; the README's test
//! command does it).

#![allow(clippy::missing_panics_doc)]

pub mod certs;
pub mod client;
pub mod emitter_cli;
pub mod follow;
pub mod hook_server;
pub mod openapi;
pub mod process;
pub mod prometheus;
pub mod promql;
pub mod raw_ws;
pub mod rpc;
pub mod sealed;
pub mod token;
pub mod upstream;

pub use client::Client;
pub use emitter_cli::emitter;
pub use hook_server::HookServer;
pub use process::{Edge, RedisCluster, RedisServer, Running, SentinelGroup, bin, free_port};
pub use prometheus::Prometheus;
pub use token::Token;

use std::time::Duration;

use ferrocast_emitter::Emitter;
use serde_json::json;

/// How long any single expectation may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Waits until `condition` holds, checking every few milliseconds; panics naming `what` if it
/// does not within the deadline.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE * 3;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Publishes a marker to everyone and checks it is the next frame each client sees: proof that
/// nothing else reached them before it.
pub async fn assert_nothing_else(emitter: &Emitter, clients: &mut [&mut Client]) {
    let marker = uuid::Uuid::new_v4().to_string();
    emitter
        .broadcast()
        .emit("marker", &json!(marker))
        .await
        .expect("marker");
    for client in clients.iter_mut() {
        let frame = client.expect("msg").await;
        assert_eq!(
            frame["event"], "marker",
            "unexpected frame before the marker: {frame}"
        );
        assert_eq!(frame["data"], json!(marker));
        assert_eq!(frame["scope"], "all");
    }
}

/// Joins `room` with `since` and returns the `joined` answer; panics unless joined.
pub async fn join_since(client: &mut Client, room: &str, since: Option<&str>) -> serde_json::Value {
    let mut frame = json!({"type": "join", "room": room});
    if let Some(since) = since {
        frame["since"] = json!(since);
    }
    let joined = client.request(frame).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    joined
}
