//! The HTTP API on the internal listener (PROTOCOL.md part C), and `emitter --edge` over it.

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
    ] {
        let (status, _, answer) = bad(body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "BAD_FRAME", "{body}: {answer}");
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
    let secret = "s".repeat(32);
    let off = Edge::with_redis(&redis, &["--jwt-secret", &secret]).await;
    let publish = json!({"room": "r", "event": "e", "data": 1}).to_string();
    let (status, _, answer) = off
        .api("POST", "/api/publish", Some(DEV_KEY), &publish)
        .await;
    assert_eq!(status, 404, "no key configured, no API: {answer}");

    let edge = Edge::with_redis(
        &redis,
        &[
            "--jwt-secret",
            &secret,
            "--api-key",
            "old-key-0123456789,new-key-0123456789",
        ],
    )
    .await;
    let token = Token::user("ada", &["r"]).hs256(&secret);
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
async fn the_cli_feeds_a_single_node_edge_and_reads_its_presence() {
    let edge = Edge::start(&["--presence-rooms", "p:*"]).await;
    let (mut ada, welcome) = Client::connect(&edge.ws_url(), &token("ada")).await;
    ada.join("p:1").await;
    let url = format!("http://127.0.0.1:{}", edge.internal_port);
    let key = ["--edge", url.as_str(), "--api-key", DEV_KEY];
    let run = emitter(
        &[
            &key[..],
            &["send", "--room", "p:1", "--event", "e", "--data", "[1,2]"],
        ]
        .concat(),
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ada.expect("msg").await["data"], json!([1, 2]));
    let run = emitter(&[&key[..], &["presence", "--room", "p:1"]].concat(), None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed: Value = serde_json::from_str(run.stdout.trim()).expect("json");
    assert_eq!(printed["clients"][0]["client"], welcome["client"]);
    let run = emitter(
        &[&key[..], &["leave", "--user", "ada", "--room", "p:1"]].concat(),
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ada.expect("left").await["room"], "p:1");
    let run = emitter(&[&key[..], &["send", "--stdin"]].concat(), Some(""));
    assert_eq!(run.code, 0, "no lines, nothing to do: {}", run.stderr);
    assert!(
        run.stderr.contains("published 0, bad 0, not published 0"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_or_published_api_keys_are_refused_at_start() {
    let secret = "s".repeat(32);
    for key in ["short", DEV_KEY] {
        let mut edge = Edge::spawn(&["--jwt-secret", &secret, "--api-key", key], &[]);
        let status = edge.exited(ferrocast_tests::DEADLINE).await;
        assert!(!status.success(), "{key}: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_stdin_goes_through_the_edge_api_line_by_line() {
    let mut edge = Edge::start(&[]).await;
    let (mut ada, welcome) = Client::connect(&edge.ws_url(), &token("ada")).await;
    ada.join("r").await;
    let me = welcome["client"].as_str().expect("client id");
    let url = format!("http://127.0.0.1:{}", edge.internal_port);
    let cli = [
        "--edge",
        url.as_str(),
        "--api-key",
        DEV_KEY,
        "send",
        "--stdin",
    ];

    let lines = [
        json!({"room": "r", "event": "a", "data": {"n": 1}}).to_string(),
        "not json".to_owned(),
        json!({"user": "ada", "event": "b", "data": [1, 2]}).to_string(),
        json!({"room": "r", "event": "c", "data": "x", "except": [me]}).to_string(),
        json!({"all": true, "event": "d"}).to_string(),
    ]
    .join("\n");
    let run = emitter(&cli, Some(&lines));
    assert_eq!(
        run.code, 2,
        "a bad line, the rest published: {}",
        run.stderr
    );
    assert!(run.stderr.contains("line 2:"), "{}", run.stderr);
    assert!(
        run.stderr.contains("published 4, bad 1, not published 0"),
        "{}",
        run.stderr
    );
    let offsets: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(offsets.len(), 4, "{}", run.stdout);
    // `c` left ada out, as its line asked; the others reach her in order, at their offsets.
    for (event, scope, offset) in [
        ("a", "room", offsets[0]),
        ("b", "user", offsets[1]),
        ("d", "all", offsets[3]),
    ] {
        let frame = ada.expect("msg").await;
        assert_eq!(
            (&frame["event"], &frame["scope"], &frame["offset"]),
            (&json!(event), &json!(scope), &json!(offset)),
            "{frame}"
        );
    }
    let next = ada.request(json!({"type": "ping"})).await;
    assert_eq!(next["type"], "pong", "nothing else: {next}");

    // 2.4 MB of lines: more than one request of the edge's 1 MiB can carry, so the pipelines
    // are cut by size; every line published, in order.
    let big = "x".repeat(8 * 1024);
    let lines: Vec<String> = (0..300)
        .map(|n| json!({"room": "elsewhere", "event": "big", "data": [n, big]}).to_string())
        .collect();
    let run = emitter(&cli, Some(&lines.join("\n")));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 300, "{}", run.stderr);
    let huge = json!({"room": "elsewhere", "event": "huge", "data": "x".repeat(1 << 20)});
    let run = emitter(&cli, Some(&huge.to_string()));
    assert_eq!(
        run.code, 2,
        "a line no request can carry is a bad line: {}",
        run.stderr
    );
    assert!(run.stderr.contains("line 1: too large"), "{}", run.stderr);

    // An edge that is gone: nothing published, exit status 3, the lines named.
    edge.terminate();
    edge.exited(ferrocast_tests::DEADLINE).await;
    let run = emitter(&cli, Some(&json!({"room": "r", "event": "e"}).to_string()));
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("line 1 not published"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("(the edge is unavailable)"),
        "{}",
        run.stderr
    );
}
