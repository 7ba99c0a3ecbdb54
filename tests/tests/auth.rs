//! Every way a client can fail to authenticate is refused the same clear way: HTTP 401 before the
//! upgrade, or close 4001 after it. None of them affects other connections.

use std::process::{Command, Stdio};

use ferrocast_tests::{Client, Edge, Token, bin, free_port};
use serde_json::json;

/// A production HS256 secret: 32 bytes or more.
const SECRET: &str = "test-secret-of-at-least-32-bytes!";

fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

async fn refused_at_upgrade(edge: &Edge, token: &str) {
    match Client::open(&edge.ws_url(), Some(token), &[]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        Err(other) => panic!("expected HTTP 401, got {other}"),
        Ok(_) => panic!("a bad token was accepted"),
    }
}

async fn refused_by_auth_frame(edge: &Edge, token: &str) {
    let (mut client, _) = Client::open(&edge.ws_url(), None, &[])
        .await
        .expect("connect");
    client.send(json!({"type": "auth", "token": token})).await;
    assert_eq!(client.closed().await.0, 4001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_both_ways_and_the_edge_keeps_serving() {
    let edge = Edge::start(&["--jwt-secret", SECRET]).await;
    let (mut bystander, _) =
        Client::connect(&edge.ws_url(), &Token::user("b", &["r"]).hs256(SECRET)).await;

    let good = Token::user("u", &[]);
    let bad_tokens = [
        ("expired", good.clone().expired(120).hs256(SECRET)),
        ("wrong key", good.hs256("other")),
        ("alg none", good.unsigned()),
        ("missing sub", good.clone().without("sub").hs256(SECRET)),
        ("missing exp", good.clone().without("exp").hs256(SECRET)),
        (
            "not yet valid",
            good.clone()
                .claim("nbf", json!(4_000_000_000u64))
                .hs256(SECRET),
        ),
        (
            "numeric sub",
            good.clone().claim("sub", json!(7)).hs256(SECRET),
        ),
        ("garbage", "not.a.jwt".to_owned()),
        (
            "unknown critical extension",
            good.hs256_critical(SECRET, &["urn:example:must-understand"]),
        ),
    ];
    for (what, token) in &bad_tokens {
        eprintln!("checking {what}");
        refused_at_upgrade(&edge, token).await;
        refused_by_auth_frame(&edge, token).await;
    }
    // Within the 30 s skew allowance an expired token still passes.
    let (_c, welcome) =
        Client::connect(&edge.ws_url(), &good.clone().expired(10).hs256(SECRET)).await;
    assert_eq!(welcome["user"], "u");

    assert_eq!(
        bystander.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_describes_the_session_both_ways() {
    let edge = Edge::start(&["--node-id", "edge-7"]).await;
    let token = Token::user("alice", &[]).dev();
    for (mut client, welcome) in [
        Client::connect(&edge.ws_url(), &token).await,
        Client::connect_with_auth_frame(&edge.ws_url(), &token).await,
    ] {
        assert_eq!(welcome["user"], "alice");
        assert_eq!(welcome["node"], "edge-7");
        assert_eq!(welcome["heartbeat"], 25000);
        assert_eq!(welcome["recovered"], json!({"user": false, "all": false}));
        assert_eq!(welcome["client"].as_str().map(str::len), Some(36));
        assert_eq!(
            client.request(json!({"type": "ping"})).await["type"],
            "pong"
        );
        // Authentication happens once.
        client.send(json!({"type": "auth", "token": token})).await;
        assert_eq!(client.expect("error").await["code"], "BAD_FRAME");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_frame_in_time_or_another_frame_first_closes_with_4001() {
    let edge = Edge::start(&["--auth-timeout", "300ms"]).await;
    let (mut silent, _) = Client::open(&edge.ws_url(), None, &[])
        .await
        .expect("connect");
    assert_eq!(silent.closed().await.0, 4001);

    let (mut eager, _) = Client::open(&edge.ws_url(), None, &[])
        .await
        .expect("connect");
    eager.send(json!({"type": "join", "room": "r"})).await;
    assert_eq!(eager.closed().await.0, 4001);

    let (mut garbled, _) = Client::open(&edge.ws_url(), None, &[])
        .await
        .expect("connect");
    garbled
        .send_raw(tungstenite::Message::Text("{nope".into()))
        .await;
    assert_eq!(garbled.closed().await.0, 4001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_query_string_is_never_read() {
    let edge = Edge::start(&["--auth-timeout", "300ms"]).await;
    let token = Token::user("u", &[]).dev();
    for query in [
        format!("?token={token}"),
        format!("?access_token={token}"),
        format!("?jwt={token}"),
    ] {
        let url = format!("{}{query}", edge.ws_url());
        let (mut client, _) = Client::open(&url, None, &[])
            .await
            .expect("the upgrade itself succeeds");
        assert_eq!(client.closed().await.0, 4001, "authenticated from the URL");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asymmetric_keys_and_no_algorithm_confusion() {
    let public = fixture("rsa_public.pem");
    let edge = Edge::start(&["--jwt-alg", "RS256", "--jwt-public-key-file", &public]).await;
    let private = std::fs::read(fixture("rsa_private.pem")).expect("key");
    let token = Token::user("u", &[]);
    let (_c, welcome) = Client::connect(&edge.ws_url(), &token.rs256(&private)).await;
    assert_eq!(welcome["user"], "u");

    // HS256 signed with the public key as the secret: the classic confusion attack.
    let public_pem = std::fs::read_to_string(&public).expect("key");
    refused_at_upgrade(&edge, &token.hs256(&public_pem)).await;
    refused_by_auth_frame(&edge, &token.hs256(&public_pem)).await;
    refused_at_upgrade(&edge, &token.unsigned()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_audience_are_checked_when_configured() {
    let edge = Edge::start(&[
        "--jwt-issuer",
        "https://auth.example",
        "--jwt-audience",
        "chat",
    ])
    .await;
    let base = Token::user("u", &[]);
    let good = base
        .clone()
        .claim("iss", json!("https://auth.example"))
        .claim("aud", json!("chat"));
    let (_c, _) = Client::connect(&edge.ws_url(), &good.dev()).await;
    refused_at_upgrade(&edge, &base.dev()).await;
    refused_at_upgrade(&edge, &good.clone().claim("aud", json!("other")).dev()).await;
    refused_at_upgrade(
        &edge,
        &good.claim("iss", json!("https://evil.example")).dev(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_and_subprotocol_negotiation() {
    let edge = Edge::start(&[]).await;
    assert_eq!(edge.get("/healthz").await.map(|r| r.0), Some(200));
    assert_eq!(edge.get("/readyz").await.map(|r| r.0), Some(200));
    assert_eq!(edge.get("/nope").await.map(|r| r.0), Some(404));
    // The public port serves the WebSocket path only: probes and metrics are internal.
    for path in ["/healthz", "/readyz", "/metrics", "/nope"] {
        assert_eq!(
            edge.public_get(path).await.map(|r| r.0),
            Some(404),
            "{path}"
        );
    }
    assert_eq!(edge.get("/ws").await.map(|r| r.0), Some(404));
    // A plain GET on the WebSocket path is told to upgrade.
    assert_eq!(edge.public_get("/ws").await.map(|r| r.0), Some(426));
    assert_eq!(edge.raw("garbage\r\n\r\n").await.map(|r| r.0), Some(400));

    let token = Token::user("u", &[]).dev();
    match Client::open(&edge.ws_url(), Some(&token), &["chat", "superchat"]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
        other => panic!(
            "unknown subprotocols must get 400, got {:?}",
            other.map(|_| ())
        ),
    }
    let (_, response) = Client::open(
        &edge.ws_url(),
        Some(&token),
        &["x", "ferrocast.v1.msgpack", "ferrocast.v1.json"],
    )
    .await
    .expect("connect");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"ferrocast.v1.msgpack"[..])
    );
    let (_, response) = Client::open(&edge.ws_url(), Some(&token), &[])
        .await
        .expect("connect");
    assert!(response.headers().get("sec-websocket-protocol").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_token_command_mints_tokens_the_edge_accepts() {
    let edge = Edge::start(&[]).await;
    let out = std::process::Command::new(bin("edge"))
        .args([
            "token",
            "--sub",
            "alice",
            "--rooms",
            "chat:*,lobby",
            "--pub",
            "chat:*",
        ])
        .env_remove("FERROCAST_JWT_SECRET")
        .env_remove("FERROCAST_CONFIG")
        .output()
        .expect("run edge token");
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).expect("utf8");
    let (mut client, welcome) = Client::connect(&edge.ws_url(), token.trim()).await;
    assert_eq!(welcome["user"], "alice");
    client.join("lobby").await;
    client.join("chat:9").await;
    let answer = client
        .request(json!({"type": "publish", "room": "chat:9", "event": "e", "data": 1}))
        .await;
    assert_eq!(answer["type"], "ack");
}

/// Runs `edge` with `args` (and `env`) until it exits on its own; its exit status and stderr.
/// Panics if it is still running after a few seconds (it should refuse to start at once).
fn edge_refuses(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = Command::new(bin("edge"))
        .env_remove("FERROCAST_JWT_SECRET")
        .env_remove("FERROCAST_REDIS_URL")
        .envs(env.iter().copied())
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--internal-listen", &format!("127.0.0.1:{}", free_port())])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edge");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert!(!status.success(), "{args:?} {env:?} must refuse to start");
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
                .expect("stderr");
            return stderr;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} {env:?}: the edge started instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn empty_or_short_secrets_refuse_to_start() {
    for (args, env) in [
        (vec!["--jwt-secret", ""], vec![]),
        (vec!["--jwt-secret", "s3cret"], vec![]),
        (vec![], vec![("FERROCAST_JWT_SECRET", "")]),
        (
            vec![],
            vec![("FERROCAST_JWT_SECRET", "thirty-one-bytes-is-not-enough")],
        ),
    ] {
        let stderr = edge_refuses(&args, &env);
        assert!(
            stderr.contains("at least 32 are required"),
            "{args:?} {env:?}: {stderr}"
        );
        assert!(!stderr.contains("s3cret"), "no secret in logs: {stderr}");
    }
}

/// An edge with `args` whose stderr the test reads, started on loopback ports given back with it.
fn edge_with_stderr(listen: &str, args: &[&str]) -> (std::process::Child, u16, u16) {
    let (port, internal) = (free_port(), free_port());
    let child = Command::new(bin("edge"))
        .env_remove("FERROCAST_JWT_SECRET")
        .env_remove("FERROCAST_REDIS_URL")
        .args(["--listen", &format!("{listen}:{port}")])
        .args(["--internal-listen", &format!("{listen}:{internal}")])
        .args(["--log", "warn"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edge");
    (child, port, internal)
}

/// Waits until the edge answers `/healthz` on loopback `internal` (it has logged its start-up
/// warnings by then); panics if `child` exits first.
async fn wait_healthy(child: &mut std::process::Child, internal: u16) {
    let deadline = std::time::Instant::now() + ferrocast_tests::DEADLINE;
    loop {
        let answer = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", internal)).await?;
            tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET /healthz HTTP/1.1\r\n\r\n")
                .await?;
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut text).await?;
            std::io::Result::Ok(text)
        };
        if answer.await.is_ok_and(|t| t.starts_with("HTTP/1.1 200")) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "edge never healthy");
        assert!(child.try_wait().expect("try_wait").is_none(), "edge exited");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The local addresses of the TCP sockets listening on `port` (from /proc/net/tcp and tcp6).
fn listening_addresses(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Fields: sl, local "ADDR:PORT" in hex, remote, state (0A: LISTEN), ...
            let (Some(local), Some(&"0A")) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            if let Some((address, p)) = local.split_once(':')
                && u16::from_str_radix(p, 16) == Ok(port)
            {
                found.push(address.to_owned());
            }
        }
    }
    found
}

/// Kills `child` and returns what it wrote to stderr.
fn stop_and_read_stderr(mut child: std::process::Child) -> String {
    let _ = child.kill();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    let _ = child.wait();
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_mode_listens_on_loopback_only() {
    // Asked for every interface, with no secret: it binds loopback instead, on the same ports.
    let (mut child, port, internal) = edge_with_stderr("0.0.0.0", &[]);
    wait_healthy(&mut child, internal).await;
    // 127.0.0.1 in /proc/net/tcp's byte order; 0.0.0.0 would be 00000000.
    for p in [port, internal] {
        assert_eq!(listening_addresses(p), ["0100007F"], "port {p}");
    }
    let stderr = stop_and_read_stderr(child);
    assert!(
        stderr.contains("DEVELOPMENT MODE"),
        "a loud warning: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_key_without_an_audience_is_warned_about() {
    let key = fixture("rsa_public.pem");
    let (mut child, _, internal) = edge_with_stderr(
        "127.0.0.1",
        &["--jwt-alg", "RS256", "--jwt-public-key-file", &key],
    );
    wait_healthy(&mut child, internal).await;
    let stderr = stop_and_read_stderr(child);
    assert!(stderr.contains("no --jwt-audience"), "{stderr}");
}
