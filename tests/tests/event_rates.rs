//! Per-event rate limits (`--event-rate`): a client that floods one event is refused that event
//! with how long to wait, can still send others, and is closed if it keeps ignoring refusals.

use ferrocast_tests::{Client, Edge, RedisServer, Token};
use serde_json::{Value, json};

async fn publish(client: &mut Client, event: &str) -> Value {
    client
        .request(json!({"type": "publish", "room": "r", "event": event, "data": 1, "echo": false}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flooded_event_is_limited_and_the_others_still_go_through() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(
        &redis,
        &[
            "--event-rate",
            "chat.*=2/1s,2",
            "--event-rate",
            "typing=100/1s",
            "--upstream-events",
            "chat.*",
        ],
    )
    .await;
    let token = Token::user("u", &["r"]).claim("pub", json!(["r"])).dev();
    let (mut client, _) = Client::connect(&edge.ws_url(), &token).await;
    client.join("r").await;
    assert_eq!(publish(&mut client, "chat.say").await["type"], "ack");
    assert_eq!(publish(&mut client, "chat.say").await["type"], "ack");
    let refused = publish(&mut client, "chat.say").await;
    assert_eq!(refused["code"], "RATE_LIMITED", "{refused}");
    let wait = refused["retry_after"].as_u64().expect("retry_after");
    assert!(wait > 0 && wait <= 500, "{refused}");
    // `send` falls under the same rule: the bucket is the rule's, whatever the frame.
    let sent = client
        .request(json!({"type": "send", "event": "chat.say", "data": 1}))
        .await;
    assert_eq!(sent["code"], "RATE_LIMITED", "{sent}");
    // Another event is not held back.
    for _ in 0..5 {
        assert_eq!(publish(&mut client, "typing").await["type"], "ack");
    }
    // Waiting as long as told works.
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    assert_eq!(publish(&mut client, "chat.say").await["type"], "ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_ignores_its_refusals_is_closed_with_4008() {
    let edge = Edge::start(&["--event-rate", "chat.*=1/10s,2"]).await;
    let token = Token::user("u", &["r"]).claim("pub", json!(["r"])).dev();
    let (mut client, _) = Client::connect(&edge.ws_url(), &token).await;
    client.join("r").await;
    // Two allowed, then ten refusals in a row: the tenth closes.
    for _ in 0..12 {
        client
            .send(json!({"type": "publish", "room": "r", "event": "chat.say", "data": 1}))
            .await;
    }
    assert_eq!(client.closed().await.0, 4008);
}
