//! Access and data integrity: what a client was refused or has left never reaches it, a
//! narrower token takes rooms away, and data some client could not be sent is refused up front.

use ferrocast_emitter::Emitter;
use ferrocast_tests::{Client, Edge, RedisServer, Token, assert_nothing_else};
use serde_json::json;
use tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_of_a_room_arrives_after_left_even_what_was_queued() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(
        &redis,
        &[
            "--outbound-queue",
            "100000",
            "--outbound-queue-bytes",
            "200000000",
        ],
    )
    .await;
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let (mut client, _) = Client::connect(&edge.ws_url(), &Token::user("u", &["r"]).dev()).await;
    client.join("r").await;
    // The client reads nothing while thousands of messages pile up: in its socket, and behind
    // it in the edge's queue for it.
    let data = json!("x".repeat(4096));
    let batch: Vec<_> = (0..3000)
        .map(|_| emitter.to_room("r").message("m", &data).expect("message"))
        .collect();
    for result in emitter.emit_batch(&batch).await.expect("batch") {
        result.expect("published");
    }
    client
        .send(json!({"type": "leave", "room": "r", "ref": 9}))
        .await;
    loop {
        let frame = client.recv().await;
        if frame["type"] == "left" {
            assert_eq!(frame["ref"], 9);
            break;
        }
        assert_eq!(frame["type"], "msg", "{frame}");
    }
    // Not one message of the room after `left`: the marker comes next.
    assert_nothing_else(&emitter, &mut [&mut client]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrower_refreshed_token_takes_its_rooms_away() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &["--public-rooms", "lobby"]).await;
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let (mut client, _) =
        Client::connect(&edge.ws_url(), &Token::user("u", &["a", "b", "c"]).dev()).await;
    for room in ["a", "b", "c", "lobby"] {
        client.join(room).await;
    }
    // A worker joins the client to `c`, where it already is (nothing to tell it), and to `vip`.
    for room in ["c", "vip"] {
        emitter
            .to_user("u")
            .join_room(room)
            .await
            .expect("worker join");
    }
    assert_eq!(client.expect("joined").await["room"], "vip");

    let narrower = Token::user("u", &["a"]).dev();
    client
        .send(json!({"type": "refresh", "token": narrower}))
        .await;
    client.expect("refreshed").await;
    let left = client.expect("left").await;
    assert_eq!(
        (left["room"].as_str(), left["by"].as_str()),
        (Some("b"), Some("server"))
    );
    // `a` (still allowed), `lobby` (public) and `vip` (a worker's) stay; `b` is gone for good.
    for room in ["a", "lobby", "vip", "b"] {
        emitter
            .to_room(room)
            .emit("m", &json!(room))
            .await
            .expect("publish");
    }
    for room in ["a", "lobby", "vip"] {
        let msg = client.expect("msg").await;
        assert_eq!(msg["room"], room, "{msg}");
    }
    assert_nothing_else(&emitter, &mut [&mut client]).await;
    let refused = client.request(json!({"type": "join", "room": "b"})).await;
    assert_eq!(refused["code"], "FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_messagepack_cannot_carry_is_refused_at_publish_and_send() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &["--upstream-events", "e"]).await;
    let token = Token::user("u", &["r"]).claim("pub", json!(["r"])).dev();
    let (mut json_client, _) = Client::connect(&edge.ws_url(), &token).await;
    let (mut msgpack_client, _) = Client::connect_msgpack(&edge.ws_url(), &token).await;
    json_client.join("r").await;
    msgpack_client.join("r").await;
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for data in ["1e400", r#""\ud800""#, r#"{"a":"x\udc00y"}"#, deep.as_str()] {
        for kind in ["publish", "send"] {
            let frame =
                format!(r#"{{"type":"{kind}","room":"r","event":"e","data":{data},"ref":1}}"#);
            json_client.send_raw(Message::Text(frame.into())).await;
            let answer = json_client.recv().await;
            assert_eq!(
                (answer["type"].as_str(), answer["code"].as_str()),
                (Some("error"), Some("BAD_FRAME")),
                "{kind} {data}: {answer}"
            );
            assert!(
                answer["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("MessagePack"),
                "{answer}"
            );
        }
    }
    // Ordinary data still goes through, to both encodings.
    let ack = json_client
        .request(json!({"type": "publish", "room": "r", "event": "e", "data": {"n": 1e300}}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    for client in [&mut json_client, &mut msgpack_client] {
        let msg = client.expect("msg").await;
        assert_eq!(msg["data"]["n"], json!(1e300));
    }
}
