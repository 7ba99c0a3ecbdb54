//! Everything a client controls is bounded, and each limit answers with its code while the
//! edge's other connections carry on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferrocast_emitter::Emitter;
use ferrocast_tests::{Client, Edge, RedisServer, Token, eventually};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn token(sub: &str) -> String {
    Token::user(sub, &["r"]).dev()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_rate_limited_then_closed_with_4008() {
    let edge = Edge::start(&["--rate", "5", "--burst", "5"]).await;
    let (mut calm, _) = Client::connect(&edge.ws_url(), &token("calm")).await;
    let (mut flood, _) = Client::connect(&edge.ws_url(), &token("flood")).await;
    for _ in 0..5 {
        assert_eq!(flood.request(json!({"type": "ping"})).await["type"], "pong");
    }
    let refused = flood.request(json!({"type": "ping"})).await;
    assert_eq!(
        (refused["type"].clone(), refused["code"].clone()),
        (json!("error"), json!("RATE_LIMITED"))
    );
    for _ in 0..10 {
        flood.send(json!({"type": "ping"})).await;
    }
    assert_eq!(flood.closed().await.0, 4008);
    assert_eq!(calm.request(json!({"type": "ping"})).await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_refuse_with_503_before_the_upgrade() {
    let edge = Edge::start(&["--max-connections", "2"]).await;
    let (first, _) = Client::connect(&edge.ws_url(), &token("a")).await;
    let (_second, _) = Client::connect(&edge.ws_url(), &token("b")).await;
    match Client::open(&edge.ws_url(), Some(&token("c")), &[]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    drop(first);
    let mut admitted = false;
    for _ in 0..100 {
        if Client::open(&edge.ws_url(), Some(&token("c")), &[])
            .await
            .is_ok()
        {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a freed place is given again");

    // Connections that never authenticate hold their place only until the handshake timeout.
    // No per-address cap (its default, a quarter of 2, would hold the second): the edge's cap alone.
    let edge = Edge::start(&[
        "--max-unauthenticated",
        "2",
        "--max-pending-per-ip",
        "0",
        "--handshake-timeout",
        "4s",
    ])
    .await;
    // Two connections that say nothing. One may be refused itself while the start-up readiness
    // probes still hold their places: only keep those the edge is waiting on (nothing comes back).
    let mut silent = Vec::new();
    for _ in 0..100 {
        if silent.len() == 2 {
            break;
        }
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", edge.port))
            .await
            .expect("connect");
        let mut byte = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(300), socket.read(&mut byte))
            .await
            .is_err()
        {
            silent.push(socket);
        }
    }
    assert_eq!(
        silent.len(),
        2,
        "the edge never held two silent connections"
    );
    // The edge counts them once it has accepted them: wait until a third is refused.
    let mut refused = false;
    let mut last = String::new();
    for _ in 0..100 {
        match Client::open(&edge.ws_url(), Some(&token("c")), &[]).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 503);
                refused = true;
                break;
            }
            Err(e) => last = format!("error: {e}"),
            Ok(_) => last = "admitted".into(),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refused,
        "a third pending connection must be refused; last attempt: {last}"
    );
    for mut socket in silent {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut buf)).await;
    }
    let (_c, welcome) = Client::connect(&edge.ws_url(), &token("later")).await;
    assert_eq!(welcome["type"], "welcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_origins_may_open_sockets() {
    let edge = Edge::start(&[
        "--allowed-origins",
        "https://app.example,https://admin.example",
    ])
    .await;
    let handshake = |origin: Option<&str>| {
        let mut request =
            "GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
             sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                .to_owned();
        if let Some(origin) = origin {
            request.push_str(&format!("origin: {origin}\r\n"));
        }
        request.push_str("\r\n");
        request
    };
    let status = |request: String| {
        let port = edge.port;
        async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).await.expect("read");
            String::from_utf8_lossy(&head[9..12]).into_owned()
        }
    };
    assert_eq!(status(handshake(Some("https://evil.example"))).await, "403");
    assert_eq!(status(handshake(Some("https://app.example"))).await, "101");
    assert_eq!(
        status(handshake(Some("https://ADMIN.example"))).await,
        "101"
    );
    assert_eq!(
        status(handshake(None)).await,
        "101",
        "non-browser clients send no Origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_while_its_room_mates_keep_receiving() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &["--outbound-queue", "64"]).await;
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let (mut stalled, _) = Client::connect(&edge.ws_url(), &token("stalled")).await;
    let (mut reader, _) = Client::connect(&edge.ws_url(), &token("reader")).await;
    stalled.join("r").await;
    reader.join("r").await;

    // The reader reads as messages come; the stalled client reads nothing at all. Publishing
    // goes at the reader's pace, so only a client that does not read falls behind.
    let blob = "x".repeat(32 * 1024);
    let received = Arc::new(AtomicU64::new(0));
    let progress = received.clone();
    let reading = tokio::spawn(async move {
        for i in 0..1000 {
            let msg = reader.expect("msg").await;
            assert_eq!(msg["data"]["n"], i);
            progress.store(i + 1, Ordering::SeqCst);
        }
        reader
    });
    for chunk in 0..50u64 {
        let batch: Vec<_> = (0..20)
            .map(|i| {
                emitter
                    .to_room("r")
                    .message("big", &json!({"n": chunk * 20 + i, "blob": blob}))
                    .expect("message")
            })
            .collect();
        emitter.emit_batch(&batch).await.expect("publish");
        eventually("the reader to keep up", || {
            received.load(Ordering::SeqCst) >= (chunk + 1) * 20
        })
        .await;
    }
    let mut reader = reading
        .await
        .expect("the reader got every message in order");
    assert_eq!(
        reader.request(json!({"type": "ping"})).await["type"],
        "pong"
    );

    edge.wait_metric("ferrocast_slow_consumer_closes_total", 1.0)
        .await;
    // Counted once its close handshake is over (or has timed out).
    edge.wait_metric("ferrocast_connections_closed_total{code=\"4009\"}", 1.0)
        .await;
    // Its socket is gone: reading now drains what the kernel held, then the connection ends.
    let mut frames = 0;
    while stalled.next().await.is_some() {
        frames += 1;
    }
    assert!(
        frames < 1000,
        "the stalled client cannot have been sent everything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_time_out_with_4002_and_live_ones_stay() {
    let edge = Edge::start(&["--heartbeat", "1s", "--idle-timeout", "2s"]).await;
    let (mut silent, welcome) = Client::connect(&edge.ws_url(), &token("s")).await;
    assert_eq!(welcome["heartbeat"], 1000);
    let (mut lively, _) = Client::connect(&edge.ws_url(), &token("l")).await;
    // The lively client answers pings (its reads do) and pings itself; the silent one neither
    // reads nor writes until its close is due.
    let lively_task = tokio::spawn(async move {
        for _ in 0..8 {
            assert_eq!(
                lively.request(json!({"type": "ping"})).await["type"],
                "pong"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        lively
    });
    // Reading would answer the edge's pings: wait until the edge reports the close first.
    edge.wait_metric("ferrocast_connections_closed_total{code=\"4002\"}", 1.0)
        .await;
    // Its socket is closed (reading now may end in a close frame or a reset, as the pongs it
    // answers with hit a closed socket).
    while silent.next().await.is_some() {}
    let mut lively = lively_task.await.expect("lively client stayed open");
    assert_eq!(
        lively.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_closes_with_4003_unless_refreshed() {
    let edge = Edge::start(&["--jwt-leeway", "0s"]).await;
    let soon = Token::user("u", &[]).claim("exp", json!(unix() + 2));
    let (mut lapsing, _) = Client::connect(&edge.ws_url(), &soon.dev()).await;
    let (mut refreshed, _) = Client::connect(&edge.ws_url(), &soon.dev()).await;
    let later = Token::user("u", &[]).claim("exp", json!(unix() + 3600));
    refreshed
        .send(json!({"type": "refresh", "token": later.dev()}))
        .await;
    assert_eq!(
        refreshed.expect("refreshed").await["exp"],
        later.claims["exp"]
    );
    let other_user = Token::user("someone-else", &[]).dev();
    refreshed
        .send(json!({"type": "refresh", "token": other_user}))
        .await;
    assert_eq!(refreshed.expect("error").await["code"], "FORBIDDEN");

    assert_eq!(lapsing.closed().await.0, 4003);
    assert_eq!(
        refreshed.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
}

fn unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_the_edge_works() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let before = edge.metrics().await;
    let value =
        |m: &std::collections::HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    assert_eq!(value(&before, "ferrocast_connections"), 0.0);

    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let (mut a, _) = Client::connect(&edge.ws_url(), &token("a")).await;
    let (mut b, _) = Client::connect(&edge.ws_url(), &token("b")).await;
    a.join("r").await;
    b.join("r").await;
    for i in 0..3 {
        emitter
            .to_room("r")
            .emit("e", &json!(i))
            .await
            .expect("emit");
    }
    for client in [&mut a, &mut b] {
        for _ in 0..3 {
            client.expect("msg").await;
        }
    }
    let _ = Client::open(
        &edge.ws_url(),
        Some(&Token::user("x", &[]).hs256("wrong")),
        &[],
    )
    .await;

    let after = edge.metrics().await;
    assert_eq!(value(&after, "ferrocast_connections"), 2.0);
    assert_eq!(value(&after, "ferrocast_connections_opened_total"), 2.0);
    assert_eq!(value(&after, "ferrocast_room_memberships"), 2.0);
    assert_eq!(value(&after, "ferrocast_bus_messages_total"), 3.0);
    assert_eq!(value(&after, "ferrocast_deliveries_total"), 6.0);
    assert_eq!(
        value(
            &after,
            "ferrocast_auth_failures_total{reason=\"bad_signature\"}"
        ),
        1.0
    );
    // user, client and `all` of two connections (`all` shared) plus the room.
    assert_eq!(value(&after, "ferrocast_subscribed_targets"), 6.0);
    // One observation per write burst: at least one per connection, at most one per message.
    let observed = value(&after, "ferrocast_delivery_latency_seconds_count");
    assert!((2.0..=6.0).contains(&observed), "{observed}");

    drop(a);
    let edge_ref = &edge;
    let mut closed = false;
    for _ in 0..200 {
        let m = edge_ref.metrics().await;
        if value(&m, "ferrocast_connections") == 1.0
            && value(&m, "ferrocast_room_memberships") == 1.0
        {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed, "gauges follow a closed connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_counts_against_the_rate_limit_and_is_closed_with_4008() {
    let edge = Edge::start(&["--rate", "5", "--burst", "5"]).await;
    let (mut flood, _) = Client::connect(&edge.ws_url(), &token("flood")).await;
    for _ in 0..20 {
        flood
            .send_raw(tungstenite::Message::Ping(Vec::new().into()))
            .await;
    }
    // Refused like any frame: RATE_LIMITED with how long to wait, then the close.
    let refused = flood.expect("error").await;
    assert_eq!(refused["code"], "RATE_LIMITED", "{refused}");
    assert!(refused["retry_after"].as_u64().is_some(), "{refused}");
    assert_eq!(flood.closed().await.0, 4008);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_codes_clients_invent_share_one_metric_series() {
    let edge = Edge::start(&[]).await;
    for (i, code) in [4321u16, 4322, 3999].into_iter().enumerate() {
        let (mut client, _) = Client::connect(&edge.ws_url(), &token(&format!("c{i}"))).await;
        client
            .send_raw(tungstenite::Message::Close(Some(
                tungstenite::protocol::CloseFrame {
                    code: code.into(),
                    reason: "bye".into(),
                },
            )))
            .await;
        assert_eq!(client.closed().await.0, code);
    }
    edge.wait_metric("ferrocast_connections_closed_total{code=\"other\"}", 3.0)
        .await;
    let metrics = edge.metrics().await;
    assert!(
        !metrics
            .keys()
            .any(|k| k.contains("4321") || k.contains("3999")),
        "{metrics:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_is_held_to_a_byte_quota_per_connection() {
    let redis = RedisServer::start();
    // The default quota: 64 KiB of data a second per connection.
    let edge = Edge::with_redis(&redis, &[]).await;
    let publisher = Token::user("writer", &["r"])
        .claim("pub", json!(["r"]))
        .dev();
    let (mut client, _) = Client::connect(&edge.ws_url(), &publisher).await;
    client.join("r").await;
    let blob = "x".repeat(4000);
    let (mut acked, mut refused) = (0, None);
    // 40 publishes of 4 KB (within the frame rate's burst of 50): 160 KB at once.
    for _ in 0..40 {
        let answer = client
            .request(
                json!({"type": "publish", "room": "r", "event": "e", "data": blob, "echo": false}),
            )
            .await;
        match answer["type"].as_str() {
            Some("ack") => acked += 1,
            _ => {
                refused = Some(answer);
                break;
            }
        }
    }
    let refused = refused.expect("160 KB published at once: the byte quota never refused");
    assert_eq!(refused["code"], "RATE_LIMITED", "{refused}");
    assert!(
        refused["retry_after"].as_u64().is_some_and(|ms| ms > 0),
        "{refused}"
    );
    assert!(
        (14..=17).contains(&acked),
        "{acked} publishes of 4 KB passed a 64 KiB quota"
    );
    // The quota refills: after the wait it says, the same publish passes.
    let wait = refused["retry_after"].as_u64().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    let answer = client
        .request(json!({"type": "publish", "room": "r", "event": "e", "data": blob, "echo": false}))
        .await;
    assert_eq!(answer["type"], "ack", "{answer}");
}
