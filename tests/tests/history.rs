//! History on demand (v1.2): `welcome` says where the user and `all` histories stand; a
//! `history` frame pages backwards through a room the client may join, joined or not, on the
//! in-process bus, a single Redis and a Cluster; `GET /api/history` answers the same; `join`
//! with `rewind` sends the last messages, then live ones, with nothing lost or doubled at the
//! seam even while the room is busy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferrocast_emitter::Emitter;
use ferrocast_tests::{Client, Edge, RedisCluster, RedisServer, Token};
use serde_json::{Value, json};

const DEV_KEY: &str = "ferrocast-dev-api-key";

/// Publishes `count` messages numbered from `from` to `room`; their offsets, in order.
async fn publish(emitter: &Emitter, room: &str, from: u64, count: u64) -> Vec<String> {
    let mut offsets = Vec::new();
    for n in from..from + count {
        let offset = emitter
            .to_room(room)
            .emit("n", &json!({"n": n}))
            .await
            .expect("publish");
        offsets.push(offset.to_string());
    }
    offsets
}

fn numbers(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["data"]["n"].as_u64().expect("n"))
        .collect()
}

/// Pages backwards through `room` 10 at a time; every page's numbers, newest page first.
async fn page_through(client: &mut Client, room: &str, newest: &str) -> Vec<Vec<u64>> {
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut frame = json!({"type": "history", "room": room, "limit": 10});
        if let Some(before) = &before {
            frame["before"] = json!(before);
        }
        let page = client.request(frame).await;
        assert_eq!(page["type"], "history", "{page}");
        assert_eq!(page["room"], room);
        assert_eq!(page["offset"], newest, "offset is the history's newest");
        for message in page["messages"].as_array().unwrap() {
            assert_eq!(message["type"], "msg");
            assert_eq!(
                (&message["scope"], &message["room"]),
                (&json!("room"), &json!(room))
            );
        }
        pages.push(numbers(&page["messages"]));
        if !page["more"].as_bool().unwrap() {
            return pages;
        }
        before = Some(page["messages"][0]["offset"].as_str().unwrap().to_owned());
    }
}

/// The history frame on an edge whose bus holds `emitter`'s room `h`: 25 messages, paged by 10.
async fn pages_backwards(edge: &Edge, emitter: &Emitter) {
    let offsets = publish(emitter, "h", 0, 25).await;
    let token = Token::user("reader", &["h", "other"]).dev();
    let (mut client, _) = Client::connect(&edge.ws_url(), &token).await;
    // Not joined: a room the token allows is enough.
    let pages = page_through(&mut client, "h", &offsets[24]).await;
    assert_eq!(
        pages,
        [
            (15..25).collect::<Vec<u64>>(),
            (5..15).collect(),
            (0..5).collect()
        ]
    );
    // The default page is 20, and an empty room has no offset.
    let page = client
        .request(json!({"type": "history", "room": "h"}))
        .await;
    assert_eq!(numbers(&page["messages"]), (5..25).collect::<Vec<u64>>());
    let empty = client
        .request(json!({"type": "history", "room": "other"}))
        .await;
    assert_eq!(
        (&empty["messages"], &empty["offset"], &empty["more"]),
        (&json!([]), &Value::Null, &json!(false))
    );
    // The same through the API.
    let (status, _, answer) = edge
        .api("GET", "/api/history?room=h&limit=3", Some(DEV_KEY), "")
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(numbers(&answer["messages"]), [22, 23, 24]);
    assert_eq!(answer["more"], true);
    assert_eq!(answer["offset"], offsets[24].as_str());
    let before = &offsets[1];
    let (_, _, answer) = edge
        .api(
            "GET",
            &format!("/api/history?room=h&before={before}"),
            Some(DEV_KEY),
            "",
        )
        .await;
    assert_eq!(numbers(&answer["messages"]), [0]);
    assert_eq!(answer["more"], false);
}

