//! Reading: frames parsed with limits and strict validation, fragments joined, compressed
//! messages inflated within the limit, pings and closes answered.

use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::Interest;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Utf8Bytes;
use tungstenite::protocol::frame::coding::CloseCode;

use super::{WsConn, WsError};
use crate::websocket::deflate;
use crate::websocket::frame::{self, FrameError, Opcode};

/// Bytes read at a time.
const READ_CHUNK: usize = 4096;

/// A message arriving in fragments.
pub(super) struct Partial {
    text: bool,
    compressed: bool,
    pub(super) data: Vec<u8>,
}

/// What a read from the socket came to, before the frame path answers it (see
/// [`WsConn::settle`]).
#[derive(Debug)]
pub enum Read {
    /// A whole message.
    Message(Message),
    /// The client broke the protocol: close with this code.
    Violation(u16),
    /// The socket failed.
    Failed(std::io::Error),
    /// The connection is over.
    Ended,
}

impl WsConn {
    /// The next message (pings are answered here, and returned too; a close is answered and
    /// returned, and ends the stream). `None` once the connection is over.
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        let read = std::future::poll_fn(|cx| self.poll_read(cx)).await;
        self.settle(read).await
    }

    /// Answers what `read` needs answered (a ping, a close, a violation) and hands the rest
    /// over, as [`WsConn::next`] does.
    pub async fn settle(&mut self, read: Read) -> Option<Result<Message, WsError>> {
        // Answering writes, and is boxed: the reads that need no answer must not carry a
        // write's state.
        match read {
            Read::Message(message @ (Message::Ping(_) | Message::Close(_))) => {
                Some(Box::pin(self.answer(message)).await)
            }
            Read::Message(message) => Some(Ok(message)),
            Read::Violation(code) => Some(Err(Box::pin(self.fail(code)).await)),
            Read::Failed(error) => Some(Err(error.into())),
            Read::Ended => None,
        }
    }

    /// The next message from what was read or can be read now, or `Pending` with the task to be
    /// woken when the socket has more. It never waits for anything else: an idle connection's
    /// wait for a frame holds no state of its own.
    pub fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Read> {
        if self.done {
            return Poll::Ready(Read::Ended);
        }
        loop {
            match self.parse() {
                Ok(Some(message)) => return Poll::Ready(Read::Message(message)),
                Ok(None) => {}
                Err(code) => return Poll::Ready(Read::Violation(code)),
            }
            // Wait for bytes before taking any memory: an idle connection holds no buffer.
            if self.read.is_empty() {
                self.read = BytesMut::new();
            }
            // Only this task reads, so the one reader waker slot suffices.
            if let Err(error) = std::task::ready!(self.socket.stream.poll_read_ready(cx)) {
                self.done = true;
                return Poll::Ready(Read::Failed(error));
            }
            self.read.reserve(READ_CHUNK);
            match self.read_some() {
                Ok(0) => {
                    self.done = true;
                    return Poll::Ready(Read::Ended);
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(error) => {
                    self.done = true;
                    return Poll::Ready(Read::Failed(error));
                }
            }
        }
    }

    /// Reads what the socket has into `read`. A read shorter than the space offered drained
    /// the socket, so it is reported to tokio as `WouldBlock`, which clears the readiness now
    /// (as tokio's own `AsyncRead` does), instead of after one more `recvfrom` that finds
    /// nothing: one system call fewer for every message a client sends. tokio only clears the
    /// readiness it saw before the read, so bytes arriving meanwhile still wake the task.
    fn read_some(&mut self) -> std::io::Result<usize> {
        let offered = self.read.capacity() - self.read.len();
        let mut short = 0;
        let (stream, read) = (&self.socket.stream, &mut self.read);
        let result = stream.try_io(Interest::READABLE, || {
            let n = stream.try_read_buf(read)?;
            if n > 0 && n < offered {
                short = n;
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && short > 0 => Ok(short),
            other => other,
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
    pub(super) fn parse(&mut self) -> Result<Option<Message>, u16> {
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
                    self.partial = Some(Box::new(Partial {
                        text,
                        compressed: header.compressed,
                        data: payload.to_vec(),
                    }));
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
                        let Some(partial) = self.partial.take() else {
                            return Err(1002);
                        };
                        let Partial {
                            text,
                            compressed,
                            data,
                        } = *partial;
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
