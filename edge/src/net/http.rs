//! The HTTP side of the one port: reading a request head, plain answers for /healthz and
//! /readyz, and the WebSocket upgrade response.
//!
//! Done by hand over httparse rather than through an HTTP framework so that an upgraded connection
//! is nothing but a TcpStream and a small buffer: idle connections are what an edge has most of.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// How long a refused or answered connection is read from before it is dropped.
const LINGER: std::time::Duration = std::time::Duration::from_millis(200);
/// Most headers accepted.
const MAX_HEADERS: usize = 32;

/// A parsed request head.
#[derive(Debug)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Path, without the query string.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Bytes read past the head (a client's first WebSocket frame, if it sent one early).
    pub rest: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (lower-case).
    pub fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header holds `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed, errored, or was too slow: nothing to answer.
    Gone,
    /// Not a valid HTTP/1.1 request head, or too large: answer 400 or 431.
    Bad(u16),
}

/// Reads one request head within `timeout`.
pub async fn read_request(stream: &mut TcpStream, timeout: Duration) -> Result<Request, ReadError> {
    tokio::time::timeout(timeout, read_head(stream))
        .await
        .unwrap_or(Err(ReadError::Gone))
}

async fn read_head(stream: &mut TcpStream) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() >= MAX_HEAD {
            return Err(ReadError::Bad(431));
        }
        let mut chunk = [0u8; 1024];
        let want = chunk.len().min(MAX_HEAD - buf.len());
        let n = stream
            .read(&mut chunk[..want])
            .await
            .map_err(|_| ReadError::Gone)?;
        if n == 0 {
            return Err(ReadError::Gone);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(len)) => {
                let target = req.path.unwrap_or("/");
                let path = target.split('?').next().unwrap_or(target).to_owned();
                let headers = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                return Ok(Request {
                    method: req.method.unwrap_or("").to_owned(),
                    path,
                    headers,
                    rest: buf[len..].to_vec(),
                });
            }
            Err(httparse::Error::TooManyHeaders) => return Err(ReadError::Bad(431)),
            Err(_) => return Err(ReadError::Bad(400)),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes a short plain-text response and closes the connection. Errors are ignored: the peer
/// may already be gone, and there is nobody else to tell.
pub async fn respond(
    stream: &mut TcpStream,
    status: u16,
    extra_headers: &[(&str, &str)],
    body: &str,
) {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n",
        reason(status),
        body.len() + 1
    );
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    head.push('\n');
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.shutdown().await;
    // Read what the client still sends (briefly) before dropping the socket: closing with
    // unread data makes the kernel reset the connection, and the client may lose our answer.
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Writes the `101 Switching Protocols` answer to a WebSocket upgrade.
pub async fn switch_protocols(
    stream: &mut TcpStream,
    key: &str,
    subprotocol: Option<&str>,
    extensions: Option<&str>,
) -> std::io::Result<()> {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n"
    );
    if let Some(p) = subprotocol {
        head.push_str(&format!("sec-websocket-protocol: {p}\r\n"));
    }
    if let Some(e) = extensions {
        head.push_str(&format!("sec-websocket-extensions: {e}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await
}
