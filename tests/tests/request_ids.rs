//! Client-chosen ids on `publish` and `send` (v1.2): a retry with the same id, from any
//! connection of the same user, answers as the first time and stores nothing new; another
//! user's same id is another request; ids outside the name set are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferrocast_tests::{Client, Edge, RedisCluster, RedisServer, Token};
use serde_json::json;

fn writer(user: &str) -> String {
    Token::user(user, &["r"]).claim("pub", json!(["r"])).dev()
}

#[tokio::test]
async fn a_retried_publish_is_stored_and_delivered_once() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let (mut reader, _) = Client::connect(&edge.ws_url(), &Token::user("r", &["r"]).dev()).await;
    reader.join("r").await;

    let publish =
        json!({"type": "publish", "room": "r", "event": "e", "data": {"n": 1}, "id": "job-7"});
    let (mut first, _) = Client::connect(&edge.ws_url(), &writer("ann")).await;
    first.join("r").await;
    let ack = first.request(publish.clone()).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    drop(first);
    // The answer was lost with the connection: the retry comes from a new one.
    let (mut second, _) = Client::connect(&edge.ws_url(), &writer("ann")).await;
    second.join("r").await;
    let again = second.request(publish.clone()).await;
    assert_eq!(
        again["offset"], ack["offset"],
        "the retry answers the first offset"
    );
    // Another user's same id is another message.
    let (mut bob, _) = Client::connect(&edge.ws_url(), &writer("bob")).await;
    bob.join("r").await;
    let other = bob.request(publish.clone()).await;
    assert_ne!(other["offset"], ack["offset"]);

    let delivered = reader.expect("msg").await;
    assert_eq!(delivered["offset"], ack["offset"]);
    let next = reader.expect("msg").await;
    assert_eq!(
        next["offset"], other["offset"],
        "ann's retry was not delivered again"
    );
    assert_eq!(redis.cli(&["XLEN", "fc:{room:r}"]).as_deref(), Some("2"));
}

/// `send` with an id, retried from another connection, on an edge over `args`; the inbox's
/// entries, counted by `entries`.
async fn a_retried_send_is_stored_once(args: &[&str], entries: impl Fn() -> u64) {
    let edge = Edge::start(args).await;
    let send = json!({"type": "send", "event": "chat.say", "data": {"n": 1}, "id": "msg-42"});
    let token = Token::user("ann", &[]).dev();
    let (mut first, _) = Client::connect(&edge.ws_url(), &token).await;
    let ack = first.request(send.clone()).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    drop(first);
    let (mut second, _) = Client::connect(&edge.ws_url(), &token).await;
    assert_eq!(second.request(send.clone()).await["id"], ack["id"]);
    assert_eq!(second.request(send.clone()).await["id"], ack["id"]);
    assert_eq!(entries(), 1);
    let (mut bob, _) = Client::connect(&edge.ws_url(), &Token::user("bob", &[]).dev()).await;
    assert_ne!(bob.request(send.clone()).await["id"], ack["id"]);
    assert_eq!(entries(), 2);
    // Without an id, every send is its own.
    let plain = json!({"type": "send", "event": "chat.say", "data": {"n": 1}});
    bob.request(plain.clone()).await;
    bob.request(plain).await;
    assert_eq!(entries(), 4);
}

/// Entries in the `partitions` streams of the inbox, read with `cli`.
fn inbox_entries(partitions: u16, cli: impl Fn(&[&str]) -> Option<String>) -> u64 {
    (0..partitions)
        .map(|i| {
            cli(&["XLEN", &format!("fc:{{inbox:{i}}}")])
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test]
async fn a_retried_send_is_stored_once_in_a_partitioned_inbox() {
    let redis = RedisServer::start();
    let url = redis.url();
    let args = [
        "--redis-url",
        url.as_str(),
        "--upstream-events",
        "chat.*",
        "--inbox-partitions",
        "3",
    ];
    a_retried_send_is_stored_once(&args, || inbox_entries(3, |args| redis.cli(args))).await;
}

#[tokio::test]
async fn a_retried_send_is_stored_once_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let nodes = cluster.nodes_arg();
    let args = [
        "--redis-cluster-nodes",
        nodes.as_str(),
        "--upstream-events",
        "chat.*",
        "--inbox-partitions",
        "3",
    ];
    a_retried_send_is_stored_once(&args, || inbox_entries(3, |args| cluster.cli(args))).await;
}

#[tokio::test]
async fn ids_outside_the_name_set_are_refused() {
    let edge = Edge::start(&[]).await;
    let (mut client, _) = Client::connect(&edge.ws_url(), &writer("ann")).await;
    for id in [
        json!(""),
        json!("x".repeat(65)),
        json!("a b"),
        json!("a:b"),
        json!(7),
    ] {
        let answer = client
            .request(json!({"type": "publish", "room": "r", "event": "e", "data": 1, "id": id}))
            .await;
        assert_eq!(
            (&answer["type"], &answer["code"]),
            (&json!("error"), &json!("BAD_FRAME")),
            "{id}"
        );
        let answer = client
            .request(json!({"type": "send", "event": "e", "data": 1, "id": id}))
            .await;
        assert_eq!(answer["code"], "BAD_FRAME", "{id}");
    }
}
