//! A real WebSocket client speaking the Ferrocast protocol, with a deadline on every wait.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Response;
use tungstenite::http::HeaderValue;

use crate::DEADLINE;

/// A connected client.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Whether frames are MessagePack (binary) rather than JSON (text).
    pub msgpack: bool,
    next_ref: u64,
}

impl Client {
    /// Opens a WebSocket to `url`, with `Authorization: Bearer <bearer>` if given and the
    /// `subprotocols` offered. The handshake error (e.g. HTTP 401) is returned as is.
    pub async fn open(
        url: &str,
        bearer: Option<&str>,
        subprotocols: &[&str],
    ) -> Result<(Client, Response), tungstenite::Error> {
        let mut request = url.into_client_request()?;
        if let Some(token) = bearer {
            request.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
            );
        }
        if !subprotocols.is_empty() {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_str(&subprotocols.join(", ")).expect("header"),
            );
        }
        let (ws, response) =
            tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request))
                .await
                .map_err(|_| tungstenite::Error::ConnectionClosed)??;
        let msgpack = response
            .headers()
            .get("sec-websocket-protocol")
            .is_some_and(|v| v == "ferrocast.v1.msgpack");
        Ok((
            Client {
                ws,
                msgpack,
                next_ref: 1,
            },
            response,
        ))
    }

    /// Connects with the token in the `Authorization` header and reads the `welcome`.
    pub async fn connect(url: &str, token: &str) -> (Client, Value) {
        let (mut client, _) = Client::open(url, Some(token), &[]).await.expect("connect");
        let welcome = client.expect("welcome").await;
        (client, welcome)
    }

    /// Connects with MessagePack frames and the token in the header, and reads the `welcome`.
    pub async fn connect_msgpack(url: &str, token: &str) -> (Client, Value) {
        let (mut client, _) = Client::open(url, Some(token), &["ferrocast.v1.msgpack"])
            .await
            .expect("connect");
        assert!(client.msgpack, "the edge did not pick msgpack");
        let welcome = client.expect("welcome").await;
        (client, welcome)
    }

    /// Connects browser-style: no header, then an `auth` frame; reads the `welcome`.
    pub async fn connect_with_auth_frame(url: &str, token: &str) -> (Client, Value) {
        let (mut client, _) = Client::open(url, None, &[]).await.expect("connect");
        client.send(json!({"type": "auth", "token": token})).await;
        let welcome = client.expect("welcome").await;
        (client, welcome)
    }

    /// Sends a frame in the connection's encoding.
    pub async fn send(&mut self, frame: Value) {
        let message = if self.msgpack {
            Message::Binary(rmp_serde::to_vec_named(&frame).expect("msgpack").into())
        } else {
            Message::Text(frame.to_string().into())
        };
        self.send_raw(message).await;
    }

    /// Sends a raw WebSocket message.
    pub async fn send_raw(&mut self, message: Message) {
        tokio::time::timeout(DEADLINE, self.ws.send(message))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// The next data message (pings and pongs skipped).
    pub async fn recv_message(&mut self) -> Message {
        loop {
            let next = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("no frame within the deadline");
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(message)) => return message,
                other => panic!("connection ended while waiting for a frame: {other:?}"),
            }
        }
    }

    /// The next frame, decoded; `None` once the connection has ended, however it ended.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let next = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("no frame within the deadline");
            return match next {
                Some(Ok(Message::Text(text))) => serde_json::from_str(&text).ok(),
                Some(Ok(Message::Binary(bytes))) => rmp_serde::from_slice(&bytes).ok(),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => None,
                Some(Ok(_)) => continue,
            };
        }
    }

    /// The next frame, decoded.
    pub async fn recv(&mut self) -> Value {
        match self.recv_message().await {
            Message::Text(text) => serde_json::from_str(&text).expect("edge sent invalid JSON"),
            Message::Binary(bytes) => {
                rmp_serde::from_slice(&bytes).expect("edge sent invalid msgpack")
            }
            other => panic!("expected a data frame, got {other:?}"),
        }
    }

    /// The next frame, which must be of `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], kind, "expected a {kind} frame, got {frame}");
        frame
    }

    /// Sends `frame` with a fresh `ref` and returns the answer, checking it echoes the `ref`.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        let reference = self.next_ref;
        self.next_ref += 1;
        frame["ref"] = json!(reference);
        self.send(frame).await;
        let answer = self.recv().await;
        assert_eq!(
            answer["ref"],
            json!(reference),
            "answer does not echo the ref: {answer}"
        );
        answer
    }

    /// Joins `room`; panics unless the answer is `joined`.
    pub async fn join(&mut self, room: &str) -> Value {
        let answer = self.request(json!({"type": "join", "room": room})).await;
        assert_eq!(answer["type"], "joined", "join {room}: {answer}");
        answer
    }

    /// Reads until the edge closes the connection; returns the close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("not closed within the deadline");
            match next {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (frame.code.into(), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("connection failed instead of closing: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }
}
