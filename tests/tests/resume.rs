//! Nothing lost, nothing twice: resuming after a disconnect, on any edge, and across edge and
//! Redis failures. Every test numbers its messages and checks the client saw each exactly once,
//! in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ferrocast_emitter::Emitter;
use ferrocast_tests::follow::{Traffic, Urls, publisher};
use ferrocast_tests::join_since;
use ferrocast_tests::{Client, Edge, RedisServer, Token};
use serde_json::{Value, json};

fn token(sub: &str) -> String {
    Token::user(sub, &["r", "room:*"]).dev()
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

/// A join to a room the edge already delivers answers where the room's history stands from what
/// the edge delivered, with no Redis read; once the history may have expired, it asks Redis, and
/// a history that did expire is not offered to resume from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_to_a_live_room_is_told_where_its_history_stands() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &["--history-ttl", "2s"]).await;
    let emitter = Emitter::builder(redis.url())
        .history_ttl(Duration::from_secs(2))
        .connect()
        .await
        .expect("emitter");
    let (mut first, _) = Client::connect(&edge.ws_url(), &token("first")).await;
    first.join("r").await;
    let mut newest = None;
    for n in 0..3 {
        let offset = emitter
            .to_room("r")
            .emit("m", &json!(n))
            .await
            .expect("published");
        assert_eq!(first.expect("msg").await["offset"], offset.to_string());
        newest = Some(offset);
    }
    let newest = newest.expect("published").to_string();
    let (mut second, _) = Client::connect(&edge.ws_url(), &token("second")).await;
    assert_eq!(second.join("r").await["offset"], newest);

    // Redis lets the history expire two seconds after its last publish.
    redis.wait_gone(&["fc:{room:r}", "fc:{room:r}:epoch"]).await;
    let (mut third, _) = Client::connect(&edge.ws_url(), &token("third")).await;
    let joined = third.join("r").await;
    assert!(
        joined["offset"].is_null(),
        "an expired history is not a place to resume from: {joined}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_leaves_out_what_was_written_live() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let (mut client, _) = Client::connect(&edge.ws_url(), &token("u8")).await;
    let emit = |n: u64| {
        let emitter = &emitter;
        async move {
            emitter
                .to_user("u8")
                .emit("u", &json!(n))
                .await
                .expect("emit")
        }
    };
    // The first message is where the resume starts; those after it reach the idle client live,
    // written straight to its socket by the fan-out.
    emit(0).await;
    let since = client.expect("msg").await["offset"].clone();
    for n in 1..=3 {
        emit(n).await;
        assert_eq!(client.expect("msg").await["data"], json!(n));
    }
    client
        .send(json!({"type": "resume", "since": {"user": since}, "ref": 1}))
        .await;
    let resumed = client.expect("resumed").await;
    assert_eq!(resumed["recovered"]["user"], true);
    // Nothing the client already has is sent again: the next frame is the next message.
    emit(4).await;
    assert_eq!(client.expect("msg").await["data"], json!(4));
}
