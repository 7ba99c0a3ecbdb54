//! Nothing lost, nothing twice: resuming after a disconnect, on any edge, and across edge and
//! Redis failures. Every test numbers its messages and checks the client saw each exactly once,
//! in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ferrocast_emitter::{EmitError, Emitter};
use ferrocast_tests::follow::{Traffic, Urls, publisher};
use ferrocast_tests::{Client, Edge, RedisServer, Token, free_port};
use serde_json::{Value, json};

fn token(sub: &str) -> String {
    Token::user(sub, &["r", "room:*"]).dev()
}

/// Joins `room` with `since` and returns the `joined` answer.
async fn join_since(client: &mut Client, room: &str, since: Option<&str>) -> Value {
    let mut frame = json!({"type": "join", "room": room});
    if let Some(since) = since {
        frame["since"] = json!(since);
    }
    let joined = client.request(frame).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    joined
}

/// Checks numbered messages: each of `0..count` exactly once, in order.
fn assert_exactly_once_in_order(seen: &[u64], count: u64) {
    let expected: Vec<u64> = (0..count).collect();
    if seen != expected {
        let dups = seen.windows(2).filter(|w| w[0] >= w[1]).count();
        panic!(
            "saw {} messages ({} out of order or repeated), expected {count}; first differences: {:?}",
            seen.len(),
            dups,
            seen.iter().zip(expected.iter()).find(|(a, b)| a != b)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resuming_on_another_edge_gets_exactly_what_it_missed() {
    let redis = RedisServer::start();
    let a = Edge::with_redis(&redis, &[]).await;
    let b = Edge::with_redis(&redis, &[]).await;
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");

    let (mut client, _) = Client::connect(&a.ws_url(), &token("u")).await;
    join_since(&mut client, "r", None).await;
    emitter
        .to_room("r")
        .emit("n", &json!(-1))
        .await
        .expect("emit");
    let last = client.expect("msg").await["offset"]
        .as_str()
        .expect("offset")
        .to_owned();
    drop(client);

    let batch: Vec<_> = (0..500)
        .map(|i| {
            emitter
                .to_room("r")
                .message("n", &json!(i))
                .expect("message")
        })
        .collect();
    let offsets: Vec<_> = emitter
        .emit_batch(&batch)
        .await
        .expect("batch")
        .into_iter()
        .map(|r| r.expect("published"))
        .collect();

    let (mut client, _) = Client::connect(&b.ws_url(), &token("u")).await;
    let joined = join_since(&mut client, "r", Some(&last)).await;
    assert_eq!(joined["recovered"], true);
    assert_eq!(joined["offset"], offsets[499].to_string());
    let mut seen = Vec::new();
    for offset in &offsets {
        let msg = client.expect("msg").await;
        assert_eq!(msg["offset"], offset.to_string());
        seen.push(msg["data"].as_u64().expect("number"));
    }
    assert_exactly_once_in_order(&seen, 500);
    emitter
        .to_room("r")
        .emit("n", &json!("live"))
        .await
        .expect("emit");
    assert_eq!(
        client.expect("msg").await["data"],
        "live",
        "no duplicate after the replay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_all_scopes_resume_through_auth_and_resume_frames() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let (mut client, _) = Client::connect(&edge.ws_url(), &token("u7")).await;
    emitter
        .to_user("u7")
        .emit("u", &json!(-1))
        .await
        .expect("emit");
    let user_offset = client.expect("msg").await["offset"].clone();
    emitter
        .broadcast()
        .emit("a", &json!(-1))
        .await
        .expect("emit");
    let all_offset = client.expect("msg").await["offset"].clone();
    drop(client);

    for round in 0..2 {
        for i in 0..3 {
            emitter
                .to_user("u7")
                .emit("u", &json!(i))
                .await
                .expect("emit");
        }
        for i in 0..2 {
            emitter
                .broadcast()
                .emit("a", &json!(i))
                .await
                .expect("emit");
        }
        let since = json!({"user": user_offset, "all": all_offset});
        let (mut client, welcome, recovered) = if round == 0 {
            // Browser style: `since` in the auth frame, recovery reported in `welcome`.
            let (mut client, _) = Client::open(&edge.ws_url(), None, &[])
                .await
                .expect("connect");
            client
                .send(json!({"type": "auth", "token": token("u7"), "since": since}))
                .await;
            let welcome = client.expect("welcome").await;
            let recovered = welcome["recovered"].clone();
            (client, welcome, recovered)
        } else {
            // Header style: `resume` after the welcome. Messages published just before the
            // connect may still arrive live, ahead of `resumed`; the replay then sends only what
            // did not (each message once, though not in offset order across that seam).
            let (mut client, welcome) = Client::connect(&edge.ws_url(), &token("u7")).await;
            client
                .send(json!({"type": "resume", "since": since, "ref": 1}))
                .await;
            (client, welcome, Value::Null)
        };
        let mut recovered = recovered;
        let mut msgs = Vec::new();
        while msgs.len() < 5 * (round + 1) || recovered.is_null() {
            let frame = client.recv().await;
            match frame["type"].as_str() {
                Some("msg") => msgs.push(frame),
                Some("resumed") => {
                    assert_eq!(frame["ref"], 1);
                    recovered = frame["recovered"].clone();
                }
                other => panic!("unexpected {other:?}: {frame}"),
            }
        }
        assert_eq!(
            recovered,
            json!({"user": true, "all": true}),
            "round {round}"
        );
        if round == 1 {
            // UUID v7 ids sort in publish order.
            msgs.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        }
        let ids: std::collections::HashSet<_> = msgs.iter().map(|m| m["id"].clone()).collect();
        assert_eq!(ids.len(), msgs.len(), "a message arrived twice");
        let mut user = Vec::new();
        let mut all = Vec::new();
        for msg in msgs {
            match msg["scope"].as_str() {
                Some("user") => user.push(msg["data"].as_u64().expect("n")),
                Some("all") => all.push(msg["data"].as_u64().expect("n")),
                other => panic!("unexpected scope {other:?}"),
            }
        }
        // Round 1 replays round 0's messages too, since it resumes from the same offsets.
        let rounds = round as u64 + 1;
        assert_eq!(
            user,
            (0..3)
                .cycle()
                .take(3 * rounds as usize)
                .collect::<Vec<u64>>()
        );
        assert_eq!(
            all,
            (0..2)
                .cycle()
                .take(2 * rounds as usize)
                .collect::<Vec<u64>>()
        );
        let me = welcome["client"].as_str().expect("client id");
        emitter
            .to_client(me)
            .emit("c", &json!("live"))
            .await
            .expect("emit");
        assert_eq!(
            client.expect("msg").await["data"],
            "live",
            "nothing more after the replay"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimmed_history_is_reported_and_what_remains_is_delivered_in_order() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let emitter = Emitter::builder(redis.url())
        .history_len(50)
        .connect()
        .await
        .expect("emitter");
    let (mut client, _) = Client::connect(&edge.ws_url(), &token("u")).await;
    join_since(&mut client, "r", None).await;
    emitter
        .to_room("r")
        .emit("n", &json!(-1))
        .await
        .expect("emit");
    let last = client.expect("msg").await["offset"]
        .as_str()
        .expect("offset")
        .to_owned();
    drop(client);
    for i in 0..300 {
        emitter
            .to_room("r")
            .emit("n", &json!(i))
            .await
            .expect("emit");
    }
    let (mut client, _) = Client::connect(&edge.ws_url(), &token("u")).await;
    let joined = join_since(&mut client, "r", Some(&last)).await;
    assert_eq!(joined["recovered"], false);
    let mut seen = Vec::new();
    loop {
        let msg = client.expect("msg").await;
        let n = msg["data"].as_u64().expect("n");
        seen.push(n);
        if n == 299 {
            break;
        }
    }
    assert!(
        seen.len() < 300,
        "the trimmed part cannot have been replayed"
    );
    let first = seen[0];
    assert_eq!(
        seen,
        (first..300).collect::<Vec<_>>(),
        "what remains arrives in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_message_racing_the_replay_is_neither_lost_nor_duplicated() {
    let redis = RedisServer::start();
    let a = Edge::with_redis(&redis, &[]).await;
    let b = Edge::with_redis(&redis, &[]).await;
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let pace = Some(Duration::from_millis(1));
    let publishing = publisher(emitter, "room:race", pace, stop.clone(), count.clone());

    // Reconnect 40 times while messages stream in, each time resuming mid-flow: every join's
    // replay overlaps with live messages arriving at the same moment.
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    for round in 0..40 {
        let url = if round % 2 == 0 {
            a.ws_url()
        } else {
            b.ws_url()
        };
        let (mut client, _) = Client::connect(&url, &token("racer")).await;
        let joined = join_since(&mut client, "room:race", last.as_deref()).await;
        if last.is_some() {
            assert_eq!(joined["recovered"], true, "round {round}");
        }
        let target = seen.len() + 25;
        while seen.len() < target {
            let msg = client.expect("msg").await;
            seen.push(msg["data"].as_u64().expect("n"));
            last = msg["offset"].as_str().map(str::to_owned);
        }
    }
    stop.store(true, Ordering::SeqCst);
    publishing.await.expect("publisher");
    let first = seen[0];
    let expected: Vec<u64> = (first..first + seen.len() as u64).collect();
    assert_eq!(seen, expected, "gap or duplicate at a seam");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_edge_resume_on_the_survivor_with_every_message_once() {
    let redis = RedisServer::start();
    let mut a = Edge::with_redis(&redis, &[]).await;
    let b = Edge::with_redis(&redis, &[]).await;
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let urls = (0..4)
        .map(|_| Urls::new(vec![a.ws_url(), b.ws_url()]))
        .collect();
    let traffic = Traffic::start(emitter, "room:k", urls, Duration::from_millis(2)).await;
    traffic.go_on(200).await;
    a.kill();
    traffic.go_on(400).await;
    traffic.finish().await;
    // The survivor ran for seconds with Redis healthy: its liveness pings never failed.
    let metrics = b.metrics().await;
    assert_eq!(
        metrics.get("ferrocast_bus_reconnects_total"),
        Some(&0.0),
        "{metrics:?}"
    );
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
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while redis.cli(&["EXISTS", "fc:{room:r}"]).as_deref() != Some("0") {
        assert!(
            std::time::Instant::now() < deadline,
            "history never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
        None
    );
}
