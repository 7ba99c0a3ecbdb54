//! A whole edge inside the test process, on the in-process bus: started, used by real WebSocket
//! clients and stopped through its [`Edge`] handle, in milliseconds and with no other process.

// A test's helpers panic on purpose, as a failed test must.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use clap::Parser;
use ferrocast_edge::config::{Config, DEV_JWT_SECRET};
use ferrocast_edge::{Edge, Listeners};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const DEADLINE: Duration = Duration::from_secs(10);

async fn start(flags: &[&str]) -> Edge {
    let mut args = vec!["edge", "--log", "error"];
    args.extend_from_slice(flags);
    let config = Config::parse_from(args);
    let listeners = Listeners {
        public: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        internal: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    };
    Edge::start(config, listeners).await.expect("start")
}

fn token(sub: &str, claims: Value) -> String {
    let mut body = json!({"sub": sub, "exp": 4_000_000_000u64});
    if let (Some(body), Some(claims)) = (body.as_object_mut(), claims.as_object()) {
        body.extend(claims.clone());
    }
    jsonwebtoken::encode(
        &Header::default(),
        &body,
        &EncodingKey::from_secret(DEV_JWT_SECRET.as_bytes()),
    )
    .expect("token")
}

async fn connect(edge: &Edge, token: &str) -> Ws {
    let url = format!("ws://{}/ws", edge.public_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let auth = json!({"type": "auth", "token": token}).to_string();
    ws.send(Message::Text(auth.into())).await.expect("auth");
    assert_eq!(recv(&mut ws).await["type"], "welcome");
    ws
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("json");
        }
    }
}

async fn request(ws: &mut Ws, frame: Value) -> Value {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
    recv(ws).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_starts_delivers_and_stops_inside_a_test() {
    let edge = start(&["--drain-timeout", "200ms"]).await;
    let mut reader = connect(&edge, &token("r", json!({"rooms": ["chat"]}))).await;
    let mut writer = connect(
        &edge,
        &token("w", json!({"rooms": ["chat"], "pub": ["chat"]})),
    )
    .await;
    for ws in [&mut reader, &mut writer] {
        let joined = request(ws, json!({"type": "join", "room": "chat", "ref": 1})).await;
        assert_eq!(joined["type"], "joined", "{joined}");
    }
    let ack = request(
        &mut writer,
        json!({"type": "publish", "room": "chat", "event": "say", "data": {"n": 1}, "ref": 2}),
    )
    .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let msg = recv(&mut reader).await;
    assert_eq!(
        (msg["event"].clone(), msg["data"]["n"].clone()),
        (json!("say"), json!(1))
    );

    // A resume from the first message's offset replays nothing newer, and says it recovered.
    let offset = msg["offset"].clone();
    let joined = request(
        &mut reader,
        json!({"type": "join", "room": "chat", "since": offset, "ref": 3}),
    )
    .await;
    assert_eq!(joined["type"], "joined");

    // Stopping drains: every client is told 1001, and the handle's tasks end.
    let stopping = tokio::spawn(edge.stop());
    for ws in [&mut reader, &mut writer] {
        let close = loop {
            match tokio::time::timeout(DEADLINE, ws.next())
                .await
                .expect("in time")
            {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        };
        assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    }
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("stopped in time")
        .expect("stop");
}
