//! Every way a client can fail to authenticate is refused the same clear way: HTTP 401 before the
//! upgrade, or close 4001 after it. None of them affects other connections.

use ferrocast_tests::{Client, Edge, Token};
use serde_json::json;

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
    let edge = Edge::start(&["--jwt-secret", "s3cret"]).await;
    let (mut bystander, _) =
        Client::connect(&edge.ws_url(), &Token::user("b", &["r"]).hs256("s3cret")).await;

    let good = Token::user("u", &[]);
    let bad_tokens = [
        ("expired", good.clone().expired(120).hs256("s3cret")),
        ("wrong key", good.hs256("other")),
        ("alg none", good.unsigned()),
        ("missing sub", good.clone().without("sub").hs256("s3cret")),
        ("missing exp", good.clone().without("exp").hs256("s3cret")),
        (
            "not yet valid",
            good.clone()
                .claim("nbf", json!(4_000_000_000u64))
                .hs256("s3cret"),
        ),
        (
            "numeric sub",
            good.clone().claim("sub", json!(7)).hs256("s3cret"),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (what, token) in &bad_tokens {
        eprintln!("checking {what}");
        refused_at_upgrade(&edge, token).await;
        refused_by_auth_frame(&edge, token).await;
    }
    // Within the 30 s skew allowance an expired token still passes.
    let (_c, welcome) =
        Client::connect(&edge.ws_url(), &good.clone().expired(10).hs256("s3cret")).await;
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
    // A plain GET on the WebSocket path is told to upgrade.
    assert_eq!(edge.get("/ws").await.map(|r| r.0), Some(426));
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
async fn the_readme_dev_token_script_mints_tokens_the_edge_accepts() {
    let edge = Edge::start(&[]).await;
    let script = format!("{}/../scripts/dev-token.sh", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .args([script.as_str(), "alice", "chat:*,lobby", "chat:*"])
        .output()
        .expect("run dev-token.sh");
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
