//! A WebSocket client written by hand over a plain TCP socket, for the clients a library would
//! never be: one that stops reading while it keeps writing, one that sends frames the protocol
//! forbids. Frames are built byte by byte; nothing is read unless the test asks.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::DEADLINE;

/// A raw client connection, upgraded.
pub struct RawWs {
    /// The socket: tests read from and write to it as they please.
    pub stream: TcpStream,
    /// What was read past the upgrade answer and not yet consumed.
    pub read: Vec<u8>,
}

/// Opcode of a text frame.
pub const TEXT: u8 = 0x1;
/// Opcode of a continuation frame.
pub const CONTINUATION: u8 = 0x0;
/// Opcode of a ping.
pub const PING: u8 = 0x9;

/// A masked client frame (mask key zero, so the payload goes as it is).
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(fin, false, opcode, payload)
}

/// A masked client frame, with the RSV1 (compressed) bit if `compressed`.
pub fn frame_with(fin: bool, compressed: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (u8::from(compressed) << 6) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}

impl RawWs {
    /// Opens `/ws` on `127.0.0.1:port` with `Authorization: Bearer <token>` if given and
    /// `extra` header lines, the socket's receive buffer set to `recv_buffer` bytes (small, for a
    /// client that should fall behind quickly), and reads the `101` answer.
    pub async fn open(port: u16, token: Option<&str>, extra: &str, recv_buffer: u32) -> RawWs {
        RawWs::open_from("127.0.0.1", port, token, extra, recv_buffer).await
    }

    /// Like [`RawWs::open`], from local address `source` (127.0.0.x: another peer to the edge).
    pub async fn open_from(
        source: &str,
        port: u16,
        token: Option<&str>,
        extra: &str,
        recv_buffer: u32,
    ) -> RawWs {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(recv_buffer).expect("SO_RCVBUF");
        socket
            .bind(format!("{source}:0").parse().expect("address"))
            .expect("bind");
        let mut stream = socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("connect");
        let auth = token
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
             sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{auth}{extra}\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut read = Vec::new();
        let head_end = loop {
            if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
                .await
                .expect("no upgrade answer")
                .expect("read");
            assert!(n > 0, "closed before the upgrade answer");
            read.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&read[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
        read.drain(..head_end);
        RawWs { stream, read }
    }

    /// Writes `bytes`, or gives up after a second (the edge may have stopped reading).
    pub async fn write(&mut self, bytes: &[u8]) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(1), self.stream.write_all(bytes)).await,
            Ok(Ok(()))
        )
    }

    /// Sends a JSON text frame.
    pub async fn send_json(&mut self, value: &serde_json::Value) {
        let bytes = frame(true, TEXT, value.to_string().as_bytes());
        assert!(self.write(&bytes).await, "could not send {value}");
    }

    /// Reads frames until a data frame holding `needle` (e.g. `"joined"`) arrives; frames before
    /// it are skipped.
    pub async fn read_until(&mut self, needle: &str) {
        let needle = needle.as_bytes();
        loop {
            let Some((opcode, payload)) = self.next_frame().await else {
                panic!("closed before {}", String::from_utf8_lossy(needle));
            };
            if matches!(opcode, 0x1 | 0x2) && payload.windows(needle.len()).any(|w| w == needle) {
                return;
            }
        }
    }

    /// The next frame from the edge: its opcode and payload; `None` once the stream ended (or
    /// failed). Panics if nothing arrives within the deadline.
    pub async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let (first, payload) = self.next_frame_with_flags().await?;
        Some((first & 0x0f, payload))
    }

    /// Like [`RawWs::next_frame`], with the frame's whole first byte (FIN, RSV1 for a
    /// compressed message, and the opcode) instead of the opcode alone.
    pub async fn next_frame_with_flags(&mut self) -> Option<(u8, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some((first, payload, len)) = parse_server_frame(&self.read) {
                self.read.drain(..len);
                return Some((first, payload));
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("no frame from the edge within the deadline"),
                Ok(Ok(0) | Err(_)) => return None,
                Ok(Ok(n)) => self.read.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads frames until the edge's close frame, or the end of the stream: the close code
    /// (1006 for none), within the deadline, and how many pongs came before it. Data frames
    /// before it are skipped.
    pub async fn close_code(&mut self) -> (u16, usize) {
        let mut pongs = 0;
        while let Some((opcode, payload)) = self.next_frame().await {
            match opcode {
                0x8 => {
                    let code = match payload.as_slice() {
                        [high, low, ..] => u16::from_be_bytes([*high, *low]),
                        _ => 1005,
                    };
                    return (code, pongs);
                }
                0xA => pongs += 1,
                _ => {}
            }
        }
        (1006, pongs)
    }
}

/// An unmasked server frame at the start of `bytes`: its first byte, payload and its whole
/// length.
fn parse_server_frame(bytes: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let [first, second, rest @ ..] = bytes else {
        return None;
    };
    let (len, header) = match second & 0x7f {
        126 => (
            u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize,
            4,
        ),
        127 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(rest.get(..8)?);
            (u64::from_be_bytes(be) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let payload = bytes.get(header..header + len)?.to_vec();
    Some((*first, payload, header + len))
}
