//! The HTTP API on the internal listener (docs/protocol.md, part 3); `emitter --edge` over it is in
//! api_cli.rs.

use ferrocast_tests::{Client, Edge, RedisServer, Token, emitter};
use serde_json::{Value, json};

const DEV_KEY: &str = "ferrocast-dev-api-key";

fn token(user: &str) -> String {
    Token::user(user, &["r", "p:*"]).dev()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_development_edge_is_fed_over_http_with_no_redis() {
    let edge = Edge::start(&["--presence-rooms", "p:*"]).await;
    let (mut ada, welcome) = Client::connect(&edge.ws_url(), &token("ada")).await;
    ada.join("r").await;

    let body = json!({"room": "r", "event": "chat.say", "data": {"text": "hi"}}).to_string();
    let (status, _, answer) = edge.api("POST", "/api/publish", Some(DEV_KEY), &body).await;
    assert_eq!(status, 200, "{answer}");
    let frame = ada.expect("msg").await;
    assert_eq!(frame["data"], json!({"text": "hi"}));
    assert_eq!(frame["offset"], answer["offset"]);
    assert_eq!(frame["id"], answer["id"]);

    // A chosen id publishes once: the second call answers the first offset.
    let id = uuid::Uuid::now_v7().to_string();
    let body = json!({"user": "ada", "event": "note", "data": 1, "id": id}).to_string();
    let (_, _, first) = edge.api("POST", "/api/publish", Some(DEV_KEY), &body).await;
    let (_, _, again) = edge.api("POST", "/api/publish", Some(DEV_KEY), &body).await;
    assert_eq!(first, again);
    assert_eq!(first["id"], json!(id));
    assert_eq!(ada.expect("msg").await["id"], json!(id));

    // A batch answers each message in order, a bad one with its own error.
    let body = json!({"messages": [
        {"all": true, "event": "a", "data": 1},
        {"room": "bad room", "event": "a", "data": 1},
        {"event": "a", "data": 1},
        {"client": welcome["client"], "event": "b", "data": 2, "except": []},
    ]})
    .to_string();
    let (status, _, answer) = edge.api("POST", "/api/batch", Some(DEV_KEY), &body).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().expect("results");
    assert!(results[0]["offset"].is_string(), "{answer}");
    assert_eq!(results[1]["error"]["code"], "INVALID_ROOM");
    assert_eq!(results[2]["error"]["code"], "BAD_FRAME");
    assert!(results[3]["offset"].is_string(), "{answer}");
    assert_eq!(ada.expect("msg").await["event"], "a");
    assert_eq!(ada.expect("msg").await["event"], "b");

    // Join, presence, leave and disconnect act on the sessions connected now.
    let body = json!({"user": "ada", "room": "p:1"}).to_string();
    let (status, _, answer) = edge.api("POST", "/api/join", Some(DEV_KEY), &body).await;
    assert_eq!((status, answer), (200, json!({})));
    let joined = ada.expect("joined").await;
    assert_eq!(
        (joined["room"].clone(), joined["by"].clone()),
        (json!("p:1"), json!("server"))
    );
    let (status, _, listed) = edge
        .api("GET", "/api/presence?room=p:1", Some(DEV_KEY), "")
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["clients"][0]["client"], welcome["client"]);
    let (_, _, stats) = edge
        .api("GET", "/api/presence_stats?room=p:1", Some(DEV_KEY), "")
        .await;
    assert_eq!(stats, json!({"room": "p:1", "clients": 1, "users": 1}));
    let (status, _, _) = edge.api("POST", "/api/leave", Some(DEV_KEY), &body).await;
    assert_eq!(status, 200);
    assert_eq!(ada.expect("left").await["by"], "server");
    let body = json!({"client": welcome["client"], "reason": "bye"}).to_string();
    let (status, _, _) = edge
        .api("POST", "/api/disconnect", Some(DEV_KEY), &body)
        .await;
    assert_eq!(status, 200);
    assert_eq!(ada.closed().await, (4010, "bye".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_bad_bodies_and_huge_bodies_get_json_errors() {
    let edge = Edge::start(&[]).await;
    let publish = json!({"all": true, "event": "e", "data": 1}).to_string();
    for key in [None, Some("wrong"), Some("ferrocast-dev-api-ke")] {
        let (status, head, answer) = edge.api("POST", "/api/publish", key, &publish).await;
        assert_eq!(status, 401, "{key:?}: {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
        assert!(head.contains("www-authenticate: bearer"), "{head}");
    }
    let edge = &edge;
    let bad = |body: &'static str| async move {
        edge.api("POST", "/api/publish", Some(DEV_KEY), body).await
    };
    for body in [
        "not json",
        "{}",
        r#"{"all":true,"event":"e"}"#,
        r#"{"all":true,"room":"r","event":"e","data":1}"#,
        r#"{"all":true,"event":"bad event!","data":1}"#,
        r#"{"all":true,"event":"e","data":1e400}"#,
        r#"{"all":true,"event":"e","data":1,"surprise":true}"#,
        // A client id is what an edge issues, never a path or a key's separator.
        r#"{"client":"../../x","event":"e","data":1}"#,
    ] {
        let (status, _, answer) = bad(body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "BAD_FRAME", "{body}: {answer}");
    }
    for (route, body) in [
        ("/api/disconnect", r#"{"client":"../../x"}"#),
        ("/api/join", r#"{"client":"a:b","room":"r"}"#),
    ] {
        let (status, _, answer) = edge.api("POST", route, Some(DEV_KEY), body).await;
        assert_eq!(
            (status, answer["error"]["code"].clone()),
            (400, json!("BAD_FRAME")),
            "{route} {body}: {answer}"
        );
    }
    let (status, _, answer) = bad(r#"{"room":"","event":"e","data":1}"#).await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (400, json!("INVALID_ROOM"))
    );

    let huge = format!(
        r#"{{"all":true,"event":"e","data":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (status, _, answer) = edge.api("POST", "/api/publish", Some(DEV_KEY), &huge).await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (413, json!("TOO_LARGE")),
        "{answer}"
    );
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"all": true, "event": "e", "data": 1}))
        .collect();
    let body = json!({ "messages": many }).to_string();
    let (status, _, answer) = edge.api("POST", "/api/batch", Some(DEV_KEY), &body).await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (413, json!("TOO_LARGE")),
        "{answer}"
    );

    let (status, _, answer) = edge.api("GET", "/api/publish", Some(DEV_KEY), "").await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (405, json!("BAD_FRAME"))
    );
    let (status, _, answer) = edge
        .api(
            "GET",
            "/api/presence_stats?room=%ZZ&room=a",
            Some(DEV_KEY),
            "",
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (400, json!("BAD_FRAME")),
        "{answer}"
    );
    let (status, _, answer) = edge.api("GET", "/api/nothing", Some(DEV_KEY), "").await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (404, json!("UNKNOWN_TYPE"))
    );
    let (status, _, answer) = edge
        .api("GET", "/api/presence?room=p", Some(DEV_KEY), "")
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (403, json!("FORBIDDEN")),
        "presence off"
    );
    // Still alive and well.
    assert_eq!(edge.get("/healthz").await.map(|r| r.0), Some(200));
    let metrics = edge.metrics().await;
    assert_eq!(
        metrics.get("ferrocast_api_requests_total{route=\"publish\",status=\"401\"}"),
        Some(&3.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_the_api_is_off_without_one_and_a_redis_outage_answers_503() {
    let redis = RedisServer::start();
    let secret = "an-api-test-secret-of-32-bytes-or-more";
    let off = Edge::with_redis(&redis, &["--jwt-secret", secret]).await;
    let publish = json!({"room": "r", "event": "e", "data": 1}).to_string();
    let (status, _, answer) = off
        .api("POST", "/api/publish", Some(DEV_KEY), &publish)
        .await;
    assert_eq!(status, 404, "no key configured, no API: {answer}");

    let edge = Edge::with_redis(
        &redis,
        &[
            "--jwt-secret",
            secret,
            "--api-key",
            "old-key-0123456789,new-key-0123456789",
        ],
    )
    .await;
    let token = Token::user("ada", &["r"]).hs256(secret);
    let (mut ada, _) = Client::connect(&edge.ws_url(), &token).await;
    ada.join("r").await;
    for key in ["old-key-0123456789", "new-key-0123456789"] {
        let (status, _, answer) = edge.api("POST", "/api/publish", Some(key), &publish).await;
        assert_eq!(status, 200, "{answer}");
        // Through Redis, like the emitter: in the history, so a resume finds it.
        let offset = answer["offset"].as_str().expect("offset");
        assert_eq!(ada.expect("msg").await["offset"], offset);
    }
    let history = redis.cli(&["XLEN", "fc:{room:r}"]).expect("xlen");
    assert_eq!(history.trim(), "2");
    // The CLI over the API, with the key from the environment-style flag.
    let url = format!("http://127.0.0.1:{}", edge.internal_port);
    let run = emitter(
        &[
            "--edge",
            &url,
            "--api-key",
            "new-key-0123456789",
            "send",
            "--room",
            "r",
            "--event",
            "cli",
            "--data",
            r#"{"n":1}"#,
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let frame = ada.expect("msg").await;
    assert_eq!(
        (frame["event"].clone(), frame["offset"].clone()),
        (json!("cli"), json!(run.stdout.trim()))
    );
    let run = emitter(
        &[
            "--edge",
            &url,
            "--api-key",
            "nope",
            "send",
            "--all",
            "--event",
            "e",
            "--data",
            "1",
        ],
        None,
    );
    assert_eq!(run.code, 1, "a wrong key is no input error: {}", run.stderr);
    let run = emitter(
        &[
            "--edge",
            &url,
            "--api-key",
            "new-key-0123456789",
            "send",
            "--room",
            "bad room",
            "--event",
            "e",
            "--data",
            "1",
        ],
        None,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("INVALID_ROOM"), "{}", run.stderr);

    redis.kill();
    edge.wait_readyz(503).await;
    let (status, head, answer) = edge
        .api("POST", "/api/publish", Some("new-key-0123456789"), &publish)
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (503, json!("UNAVAILABLE")),
        "{answer}"
    );
    assert!(head.contains("retry-after: 1"), "{head}");
    let run = emitter(
        &[
            "--edge",
            &url,
            "--api-key",
            "new-key-0123456789",
            "send",
            "--all",
            "--event",
            "e",
            "--data",
            "1",
        ],
        None,
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    drop(edge);
    let run = emitter(
        &[
            "--edge",
            &url,
            "--api-key",
            "k",
            "send",
            "--all",
            "--event",
            "e",
            "--data",
            "1",
        ],
        None,
    );
    assert_eq!(run.code, 3, "edge gone: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_or_published_api_keys_are_refused_at_start() {
    let secret = "an-api-test-secret-of-32-bytes-or-more";
    for key in ["short", DEV_KEY] {
        let mut edge = Edge::spawn(&["--jwt-secret", secret, "--api-key", key], &[]);
        let status = edge.exited(ferrocast_tests::DEADLINE).await;
        assert!(!status.success(), "{key}: {status}");
    }
}
