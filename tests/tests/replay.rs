//! History replays cannot be turned against the edge or Redis: clients that do not read hold a
//! bounded amount of memory between them, and a client looping over joins with `since` runs out
//! of rate-limit tokens long before it makes Redis send much.

use ferrocast_emitter::Emitter;
use ferrocast_tests::{Client, Edge, RedisServer, Token};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Messages in the room's history and their size: 8 MiB in all.
const MESSAGES: usize = 4000;
const SIZE: usize = 2048;

/// Publishes the history; the offset of its first message.
async fn fill(redis: &RedisServer) -> String {
    let emitter = Emitter::builder(redis.url())
        .history_len(MESSAGES as u64 * 2)
        .connect()
        .await
        .expect("emitter");
    let data = json!("x".repeat(SIZE));
    let mut first = None;
    for chunk in 0..MESSAGES / 500 {
        let batch: Vec<_> = (0..500)
            .map(|_| emitter.to_room("r").message("m", &data).expect("message"))
            .collect();
        for result in emitter.emit_batch(&batch).await.expect("batch") {
            let offset = result.expect("published");
            if chunk == 0 {
                first.get_or_insert(offset);
            }
        }
    }
    first.expect("a first offset").to_string()
}

/// The edge process's resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_a_long_replay_pin_bounded_memory() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &["--replay-memory", "2097152"]).await;
    let first = fill(&redis).await;
    // A client that reads, so the process has settled its buffers before the baseline.
    let (mut reader, _) =
        Client::connect(&edge.ws_url(), &Token::user("reader", &["r"]).dev()).await;
    reader.join("r").await;
    let before = rss_kib(edge.pid());

    let mut stalled = Vec::new();
    for i in 0..40 {
        let (mut client, _) =
            Client::connect(&edge.ws_url(), &Token::user(&format!("s{i}"), &["r"]).dev()).await;
        client
            .send(json!({"type": "join", "room": "r", "since": first}))
            .await;
        stalled.push(client);
    }
    // Every one of them is in the room (the reader sees the room's traffic reach them all)...
    let emitter = Emitter::builder(redis.url())
        .history_len(MESSAGES as u64 * 2)
        .connect()
        .await
        .expect("emitter");
    emitter
        .to_room("r")
        .emit("probe", &json!(1))
        .await
        .expect("probe");
    assert_eq!(reader.expect("msg").await["event"], "probe");
    // ...and whatever they do not read stays in Redis, not in the edge: 40 replays of 8 MiB
    // each would be 320 MiB; the budget is 2 MiB plus a page per stalled socket.
    let mut peak = before;
    for _ in 0..20 {
        peak = peak.max(rss_kib(edge.pid()));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 48 * 1024,
        "RSS grew by {grown} KiB (from {before} KiB)"
    );
    // The operator sees why: the budget is spent and replays wait for their share.
    let metrics = edge.metrics().await;
    assert_eq!(metrics["ferrocast_replay_budget_bytes"], 2_097_152.0);
    assert!(
        metrics["ferrocast_replay_budget_free_bytes"] < 262_144.0,
        "{metrics:?}"
    );
    assert!(
        metrics["ferrocast_replay_budget_waits_total"] > 0.0,
        "{metrics:?}"
    );

    // The others go away, and with them the pages they held; the one that starts reading now
    // gets its whole replay, in order, then live.
    let mut client = stalled.pop().expect("a client");
    drop(stalled);
    let joined = client.expect("joined").await;
    assert_eq!(joined["recovered"], true);
    for i in 1..MESSAGES {
        let msg = client.expect("msg").await;
        assert_eq!(msg["event"], "m", "message {i} of the replay");
    }
    assert_eq!(client.expect("msg").await["event"], "probe");
}

/// Sends `frame` until it is not refused RATE_LIMITED, waiting as long as each refusal says;
/// returns the answer, reading past (replayed) `msg` frames.
async fn until_answered(client: &mut Client, frame: serde_json::Value) -> serde_json::Value {
    loop {
        client.send(frame.clone()).await;
        let answer = loop {
            match client.recv_message().await {
                Message::Text(text) => {
                    let answer: serde_json::Value = serde_json::from_str(&text).expect("json");
                    if answer["type"] != "msg" {
                        break answer;
                    }
                }
                other => panic!("{other:?}"),
            }
        };
        if answer["code"] != "RATE_LIMITED" {
            return answer;
        }
        let wait = answer["retry_after"].as_u64().expect("retry_after");
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_since_loops_cost_tokens_not_redis_bandwidth() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let first = fill(&redis).await;
    let sent = |redis: &RedisServer| -> u64 {
        let info = redis.cli(&["INFO", "stats"]).expect("INFO");
        info.lines()
            .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("total_net_output_bytes")
    };
    let (mut client, _) = Client::connect(&edge.ws_url(), &Token::user("u", &["r"]).dev()).await;
    let before = sent(&redis);
    let started = tokio::time::Instant::now();
    let mut replays = 0;
    // A client reading everything, joining with `since` again and again for three seconds,
    // waiting as long as each RATE_LIMITED says.
    while started.elapsed() < std::time::Duration::from_secs(3) {
        let joined = until_answered(
            &mut client,
            json!({"type": "join", "room": "r", "since": first}),
        )
        .await;
        assert_eq!(joined["type"], "joined", "{joined}");
        replays += 1;
        // The replay is read to its end on the way: the leave's answer comes after it.
        let left = until_answered(&mut client, json!({"type": "leave", "room": "r"})).await;
        assert_eq!(left["type"], "left", "{left}");
    }
    let mib = (sent(&redis) - before) / (1024 * 1024);
    // At 20 frames a second with no limit on replays, this loop made Redis send well over a GiB.
    assert!(mib < 64, "Redis sent {mib} MiB for {replays} replays");
    assert!(replays >= 1);
}
