//! Request and response (v1.2): a client's `rpc` reaches a worker through the inbox, and the
//! worker's `reply` (or `reply_error`) reaches the calling connection on whichever edge holds
//! it; no reply in time is a `TIMEOUT`, and a reply after it is dropped and counted. A call with
//! an `id` is made once however often it is retried, and each retry is answered.

use std::time::Duration;

use ferrocast_emitter::Emitter;
use ferrocast_protocol::request_id::message_id;
use ferrocast_tests::rpc::worker;
use ferrocast_tests::upstream::chat_token;
use ferrocast_tests::{Client, Edge, RedisServer};
use serde_json::{Value, json};
use tungstenite::Message;

const RPC: &[&str] = ferrocast_tests::rpc::EDGE_ARGS;

async fn call(client: &mut Client, event: &str, data: Value) -> Value {
    client
        .request(json!({"type": "rpc", "event": event, "data": data}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_reaches_the_caller_on_whichever_edge_holds_it() {
    let redis = RedisServer::start();
    let a = Edge::with_redis(&redis, RPC).await;
    let b = Edge::with_redis(&redis, RPC).await;
    let _worker = worker(&redis).await;
    let (mut alice, _) = Client::connect(&a.ws_url(), &chat_token("alice")).await;
    let (mut bob, _) = Client::connect_msgpack(&b.ws_url(), &chat_token("bob")).await;
    // Alice on the other edge too: the reply goes to the connection that called, not the user.
    let (mut alice_on_b, _) = Client::connect(&b.ws_url(), &chat_token("alice")).await;

    let reply = call(&mut alice, "rpc.echo", json!({"n": 1, "s": "a"})).await;
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["data"], json!({"n": 1, "s": "a"}));
    let reply = call(&mut bob, "rpc.echo", json!([1, 2.5, null])).await;
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["data"], json!([1, 2.5, null]));
    // The client's data reaches the worker, and the worker's the client, byte for byte.
    alice
        .send_raw(Message::Text(
            r#"{"type":"rpc","event":"rpc.echo","data":{ "x": 1.50 },"ref":90}"#.into(),
        ))
        .await;
    let raw = alice.recv_message().await;
    assert_eq!(
        raw.to_text().expect("text"),
        r#"{"type":"reply","ref":90,"data":{ "x": 1.50 }}"#
    );

    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    ferrocast_tests::assert_nothing_else(&emitter, &mut [&mut alice, &mut bob, &mut alice_on_b])
        .await;
    a.wait_metric("ferrocast_rpc_calls_total", 2.0).await;
    a.wait_metric("ferrocast_rpc_replies_total", 2.0).await;
    b.wait_metric("ferrocast_rpc_replies_total", 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_an_rpc_error_with_the_workers_data() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, RPC).await;
    let _worker = worker(&redis).await;
    let (mut alice, _) = Client::connect(&edge.ws_url(), &chat_token("alice")).await;
    let error = call(&mut alice, "rpc.fail", json!("abc")).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "RPC_ERROR");
    assert_eq!(error["message"], "refused by the worker");
    assert_eq!(error["data"], json!({"why": 5}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reply_in_time_is_a_timeout_and_a_late_one_is_dropped_and_counted() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, RPC).await;
    let _worker = worker(&redis).await;
    let (mut alice, _) = Client::connect(&edge.ws_url(), &chat_token("alice")).await;

    let started = tokio::time::Instant::now();
    let answer = alice
        .request(json!({"type": "rpc", "event": "rpc.none", "timeout": 300}))
        .await;
    assert_eq!(answer["code"], "TIMEOUT", "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(300));

    let answer = alice
        .request(json!({"type": "rpc", "event": "rpc.late", "timeout": 300}))
        .await;
    assert_eq!(answer["code"], "TIMEOUT", "{answer}");
    edge.wait_metric("ferrocast_rpc_late_replies_total", 1.0)
        .await;
    edge.wait_metric("ferrocast_rpc_timeouts_total", 2.0).await;
    // The connection goes on as before, and the late reply never reached it.
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    ferrocast_tests::assert_nothing_else(&emitter, &mut [&mut alice]).await;
    let pong = alice.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_bad_frames_forbidden_events_and_too_many_pending() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, RPC).await;
    let (mut alice, _) = Client::connect(&edge.ws_url(), &chat_token("alice")).await;

    alice
        .send(json!({"type": "rpc", "event": "rpc.echo", "data": 1}))
        .await;
    let error = alice.expect("error").await;
    assert_eq!(error["code"], "BAD_FRAME", "{error}");
    assert!(error.get("ref").is_none(), "{error}");

    let error = alice
        .request(json!({"type": "rpc", "event": "rpc.echo", "timeout": 60001}))
        .await;
    assert_eq!(error["code"], "BAD_FRAME", "{error}");

    let error = call(&mut alice, "chat.send", json!(1)).await;
    assert_eq!(error["code"], "FORBIDDEN", "{error}");

    // No worker runs: 32 calls wait, the 33rd is refused until one of them ends.
    for reference in 100..132u64 {
        alice
            .send(json!({"type": "rpc", "event": "rpc.none", "ref": reference, "timeout": 60000}))
            .await;
    }
    let error = alice
        .request(json!({"type": "rpc", "event": "rpc.none", "timeout": 1000}))
        .await;
    assert_eq!(error["code"], "RATE_LIMITED", "{error}");
    let retry_after = error["retry_after"].as_u64().expect("retry_after");
    assert!(retry_after > 50_000 && retry_after <= 60_000, "{error}");
    // The same ref as a waiting call cannot be told apart from it.
    alice
        .send(json!({"type": "rpc", "event": "rpc.none", "ref": 100}))
        .await;
    let error = alice.expect("error").await;
    assert_eq!(
        (&error["ref"], &error["code"]),
        (&json!(100), &json!("BAD_FRAME"))
    );
    edge.wait_metric("ferrocast_rpc_calls_total", 32.0).await;

    // Calls are the connection's: a new one has room for its own.
    drop(alice);
    let (mut again, _) = Client::connect(&edge.ws_url(), &chat_token("alice")).await;
    again
        .send(json!({"type": "rpc", "event": "rpc.none", "ref": 1, "timeout": 100}))
        .await;
    let timeout = again.expect("error").await;
    assert_eq!(
        (&timeout["ref"], &timeout["code"]),
        (&json!(1), &json!("TIMEOUT"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_call_is_made_once_and_answered_to_its_retries_on_any_connection() {
    let redis = RedisServer::start();
    let a = Edge::with_redis(&redis, RPC).await;
    let b = Edge::with_redis(&redis, RPC).await;
    let mut worker = worker(&redis).await;
    let inbox_len = || redis.cli(&["XLEN", "fc:{inbox}"]);
    let held = |id: &str, reference: u64, data: Value| {
        json!({"type": "rpc", "event": "rpc.held", "id": id, "ref": reference,
               "data": data, "timeout": 30000})
    };

    // The first try reaches the worker, which holds it; its connection drops meanwhile.
    let (mut first, _) = Client::connect(&a.ws_url(), &chat_token("alice")).await;
    first.send(held("call-1", 1, json!({"try": 1}))).await;
    assert_eq!(worker.held().await, message_id("alice", "call-1"));
    drop(first);

    // The retry, on the other edge while the worker still holds the call, calls nothing new,
    // and the reply reaches it there.
    let (mut retry, _) = Client::connect(&b.ws_url(), &chat_token("alice")).await;
    retry.send(held("call-1", 7, json!({"try": 2}))).await;
    b.wait_metric("ferrocast_rpc_calls_total", 1.0).await;
    assert_eq!(inbox_len().as_deref(), Some("1"));
    worker.release();
    let reply = retry.expect("reply").await;
    assert_eq!(
        reply,
        json!({"type": "reply", "ref": 7, "data": {"try": 1}})
    );

    // Once answered, a retry anywhere is answered at once with what Redis kept.
    let (mut later, _) = Client::connect(&a.ws_url(), &chat_token("alice")).await;
    later.send(held("call-1", 9, json!({"try": 3}))).await;
    let reply = later.expect("reply").await;
    assert_eq!(
        reply,
        json!({"type": "reply", "ref": 9, "data": {"try": 1}})
    );
    assert!(!worker.has_held(), "the worker heard of one call");
    assert_eq!(inbox_len().as_deref(), Some("1"));

    // Another user's same id is another call.
    let (mut bob, _) = Client::connect(&b.ws_url(), &chat_token("bob")).await;
    bob.send(held("call-1", 1, json!("bob's"))).await;
    assert_eq!(worker.held().await, message_id("bob", "call-1"));
    worker.release();
    let reply = bob.expect("reply").await;
    assert_eq!(reply, json!({"type": "reply", "ref": 1, "data": "bob's"}));
    assert_eq!(inbox_len().as_deref(), Some("2"));

    // A refusal is kept as well, and answers its retries the same.
    let fail = json!({"type": "rpc", "event": "rpc.fail", "id": "fail-1", "data": "abc"});
    let refusal = later.request(fail.clone()).await;
    assert_eq!(refusal["code"], "RPC_ERROR", "{refusal}");
    let (mut other, _) = Client::connect(&b.ws_url(), &chat_token("alice")).await;
    let again = other.request(fail).await;
    for field in ["type", "code", "message", "data"] {
        assert_eq!(again[field], refusal[field], "{again} against {refusal}");
    }
    assert_eq!(inbox_len().as_deref(), Some("3"));

    // The user's other connections heard the replies and kept quiet; none was counted late.
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    ferrocast_tests::assert_nothing_else(
        &emitter,
        &mut [&mut retry, &mut later, &mut other, &mut bob],
    )
    .await;
    for edge in [&a, &b] {
        let late = edge.metrics().await;
        assert_eq!(late.get("ferrocast_rpc_late_replies_total"), Some(&0.0));
    }
}