#[tokio::test]
async fn history_pages_backwards_on_one_redis() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let emitter = Emitter::connect(&redis.url()).await.expect("emitter");
    pages_backwards(&edge, &emitter).await;
}

#[tokio::test]
async fn history_pages_backwards_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let nodes = cluster.nodes_arg();
    let edge = Edge::start(&["--redis-cluster-nodes", nodes.as_str()]).await;
    let emitter = Emitter::cluster_builder(cluster.urls())
        .connect()
        .await
        .expect("emitter");
    pages_backwards(&edge, &emitter).await;
}

#[tokio::test]
async fn history_pages_backwards_on_the_in_process_bus() {
    let edge = Edge::start(&[]).await;
    let token = Token::user("writer", &["h"])
        .claim("pub", json!(["h"]))
        .dev();
    let (mut writer, _) = Client::connect(&edge.ws_url(), &token).await;
    writer.join("h").await;
    let mut newest = String::new();
    for n in 0..25 {
        let ack = writer
            .request(json!({"type": "publish", "room": "h", "event": "n", "data": {"n": n}, "echo": false}))
            .await;
        newest = ack["offset"].as_str().expect("offset").to_owned();
    }
    let (mut reader, _) =
        Client::connect(&edge.ws_url(), &Token::user("reader", &["h"]).dev()).await;
    let pages = page_through(&mut reader, "h", &newest).await;
    assert_eq!(
        pages,
        [
            (15..25).collect::<Vec<u64>>(),
            (5..15).collect(),
            (0..5).collect()
        ]
    );
}

