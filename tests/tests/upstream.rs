//! Clients `send` upstream; workers consume the inbox through a consumer group, answer the
//! sender, survive each other's crashes, and set poison messages aside.

use std::time::Duration;

use ferrocast_emitter::{Emitter, Inbox, Received};
use ferrocast_tests::upstream::{chat_token, send, take};
use ferrocast_tests::{Client, DEADLINE, Edge, RedisServer, eventually};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const UPSTREAM: &[&str] = &["--upstream-events", "chat.*,typing"];

/// A consumer for tests: short waits, so claims and dead-lettering happen within the deadline.
async fn consumer(redis: &RedisServer, name: &str, max_deliveries: u64) -> Inbox {
    Inbox::builder(redis.url(), "workers", name)
        .block(Duration::from_millis(100))
        .claim_idle(Duration::from_millis(300))
        .max_deliveries(max_deliveries)
        .connect()
        .await
        .expect("inbox")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_reaches_a_worker_which_answers_the_sender() {
    let redis = RedisServer::start();
    let a = Edge::with_redis(&redis, UPSTREAM).await;
    let b = Edge::with_redis(&redis, UPSTREAM).await;
    let (mut alice, welcome) = Client::connect(&a.ws_url(), &chat_token("alice")).await;
    let (mut bob, _) = Client::connect_msgpack(&b.ws_url(), &chat_token("bob")).await;
    let data = r#"{"text":"hi é","n":1.50}"#;

    // The worker: answers each sender through the emitter, and reports what it got.
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let mut inbox = consumer(&redis, "w1", 5).await;
    let (seen, mut got) = mpsc::unbounded_channel::<Received>();
    tokio::spawn(async move {
        inbox
            .run(|received| {
                let emitter = emitter.clone();
                let seen = seen.clone();
                async move {
                    let m = &received.message;
                    emitter
                        .to_client(&m.client)
                        .emit("chat.reply", &json!({"to": m.event, "user": m.user}))
                        .await?;
                    let _ = seen.send(received);
                    Ok::<(), ferrocast_emitter::EmitError>(())
                }
            })
            .await
    });

    // Raw text so `data` reaches the worker exactly as typed.
    alice
        .send_raw(tungstenite::Message::Text(
            format!(r#"{{"type":"send","event":"chat.send","data":{data},"ref":7}}"#).into(),
        ))
        .await;
    let ack = alice.expect("ack").await;
    assert_eq!(ack["ref"], 7);
    let id = ack["id"].as_str().expect("id").to_owned();
    let reply = alice.expect("msg").await;
    assert_eq!(
        (&reply["scope"], &reply["event"], &reply["data"]),
        (
            &json!("client"),
            &json!("chat.reply"),
            &json!({"to": "chat.send", "user": "alice"})
        )
    );
    let received = tokio::time::timeout(DEADLINE, got.recv())
        .await
        .expect("worker saw it")
        .expect("worker alive");
    let m = &received.message;
    assert_eq!(received.entry, id, "the ack's id is the inbox entry");
    assert_eq!(received.deliveries, 1);
    assert_eq!(m.client, welcome["client"].as_str().expect("client"));
    assert_eq!(m.user, "alice");
    assert_eq!(m.node, welcome["node"].as_str().expect("node"));
    assert_eq!(m.data, data.as_bytes(), "data byte for byte");
    let meta: Value = serde_json::from_slice(m.meta.as_deref().expect("meta")).expect("json");
    assert_eq!(meta, json!({"plan": "pro", "team": 7}));

    // MessagePack clients send too: the worker gets JSON.
    let ack = bob
        .request(json!({"type": "send", "event": "typing", "data": {"k": [1, "two", null]}}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(bob.expect("msg").await["event"], "chat.reply");
    let received = tokio::time::timeout(DEADLINE, got.recv())
        .await
        .expect("worker saw it")
        .expect("worker alive");
    let data: Value = serde_json::from_slice(&received.message.data).expect("json");
    assert_eq!(data, json!({"k": [1, "two", null]}));
    // Everything handled was acknowledged.
    eventually("no pending entries", || {
        redis
            .cli(&["XPENDING", "fc:{inbox}", "workers"])
            .as_deref()
            .is_some_and(|s| s.starts_with('0'))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_worker_s_message_goes_to_another_and_poison_goes_to_the_dead_letters() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, UPSTREAM).await;
    let (mut alice, _) = Client::connect(&edge.ws_url(), &chat_token("alice")).await;

    // Worker 1 takes a message and dies before acknowledging it.
    let lost = send(&mut alice, "chat.send", json!("first")).await;
    let mut w1 = consumer(&redis, "w1", 5).await;
    let taken = take(&mut w1, 1).await;
    assert_eq!(taken[0].entry, lost);
    drop(w1);
    // Worker 2 claims it once it has been idle long enough.
    let mut w2 = consumer(&redis, "w2", 5).await;
    let again = take(&mut w2, 1).await;
    assert_eq!(
        (again[0].entry.as_str(), again[0].deliveries),
        (lost.as_str(), 2)
    );
    w2.ack(&again[0]).await.expect("ack");

    // A poison message fails every time; the ones after it are handled meanwhile.
    let poison = send(&mut alice, "chat.send", json!("poison")).await;
    let good: Vec<String> = vec![
        send(&mut alice, "chat.send", json!("good 1")).await,
        send(&mut alice, "chat.send", json!("good 2")).await,
    ];
    // And an entry no edge wrote, which no worker could decode.
    let garbage = redis
        .cli(&["XADD", "fc:{inbox}", "*", "e", "not msgpack"])
        .expect("xadd");
    let (seen, mut got) = mpsc::unbounded_channel::<(String, bool)>();
    let mut w3 = consumer(&redis, "w3", 3).await;
    tokio::spawn(async move {
        w3.run(|received| {
            let poisoned = received.message.data == br#""poison""#;
            let _ = seen.send((received.entry, poisoned));
            async move {
                if poisoned {
                    Err("cannot handle this one")
                } else {
                    Ok(())
                }
            }
        })
        .await
    });
    let mut handled = Vec::new();
    let mut poison_attempts = 0;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while handled.len() < 2 || poison_attempts < 3 {
        let (entry, poisoned) = tokio::time::timeout_at(deadline, got.recv())
            .await
            .expect("deliveries in time")
            .expect("worker alive");
        if poisoned {
            poison_attempts += 1;
        } else {
            handled.push(entry);
        }
    }
    assert_eq!(handled, good, "the good ones, once each, in order");
    eventually("two dead letters", || {
        redis.cli(&["XLEN", "fc:{inbox}:dead"]).as_deref() == Some("2")
    })
    .await;
    let dead = redis
        .cli(&["XRANGE", "fc:{inbox}:dead", "-", "+"])
        .expect("xrange");
    assert!(dead.contains(&poison) && dead.contains(&garbage), "{dead}");
    assert!(
        dead.contains("too many failed deliveries") && dead.contains("undecodable"),
        "{dead}"
    );
    // No fourth attempt: it is out of the group's pending list.
    eventually("nothing pending", || {
        redis
            .cli(&["XPENDING", "fc:{inbox}", "workers"])
            .as_deref()
            .is_some_and(|s| s.starts_with('0'))
    })
    .await;
    assert!(
        got.try_recv().is_err(),
        "poison handed out after dead-lettering"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sends_and_publishes_get_their_codes_and_disturb_no_one() {
    let redis = RedisServer::start();
    let mut args = UPSTREAM.to_vec();
    args.extend(["--max-data-size", "1024"]);
    let edge = Edge::with_redis(&redis, &args).await;
    let (mut alice, _) = Client::connect(&edge.ws_url(), &chat_token("alice")).await;
    let (mut bob, _) = Client::connect(&edge.ws_url(), &chat_token("bob")).await;
    bob.join("chat:1").await;
    alice.join("chat:1").await;
    let big = "x".repeat(2000);
    for (frame, code) in [
        (
            json!({"type": "send", "event": "admin.reset", "data": 1}),
            "FORBIDDEN",
        ),
        (
            json!({"type": "send", "event": "bad event", "data": 1}),
            "BAD_FRAME",
        ),
        (json!({"type": "send", "data": 1}), "BAD_FRAME"),
        (
            json!({"type": "send", "event": "chat.send", "data": big}),
            "TOO_LARGE",
        ),
        (
            json!({"type": "publish", "room": "chat:1", "event": "e", "data": big}),
            "TOO_LARGE",
        ),
        (
            json!({"type": "publish", "room": "chat:2", "event": "e", "data": 1}),
            "NOT_JOINED",
        ),
        (
            json!({"type": "publish", "room": "news", "event": "e", "data": 1}),
            "FORBIDDEN",
        ),
    ] {
        let answer = alice.request(frame.clone()).await;
        assert_eq!(
            (&answer["type"], &answer["code"]),
            (&json!("error"), &json!(code)),
            "{frame}"
        );
    }
    // Not JSON at all.
    alice
        .send_raw(tungstenite::Message::Text(
            r#"{"type":"send","event":"chat.send","data":"#.into(),
        ))
        .await;
    assert_eq!(alice.expect("error").await["code"], "BAD_FRAME");
    assert_eq!(
        redis.cli(&["XLEN", "fc:{inbox}"]).as_deref(),
        Some("0"),
        "nothing refused was stored"
    );

    // Both connections still work, and Bob saw none of it.
    send(&mut alice, "chat.send", json!({"ok": true})).await;
    let ack = alice
        .request(
            json!({"type": "publish", "room": "chat:1", "event": "fine", "data": 1, "echo": false}),
        )
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(bob.expect("msg").await["event"], "fine");

    // With Redis unreachable, a send is refused as UNAVAILABLE, never silently dropped.
    redis.pause();
    edge.wait_readyz(503).await;
    let answer = alice
        .request(json!({"type": "send", "event": "chat.send", "data": 1}))
        .await;
    assert_eq!(answer["code"], "UNAVAILABLE", "{answer}");
    redis.resume();
    edge.wait_readyz(200).await;
    send(&mut alice, "chat.send", json!("back")).await;
}
