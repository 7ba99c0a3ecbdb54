//! The internal listener's probes tell the truth, and nothing a client does on the public port
//! can make them lie: silent sockets, a full edge, a Redis that restarted empty.

use std::time::Duration;

use ferrocast_tests::{Client, DEADLINE, Edge, RedisServer, Token};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

fn token(sub: &str) -> String {
    Token::user(sub, &["r"]).dev()
}

/// A TCP connection to the edge's public port from local address `source` (127.0.0.x).
async fn connect_from(edge: &Edge, source: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("address"))
        .expect("bind");
    socket
        .connect(([127, 0, 0, 1], edge.port).into())
        .await
        .expect("connect")
}

/// Opens connections from `source` that never say anything, until `count` of them are held by
/// the edge (a held one gets no answer; a refused one gets its 503 at once).
async fn silent_sockets(edge: &Edge, source: &str, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..count * 3 {
        if held.len() == count {
            break;
        }
        let mut stream = connect_from(edge, source).await;
        let mut byte = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte))
            .await
            .is_err()
        {
            held.push(stream);
        }
    }
    assert_eq!(
        held.len(),
        count,
        "the edge never held {count} silent sockets"
    );
    held
}

/// The status line of an upgrade attempt from `source`.
async fn upgrade_status(edge: &Edge, source: &str) -> String {
    let mut stream = connect_from(edge, source).await;
    let request = "GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
                   sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .expect("write");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.expect("read");
    String::from_utf8_lossy(&head[9..12]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_never_fail_the_probes() {
    let edge = Edge::start(&[
        "--max-unauthenticated",
        "20",
        "--max-pending-per-ip",
        "0",
        "--handshake-timeout",
        "30s",
    ])
    .await;
    let _silent = silent_sockets(&edge, "127.0.0.1", 20).await;
    assert_eq!(upgrade_status(&edge, "127.0.0.1").await, "503");
    // Every place for new connections is taken, yet the pod is alive and (for its existing
    // clients and the ones to come once these time out) ready.
    assert_eq!(edge.get("/healthz").await.map(|r| r.0), Some(200));
    assert_eq!(edge.get("/readyz").await.map(|r| r.0), Some(200));
    assert_eq!(edge.get("/metrics").await.map(|r| r.0), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_pending_place() {
    let edge = Edge::start(&[
        "--max-unauthenticated",
        "100",
        "--max-pending-per-ip",
        "5",
        "--handshake-timeout",
        "30s",
    ])
    .await;
    let _silent = silent_sockets(&edge, "127.0.0.1", 5).await;
    assert_eq!(upgrade_status(&edge, "127.0.0.1").await, "503");
    let refused = edge.metrics().await;
    assert_eq!(
        refused.get("ferrocast_refused_total{reason=\"pending_per_ip_limit\"}"),
        Some(&1.0),
        "{refused:?}"
    );
    // Another address still gets in.
    assert_eq!(upgrade_status(&edge, "127.0.0.2").await, "101");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_at_the_connection_cap() {
    let edge = Edge::start(&["--max-connections", "2"]).await;
    let (first, _) = Client::connect(&edge.ws_url(), &token("a")).await;
    let (_second, _) = Client::connect(&edge.ws_url(), &token("b")).await;
    edge.wait_readyz(503).await;
    drop(first);
    edge.wait_readyz(200).await;
}

/// `/metrics` says what `/readyz` says, and why: full, or Redis gone (then presence cannot be
/// recorded either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_gauges_follow_readiness_redis_and_presence() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(
        &redis,
        &[
            "--max-connections",
            "2",
            "--presence-rooms",
            "r",
            "--presence-ttl",
            "2s",
        ],
    )
    .await;
    edge.wait_metric("ferrocast_max_connections", 2.0).await;
    edge.wait_metric("ferrocast_ready", 1.0).await;
    edge.wait_metric("ferrocast_bus_connected", 1.0).await;
    let (mut member, _) = Client::connect(&edge.ws_url(), &token("a")).await;
    member.join("r").await;
    let (second, _) = Client::connect(&edge.ws_url(), &token("b")).await;
    edge.wait_metric("ferrocast_ready", 0.0).await;
    assert_eq!(edge.metrics().await["ferrocast_bus_connected"], 1.0);
    drop(second);
    edge.wait_metric("ferrocast_ready", 1.0).await;
    assert_eq!(edge.metrics().await["ferrocast_presence_errors_total"], 0.0);

    redis.kill();
    edge.wait_metric("ferrocast_bus_connected", 0.0).await;
    edge.wait_metric("ferrocast_ready", 0.0).await;
    // The member's presence is refreshed every second or so: those refreshes fail.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while edge.metrics().await["ferrocast_presence_errors_total"] < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no presence error counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_within_a_second_of_an_empty_redis_answering_and_then_every_connection_welcomed() {
    let mut redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    // Pooled connections exist and are idle: a client came and went.
    for user in ["a", "b", "c"] {
        let (mut client, _) = Client::connect(&edge.ws_url(), &token(user)).await;
        client.join("r").await;
    }
    redis.restart_empty();
    let answering = tokio::time::Instant::now();
    let deadline = answering + DEADLINE;
    loop {
        if edge.get("/readyz").await.map(|r| r.0) == Some(200) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready_after = answering.elapsed();
    assert!(
        ready_after < Duration::from_secs(1),
        "ready {ready_after:?} after Redis answered"
    );
    // Ready means welcome: every connection from now on gets in and can join.
    for i in 0..20 {
        let (mut client, welcome) = Client::connect(&edge.ws_url(), &token(&format!("u{i}"))).await;
        assert_eq!(welcome["type"], "welcome", "connection {i}: {welcome}");
        assert_eq!(client.join("r").await["type"], "joined", "connection {i}");
    }
}

/// A TCP connection to the edge's internal port from local address `source` (127.0.0.x).
async fn internal_from(edge: &Edge, source: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("address"))
        .expect("bind");
    socket
        .connect(([127, 0, 0, 1], edge.internal_port).into())
        .await
        .expect("connect")
}

/// `GET /healthz` on the internal port from `source`: the status, or `None` if no answer came
/// within a second (a probe's usual timeout).
async fn healthz_from(edge: &Edge, source: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = internal_from(edge, source).await;
        tokio::io::AsyncWriteExt::write_all(
            &mut stream,
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await
        .ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        String::from_utf8_lossy(&answer)
            .split(' ')
            .nth(1)?
            .parse()
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_to_the_internal_port_never_delay_a_probe() {
    let edge = Edge::start(&[]).await;
    // The reviewers' shape: 64 connections that say nothing, from the probe's own address.
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(internal_from(&edge, "127.0.0.1").await);
    }
    for _ in 0..5 {
        assert_eq!(healthz_from(&edge, "127.0.0.1").await, Some(200));
    }
    assert_eq!(edge.get("/readyz").await.map(|r| r.0), Some(200));
    // An address that opens far more is held to its share: the kubelet's address still gets in.
    let mut crowd = Vec::new();
    for _ in 0..300 {
        crowd.push(internal_from(&edge, "127.0.0.3").await);
    }
    assert_eq!(healthz_from(&edge, "127.0.0.2").await, Some(200));
    // A connection that never sends its request is closed soon, not held for the edge's life.
    let mut silent = internal_from(&edge, "127.0.0.4").await;
    let mut byte = [0u8; 1];
    let ended = tokio::time::timeout(DEADLINE, silent.read(&mut byte)).await;
    assert!(
        matches!(ended, Ok(Ok(0) | Err(_))),
        "an idle internal connection was kept: {ended:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_clients_of_a_dual_stack_listener_each_have_their_own_pending_cap() {
    let edge = Edge::start_at(
        "[::]",
        &[
            "--jwt-secret",
            "a-dual-stack-test-secret-of-32-bytes+",
            "--max-unauthenticated",
            "100",
            "--max-pending-per-ip",
            "3",
            "--handshake-timeout",
            "30s",
        ],
    )
    .await;
    // They arrive as ::ffff:127.0.0.1; masked as IPv6 they would all be `::`, one peer.
    let _silent = silent_sockets(&edge, "127.0.0.1", 3).await;
    assert_eq!(upgrade_status(&edge, "127.0.0.1").await, "503");
    assert_eq!(upgrade_status(&edge, "127.0.0.2").await, "101");
}
