//! `GET /api/nodes` (v1.2): every live edge of a deployment reports its status to Redis, and any
//! edge lists them all; a draining edge leaves at once; a single-node edge lists itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ferrocast_tests::{Client, Edge, RedisServer, Token};
use serde_json::Value;

const KEY: &str = "nodes-test-api-key-0123456789";

/// The edges `edge` lists, once `until` holds of them (polled: edges report every 5 s).
async fn nodes_until(edge: &Edge, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, body) = edge.api("GET", "/api/nodes", Some(KEY), "").await;
        assert_eq!(status, 200, "{body}");
        let nodes = body["nodes"].as_array().cloned().unwrap_or_default();
        if until(&nodes) {
            return nodes;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never came to pass: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn named<'a>(nodes: &'a [Value], id: &str) -> Option<&'a Value> {
    nodes.iter().find(|n| n["node"] == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_live_edge_is_listed_by_any_edge_and_a_drained_one_leaves() {
    let redis = RedisServer::start();
    let secret = "nodes-test-secret-0123456789-0123456789";
    let args = |id: &'static str| {
        vec![
            "--node-id",
            id,
            "--jwt-secret",
            secret,
            "--api-key",
            KEY,
            "--public-rooms",
            "lobby",
        ]
    };
    let a = Edge::with_redis(&redis, &args("edge-a")).await;
    let b = Edge::with_redis(&redis, &args("edge-b")).await;
    let token = Token::user("ann", &[]).hs256(secret);
    let (mut ann, _) = Client::connect(&a.ws_url(), &token).await;
    ann.join("lobby").await;

    // Edge b lists both, edge a's with its client and its room.
    let nodes = nodes_until(&b, |nodes| {
        named(nodes, "edge-a").is_some_and(|n| n["connections"] == 1)
            && named(nodes, "edge-b").is_some()
    })
    .await;
    let a_status = named(&nodes, "edge-a").unwrap();
    assert_eq!(a_status["rooms"], 1, "{a_status}");
    assert_eq!(a_status["top_rooms"][0]["room"], "lobby", "{a_status}");
    assert_eq!(a_status["ready"], true);
    assert_eq!(a_status["redis"], "up");
    assert_eq!(a_status["version"], env!("CARGO_PKG_VERSION"));
    assert!(a_status["started"].as_u64().unwrap() <= a_status["updated"].as_u64().unwrap());
    assert_eq!(nodes[0]["node"], "edge-a", "ordered by id");

    // A drained edge leaves the directory at once, not when its report expires.
    b.terminate();
    nodes_until(&a, |nodes| {
        named(nodes, "edge-b").is_none() && named(nodes, "edge-a").is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_edge_lists_itself() {
    let edge = Edge::start(&["--node-id", "solo", "--api-key", KEY]).await;
    let nodes = nodes_until(&edge, |nodes| !nodes.is_empty()).await;
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["node"], "solo");
    assert_eq!(nodes[0]["redis"], "local");
}
