//! One server-side WebSocket connection after the handshake: frames read with limits and strict
//! validation, frames written as they are (shared payloads are never copied, several frames go
//! out in one `writev`), and no buffer held while the connection is idle.

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::net::TcpStream;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Utf8Bytes;
use tungstenite::protocol::frame::coding::CloseCode;

use super::deflate::{self, Deflate};
use super::frame::{self, FrameError, Opcode};
use super::socket::Socket;
use super::wire::Wire;

/// Bytes read at a time.
const READ_CHUNK: usize = 4096;
/// Payloads shorter than this are copied next to their header (one slice instead of two).
const COPY_BELOW: usize = 256;
/// Most slices handed to one `writev`.
const IOVECS: usize = 64;

/// Why the connection ended.
#[derive(Debug)]
pub enum WsError {
    /// The socket failed.
    Io(std::io::Error),
    /// The client broke the protocol (1002), sent invalid data (1007) or a message over the
    /// limit (1009): the edge closed with this code.
    Closed(u16),
}

impl From<std::io::Error> for WsError {
    fn from(error: std::io::Error) -> WsError {
        WsError::Io(error)
    }
}

/// A message arriving in fragments.
struct Partial {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
}

/// A WebSocket connection, server side.
pub struct WsConn {
    /// Shared with the fan-out, which writes to it directly while the gate is open.
    socket: Arc<Socket>,
    /// Bytes read and not yet parsed; no capacity while idle.
    read: BytesMut,
    partial: Option<Partial>,
    max_message: usize,
    /// Frames queued for the next flush.
    out: VecDeque<Bytes>,
    /// Where small headers and payloads are gathered; no capacity while idle.
    scratch: BytesMut,
    /// A close frame went out: nothing more is written.
    close_sent: bool,
    /// The close handshake is over (or the connection failed): nothing more is read.
    done: bool,
}

impl WsConn {
    /// A connection over `stream`, whose first bytes (read with the handshake) are `rest`.
    /// Messages over `max_message` bytes (inflated) close it with 1009.
    pub fn new(
        stream: TcpStream,
        rest: Vec<u8>,
        max_message: usize,
        deflate: Option<Deflate>,
        min_compress: usize,
    ) -> WsConn {
        WsConn {
            socket: Arc::new(Socket::new(stream, deflate, min_compress)),
            read: BytesMut::from(&rest[..]),
            partial: None,
            max_message,
            out: VecDeque::new(),
            scratch: BytesMut::new(),
            close_sent: false,
            done: false,
        }
    }

    /// Whether permessage-deflate was negotiated.
    pub fn deflate(&self) -> Option<Deflate> {
        self.socket.deflate
    }

    /// The socket, for the fan-out to write to while the gate is open (see [`Socket`]).
    pub fn socket(&self) -> Arc<Socket> {
        self.socket.clone()
    }

    /// Takes the writing over from the fan-out: until [`WsConn::reopen`], publications for this
    /// connection are queued. Called before the connection acts on anything that must be
    /// ordered with its messages (a join must answer before the room's first message).
    pub fn hold(&mut self) {
        for bytes in self.socket.hold().into_iter().rev() {
            self.out.push_front(bytes);
        }
    }

    /// Whether frames are waiting for [`WsConn::flush`] (fed, or taken over from the fan-out by
    /// [`WsConn::hold`]).
    pub fn has_unwritten(&self) -> bool {
        !self.out.is_empty() || !self.scratch.is_empty()
    }

    /// Lets the fan-out write directly again, if this connection has nothing left to write and
    /// `idle` (asked under the gate's lock: its queue is empty) holds.
    pub fn reopen(&self, idle: impl FnOnce() -> bool) {
        if self.close_sent || self.done || self.has_unwritten() {
            return;
        }
        self.socket.reopen(idle);
    }

