//! Redis failing under the edges: paused, restarted empty, down; the emitter within its
//! deadline; histories that expire while the edge is away. Nothing acknowledged is lost
//! silently, and clients are told what they may have missed.

use std::time::Duration;

use ferrocast_emitter::{EmitError, Emitter};
use ferrocast_tests::follow::{Traffic, Urls};
use ferrocast_tests::join_since;
use ferrocast_tests::{Client, Edge, RedisServer, Token, free_port};
use serde_json::json;

fn token(sub: &str) -> String {
    Token::user(sub, &["r", "room:*"]).dev()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_loses_and_duplicates_nothing() {
    let redis = RedisServer::start();
    let a = Edge::with_redis(&redis, &[]).await;
    let b = Edge::with_redis(&redis, &[]).await;
    // Short timeouts, so publishes during the pause time out and are retried with the same id:
    // the first attempt still runs once Redis continues, leaving a duplicate for edges to drop.
    let emitter = Emitter::builder(redis.url())
        .response_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(300))
        .retries(30, Duration::from_millis(50))
        .connect()
        .await
        .expect("emitter");
    let urls = vec![Urls::new(vec![a.ws_url()]), Urls::new(vec![b.ws_url()])];
    let traffic = Traffic::start(emitter, "room:p", urls, Duration::from_millis(5)).await;
    traffic.go_on(100).await;

    redis.pause();
    // The edges' pings fail: they report not ready, then reconnect and catch up after the pause.
    a.wait_readyz(503).await;
    b.wait_readyz(503).await;
    redis.resume();

    traffic.go_on(100).await;
    traffic.finish().await;
    a.wait_readyz(200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_empty_is_a_gap_and_delivery_goes_on_on_the_same_connection() {
    let mut redis = RedisServer::start();
    let a = Edge::with_redis(&redis, &[]).await;
    let b = Edge::with_redis(&redis, &[]).await;
    let (mut client, _) = Client::connect(&a.ws_url(), &token("u")).await;
    join_since(&mut client, "r", None).await;
    {
        let emitter = Emitter::connect(redis.url()).await.expect("emitter");
        emitter
            .to_room("r")
            .emit("n", &json!(1))
            .await
            .expect("emit");
    }
    let last = client.expect("msg").await["offset"]
        .as_str()
        .expect("offset")
        .to_owned();

    redis.restart_empty();
    // The edge cannot vouch for what its clients may have missed: it tells them with a `gap`
    // frame for each scope that had history (here the room; nothing was ever published to the
    // user or everyone) and keeps them connected, rather than making every client of a
    // restarted Redis reconnect at once.
    let gap = client.expect("gap").await;
    assert_eq!(
        gap,
        json!({"type": "gap", "scope": "room", "room": "r", "offset": null})
    );
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    emitter
        .to_room("r")
        .emit("n", &json!(2))
        .await
        .expect("emit");
    let msg = client.expect("msg").await;
    assert_eq!(msg["data"], 2, "delivery goes on after the gap: {msg}");
    // A client resuming from before the loss, on another edge, is told it was not recovered.
    let (mut other, _) = Client::connect(&b.ws_url(), &token("v")).await;
    let joined = join_since(&mut other, "r", Some(&last)).await;
    assert_eq!(joined["recovered"], false);
    assert_eq!(
        other.expect("msg").await["data"],
        2,
        "what the history holds now"
    );
    emitter
        .to_room("r")
        .emit("n", &json!(3))
        .await
        .expect("emit");
    assert_eq!(other.expect("msg").await["data"], 3);
    assert_eq!(client.expect("msg").await["data"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_edges_say_so_and_keep_their_sockets() {
    let mut redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let (mut client, _) = Client::connect(&edge.ws_url(), &token("u")).await;
    join_since(&mut client, "r", None).await;
    let port = redis.port;
    redis.pause();
    edge.wait_readyz(503).await;
    let answer = client
        .request(json!({"type": "join", "room": "room:1", "since": "1-0_1-0"}))
        .await;
    assert_eq!(answer["code"], "UNAVAILABLE");
    assert_eq!(
        client.request(json!({"type": "ping"})).await["type"],
        "pong",
        "the socket stays open"
    );
    redis.resume();
    redis.restart_empty();
    assert_eq!(redis.port, port);
    edge.wait_readyz(200).await;
    assert_eq!(
        client.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emitter_fails_with_a_typed_error_within_its_deadline() {
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let result = Emitter::builder(&dead)
        .connect_timeout(Duration::from_millis(500))
        .retries(2, Duration::from_millis(50))
        .connect()
        .await;
    assert!(
        matches!(result, Err(EmitError::Unavailable(_))),
        "{:?}",
        result.err()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // Built without connecting (as a long-running worker starts), publishing fails the same way.
    let emitter = Emitter::builder(&dead)
        .connect_timeout(Duration::from_millis(500))
        .retries(1, Duration::from_millis(50))
        .build()
        .expect("build");
    let result = emitter.to_room("r").emit("e", &json!(1)).await;
    assert!(
        matches!(result, Err(EmitError::Unavailable(_))),
        "{result:?}"
    );

    // A Redis that accepts connections but never answers: the response timeout applies.
    let redis = RedisServer::start();
    let emitter = Emitter::builder(redis.url())
        .response_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(300))
        .retries(1, Duration::from_millis(50))
        .connect()
        .await
        .expect("emitter");
    redis.pause();
    let started = std::time::Instant::now();
    let result = emitter.to_room("r").emit("e", &json!(1)).await;
    redis.resume();
    assert!(
        matches!(result, Err(EmitError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_chosen_id_publishes_once() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let (mut client, _) = Client::connect(&edge.ws_url(), &token("u")).await;
    join_since(&mut client, "r", None).await;
    let id = uuid::Uuid::now_v7();
    let first = emitter
        .to_room("r")
        .id(id)
        .emit("job", &json!("done"))
        .await
        .expect("emit");
    // The job runs again: same id, nothing new published, the same offset answered.
    let again = emitter
        .to_room("r")
        .id(id)
        .emit("job", &json!("done"))
        .await
        .expect("emit");
    assert_eq!(first, again);
    emitter
        .to_room("r")
        .emit("after", &json!(null))
        .await
        .expect("emit");
    let msg = client.expect("msg").await;
    assert_eq!(
        (msg["id"].clone(), msg["offset"].clone()),
        (json!(id.to_string()), json!(first.to_string()))
    );
    assert_eq!(client.expect("msg").await["event"], "after");
    assert_eq!(redis.cli(&["XLEN", "fc:{room:r}"]).as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_mode_resumes_from_its_in_process_history() {
    // The publisher sends faster than the default inbound rate allows.
    let edge = Edge::start(&["--rate", "1000", "--burst", "1000"]).await;
    let publisher_token = Token::user("p", &["r"]).claim("pub", json!(["r"])).dev();
    let (mut publisher, _) = Client::connect(&edge.ws_url(), &publisher_token).await;
    publisher.join("r").await;
    let (mut client, _) = Client::connect(&edge.ws_url(), &token("u")).await;
    join_since(&mut client, "r", None).await;
    let publish =
        |n: u64| json!({"type": "publish", "room": "r", "event": "n", "data": n, "echo": false});
    publisher.request(publish(0)).await;
    let last = client.expect("msg").await["offset"]
        .as_str()
        .expect("offset")
        .to_owned();
    drop(client);
    for n in 1..=50 {
        assert_eq!(publisher.request(publish(n)).await["type"], "ack");
    }
    let (mut client, _) = Client::connect(&edge.ws_url(), &token("u")).await;
    let joined = join_since(&mut client, "r", Some(&last)).await;
    assert_eq!(joined["recovered"], true);
    for n in 1..=50 {
        assert_eq!(client.expect("msg").await["data"], n);
    }
    publisher.request(publish(51)).await;
    assert_eq!(client.expect("msg").await["data"], 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_that_expired_quietly_is_not_reported_lost_after_a_reconnect() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &["--history-ttl", "1s"]).await;
    let emitter = Emitter::builder(redis.url())
        .history_ttl(Duration::from_secs(1))
        .connect()
        .await
        .expect("emitter");
    let (mut client, _) = Client::connect(&edge.ws_url(), &token("u")).await;
    join_since(&mut client, "r", None).await;
    emitter
        .to_room("r")
        .emit("n", &json!(1))
        .await
        .expect("emit");
    client.expect("msg").await;
    // The room goes quiet until its history expires...
    redis.wait_gone(&["fc:{room:r}"]).await;
    // ...then the edge's pub/sub connection drops and comes back.
    assert_eq!(
        redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]).as_deref(),
        Some("1")
    );
    edge.wait_metric("ferrocast_bus_reconnects_total", 1.0)
        .await;
    edge.wait_readyz(200).await;
    // Nothing was lost, so the client stays connected and keeps receiving.
    emitter
        .to_room("r")
        .emit("n", &json!(2))
        .await
        .expect("emit");
    assert_eq!(client.expect("msg").await["data"], 2);
    let metrics = edge.metrics().await;
    assert_eq!(
        metrics.get("ferrocast_connections_closed_total{code=\"1011\"}"),
        Some(&0.0)
    );
}
