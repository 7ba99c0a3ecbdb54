//! A message published through Redis reaches exactly the clients it is addressed to, on every
//! edge, in both encodings, with `data` intact.

use ferrocast_emitter::Emitter;
use ferrocast_tests::{Client, Edge, RedisServer, Token, assert_nothing_else, emitter};
use serde_json::{Value, json};

// Fields drop in order: edges before the Redis they use.
struct Cluster {
    a: Edge,
    b: Edge,
    emitter: Emitter,
    redis: RedisServer,
}

async fn cluster() -> Cluster {
    let redis = RedisServer::start();
    let a = Edge::with_redis(&redis, &[]).await;
    let b = Edge::with_redis(&redis, &[]).await;
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    Cluster {
        redis,
        a,
        b,
        emitter,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_message_from_the_cli_reaches_members_on_both_edges_and_no_one_else() {
    let c = cluster().await;
    let token = |sub: &str| Token::user(sub, &["chat:*"]).dev();
    let (mut alice, _) = Client::connect(&c.a.ws_url(), &token("alice")).await;
    let (mut bob, _) = Client::connect(&c.b.ws_url(), &token("bob")).await;
    let (mut carol, _) = Client::connect(&c.a.ws_url(), &token("carol")).await;
    let (mut dave, _) = Client::connect(&c.b.ws_url(), &token("dave")).await;
    alice.join("chat:1").await;
    bob.join("chat:1").await;
    carol.join("chat:2").await;

    let url = c.redis.url();
    let run = emitter(
        &[
            "--redis-url",
            &url,
            "send",
            "--room",
            "chat:1",
            "--event",
            "say",
            "--data",
            r#"{"text":"hi"}"#,
        ],
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let offset = run.stdout.trim();
    for client in [&mut alice, &mut bob] {
        let msg = client.expect("msg").await;
        assert_eq!(msg["scope"], "room");
        assert_eq!(msg["room"], "chat:1");
        assert_eq!(msg["event"], "say");
        assert_eq!(msg["data"], json!({"text": "hi"}));
        assert_eq!(msg["offset"], offset);
        assert!(msg["id"].as_str().is_some_and(|id| id.len() == 36), "{msg}");
        assert!(msg["ts"].as_u64().is_some(), "{msg}");
    }
    assert_nothing_else(
        &c.emitter,
        &mut [&mut alice, &mut bob, &mut carol, &mut dave],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_publishes_to_rooms_users_clients_and_everyone_honouring_except() {
    let c = cluster().await;
    let token = |sub: &str| Token::user(sub, &["chat:*"]).dev();
    // u1 has a session on each edge; u2 one on edge A.
    let (mut u1a, w1a) = Client::connect(&c.a.ws_url(), &token("u1")).await;
    let (mut u1b, _) = Client::connect(&c.b.ws_url(), &token("u1")).await;
    let (mut u2, w2) = Client::connect(&c.a.ws_url(), &token("u2")).await;
    u1a.join("chat:7").await;
    u2.join("chat:7").await;

    // Room, leaving out the publisher's own client.
    let u1a_id = w1a["client"].as_str().expect("client id").to_owned();
    let offset = c
        .emitter
        .to_room("chat:7")
        .except(&u1a_id)
        .emit("say", &json!({"n": 1}))
        .await
        .expect("emit");
    let msg = u2.expect("msg").await;
    assert_eq!(
        (msg["room"].clone(), msg["offset"].clone()),
        (json!("chat:7"), json!(offset.to_string()))
    );
    assert_nothing_else(&c.emitter, &mut [&mut u1a, &mut u1b, &mut u2]).await;

    // User: every session of u1, on both edges.
    c.emitter
        .to_user("u1")
        .emit("note", &json!("for u1"))
        .await
        .expect("emit");
    for client in [&mut u1a, &mut u1b] {
        let msg = client.expect("msg").await;
        assert_eq!(msg["scope"], "user");
        assert_eq!(msg["data"], "for u1");
        assert!(msg.get("room").is_none(), "{msg}");
    }
    assert_nothing_else(&c.emitter, &mut [&mut u1a, &mut u1b, &mut u2]).await;

    // Client: one connection only.
    let u2_id = w2["client"].as_str().expect("client id");
    c.emitter
        .to_client(u2_id)
        .emit("direct", &json!([1, 2]))
        .await
        .expect("emit");
    let msg = u2.expect("msg").await;
    assert_eq!(
        (msg["scope"].clone(), msg["data"].clone()),
        (json!("client"), json!([1, 2]))
    );
    assert_nothing_else(&c.emitter, &mut [&mut u1a, &mut u1b, &mut u2]).await;

    // Everyone, with a batch in order.
    let batch: Vec<_> = (0..5)
        .map(|i| {
            c.emitter
                .broadcast()
                .message("tick", &json!(i))
                .expect("message")
        })
        .collect();
    let results = c.emitter.emit_batch(&batch).await.expect("batch");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for client in [&mut u1a, &mut u1b, &mut u2] {
        for i in 0..5 {
            let msg = client.expect("msg").await;
            assert_eq!(
                (msg["event"].clone(), msg["data"].clone()),
                (json!("tick"), json!(i))
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_ids_outside_the_name_set_still_get_their_messages() {
    let c = cluster().await;
    let odd = "Ünïcode user {with} braces & spaces";
    let (mut client, welcome) = Client::connect(&c.b.ws_url(), &Token::user(odd, &[]).dev()).await;
    assert_eq!(welcome["user"], odd);
    c.emitter
        .to_user(odd)
        .emit("hello", &json!(null))
        .await
        .expect("emit");
    assert_eq!(client.expect("msg").await["event"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_arrives_byte_for_byte_in_json_and_as_a_value_in_msgpack() {
    let c = cluster().await;
    let token = Token::user("u", &["r"]).dev();
    let (mut json_client, _) = Client::connect(&c.a.ws_url(), &token).await;
    let (mut mp_client, _) = Client::connect_msgpack(&c.b.ws_url(), &token).await;
    json_client.join("r").await;
    let joined = mp_client.join("r").await;
    assert_eq!(joined["recovered"], false);

    let big = format!(r#"{{"blob": "{}"}}"#, "x".repeat(60 * 1024));
    let samples: Vec<String> = vec![
        r#"{"text":"héllo wörld ✓ 日本語 🎉","esc":"\u00e9\n\"q\""}"#.to_owned(),
        r#"{ "nested" : { "deep" : [ 1, 2.50, -3e2, { "k" : [ ] } ] , "t" : true , "n" : null } }"#
            .to_owned(),
        "42".to_owned(),
        big,
    ];
    for data in &samples {
        c.emitter
            .to_room("r")
            .emit_raw("d", data.clone())
            .await
            .expect("emit");
        let raw = match json_client.recv_message().await {
            tungstenite::Message::Text(text) => text.to_string(),
            other => panic!("expected text, got {other:?}"),
        };
        assert!(
            raw.contains(&format!(r#","data":{data},"#)),
            "data changed on the way: {}",
            &raw[..raw.len().min(300)]
        );
        let msg = mp_client.expect("msg").await;
        let expected: Value = serde_json::from_str(data).expect("sample is JSON");
        assert_eq!(msg["data"], expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_signs_in_to_a_redis_that_requires_a_password() {
    let redis = RedisServer::start();
    // The default user is shut out; the edge signs in as a user of its own.
    redis
        .cli(&[
            "ACL", "SETUSER", "edge", "on", ">s3cret", "~*", "&*", "+@all",
        ])
        .expect("ACL SETUSER");
    redis
        .cli(&["CONFIG", "SET", "requirepass", "not-the-edges"])
        .expect("requirepass");
    let url = format!("redis://edge:s3cret@127.0.0.1:{}", redis.port);
    let edge = Edge::start(&["--redis-url", &url]).await;
    let emitter = Emitter::connect(url.clone()).await.expect("emitter");
    let token = Token::user("alice", &["chat:*"]).dev();
    let (mut alice, _) = Client::connect(&edge.ws_url(), &token).await;
    alice.join("chat:1").await;
    let offset = emitter
        .to_room("chat:1")
        .emit("say", &json!({"text": "signed in"}))
        .await
        .expect("emit");
    let msg = alice.expect("msg").await;
    assert_eq!(
        (msg["data"].clone(), msg["offset"].clone()),
        (json!({"text": "signed in"}), json!(offset.to_string()))
    );
    // Its own user target is subscribed on the same connection.
    emitter
        .to_user("alice")
        .emit("note", &json!(1))
        .await
        .expect("emit");
    assert_eq!(alice.expect("msg").await["scope"], "user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_reaches_redis_over_a_unix_socket() {
    let dir = tempfile_dir();
    let path = dir.join("redis.sock");
    let path = path.to_str().expect("utf-8 path");
    let redis = RedisServer::start_with(&["--unixsocket", path, "--unixsocketperm", "700"]);
    let url = format!("redis+unix://{path}");
    let edge = Edge::start(&["--redis-url", &url]).await;
    let emitter = Emitter::connect(url.clone()).await.expect("emitter");
    let (mut alice, _) =
        Client::connect(&edge.ws_url(), &Token::user("alice", &["chat:*"]).dev()).await;
    alice.join("chat:1").await;
    emitter
        .to_room("chat:1")
        .emit("say", &json!("over a socket file"))
        .await
        .expect("emit");
    assert_eq!(alice.expect("msg").await["data"], "over a socket file");
    drop(redis);
    let _ = std::fs::remove_dir_all(dir);
}

/// A fresh directory of this test's own.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrocast-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
