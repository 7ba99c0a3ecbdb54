//! Client frames and their answers, on a single-node edge and on edges over Redis alike: every
//! refusal has its error code, and no refusal disturbs the connection or anyone else.

use ferrocast_tests::{Client, Edge, RedisServer, Token};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug)]
enum Mode {
    SingleNode,
    Redis,
}

const MODES: [Mode; 2] = [Mode::SingleNode, Mode::Redis];

/// Edges in `mode` (two share the Redis; in single-node mode both names are one edge's URL).
struct Setup {
    urls: [String; 2],
    _edges: Vec<Edge>,
    _redis: Option<RedisServer>,
}

async fn setup(mode: Mode, extra: &[&str]) -> Setup {
    match mode {
        Mode::SingleNode => {
            let edge = Edge::start(extra).await;
            Setup {
                urls: [edge.ws_url(), edge.ws_url()],
                _edges: vec![edge],
                _redis: None,
            }
        }
        Mode::Redis => {
            let redis = RedisServer::start();
            let a = Edge::with_redis(&redis, extra).await;
            let b = Edge::with_redis(&redis, extra).await;
            Setup {
                urls: [a.ws_url(), b.ws_url()],
                _edges: vec![a, b],
                _redis: Some(redis),
            }
        }
    }
}

fn chatter(sub: &str) -> String {
    Token::user(sub, &["chat:*"])
        .claim("pub", json!(["chat:*"]))
        .dev()
}