    /// The next message (pings are answered here, and returned too; a close is answered and
    /// returned, and ends the stream). `None` once the connection is over.
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        if self.done {
            return None;
        }
        loop {
            match self.parse() {
                Ok(Some(message)) => return Some(self.answer(message).await),
                Ok(None) => {}
                Err(code) => return Some(Err(self.fail(code).await)),
            }
            // Wait for bytes before taking any memory: an idle connection holds no buffer.
            if self.read.is_empty() {
                self.read = BytesMut::new();
            }
            if let Err(e) = self.socket.stream.readable().await {
                self.done = true;
                return Some(Err(e.into()));
            }
            self.read.reserve(READ_CHUNK);
            match self.socket.stream.try_read_buf(&mut self.read) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            }
        }
    }

    /// Answers what needs an answer (a ping, a close) before handing the message over.
    async fn answer(&mut self, message: Message) -> Result<Message, WsError> {
        match &message {
            Message::Ping(payload) if !self.close_sent => {
                self.control(Opcode::Pong, payload.clone());
                self.flush().await?;
            }
            Message::Close(frame) => {
                if !self.close_sent {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    let payload = code
                        .map(|c| Bytes::copy_from_slice(&c.to_be_bytes()))
                        .unwrap_or_default();
                    self.control(Opcode::Close, payload);
                    self.close_sent = true;
                    let _ = self.flush().await;
                }
                self.done = true;
            }
            _ => {}
        }
        Ok(message)
    }

    /// One complete message from what was read, if there is one.
    fn parse(&mut self) -> Result<Option<Message>, u16> {
        loop {
            let compression = self.socket.deflate.is_some();
            let header = match frame::parse(&self.read, compression, self.max_message) {
                Ok(Some(header)) => header,
                Ok(None) => return Ok(None),
                Err(FrameError::Protocol(_)) => return Err(1002),
                Err(FrameError::TooBig) => return Err(1009),
            };
            if self.read.len() < header.header_len + header.len {
                self.read
                    .reserve(header.header_len + header.len - self.read.len());
                return Ok(None);
            }
            self.read.advance(header.header_len);
            let mut payload = self.read.split_to(header.len);
            frame::unmask(&mut payload, header.mask, 0);
            let payload = payload.freeze();
            match header.opcode {
                Opcode::Ping => return Ok(Some(Message::Ping(payload))),
                Opcode::Pong => return Ok(Some(Message::Pong(payload))),
                Opcode::Close => return close_frame(&payload).map(|f| Some(Message::Close(f))),
                Opcode::Text | Opcode::Binary => {
                    if self.partial.is_some() {
                        return Err(1002);
                    }
                    let text = header.opcode == Opcode::Text;
                    if header.fin {
                        return self.finish(text, header.compressed, payload).map(Some);
                    }
                    self.partial = Some(Partial {
                        text,
                        compressed: header.compressed,
                        data: payload.to_vec(),
                    });
                }
                Opcode::Continuation => {
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(1002);
                    };
                    if partial.data.len() + payload.len() > self.max_message {
                        return Err(1009);
                    }
                    partial.data.extend_from_slice(&payload);
                    if header.fin {
                        let Some(Partial {
                            text,
                            compressed,
                            data,
                        }) = self.partial.take()
                        else {
                            return Err(1002);
                        };
                        return self.finish(text, compressed, Bytes::from(data)).map(Some);
                    }
                }
            }
        }
    }

    /// A whole message: inflated if compressed, its text checked for UTF-8.
    fn finish(&self, text: bool, compressed: bool, payload: Bytes) -> Result<Message, u16> {
        let payload = if compressed {
            match deflate::inflate(&payload, self.max_message) {
                Ok(Some(inflated)) => Bytes::from(inflated),
                Ok(None) => return Err(1007),
                Err(deflate::TooBig) => return Err(1009),
            }
        } else {
            payload
        };
        if !text {
            return Ok(Message::Binary(payload));
        }
        Utf8Bytes::try_from(payload)
            .map(Message::Text)
            .map_err(|_| 1007)
    }

    /// Closes with `code` after a violation; the error to return.
    async fn fail(&mut self, code: u16) -> WsError {
        self.done = true;
        if !self.close_sent {
            self.control(Opcode::Close, Bytes::copy_from_slice(&code.to_be_bytes()));
            self.close_sent = true;
            let _ = self.flush().await;
        }
        WsError::Closed(code)
    }

    /// Queues a control frame.
    fn control(&mut self, opcode: Opcode, payload: Bytes) {
        self.push(opcode, false, payload);
    }

    /// Queues a message shared with other recipients, as the frame `wire` holds for this
    /// connection's encoding (built by the first recipient that needed it).
    pub fn feed_shared(&mut self, message: &Message, wire: &Wire) {
        if self.close_sent {
            return;
        }
        match wire.frame(message, self.socket.deflate, self.socket.min_compress) {
            Some(frame) if frame.len() < COPY_BELOW => self.scratch.extend_from_slice(&frame),
            Some(frame) => {
                if !self.scratch.is_empty() {
                    self.out.push_back(self.scratch.split().freeze());
                }
                self.out.push_back(frame);
            }
            None => self.feed(message.clone()),
        }
    }

    /// Queues `message`, compressed if it is large enough and the client negotiated deflate.
    pub fn feed(&mut self, message: Message) {
        if self.close_sent {
            return;
        }
        let (opcode, payload) = match message {
            Message::Text(text) => (Opcode::Text, Bytes::from(text.clone())),
            Message::Binary(bytes) => (Opcode::Binary, bytes.clone()),
            Message::Ping(bytes) => return self.control(Opcode::Ping, bytes.clone()),
            Message::Pong(bytes) => return self.control(Opcode::Pong, bytes.clone()),
            Message::Close(frame) => return self.queue_close(frame.as_ref()),
            Message::Frame(_) => return,
        };
        match self.socket.deflate {
            Some(deflate) if payload.len() >= self.socket.min_compress => {
                let compressed = deflate::compress(&payload, deflate.small_window);
                self.push(opcode, true, compressed);
            }
            _ => self.push(opcode, false, payload),
        }
    }

    fn queue_close(&mut self, frame: Option<&CloseFrame>) {
        let payload = frame.map(|f| {
            let mut payload = u16::from(f.code).to_be_bytes().to_vec();
            // A control frame holds 125 bytes: the reason is cut at a character boundary.
            let mut reason = f.reason.as_str();
            while reason.len() > 123 {
                let mut end = 123;
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                reason = &reason[..end];
            }
            payload.extend_from_slice(reason.as_bytes());
            Bytes::from(payload)
        });
        self.control(Opcode::Close, payload.unwrap_or_default());
        self.close_sent = true;
    }

    fn push(&mut self, opcode: Opcode, compressed: bool, payload: Bytes) {
        let mut header = [0u8; frame::MAX_HEADER];
        let n = frame::write_header(&mut header, opcode, compressed, payload.len());
        self.scratch.extend_from_slice(&header[..n]);
        if payload.len() < COPY_BELOW {
            self.scratch.extend_from_slice(&payload);
        } else {
            // The shared payload goes out as it is, behind what was gathered before it.
            self.out.push_back(self.scratch.split().freeze());
            self.out.push_back(payload);
        }
    }

    /// Writes everything queued, several frames per system call.
    pub async fn flush(&mut self) -> Result<(), WsError> {
        if !self.scratch.is_empty() {
            self.out.push_back(self.scratch.split().freeze());
        }
        self.hold();
        while !self.out.is_empty() {
            // On the stack, and gone before the wait below: a burst's write allocates nothing,
            // and the array is not kept in the connection's future while it waits.
            let sent = {
                let mut slices = [IoSlice::new(&[]); IOVECS];
                let count = self
                    .out
                    .iter()
                    .zip(slices.iter_mut())
                    .map(|(bytes, slice)| *slice = IoSlice::new(bytes))
                    .count();
                self.socket.stream.try_write_vectored(&slices[..count])
            };
            let mut written = match sent {
                Ok(0) => return Err(std::io::Error::from(ErrorKind::WriteZero).into()),
                Ok(written) => written,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.socket.stream.writable().await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            while written > 0 {
                let Some(front) = self.out.front_mut() else {
                    break;
                };
                if front.len() <= written {
                    written -= front.len();
                    self.out.pop_front();
                } else {
                    front.advance(written);
                    written = 0;
                }
            }
        }
        // Nothing kept between bursts: an idle connection holds no write buffer.
        self.scratch = BytesMut::new();
        self.out = VecDeque::new();
        Ok(())
    }

    /// Queues and writes `message`.
    pub async fn send(&mut self, message: Message) -> Result<(), WsError> {
        self.feed(message);
        self.flush().await
    }

    /// Sends a close frame (once).
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), WsError> {
        if !self.close_sent {
            self.queue_close(frame.as_ref());
        }
        self.flush().await
    }
}

impl Drop for WsConn {
    fn drop(&mut self) {
        // The fan-out holds the socket until the connection has left every target: nothing more
        // may be written to it meanwhile.
        self.socket.hold();
    }
}

/// A close frame's payload, checked: a code RFC 6455 allows and a UTF-8 reason.
fn close_frame(payload: &[u8]) -> Result<Option<CloseFrame>, u16> {
    match payload {
        [] => Ok(None),
        [_] => Err(1002),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !frame::valid_close_code(code) {
                return Err(1002);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| 1007u16)?;
            Ok(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.to_owned().into(),
            }))
        }
    }
}
