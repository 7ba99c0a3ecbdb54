//! Opening client connections: tokens, source addresses, small buffers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;

use crate::cli::Common;
use ferrocast_edge::encryption::client::ClientKeys;

/// A client connection.
pub type Ws = WebSocketStream<TcpStream>;

/// Where and how clients connect.
pub struct Connector {
    urls: Vec<String>,
    secret: EncodingKey,
    source_ips: u8,
    next: AtomicUsize,
    encrypt: bool,
}

impl Connector {
    /// From the common options.
    pub fn new(common: &Common) -> Connector {
        Connector {
            urls: common.urls.clone(),
            secret: EncodingKey::from_secret(common.jwt_secret.as_bytes()),
            source_ips: common.source_ips.max(1),
            next: AtomicUsize::new(0),
            encrypt: common.encrypt,
        }
    }

    /// A token for `sub` allowed into and publishing to `rooms` (patterns).
    pub fn token(&self, sub: &str, rooms: &[&str]) -> anyhow::Result<String> {
        let exp = ferrocast_protocol::envelope::now_ms() / 1000 + 24 * 3600;
        let claims = json!({"sub": sub, "exp": exp, "rooms": rooms, "pub": rooms});
        Ok(jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &self.secret,
        )?)
    }

    /// Opens a connection (round-robin over the URLs and source addresses), authenticated by
    /// header when `token` is given, and reads its `welcome`.
    pub async fn open(
        &self,
        token: Option<&str>,
        small_receive_buffer: bool,
    ) -> anyhow::Result<Ws> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.open_at(n, token, small_receive_buffer).await
    }

    /// Like [`Connector::open`] (with a token), then sets encryption up if the run asks for it
    /// (`--encrypt`): the client's keys, which every frame after must go through.
    pub async fn open_sealed(&self, token: &str) -> anyhow::Result<(Ws, Option<ClientKeys>)> {
        let mut ws = self.open(Some(token), false).await?;
        if !self.encrypt {
            return Ok((ws, None));
        }
        let mut keys = ClientKeys::new();
        let offer = json!({"type": "encrypt", "key": keys.offer()});
        ws.send(Message::Text(offer.to_string().into())).await?;
        let answer = next_json(&mut ws).await?;
        let hello = &answer["encrypt"];
        match (hello["key"].as_str(), hello["salt"].as_str()) {
            (Some(key), Some(salt)) => keys.agree(key, salt)?,
            _ => bail!("expected the encrypt answer, got {answer}"),
        }
        Ok((ws, Some(keys)))
    }

    /// How many URLs there are.
    pub fn url_count(&self) -> usize {
        self.urls.len()
    }

    /// Like [`Connector::open`], to URL number `n` (modulo their count).
    pub async fn open_at(
        &self,
        n: usize,
        token: Option<&str>,
        small_receive_buffer: bool,
    ) -> anyhow::Result<Ws> {
        let url = &self.urls[n % self.urls.len()];
        let mut request = url.as_str().into_client_request()?;
        if let Some(token) = token {
            request.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {token}"))?,
            );
        }
        let host = request.uri().host().context("URL without host")?.to_owned();
        let port = request.uri().port_u16().unwrap_or(80);
        let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .next()
            .context("URL host does not resolve")?;
        let socket = TcpSocket::new_v4()?;
        if self.source_ips > 1 && addr.ip().is_loopback() {
            let last = 1 + (n % usize::from(self.source_ips)) as u8;
            socket.bind(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
                0,
            ))?;
        }
        if small_receive_buffer {
            socket.set_recv_buffer_size(4096)?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        // Small buffers: the harness holds tens of thousands of these.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(16 << 20));
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
        if token.is_some() {
            let welcome = next_json(&mut ws).await?;
            if welcome["type"] != "welcome" {
                bail!("expected welcome, got {welcome}");
            }
        }
        Ok(ws)
    }
}

/// The next data frame, as JSON.
pub async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match ws.next().await.context("connection ended")?? {
            Message::Text(text) => return Ok(serde_json::from_str(&text)?),
            Message::Close(frame) => bail!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// Joins `room` and waits for `joined`, sealed if `keys` says the connection is encrypted.
pub async fn join_sealed(
    ws: &mut Ws,
    keys: &mut Option<ClientKeys>,
    room: &str,
) -> anyhow::Result<()> {
    let Some(keys) = keys else {
        return join(ws, room).await;
    };
    let frame = json!({"type": "join", "room": room}).to_string();
    let sealed = String::from_utf8(keys.seal(frame.as_bytes(), false)?)?;
    ws.send(Message::Text(sealed.into())).await?;
    let answer: Value = serde_json::from_slice(&open_text(ws, keys).await?)?;
    if answer["type"] != "joined" {
        bail!("join {room}: {answer}");
    }
    Ok(())
}

/// The next text frame of an encrypted connection, opened.
async fn open_text(ws: &mut Ws, keys: &mut ClientKeys) -> anyhow::Result<Vec<u8>> {
    loop {
        match ws.next().await.context("connection ended")?? {
            Message::Text(text) => return Ok(keys.open(text.as_bytes(), false)?),
            Message::Close(frame) => bail!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// Joins `room` and waits for `joined`.
pub async fn join(ws: &mut Ws, room: &str) -> anyhow::Result<()> {
    ws.send(Message::Text(
        json!({"type": "join", "room": room}).to_string().into(),
    ))
    .await?;
    let answer = next_json(ws).await?;
    if answer["type"] != "joined" {
        bail!("join {room}: {answer}");
    }
    Ok(())
}