/// Reads the answer to a publish and the published message, in whichever order they come.
async fn ack_and_msg(client: &mut Client) -> (Value, Value) {
    let first = client.recv().await;
    let second = client.recv().await;
    if first["type"] == "ack" {
        (first, second)
    } else {
        (second, first)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_frames_get_their_error_codes_and_the_connection_keeps_working() {
    for mode in MODES {
        eprintln!("mode {mode:?}");
        let s = setup(mode, &["--public-rooms", "lobby,open-*"]).await;
        let (mut alice, _) = Client::connect(&s.urls[0], &chatter("alice")).await;
        let (mut bob, _) = Client::connect(&s.urls[1], &chatter("bob")).await;
        let joined = alice.join("chat:1").await;
        assert_eq!(joined["room"], "chat:1");
        assert_eq!(joined["recovered"], false);
        bob.join("chat:1").await;

        alice
            .send_raw(tungstenite::Message::Text("{not json".into()))
            .await;
        let e = alice.expect("error").await;
        assert_eq!(e["code"], "BAD_FRAME");
        assert!(e.get("ref").is_none());

        let cases = [
            (json!({"type": "dance"}), "UNKNOWN_TYPE"),
            (json!({"type": "join", "room": "bad room"}), "INVALID_ROOM"),
            (
                json!({"type": "join", "room": &"x".repeat(129)}),
                "INVALID_ROOM",
            ),
            (json!({"type": "join", "room": "secret"}), "FORBIDDEN"),
            (json!({"type": "join"}), "BAD_FRAME"),
            (json!({"type": "join", "room": 5}), "BAD_FRAME"),
            (json!({"type": "leave", "room": "chat:2"}), "NOT_JOINED"),
            (
                json!({"type": "publish", "room": "chat:2", "event": "e", "data": 1}),
                "NOT_JOINED",
            ),
            (
                json!({"type": "publish", "room": "chat:1", "event": "bad event", "data": 1}),
                "BAD_FRAME",
            ),
            (
                json!({"type": "send", "event": "e", "data": 1}),
                "FORBIDDEN",
            ),
        ];
        for (frame, code) in cases {
            let answer = alice.request(frame.clone()).await;
            assert_eq!(
                (answer["type"].clone(), answer["code"].clone()),
                (json!("error"), json!(code)),
                "{frame}"
            );
            assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        // Public rooms need no claim, but publishing still needs `pub`.
        alice.join("lobby").await;
        alice.join("open-42").await;
        let answer = alice
            .request(json!({"type": "publish", "room": "lobby", "event": "e", "data": 1}))
            .await;
        assert_eq!(answer["code"], "FORBIDDEN");

        // The connection and its rooms still work: a publish reaches both members.
        alice.send(json!({"type": "publish", "room": "chat:1", "event": "say", "data": {"t": "hi"}, "ref": 99})).await;
        let (ack, msg) = ack_and_msg(&mut alice).await;
        assert_eq!(ack["ref"], 99);
        assert_eq!(msg["offset"], ack["offset"]);
        assert_eq!(msg["data"], json!({"t": "hi"}));
        let msg = bob.expect("msg").await;
        assert_eq!(
            (msg["event"].clone(), msg["offset"].clone()),
            (json!("say"), ack["offset"].clone())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_false_leaves_out_the_publisher_and_leave_stops_delivery() {
    for mode in MODES {
        eprintln!("mode {mode:?}");
        let s = setup(mode, &[]).await;
        let (mut alice, _) = Client::connect(&s.urls[0], &chatter("alice")).await;
        let (mut bob, _) = Client::connect(&s.urls[1], &chatter("bob")).await;
        for room in ["chat:1", "chat:2"] {
            alice.join(room).await;
            bob.join(room).await;
        }
        let quiet = alice
            .request(json!({"type": "publish", "room": "chat:1", "event": "a", "data": 1, "echo": false}))
            .await;
        assert_eq!(quiet["type"], "ack");
        assert_eq!(bob.expect("msg").await["offset"], quiet["offset"]);
        // Alice's next message is her next echoed publish, not the quiet one.
        alice
            .send(json!({"type": "publish", "room": "chat:1", "event": "b", "data": 2, "ref": 1}))
            .await;
        let (_, msg) = ack_and_msg(&mut alice).await;
        assert_eq!(msg["event"], "b");
        assert_eq!(bob.expect("msg").await["event"], "b");

        // After leaving chat:1, Bob gets chat:2 messages but no more chat:1 ones.
        let left = bob
            .request(json!({"type": "leave", "room": "chat:1"}))
            .await;
        assert_eq!(
            (left["type"].clone(), left["room"].clone()),
            (json!("left"), json!("chat:1"))
        );
        for (room, event) in [("chat:1", "gone"), ("chat:2", "kept")] {
            alice
                .send(json!({"type": "publish", "room": room, "event": event, "data": null}))
                .await;
            let (_, msg) = ack_and_msg(&mut alice).await;
            assert_eq!(msg["room"], room);
        }
        let msg = bob.expect("msg").await;
        assert_eq!(
            (msg["room"].clone(), msg["event"].clone()),
            (json!("chat:2"), json!("kept"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_count_and_frame_size_limits() {
    for mode in MODES {
        eprintln!("mode {mode:?}");
        let s = setup(mode, &["--max-rooms", "2"]).await;
        let (mut alice, _) = Client::connect(&s.urls[0], &chatter("alice")).await;
        let (mut bystander, _) = Client::connect(&s.urls[0], &chatter("b")).await;
        alice.join("chat:1").await;
        alice.join("chat:2").await;
        // Joining a room twice is not a second room.
        alice.join("chat:2").await;
        let answer = alice
            .request(json!({"type": "join", "room": "chat:3"}))
            .await;
        assert_eq!(answer["code"], "TOO_MANY_ROOMS");
        alice
            .request(json!({"type": "leave", "room": "chat:1"}))
            .await;
        alice.join("chat:3").await;

        let huge = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(64 * 1024));
        alice
            .send_raw(tungstenite::Message::Text(huge.into()))
            .await;
        assert_eq!(alice.closed().await.0, 1009);
        assert_eq!(
            bystander.request(json!({"type": "ping"})).await["type"],
            "pong"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_clients_publish_to_json_clients_and_back() {
    for mode in MODES {
        eprintln!("mode {mode:?}");
        let s = setup(mode, &[]).await;
        let (mut mp, welcome) = Client::connect_msgpack(&s.urls[0], &chatter("m")).await;
        assert_eq!(welcome["user"], "m");
        let (mut js, _) = Client::connect(&s.urls[1], &chatter("j")).await;
        mp.join("chat:mix").await;
        js.join("chat:mix").await;
        let data = json!({"list": [1, "two", {"three": 3.5}], "none": null, "ü": true});
        mp.send(
            json!({"type": "publish", "room": "chat:mix", "event": "x", "data": data, "ref": 1}),
        )
        .await;
        let (ack, msg) = ack_and_msg(&mut mp).await;
        assert_eq!(ack["type"], "ack");
        assert_eq!(msg["data"], data);
        assert_eq!(js.expect("msg").await["data"], data);
        let answer = mp.request(json!({"type": "nope"})).await;
        assert_eq!(answer["code"], "UNKNOWN_TYPE");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_churning_through_a_room_never_break_its_subscription() {
    let s = setup(Mode::Redis, &[]).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let url = s.urls[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let (mut client, _) = Client::connect(&url, &chatter(&format!("c{i}"))).await;
            for _ in 0..10 {
                client.join("chat:churn").await;
                client
                    .request(json!({"type": "leave", "room": "chat:churn"}))
                    .await;
            }
            if i % 2 == 0 {
                client.join("chat:churn").await;
            }
            client
        }));
    }
    let mut stayed = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let client = task.await.expect("task");
        if i % 2 == 0 {
            stayed.push(client);
        }
    }
    let (mut publisher, _) = Client::connect(&s.urls[1], &chatter("p")).await;
    publisher.join("chat:churn").await;
    let ack = publisher
        .request(json!({"type": "publish", "room": "chat:churn", "event": "e", "data": 1, "echo": false}))
        .await;
    for client in &mut stayed {
        assert_eq!(client.expect("msg").await["offset"], ack["offset"]);
    }
}