#[tokio::test]
async fn history_is_refused_where_the_client_may_not_join_and_for_bad_input() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let (mut client, _) = Client::connect(&edge.ws_url(), &Token::user("u", &["mine"]).dev()).await;
    let refused = client
        .request(json!({"type": "history", "room": "theirs"}))
        .await;
    assert_eq!(
        (&refused["type"], &refused["code"]),
        (&json!("error"), &json!("FORBIDDEN"))
    );
    for (frame, code) in [
        (
            json!({"type": "history", "room": "mine", "limit": 0}),
            "BAD_FRAME",
        ),
        (
            json!({"type": "history", "room": "mine", "limit": 101}),
            "BAD_FRAME",
        ),
        (
            json!({"type": "history", "room": "mine", "before": "soon"}),
            "BAD_FRAME",
        ),
        (
            json!({"type": "history", "room": "not a room"}),
            "INVALID_ROOM",
        ),
        (json!({"type": "history"}), "BAD_FRAME"),
        (
            json!({"type": "join", "room": "mine", "rewind": 0}),
            "BAD_FRAME",
        ),
        (
            json!({"type": "join", "room": "mine", "rewind": 5, "since": "1-0_1-0"}),
            "BAD_FRAME",
        ),
    ] {
        let answer = client.request(frame.clone()).await;
        assert_eq!(
            (&answer["type"], &answer["code"]),
            (&json!("error"), &json!(code)),
            "{frame}"
        );
    }
    for (query, status) in [
        ("room=mine&limit=0", 400),
        ("room=mine&limit=many", 400),
        ("room=mine&before=soon", 400),
        ("room=not%20a%20room", 400),
        ("limit=3", 400),
    ] {
        let (got, _, answer) = edge
            .api("GET", &format!("/api/history?{query}"), Some(DEV_KEY), "")
            .await;
        assert_eq!(got, status, "{query}: {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    // Nothing comes before the first possible offset: an empty page, not an error.
    let first = client
        .request(json!({"type": "history", "room": "mine", "before": "0-0_0-0"}))
        .await;
    assert_eq!(
        (&first["messages"], &first["more"]),
        (&json!([]), &json!(false)),
        "{first}"
    );
    let (status, _, answer) = edge
        .api(
            "GET",
            "/api/history?room=mine&before=0-0_0-0",
            Some(DEV_KEY),
            "",
        )
        .await;
    assert_eq!((status, &answer["messages"]), (200, &json!([])), "{answer}");
    // Still connected and answering.
    assert_eq!(
        client.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_sends_the_last_messages_then_live_ones_with_no_gap_or_duplicate() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let emitter = Emitter::connect(&redis.url()).await.expect("emitter");
    publish(&emitter, "busy", 0, 50).await;

    // A publisher keeps the room busy while clients join with rewind.
    let next = Arc::new(std::sync::atomic::AtomicU64::new(50));
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = {
        let (emitter, next, stop) = (emitter.clone(), next.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = next.load(Ordering::Relaxed);
                publish(&emitter, "busy", n, 1).await;
                next.store(n + 1, Ordering::Relaxed);
            }
        })
    };
    let token = Token::user("late", &["busy"]).dev();
    let mut clients = Vec::new();
    for _ in 0..5 {
        let (mut client, _) = Client::connect(&edge.ws_url(), &token).await;
        let joined = client
            .request(json!({"type": "join", "room": "busy", "rewind": 10}))
            .await;
        assert_eq!(joined["type"], "joined", "{joined}");
        assert!(joined["offset"].is_string());
        clients.push(client);
    }
    stop.store(true, Ordering::Relaxed);
    publishing.await.unwrap();
    let last = next.load(Ordering::Relaxed) - 1;
    for client in &mut clients {
        let mut seen = Vec::new();
        while seen.last() != Some(&last) {
            let message = client.expect("msg").await;
            seen.push(message["data"]["n"].as_u64().unwrap());
        }
        assert!(seen.len() >= 10, "at least the rewound ten: {seen:?}");
        let first = seen[0];
        assert_eq!(
            seen,
            (first..=last).collect::<Vec<u64>>(),
            "in order, nothing lost or doubled"
        );
    }
    // With the room quiet: exactly the last three, then live.
    let (mut quiet, _) = Client::connect(&edge.ws_url(), &token).await;
    let joined = quiet
        .request(json!({"type": "join", "room": "busy", "rewind": 3}))
        .await;
    assert!(joined["offset"].is_string(), "{joined}");
    let rewound: Vec<u64> = [
        quiet.expect("msg").await,
        quiet.expect("msg").await,
        quiet.expect("msg").await,
    ]
    .iter()
    .map(|m| m["data"]["n"].as_u64().unwrap())
    .collect();
    assert_eq!(rewound, [last - 2, last - 1, last]);
    publish(&emitter, "busy", last + 1, 1).await;
    assert_eq!(quiet.expect("msg").await["data"]["n"], last + 1);
}

#[tokio::test]
async fn welcome_says_where_the_user_and_all_histories_stand() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let emitter = Emitter::connect(&redis.url()).await.expect("emitter");
    let token = Token::user("ann", &[]).dev();
    let (_, welcome) = Client::connect(&edge.ws_url(), &token).await;
    assert_eq!(welcome["offsets"], json!({"user": null, "all": null}));

    let to_user = emitter.to_user("ann").emit("n", &json!(1)).await.unwrap();
    let to_all = emitter.broadcast().emit("n", &json!(2)).await.unwrap();
    let (client, welcome) = Client::connect(&edge.ws_url(), &token).await;
    assert_eq!(
        welcome["offsets"],
        json!({"user": to_user.to_string(), "all": to_all.to_string()})
    );
    // A client that dropped right after its welcome resumes from those offsets and misses
    // nothing published after them.
    drop(client);
    let missed = emitter.to_user("ann").emit("n", &json!(3)).await.unwrap();
    let (mut again, _) = Client::open(&edge.ws_url(), None, &[])
        .await
        .expect("connect");
    again
        .send(json!({"type": "auth", "token": token, "since": welcome["offsets"]}))
        .await;
    let resumed = again.expect("welcome").await;
    assert_eq!(resumed["recovered"]["user"], true, "{resumed}");
    let message = again.expect("msg").await;
    assert_eq!(message["offset"], missed.to_string());
}
