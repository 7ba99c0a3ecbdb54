//! Back-end hooks (docs/protocol.md, part 4) against a real hook server started by each test: the
//! application authenticates opaque tokens and decides joins, a failing hook is the back end's
//! outage (1013, never 4001), and what the connect hook publishes reaches the new client
//! (lifecycle events are in lifecycle.rs).

use std::time::Duration;

use ferrocast_emitter::Emitter;
use ferrocast_tests::hook_server::Mode;
use ferrocast_tests::{Client, DEADLINE, Edge, HookServer, RedisServer};
use serde_json::json;

const HOOK_KEY: &str = "hook-key-for-tests";

fn hook_args(hooks: &HookServer) -> Vec<String> {
    [
        "--connect-hook",
        &hooks.url("/connect"),
        "--join-hook",
        &hooks.url("/join"),
        "--join-hook-rooms",
        "project:*",
        "--hook-key",
        HOOK_KEY,
        "--hook-timeout",
        "500ms",
    ]
    .map(String::from)
    .to_vec()
}

async fn edge_with(hooks: &HookServer, extra: &[&str]) -> Edge {
    let mut args = hook_args(hooks);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Edge::start(&args).await
}

/// The HTTP status refusing an upgrade with `token` in the header (101 if it was accepted).
async fn upgrade_status(edge: &Edge, token: &str) -> u16 {
    match Client::open(&edge.ws_url(), Some(token), &[]).await {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade failed otherwise: {e}"),
    }
}

/// Opens a browser-style connection and sends `token`; the close code and reason it gets.
async fn refused(url: &str, token: &str) -> (u16, String) {
    let (mut client, _) = Client::open(url, None, &[]).await.expect("connect");
    client.send(json!({"type": "auth", "token": token})).await;
    client.closed().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_authenticates_opaque_tokens_and_decides_joins() {
    let hooks = HookServer::start().await;
    hooks.token(
        "session-ada",
        json!({"user": "ada", "rooms": ["lobby"], "meta": {"plan": "pro"}, "info": {"name": "Ada"}}),
    );
    hooks.member("ada", "project:7");
    let edge = edge_with(&hooks, &[]).await;

    // Accepted by auth frame and by header: the claims are the hook's.
    let (mut ada, welcome) = Client::connect_with_auth_frame(&edge.ws_url(), "session-ada").await;
    assert_eq!(welcome["user"], "ada");
    let (_, by_header) = Client::connect(&edge.ws_url(), "session-ada").await;
    assert_eq!(by_header["user"], "ada");
    let asked = hooks.requests("/connect");
    let (auth, _, body) = &asked[0];
    assert_eq!(auth.as_deref(), Some(&*format!("Bearer {HOOK_KEY}")));
    assert_eq!(body["token"], "session-ada");
    assert_eq!(
        body["client"], welcome["client"],
        "the hook learns the client id"
    );
    assert_eq!(body["remote"], "127.0.0.1");
    assert!(body["node"].is_string(), "{body}");

    // Refused: 4001 for the frame, HTTP 401 for the header.
    assert_eq!(refused(&edge.ws_url(), "nobody").await.0, 4001);
    assert_eq!(upgrade_status(&edge, "nobody").await, 401);

    // Joins: the claims allow the lobby with no hook call; a project room is the hook's.
    ada.join("lobby").await;
    ada.join("project:7").await;
    let denied = ada
        .request(json!({"type": "join", "room": "project:8"}))
        .await;
    assert_eq!(denied["code"], "FORBIDDEN", "{denied}");
    assert_eq!(denied["message"], "not a member of this project");
    let outside = ada.request(json!({"type": "join", "room": "secret"})).await;
    assert_eq!(
        outside["code"], "FORBIDDEN",
        "no hook for this room: {outside}"
    );
    let joins = hooks.requests("/join");
    assert_eq!(
        joins.len(),
        2,
        "only the project rooms were asked: {joins:?}"
    );
    assert_eq!(joins[0].2["meta"], json!({"plan": "pro"}));
    assert_eq!(joins[0].2["client"], welcome["client"]);

    // A refresh goes through the hook too, and a room the hook granted survives it.
    hooks.token("session-ada-2", json!({"user": "ada", "rooms": ["lobby"]}));
    ada.send(json!({"type": "refresh", "token": "session-ada-2"}))
        .await;
    let refreshed = ada.expect("refreshed").await;
    assert!(
        refreshed["exp"].as_u64() > Some(4_000_000_000),
        "no exp: never expires"
    );
    let published = ada.request(json!({"type": "ping"})).await;
    assert_eq!(
        published["type"], "pong",
        "no `left` came before: {published}"
    );

    // The join hook down: UNAVAILABLE with retry_after, not FORBIDDEN.
    drop(hooks);
    let down = ada
        .request(json!({"type": "join", "room": "project:9"}))
        .await;
    assert_eq!(down["code"], "UNAVAILABLE", "{down}");
    assert!(down["retry_after"].as_u64().is_some(), "{down}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_failing_hook_closes_with_1013_and_leaks_nothing() {
    let hooks = HookServer::start().await;
    hooks.token("session-bob", json!({"user": "bob"}));
    let edge = edge_with(&hooks, &["--hook-concurrency", "2"]).await;

    hooks.set_mode(Mode::Failing);
    assert_eq!(refused(&edge.ws_url(), "session-bob").await.0, 1013);
    assert_eq!(upgrade_status(&edge, "session-bob").await, 503);

    // Slower than --hook-timeout: 1013 again. Ten at once from one address share its one place
    // (a quarter of the two slots, at least one), held until its request times out (500 ms):
    // the others are refused at once and never reach the hook.
    hooks.set_mode(Mode::Slow(Duration::from_secs(2)));
    let before = hooks.requests("/connect").len();
    let url = edge.ws_url();
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { refused(&url, "session-bob").await.0 })
        })
        .collect();
    for attempt in attempts {
        assert_eq!(attempt.await.expect("attempt"), 1013);
    }
    let reached = hooks.requests("/connect").len() - before;
    assert!(
        (1..=6).contains(&reached),
        "{reached} of 10 reached the hook"
    );
    edge.wait_metric("ferrocast_connections", 0.0).await;
    let metrics = edge.metrics().await;
    let timeouts = metrics
        .get("ferrocast_hook_requests_total{hook=\"connect\",outcome=\"timeout\"}")
        .copied()
        .unwrap_or(0.0);
    assert!(timeouts >= 1.0, "{metrics:?}");
    let busy = metrics
        .get("ferrocast_hook_requests_total{hook=\"connect\",outcome=\"busy\"}")
        .copied()
        .unwrap_or(0.0);
    assert!(busy >= 4.0, "{metrics:?}");
    assert!(
        metrics.get("ferrocast_hook_requests_total{hook=\"connect\",outcome=\"failed\"}")
            >= Some(&2.0),
        "{metrics:?}"
    );

    // Back to normal, the same token gets in.
    hooks.set_mode(Mode::Normal);
    let (_, welcome) = Client::connect_with_auth_frame(&edge.ws_url(), "session-bob").await;
    assert_eq!(welcome["user"], "bob");
}

