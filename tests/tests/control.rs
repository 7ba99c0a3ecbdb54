//! Workers move and disconnect sessions: control messages reach every session of their target,
//! on whatever edge holds it, and nobody else.

use ferrocast_emitter::Emitter;
use ferrocast_tests::{Client, Edge, RedisServer, Token, assert_nothing_else, emitter};
use serde_json::json;

/// Runs `emitter` with the Redis URL and checks it succeeded.
fn emit(redis: &RedisServer, args: &[&str]) {
    let url = redis.url();
    let mut all = vec!["--redis-url", url.as_str()];
    all.extend_from_slice(args);
    let run = emitter(&all, None);
    assert_eq!(run.code, 0, "emitter {args:?} failed: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_join_leave_and_disconnect_act_on_one_user_s_sessions_on_both_edges_only() {
    let redis = RedisServer::start();
    let a = Edge::with_redis(&redis, &[]).await;
    let b = Edge::with_redis(&redis, &[]).await;
    let lib = Emitter::connect(redis.url()).await.expect("emitter");
    // The tokens allow only chat rooms: a worker's join needs no permission.
    let token = |sub: &str| Token::user(sub, &["chat:*"]).dev();
    let (mut u1a, _) = Client::connect(&a.ws_url(), &token("u1")).await;
    let (mut u1b, _) = Client::connect_msgpack(&b.ws_url(), &token("u1")).await;
    let (mut u2, _) = Client::connect(&a.ws_url(), &token("u2")).await;
    let (mut u3, welcome3) = Client::connect(&b.ws_url(), &token("u3")).await;

    emit(&redis, &["join", "--user", "u1", "--room", "vip"]);
    for session in [&mut u1a, &mut u1b] {
        let joined = session.expect("joined").await;
        assert_eq!(
            (&joined["room"], &joined["by"], &joined["recovered"]),
            (&json!("vip"), &json!("server"), &json!(false)),
            "{joined}"
        );
        assert!(joined.get("ref").is_none(), "nobody asked: no ref");
    }
    // Only u1's sessions are in the room now.
    emit(
        &redis,
        &["send", "--room", "vip", "--event", "news", "--data", "1"],
    );
    for session in [&mut u1a, &mut u1b] {
        assert_eq!(session.expect("msg").await["room"], "vip");
    }
    assert_nothing_else(&lib, &mut [&mut u1a, &mut u1b, &mut u2, &mut u3]).await;

    // A repeated join changes nothing and sends nothing.
    emit(&redis, &["join", "--user", "u1", "--room", "vip"]);
    assert_nothing_else(&lib, &mut [&mut u1a, &mut u1b, &mut u2, &mut u3]).await;

    // The library, by client id: only that connection moves.
    let u3_client = welcome3["client"].as_str().expect("client id");
    lib.to_client(u3_client)
        .join_room("vip")
        .await
        .expect("join");
    let joined = u3.expect("joined").await;
    assert_eq!(
        (&joined["room"], &joined["by"]),
        (&json!("vip"), &json!("server"))
    );

    emit(&redis, &["leave", "--user", "u1", "--room", "vip"]);
    for session in [&mut u1a, &mut u1b] {
        let left = session.expect("left").await;
        assert_eq!(
            (&left["room"], &left["by"]),
            (&json!("vip"), &json!("server"))
        );
    }
    emit(
        &redis,
        &["send", "--room", "vip", "--event", "after", "--data", "2"],
    );
    assert_eq!(u3.expect("msg").await["event"], "after");
    assert_nothing_else(&lib, &mut [&mut u1a, &mut u1b, &mut u2, &mut u3]).await;

    emit(
        &redis,
        &[
            "disconnect",
            "--user",
            "u1",
            "--reason",
            "account suspended",
        ],
    );
    for session in [&mut u1a, &mut u1b] {
        assert_eq!(
            session.closed().await,
            (4010, "account suspended".to_owned())
        );
    }
    // Everyone else is still connected and served.
    for other in [&mut u2, &mut u3] {
        assert_eq!(other.request(json!({"type": "ping"})).await["type"], "pong");
    }
    assert_nothing_else(&lib, &mut [&mut u2, &mut u3]).await;

    // A chosen application code, for one client, through the library.
    lib.to_client(u3_client)
        .disconnect_with_code(4020, "moved to another shard")
        .await
        .expect("disconnect");
    assert_eq!(
        u3.closed().await,
        (4020, "moved to another shard".to_owned())
    );
    assert_nothing_else(&lib, &mut [&mut u2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_client_does_not_replay_control_messages() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let lib = Emitter::connect(redis.url()).await.expect("emitter");
    let token = Token::user("u1", &[]).dev();
    let (mut first, _) = Client::connect(&edge.ws_url(), &token).await;
    let before = lib.to_user("u1").emit("before", &1).await.expect("publish");
    assert_eq!(first.expect("msg").await["offset"], before.to_string());
    lib.to_user("u1")
        .disconnect("bye")
        .await
        .expect("disconnect");
    assert_eq!(first.closed().await, (4010, "bye".to_owned()));
    lib.to_user("u1").emit("after", &2).await.expect("publish");

    // Resuming from before the disconnect replays the message after it, not the disconnect.
    let (mut again, _) = Client::open(&edge.ws_url(), None, &[])
        .await
        .expect("connect");
    again
        .send(json!({"type": "auth", "token": token, "since": {"user": before.to_string()}}))
        .await;
    let welcome = again.expect("welcome").await;
    assert_eq!(welcome["recovered"]["user"], true, "{welcome}");
    assert_eq!(again.expect("msg").await["event"], "after");
    assert_eq!(again.request(json!({"type": "ping"})).await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_control_commands_are_refused_before_anything_is_published() {
    let redis = RedisServer::start();
    let url = redis.url();
    for (args, expect) in [
        (
            vec!["disconnect", "--user", "u1", "--code", "1000"],
            "4010-4999",
        ),
        (vec!["join", "--user", "u1", "--room", "bad room"], "room"),
        (vec!["leave", "--room", "r"], "--user"),
    ] {
        let mut all = vec!["--redis-url", url.as_str()];
        all.extend_from_slice(&args);
        let run = emitter(&all, None);
        assert_ne!(run.code, 0, "{args:?} should fail");
        assert!(run.stderr.contains(expect), "{args:?}: {}", run.stderr);
    }
    assert_eq!(redis.cli(&["DBSIZE"]).as_deref(), Some("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_s_join_beyond_the_room_limit_is_ignored() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &["--max-rooms", "1"]).await;
    let lib = Emitter::connect(redis.url()).await.expect("emitter");
    let (mut u1, _) = Client::connect(&edge.ws_url(), &Token::user("u1", &["chat:*"]).dev()).await;
    u1.join("chat:1").await;
    lib.to_user("u1").join_room("vip").await.expect("join");
    assert_nothing_else(&lib, &mut [&mut u1]).await;
    // And it did not join: messages to the room do not reach it.
    lib.to_room("vip").emit("news", &1).await.expect("publish");
    assert_nothing_else(&lib, &mut [&mut u1]).await;
    emit(&redis, &["leave", "--user", "u1", "--room", "chat:1"]);
    assert_eq!(u1.expect("left").await["room"], "chat:1");
    lib.to_user("u1").join_room("vip").await.expect("join");
    assert_eq!(u1.expect("joined").await["room"], "vip");
}
