#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Payload encryption per connection (PROTOCOL.md part E) against real edges: a Python client
//! written from the contract alone (tests/python/encrypted_client.py, pyca/cryptography) in a
//! room with a plain member, every bad input it can send, and 4004 for encryption required and
//! not set up; a Rust client in MessagePack checks that encrypted frames are never compressed
//! while a plain member of the same room gets the shared, compressed frame. The interpreter is
//! `FERROCAST_PYTHON` (scripts/test.sh makes a venv with tests/python/requirements.txt).

use std::process::Stdio;
use std::time::Duration;

use ferrocast_tests::client::Client;
use ferrocast_tests::raw_ws::{self, RawWs};
use ferrocast_tests::sealed::ClientKeys;
use ferrocast_tests::{Edge, Token};
use serde_json::{Value, json};

const DEV_API_KEY: &str = "ferrocast-dev-api-key";

/// Starts `tests/python/encrypted_client.py WS_URL TOKEN SCENARIO`.
fn spawn_python(edge: &Edge, token: &str, scenario: &str) -> tokio::process::Child {
    let python = std::env::var("FERROCAST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!("{}/python/encrypted_client.py", env!("CARGO_MANIFEST_DIR"));
    tokio::process::Command::new(&python)
        .args([&script, &edge.ws_url(), token, scenario])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"))
}

/// Waits for the Python client and expects it to have printed "ok".
async fn python_ok(child: tokio::process::Child, scenario: &str) {
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the Python client finished in time")
        .expect("its output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "scenario {scenario} failed ({}); scripts/test.sh installs tests/python/requirements.txt \
         and sets FERROCAST_PYTHON\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
}

async fn run_python(edge: &Edge, token: &str, scenario: &str) {
    python_ok(spawn_python(edge, token, scenario), scenario).await;
}

fn python_token() -> Token {
    Token::user("py", &["py:*"]).claim("pub", json!(["py:*"]))
}

/// The edge still serves: a new plain client is welcomed and answered.
async fn still_serving(edge: &Edge) {
    let (mut client, _) = Client::connect(&edge.ws_url(), &Token::user("after", &[]).dev()).await;
    let pong = client.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
}

#[tokio::test]
async fn the_python_client_talks_encrypted_in_a_room_with_a_plain_member() {
    let edge = Edge::start(&[]).await;
    let plain_token = Token::user("plain", &["py:*"])
        .claim("pub", json!(["py:*"]))
        .dev();
    let (mut plain, _) = Client::connect(&edge.ws_url(), &plain_token).await;
    assert_eq!(plain.join("py:enc").await["type"], "joined");
    let python = spawn_python(&edge, &python_token().dev(), "room");
    // The encrypted member's publish reaches the plain member as a plain frame.
    let from_python = loop {
        let frame = plain.recv().await;
        if frame["type"] == "msg" {
            break frame;
        }
    };
    assert_eq!(from_python["event"], "from.python");
    assert_eq!(from_python["data"], json!({"text": "sealed"}));
    let ack = plain
        .request(
            json!({"type": "publish", "room": "py:enc", "event": "from.rust",
                        "data": {"text": "plain"}, "echo": false}),
        )
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    python_ok(python, "room").await;
}

#[tokio::test]
async fn bad_input_from_an_encrypting_client_closes_or_answers_as_the_contract_says() {
    let edge = Edge::start(&[]).await;
    let token = python_token().dev();
    for scenario in [
        "header",
        "late",
        "plain-enc",
        "bad-key",
        "off-curve",
        "wrong-tag",
        "replayed",
        "skipped",
        "plaintext",
    ] {
        run_python(&edge, &token, scenario).await;
    }
    still_serving(&edge).await;
}

#[tokio::test]
async fn require_encryption_closes_with_4004_whoever_does_not_set_it_up() {
    let edge = Edge::start(&["--require-encryption", "--auth-timeout", "1s"]).await;
    let token = python_token().dev();
    // The last: an encrypting client is served as on any edge.
    for scenario in [
        "required-auth",
        "required-header",
        "required-silent",
        "required-ok",
        "header",
    ] {
        run_python(&edge, &token, scenario).await;
    }
}

#[tokio::test]
async fn the_enc_claim_requires_encryption_of_that_client_alone() {
    let edge = Edge::start(&["--auth-timeout", "1s"]).await;
    let must = python_token().claim("enc", json!(true)).dev();
    for scenario in ["required-auth", "required-header", "required-ok"] {
        run_python(&edge, &must, scenario).await;
    }
    // Without the claim, the same edge serves plain clients...
    still_serving(&edge).await;
    // ...until a refresh brings the claim: refused, and closed as unencrypted.
    let plain_token = python_token().dev();
    let (mut plain, _) = Client::connect(&edge.ws_url(), &plain_token).await;
    plain
        .send(json!({"type": "refresh", "token": python_token().claim("enc", json!(true)).dev()}))
        .await;
    let refused = plain.expect("error").await;
    assert_eq!(refused["code"], "FORBIDDEN", "{refused}");
    assert_eq!(plain.closed().await.0, 4004);
}

#[tokio::test]
async fn an_idle_encrypted_client_gets_the_heartbeat_and_stays() {
    let edge = Edge::start(&["--heartbeat", "1s", "--idle-timeout", "3s"]).await;
    run_python(&edge, &python_token().dev(), "quiet").await;
}

/// Frames of a raw MessagePack connection that offered permessage-deflate.
async fn raw_msgpack(edge: &Edge) -> RawWs {
    RawWs::open(
        edge.port,
        None,
        "sec-websocket-protocol: ferrocast.v1.msgpack\r\n\
         sec-websocket-extensions: permessage-deflate\r\n",
        256 * 1024,
    )
    .await
}

async fn send_binary(ws: &mut RawWs, payload: &[u8]) {
    assert!(ws.write(&raw_ws::frame(true, 0x2, payload)).await);
}

/// The next data frame: whether it was compressed (RSV1), and its payload.
async fn next_data(ws: &mut RawWs) -> (bool, Vec<u8>) {
    loop {
        let (first, payload) = ws.next_frame_with_flags().await.expect("a frame");
        if first & 0x0f == 0x2 {
            return (first & 0x40 != 0, payload);
        }
        assert_ne!(first & 0x0f, 0x8, "closed: {payload:?}");
    }
}

fn msgpack(value: &Value) -> Vec<u8> {
    rmp_serde::to_vec_named(value).unwrap()
}

fn value(bytes: &[u8]) -> Value {
    rmp_serde::from_slice(bytes).unwrap()
}

#[tokio::test]
async fn msgpack_members_get_sealed_uncompressed_frames_while_plain_ones_share_the_compressed_one()
{
    let edge = Edge::start(&[]).await;
    let token = Token::user("mp", &["mp:*"]).claim("pub", json!(["mp:*"]));

    let mut sealed = raw_msgpack(&edge).await;
    let mut keys = ClientKeys::new();
    send_binary(
        &mut sealed,
        &msgpack(&json!({"type": "auth", "token": token.dev(), "encrypt": {"key": keys.offer()}})),
    )
    .await;
    let (_, welcome) = next_data(&mut sealed).await;
    let welcome = value(&welcome);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    keys.agree(&welcome["encrypt"]);
    let join = keys.seal(
        &msgpack(&json!({"type": "join", "room": "mp:room", "ref": 1})),
        true,
    );
    send_binary(&mut sealed, &join).await;
    let (compressed, joined) = next_data(&mut sealed).await;
    assert!(!compressed);
    let joined = value(&keys.open(&joined, true));
    assert_eq!(
        (&joined["type"], &joined["ref"]),
        (&json!("joined"), &json!(1))
    );

    let mut plain = raw_msgpack(&edge).await;
    send_binary(
        &mut plain,
        &msgpack(&json!({"type": "auth", "token": token.dev()})),
    )
    .await;
    assert_eq!(value(&next_data(&mut plain).await.1)["type"], "welcome");
    send_binary(
        &mut plain,
        &msgpack(&json!({"type": "join", "room": "mp:room", "ref": 1})),
    )
    .await;
    assert_eq!(value(&next_data(&mut plain).await.1)["type"], "joined");

    // Large enough to be compressed for the plain member (--compression-min-bytes 512).
    let text = "compressible ".repeat(200);
    for i in 0..3 {
        let body = json!({"room": "mp:room", "event": "big", "data": {"i": i, "text": text}});
        let (status, _, answer) = edge
            .api("POST", "/api/publish", Some(DEV_API_KEY), &body.to_string())
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    for i in 0..3 {
        let (compressed, _) = next_data(&mut plain).await;
        assert!(
            compressed,
            "the plain member gets the shared, compressed frame"
        );
        let (compressed, frame) = next_data(&mut sealed).await;
        assert!(!compressed, "an encrypted frame is never compressed");
        let msg = value(&keys.open(&frame, true));
        assert_eq!(msg["type"], "msg");
        assert_eq!(msg["data"], json!({"i": i, "text": text}));
    }

    // A frame the edge cannot open ends the connection with 1008; the edge goes on.
    send_binary(&mut sealed, &msgpack(&json!({"type": "ping", "ref": 2}))).await;
    assert_eq!(sealed.close_code().await.0, 1008);
    still_serving(&edge).await;
}
