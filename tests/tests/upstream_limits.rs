//! Upstream cannot be flooded, and never loses what it acknowledged: per-connection quotas with
//! `retry_after`, the token's `send` claim, and an inbox that pushes back instead of trimming
//! messages no worker has read.

use ferrocast_tests::{Client, Edge, RedisServer, Token};
use serde_json::{Value, json};

async fn send(client: &mut Client, event: &str, data: Value) -> Value {
    client
        .request(json!({"type": "send", "event": event, "data": data}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_beyond_the_quota_are_refused_with_how_long_to_wait() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(
        &redis,
        &[
            "--upstream-events",
            "*",
            "--upstream-rate",
            "2",
            "--upstream-burst",
            "2",
            "--upstream-bytes-rate",
            "2000",
            "--max-data-size",
            "1500",
        ],
    )
    .await;
    let (mut client, _) = Client::connect(&edge.ws_url(), &Token::user("u", &[]).dev()).await;
    assert_eq!(send(&mut client, "e", json!(1)).await["type"], "ack");
    assert_eq!(send(&mut client, "e", json!(2)).await["type"], "ack");
    let refused = send(&mut client, "e", json!(3)).await;
    assert_eq!(refused["code"], "RATE_LIMITED", "{refused}");
    let wait = refused["retry_after"].as_u64().expect("retry_after");
    assert!(wait > 0 && wait <= 500, "{refused}");
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    assert_eq!(send(&mut client, "e", json!(3)).await["type"], "ack");

    // Bytes too: 1,400 bytes of data twice is more than 2,000 a second.
    let (mut big, _) = Client::connect(&edge.ws_url(), &Token::user("b", &[]).dev()).await;
    let data = json!("x".repeat(1398));
    assert_eq!(send(&mut big, "e", data.clone()).await["type"], "ack");
    let refused = send(&mut big, "e", data.clone()).await;
    assert_eq!(refused["code"], "RATE_LIMITED", "{refused}");
    let wait = refused["retry_after"].as_u64().expect("retry_after");
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    assert_eq!(send(&mut big, "e", data).await["type"], "ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_send_claim_narrows_what_the_edge_allows() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &["--upstream-events", "chat.*,game.*"]).await;
    let token = Token::user("u", &[]).claim("send", json!(["chat.*"])).dev();
    let (mut client, _) = Client::connect(&edge.ws_url(), &token).await;
    assert_eq!(send(&mut client, "chat.say", json!(1)).await["type"], "ack");
    for event in ["game.move", "other"] {
        let refused = send(&mut client, event, json!(1)).await;
        assert_eq!(refused["code"], "FORBIDDEN", "{event}: {refused}");
    }
    // Without the claim, the edge's list alone decides.
    let (mut plain, _) = Client::connect(&edge.ws_url(), &Token::user("p", &[]).dev()).await;
    assert_eq!(send(&mut plain, "game.move", json!(1)).await["type"], "ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbox_pushes_back_and_never_trims_what_workers_have_not_read() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &["--upstream-events", "e", "--inbox-max-len", "5"]).await;
    let (mut client, _) = Client::connect(&edge.ws_url(), &Token::user("u", &[]).dev()).await;
    let mut acked = Vec::new();
    for i in 0..5 {
        let ack = send(&mut client, "e", json!(i)).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        acked.push(ack["id"].as_str().expect("id").to_owned());
    }
    // Nobody has read anything: the sixth is refused, and all five acknowledged are still there.
    let refused = send(&mut client, "e", json!(5)).await;
    assert_eq!(refused["code"], "UNAVAILABLE", "{refused}");
    assert!(
        refused["retry_after"].as_u64().is_some_and(|ms| ms > 0),
        "{refused}"
    );
    let stored = redis
        .cli(&["XRANGE", "fc:{inbox}", "-", "+"])
        .expect("XRANGE");
    for id in &acked {
        assert!(stored.contains(id.as_str()), "{id} was trimmed: {stored}");
    }

    // A worker group reads three and acknowledges two: two can go, the rest must stay.
    redis
        .cli(&["XGROUP", "CREATE", "fc:{inbox}", "g", "0"])
        .expect("XGROUP");
    redis
        .cli(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "w",
            "COUNT",
            "3",
            "STREAMS",
            "fc:{inbox}",
            ">",
        ])
        .expect("XREADGROUP");
    redis
        .cli(&["XACK", "fc:{inbox}", "g", &acked[0], &acked[1]])
        .expect("XACK");
    let ack = send(&mut client, "e", json!(5)).await;
    assert_eq!(
        ack["type"], "ack",
        "room was made by trimming what was read: {ack}"
    );
    let stored = redis
        .cli(&["XRANGE", "fc:{inbox}", "-", "+"])
        .expect("XRANGE");
    for id in &acked[2..] {
        assert!(stored.contains(id.as_str()), "{id} was trimmed: {stored}");
    }
    // One more fits; then the pending third and the unread rest hold the inbox full.
    assert_eq!(send(&mut client, "e", json!(6)).await["type"], "ack");
    let refused = send(&mut client, "e", json!(7)).await;
    assert_eq!(refused["code"], "UNAVAILABLE", "{refused}");
    // The lag is exported: four entries the group has not been delivered yet, of five held.
    edge.wait_metric("ferrocast_inbox_lag{group=\"g\"}", 4.0)
        .await;
    edge.wait_metric("ferrocast_inbox_entries", 5.0).await;
}
