//! Lifecycle events (docs/protocol.md, part 4): `$connect`, `$join`, `$leave` and `$disconnect`
//! reach workers through the inbox, a mass disconnect cannot flood it, and a drained edge appends
//! what its drain queued before it exits.

use std::time::Duration;

use ferrocast_emitter::{Inbox, Lifecycle, StartFrom};
use ferrocast_tests::{Client, DEADLINE, Edge, RedisServer, Token};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_reach_a_consumer_group_with_client_user_and_room() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(
        &redis,
        &["--upstream-lifecycle", "connect,disconnect,join,leave"],
    )
    .await;
    let mut inbox = Inbox::builder(redis.url(), "app", "w1")
        .start_from(StartFrom::Beginning)
        .connect()
        .await
        .expect("inbox");
    let token = Token::user("cy", &["r:*"])
        .claim("meta", json!({"team": 3}))
        .dev();
    let (mut cy, welcome) = Client::connect(&edge.ws_url(), &token).await;
    let client = welcome["client"].as_str().expect("client").to_owned();
    cy.join("r:1").await;
    cy.request(json!({"type": "leave", "room": "r:1"})).await;
    cy.join("r:2").await;
    drop(cy);

    let expected = [
        Lifecycle::Connect,
        Lifecycle::Join {
            room: "r:1".into(),
            by: "client".into(),
        },
        Lifecycle::Leave {
            room: "r:1".into(),
            by: "client".into(),
        },
        Lifecycle::Join {
            room: "r:2".into(),
            by: "client".into(),
        },
        Lifecycle::Leave {
            room: "r:2".into(),
            by: "disconnect".into(),
        },
    ];
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while got.len() < expected.len() + 1 {
        let batch = tokio::time::timeout_at(deadline, inbox.next_up_to(10))
            .await
            .expect("lifecycle events in time")
            .expect("read");
        for received in batch {
            assert_eq!(received.message.client, client);
            assert_eq!(received.message.user, "cy");
            assert_eq!(
                received.message.meta.as_deref(),
                Some(&br#"{"team":3}"#[..])
            );
            inbox.ack(&received).await.expect("ack");
            got.push(received.lifecycle().expect("a lifecycle event"));
        }
    }
    assert_eq!(&got[..expected.len()], &expected);
    assert!(
        matches!(
            &got[expected.len()],
            Lifecycle::Disconnect {
                code: 1006 | 1000,
                ..
            }
        ),
        "{got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_dropping_at_once_cannot_flood_the_inbox() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(
        &redis,
        &[
            "--upstream-lifecycle",
            "disconnect",
            "--inbox-max-len",
            "100",
            "--max-pending-per-ip",
            "0",
        ],
    )
    .await;
    let token = Token::user("many", &[]).dev();
    let mut clients = Vec::new();
    for _ in 0..1000 {
        clients.push(Client::connect(&edge.ws_url(), &token).await.0);
    }
    drop(clients);
    edge.wait_metric("ferrocast_connections", 0.0).await;
    // Every event was either appended or dropped and counted; the inbox holds at most its cap.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let metrics = edge.metrics().await;
        let dropped = metrics
            .get("ferrocast_lifecycle_dropped_total{reason=\"inbox_full\"}")
            .copied()
            .unwrap_or(0.0);
        let appended = metrics
            .get("ferrocast_upstream_appends_total")
            .copied()
            .unwrap_or(0.0);
        if dropped + appended >= 1000.0 {
            assert!(appended <= 100.0, "{appended} appended");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let length: u64 = redis
        .cli(&["XLEN", "fc:{inbox}"])
        .expect("xlen")
        .trim()
        .parse()
        .expect("number");
    assert!(length <= 100, "the inbox holds {length}");
    edge.wait_readyz(200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_edge_appends_every_disconnect_before_it_exits() {
    const CLIENTS: usize = 200;
    let redis = RedisServer::start();
    // Every client is closed at once: their `$disconnect`s are all queued as the drain ends.
    let mut edge = Edge::with_redis(
        &redis,
        &[
            "--upstream-lifecycle",
            "disconnect",
            "--drain-timeout",
            "0s",
        ],
    )
    .await;
    let token = Token::user("di", &[]).dev();
    let mut closing = Vec::new();
    for _ in 0..CLIENTS {
        let (mut client, _) = Client::connect(&edge.ws_url(), &token).await;
        closing.push(tokio::spawn(async move { client.closed().await.0 }));
    }
    edge.terminate();
    assert!(edge.exited(DEADLINE).await.success());
    for client in closing {
        assert_eq!(client.await.expect("client task"), 1001);
    }

    let mut inbox = Inbox::builder(redis.url(), "app", "w1")
        .start_from(StartFrom::Beginning)
        .connect()
        .await
        .expect("inbox");
    let mut disconnects = 0;
    // The edge has exited: what is not in the stream now never will be.
    while let Ok(batch) = tokio::time::timeout(Duration::from_secs(2), inbox.next_up_to(100)).await
    {
        let batch = batch.expect("read");
        if batch.is_empty() {
            break;
        }
        for received in batch {
            assert!(
                matches!(
                    received.lifecycle(),
                    Some(Lifecycle::Disconnect { code: 1001, .. })
                ),
                "{:?}",
                received.lifecycle()
            );
            disconnects += 1;
        }
    }
    assert_eq!(disconnects, CLIENTS);
}