/// The status line's code of an upgrade with `token` in the header to the edge's public `port`,
/// from local address `source`.
async fn upgrade_from(port: u16, source: &str, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("address"))
        .expect("bind");
    let mut stream = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect");
    let request = format!(
        "GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         authorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = [0u8; 12];
    match tokio::time::timeout(DEADLINE, stream.read_exact(&mut head)).await {
        Ok(Ok(_)) => String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0),
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_whose_tokens_the_hook_never_answers_cannot_delay_other_logins() {
    let hooks = HookServer::start().await;
    hooks.token("session-alice", json!({"user": "alice"}));
    hooks.hang_on("stalling");
    let edge = Edge::start(&[
        "--connect-hook",
        &hooks.url("/connect"),
        "--hook-key",
        HOOK_KEY,
        "--hook-timeout",
        "3s",
        "--hook-concurrency",
        "4",
    ])
    .await;
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stalls: Vec<_> = (0..8)
        .map(|_| {
            let port = edge.port;
            let answered = answered.clone();
            tokio::spawn(async move {
                let status = upgrade_from(port, "127.0.0.1", "stalling").await;
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                status
            })
        })
        .collect();
    // Every stalling login is either at the hook or answered: the hook's slots are as taken as
    // this address can make them.
    ferrocast_tests::eventually("the stalling logins to be placed", || {
        hooks.requests("/connect").len() + answered.load(std::sync::atomic::Ordering::SeqCst) >= 8
            || hooks.requests("/connect").len() >= 4
    })
    .await;
    assert_eq!(
        upgrade_from(edge.port, "127.0.0.2", "session-alice").await,
        101
    );
    for stall in stalls {
        assert_eq!(stall.await.expect("stall"), 503);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_server_and_chat_worker_examples_work_together() {
    use ferrocast_tests::{Running, bin, free_port};
    let redis = RedisServer::start();
    let port = free_port();
    let _hooks = Running(
        std::process::Command::new(bin("examples/hook_server"))
            .env("FERROCAST_HOOK_LISTEN", format!("127.0.0.1:{port}"))
            .env("FERROCAST_HOOK_KEY", HOOK_KEY)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run the example (cargo build --examples)"),
    );
    let _worker = Running(
        std::process::Command::new(bin("examples/chat_worker"))
            .env("FERROCAST_REDIS_URL", redis.url())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run the example (cargo build --examples)"),
    );
    let hook = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hook server never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (connect, join) = (hook("/connect"), hook("/join"));
    let edge = Edge::with_redis(
        &redis,
        &[
            "--connect-hook",
            &connect,
            "--join-hook",
            &join,
            "--join-hook-rooms",
            "project:*",
            "--hook-key",
            HOOK_KEY,
            "--upstream-events",
            "chat.*",
            "--upstream-lifecycle",
            "join",
        ],
    )
    .await;
    let (mut alice, _) = Client::connect_with_auth_frame(&edge.ws_url(), "session-alice").await;
    alice.join("chat:lobby").await;
    let greeting = alice.expect("msg").await;
    assert_eq!(greeting["event"], "chat.greeting", "{greeting}");
    assert_eq!(greeting["data"]["text"], "welcome to chat:lobby, alice");
    alice.join("project:apollo").await;
    let zeus = alice
        .request(json!({"type": "join", "room": "project:zeus"}))
        .await;
    assert_eq!(zeus["code"], "FORBIDDEN", "{zeus}");
    assert_eq!(refused(&edge.ws_url(), "session-mallory").await.0, 4001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_connect_hook_publishes_to_the_new_client_reaches_it_after_welcome() {
    let redis = RedisServer::start();
    let hooks = HookServer::start().await;
    hooks.token("session-ada", json!({"user": "ada"}));
    hooks.greet_with(Emitter::connect(redis.url()).await.expect("emitter"));
    let url = redis.url();
    let edge = edge_with(&hooks, &["--redis-url", &url]).await;

    // The hook published before the edge subscribed the client id: the message is in that
    // target's history only, and comes after `welcome`, once, by either way of authenticating.
    let by_frame = Client::connect_with_auth_frame(&edge.ws_url(), "session-ada").await;
    let by_header = Client::connect(&edge.ws_url(), "session-ada").await;
    for (mut client, welcome) in [by_frame, by_header] {
        let greeting = client.expect("msg").await;
        assert_eq!(greeting["scope"], "client", "{greeting}");
        assert_eq!(greeting["event"], "greeting", "{greeting}");
        assert_eq!(greeting["data"], json!({"client": welcome["client"]}));
        assert!(greeting["offset"].is_string(), "{greeting}");
        let next = client.request(json!({"type": "ping"})).await;
        assert_eq!(next["type"], "pong", "nothing twice: {next}");
    }

    // A connection the hook did not publish to gets nothing of the kind.
    *hooks.state.greeter.lock() = None;
    let (mut quiet, _) = Client::connect(&edge.ws_url(), "session-ada").await;
    let next = quiet.request(json!({"type": "ping"})).await;
    assert_eq!(next["type"], "pong", "{next}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_hook_is_reached_and_its_certificate_checked() {
    let certs = ferrocast_tests::certs::Certs::generate("https-hook");
    let hooks = HookServer::start_tls(&certs).await;
    hooks.token("session-alice", json!({"user": "alice"}));
    let url = hooks.url("/connect");
    assert!(url.starts_with("https://"), "{url}");
    let ca = certs.ca.display().to_string();
    let trusting = Edge::start(&[
        "--connect-hook",
        &url,
        "--hook-key",
        HOOK_KEY,
        "--hook-ca-file",
        &ca,
    ])
    .await;
    let (_, welcome) = Client::connect_with_auth_frame(&trusting.ws_url(), "session-alice").await;
    assert_eq!(welcome["user"], "alice");
    let seen = hooks.requests("/connect");
    assert_eq!(
        seen.last().and_then(|(auth, ..)| auth.clone()).as_deref(),
        Some(format!("Bearer {HOOK_KEY}").as_str()),
        "the hook key went over TLS"
    );

    // The system's roots do not know the test's CA: the hook cannot be trusted, so no answer.
    let doubting = Edge::start(&["--connect-hook", &url, "--hook-key", HOOK_KEY]).await;
    assert_eq!(refused(&doubting.ws_url(), "session-alice").await.0, 1013);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_one_address_may_use_every_hook_slot() {
    let hooks = HookServer::start().await;
    hooks.token("session-alice", json!({"user": "alice"}));
    hooks.hang_on("stalling");
    // --max-pending-per-ip 0: every client comes through one proxy, so one address is everyone.
    let edge = Edge::start(&[
        "--connect-hook",
        &hooks.url("/connect"),
        "--hook-key",
        HOOK_KEY,
        "--hook-timeout",
        "3s",
        "--hook-concurrency",
        "4",
        "--max-pending-per-ip",
        "0",
    ])
    .await;
    let stalls: Vec<_> = (0..2)
        .map(|_| {
            let port = edge.port;
            tokio::spawn(async move { upgrade_from(port, "127.0.0.1", "stalling").await })
        })
        .collect();
    ferrocast_tests::eventually("both stalling logins at the hook", || {
        hooks.requests("/connect").len() >= 2
    })
    .await;
    // Two of four slots are taken from this address: a third login from it still gets one.
    assert_eq!(
        upgrade_from(edge.port, "127.0.0.1", "session-alice").await,
        101
    );
    for stall in stalls {
        stall.abort();
    }
}
