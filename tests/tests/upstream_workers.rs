//! Workers reading the upstream inbox: the consume command, the chat worker example, and a
//! partitioned inbox read by every worker.

use std::time::Duration;

use ferrocast_emitter::{Emitter, Inbox};
use ferrocast_tests::upstream::{chat_token, send, take};
use ferrocast_tests::{Client, Edge, RedisServer, Running, bin, emitter};
use serde_json::{Value, json};

const UPSTREAM: &[&str] = &["--upstream-events", "chat.*,typing"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_is_off_unless_configured_and_needs_redis() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let (mut alice, _) = Client::connect(&edge.ws_url(), &chat_token("alice")).await;
    let answer = alice
        .request(json!({"type": "send", "event": "chat.send", "data": 1}))
        .await;
    assert_eq!(answer["code"], "FORBIDDEN", "{answer}");
    assert_eq!(redis.cli(&["EXISTS", "fc:{inbox}"]).as_deref(), Some("0"));

    let out = std::process::Command::new(bin("edge"))
        .args(["--listen", "127.0.0.1:0", "--upstream-events", "chat.*"])
        .env_remove("FERROCAST_REDIS_URL")
        .output()
        .expect("run edge");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--redis-url"), "{stderr}");
}

/// Runs `emitter consume --count <count>` as consumer `me` of group `cli`; its JSON lines.
fn consume(redis: &RedisServer, count: usize) -> Vec<Value> {
    let (url, count) = (redis.url(), count.to_string());
    let args = [
        "--redis-url",
        &url,
        "consume",
        "--group",
        "cli",
        "--consumer",
        "me",
    ];
    let run = emitter(&[&args[..], &["--count", &count]].concat(), None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len().to_string(), count, "{}", run.stdout);
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consume_command_prints_json_lines_and_acknowledges_them() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, UPSTREAM).await;
    let (mut alice, welcome) = Client::connect(&edge.ws_url(), &chat_token("alice")).await;
    let ids = [
        send(&mut alice, "chat.send", json!({"text": "one"})).await,
        send(&mut alice, "typing", json!(true)).await,
        send(&mut alice, "typing", json!(false)).await,
    ];
    let lines = consume(&redis, 2);
    assert_eq!(lines[0]["entry"], ids[0]);
    assert_eq!(lines[0]["event"], "chat.send");
    assert_eq!(lines[0]["data"], json!({"text": "one"}));
    assert_eq!(lines[0]["user"], "alice");
    assert_eq!(lines[0]["client"], welcome["client"]);
    assert_eq!(lines[0]["meta"], json!({"plan": "pro", "team": 7}));
    assert_eq!(
        (&lines[1]["entry"], &lines[1]["data"]),
        (&json!(ids[1]), &json!(true))
    );
    let pending = redis
        .cli(&["XPENDING", "fc:{inbox}", "cli"])
        .expect("xpending");
    assert!(pending.starts_with('0'), "acknowledged: {pending}");
    // Only what it printed was taken: the third is still there for the next run.
    let line = &consume(&redis, 1)[0];
    assert_eq!(
        (&line["entry"], &line["deliveries"]),
        (&json!(ids[2]), &json!(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_worker_example_publishes_good_messages_and_answers_bad_ones() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, UPSTREAM).await;
    let _worker = Running(
        std::process::Command::new(bin("examples/chat_worker"))
            .env("FERROCAST_REDIS_URL", redis.url())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run the example (cargo build --examples)"),
    );
    let (mut alice, _) = Client::connect(&edge.ws_url(), &chat_token("alice")).await;
    let (mut bob, _) = Client::connect(&edge.ws_url(), &chat_token("bob")).await;
    alice.join("chat:1").await;
    bob.join("chat:1").await;
    send(
        &mut alice,
        "chat.send",
        json!({"room": "chat:1", "text": "hello"}),
    )
    .await;
    for client in [&mut alice, &mut bob] {
        let msg = client.expect("msg").await;
        assert_eq!(
            (&msg["room"], &msg["event"], &msg["data"]),
            (
                &json!("chat:1"),
                &json!("chat.message"),
                &json!({"from": "alice", "text": "hello"})
            )
        );
    }
    send(
        &mut alice,
        "chat.send",
        json!({"room": "chat:1", "text": "  "}),
    )
    .await;
    let refused = alice.expect("msg").await;
    assert_eq!(
        (&refused["scope"], &refused["event"]),
        (&json!("client"), &json!("chat.error"))
    );
    // The calls it answers (v1.2).
    let time = alice
        .request(json!({"type": "rpc", "event": "chat.time"}))
        .await;
    assert!(time["data"]["now"].as_u64().is_some(), "{time}");
    let echo = alice
        .request(json!({"type": "rpc", "event": "chat.echo", "data": [1, "a"]}))
        .await;
    assert_eq!(
        (&echo["type"], &echo["data"]),
        (&json!("reply"), &json!([1, "a"]))
    );
    let refused = alice
        .request(json!({"type": "rpc", "event": "chat.echo"}))
        .await;
    assert_eq!(refused["code"], "RPC_ERROR", "{refused}");
    assert_eq!(refused["data"], json!({"hint": "send some data"}));
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    ferrocast_tests::assert_nothing_else(&emitter, &mut [&mut alice, &mut bob]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_inbox_keeps_each_client_in_one_partition_and_workers_read_them_all() {
    let redis = RedisServer::start();
    let mut args = UPSTREAM.to_vec();
    args.extend(["--inbox-partitions", "3"]);
    let edge = Edge::with_redis(&redis, &args).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        let (client, _) = Client::connect(&edge.ws_url(), &chat_token(&format!("user-{i}"))).await;
        clients.push(client);
    }
    let mut ids = std::collections::HashSet::new();
    for round in 0..2 {
        for client in &mut clients {
            ids.insert(send(client, "chat.send", json!(round)).await);
        }
    }
    let lengths: Vec<u64> = (0..3)
        .map(|p| {
            redis
                .cli(&["XLEN", &format!("fc:{{inbox:{p}}}")])
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(lengths.iter().sum::<u64>(), 12, "{lengths:?}");
    assert!(
        lengths.iter().filter(|n| **n > 0).count() > 1,
        "{lengths:?}"
    );
    assert_eq!(redis.cli(&["EXISTS", "fc:{inbox}"]).as_deref(), Some("0"));

    let mut inbox = Inbox::builder(redis.url(), "workers", "w1")
        .partitions(3)
        .block(Duration::from_millis(100))
        .connect()
        .await
        .expect("inbox");
    let received = take(&mut inbox, 12).await;
    // Per client, in the order sent.
    let mut per_client: std::collections::HashMap<String, Vec<Vec<u8>>> = Default::default();
    for r in &received {
        per_client
            .entry(r.message.client.clone())
            .or_default()
            .push(r.message.data.clone());
    }
    // One XACK per partition for the lot.
    inbox.ack_all(&received).await.expect("ack_all");
    for p in 0..3 {
        let pending = redis
            .cli(&["XPENDING", &format!("fc:{{inbox:{p}}}"), "workers"])
            .expect("xpending");
        assert!(pending.starts_with('0'), "partition {p}: {pending}");
    }
    assert_eq!(per_client.len(), 6);
    for data in per_client.values() {
        assert_eq!(data, &vec![b"0".to_vec(), b"1".to_vec()]);
    }
    let got: std::collections::HashSet<String> = received.into_iter().map(|r| r.entry).collect();
    assert_eq!(got, ids);
}
