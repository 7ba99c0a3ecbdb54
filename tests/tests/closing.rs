//! The edge can always end a connection: whatever the client does (stop reading, keep pinging,
//! send a close or a broken frame while its socket is full), the slow-consumer bound, the
//! heartbeat, a worker's disconnect and the drain each close it.

use std::time::Duration;

use ferrocast_emitter::Emitter;
use ferrocast_tests::raw_ws::{PING, RawWs, frame};
use ferrocast_tests::{Edge, RedisServer, Token};
use serde_json::json;
use tokio::task::JoinHandle;

/// A client that joined `room`, then stopped reading and sends a WebSocket Ping every 50 ms
/// (20 a second, inside the default rate limit) until the edge stops taking them.
async fn pinging_non_reader(edge: &Edge, room: &str, user: &str) -> JoinHandle<RawWs> {
    let token = Token::user(user, &[room]).dev();
    // A small receive buffer: the client falls behind after a few frames.
    let mut ws = RawWs::open(edge.port, Some(&token), "", 4096).await;
    ws.read_until("\"welcome\"").await;
    ws.send_json(&json!({"type": "join", "room": room})).await;
    ws.read_until("\"joined\"").await;
    tokio::spawn(async move {
        let ping = frame(true, PING, b"");
        for _ in 0..600 {
            if !ws.write(&ping).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ws
    })
}

/// Publishes `batches` pipelines of 256 messages of about 2 KiB to `room`.
async fn publish_busily(emitter: &Emitter, room: &str, batches: usize) {
    let blob = "x".repeat(2048);
    for b in 0..batches {
        let batch: Vec<_> = (0..256)
            .map(|i| {
                emitter
                    .to_room(room)
                    .message("busy", &json!({"n": b * 256 + i, "blob": blob}))
                    .expect("message")
            })
            .collect();
        emitter.emit_batch(&batch).await.expect("publish");
    }
}

/// Waits until the edge holds no connection, within `within`; panics with how many are left.
async fn wait_all_closed(edge: &Edge, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let open = edge
            .metrics()
            .await
            .get("ferrocast_connections")
            .copied()
            .unwrap_or(-1.0);
        if open == 0.0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} connections still open after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_pinging_non_readers_of_a_busy_room_are_all_closed_within_the_idle_timeout() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(
        &redis,
        &[
            "--idle-timeout",
            "8s",
            "--outbound-queue-bytes",
            "524288",
            "--compression",
            "off",
        ],
    )
    .await;
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let mut pingers = Vec::new();
    for i in 0..60 {
        pingers.push(pinging_non_reader(&edge, "busy", &format!("u{i}")).await);
    }
    publish_busily(&emitter, "busy", 40).await;
    // Publishing has stopped: every one of them must be gone within the idle timeout, whatever
    // its task was writing when the edge asked it to close.
    wait_all_closed(&edge, Duration::from_secs(8)).await;
    let metrics = edge.metrics().await;
    let slow = metrics
        .get("ferrocast_connections_closed_total{code=\"4009\"}")
        .copied()
        .unwrap_or(0.0);
    assert_eq!(slow, 60.0, "each closed as a slow consumer: {metrics:?}");
    for pinger in pingers {
        pinger.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_and_the_drain_end_pinging_non_readers_whose_queue_never_fills() {
    let redis = RedisServer::start();
    // A bound the test never reaches: only the disconnect (and then the drain) can end them.
    let edge = Edge::with_redis(
        &redis,
        &[
            "--outbound-queue-bytes",
            "67108864",
            "--outbound-queue",
            "100000",
            "--compression",
            "off",
            "--drain-timeout",
            "10s",
        ],
    )
    .await;
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let kicked = pinging_non_reader(&edge, "busy", "kicked").await;
    let drained = pinging_non_reader(&edge, "busy", "drained").await;
    // Far more than the kernel's socket buffers hold, so both sockets stay full.
    publish_busily(&emitter, "busy", 20).await;
    emitter
        .to_user("kicked")
        .disconnect("go away")
        .await
        .expect("disconnect");
    edge.wait_metric("ferrocast_connections", 1.0).await;
    let mut edge = edge;
    edge.terminate();
    // The drain asks its one connection at once; gave it up, the edge would wait out the
    // window and its 5 s grace (15 s).
    let status = edge.exited(Duration::from_secs(8)).await;
    assert!(status.success(), "the drain ended cleanly: {status}");
    kicked.abort();
    drained.abort();
}
