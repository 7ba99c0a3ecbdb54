//! Reading: frames parsed with limits and strict validation, fragments joined, compressed
//! messages inflated within the limit, pings and closes answered.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::Interest;
use tokio::time::Instant;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Utf8Bytes;
use tungstenite::protocol::frame::coding::CloseCode;

use super::{WsConn, WsError};
use crate::websocket::deflate;
use crate::websocket::frame::{self, FrameError, Opcode};

/// Bytes read at a time.
const READ_CHUNK: usize = 4096;
/// Fewest bytes a message's fragments must average: a message may arrive in at most its limit
/// over this many frames, and never fewer than [`MIN_FRAGMENTS`] (more: close 1008). Clients
/// fragment large messages into pieces of kilobytes; a thousand empty continuations is a flood,
/// not a message. (The conformance suite sends 4 MiB in fragments of 64 bytes, within the 16 MiB
/// limit of echo mode.)
const BYTES_PER_FRAGMENT: usize = 64;
/// Fragments any message may arrive in: 1024, a 64 KiB message's share at 64 bytes each.
const MIN_FRAGMENTS: usize = 1024;
/// Longest a fragmented message may take from its first frame to its last (longer: close 1008),
/// so an unfinished message cannot be held for the connection's life by pinging meanwhile.
const FRAGMENTED_WITHIN: Duration = Duration::from_secs(10);

/// A message arriving in fragments.
pub(super) struct Partial {
    text: bool,
    compressed: bool,
    pub(super) data: Vec<u8>,
    /// Frames received so far.
    fragments: u32,
    /// When its first frame arrived.
    since: Instant,
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
    /// The next message, pings answered (and returned too), a close answered and returned (it
    /// ends the stream). `None` once the connection is over. The answer's write is not bounded:
    /// for the echo endpoint and for a close handshake under its own timeout. A session reads
    /// with [`WsConn::poll_read`] and [`WsConn::settle`], and decides itself which pings to answer
    /// and how long a write may take.
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        let read = std::future::poll_fn(|cx| self.poll_read(cx)).await;
        let settled = self.settle(read);
        if let Some(Ok(Message::Ping(payload))) = &settled {
            self.pong(payload.clone());
        }
        if self.has_unwritten() {
            // After a close or a violation the stream is over whatever the write does.
            if let Err(error) = self.flush().await
                && matches!(settled, Some(Ok(Message::Ping(_))))
            {
                return Some(Err(error));
            }
        }
        settled
    }

    /// Acts on what `read` requires without writing anything: a close is answered, a
    /// violation closed, each by a close frame queued for the next [`WsConn::flush`]; a ping is
    /// handed over unanswered (see [`WsConn::pong`]). Whoever flushes decides how long that may
    /// take, so no answer to a client can hold a connection the edge wants closed.
    pub fn settle(&mut self, read: Read) -> Option<Result<Message, WsError>> {
        match read {
            Read::Message(Message::Close(frame)) => {
                if !self.close_sent {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    let payload = code
                        .map(|c| Bytes::copy_from_slice(&c.to_be_bytes()))
                        .unwrap_or_default();
                    self.control(Opcode::Close, payload);
                    self.close_sent = true;
                }
                self.done = true;
                Some(Ok(Message::Close(frame)))
            }
            Read::Message(message) => Some(Ok(message)),
            Read::Violation(code) => {
                self.done = true;
                if !self.close_sent {
                    self.control(Opcode::Close, Bytes::copy_from_slice(&code.to_be_bytes()));
                    self.close_sent = true;
                }
                Some(Err(WsError::Closed(code)))
            }
            Read::Failed(error) => Some(Err(error.into())),
            Read::Ended => None,
        }
    }

    /// How many frames beyond one each the messages handed over since the last call came in, so
    /// a rate limit can count every frame a client sent, not just every message.
    pub fn take_extra_frames(&mut self) -> u32 {
        std::mem::take(&mut self.extra_frames)
    }

    /// Queues the answer to a ping (nothing once a close went out).
    pub fn pong(&mut self, payload: Bytes) {
        if !self.close_sent {
            self.control(Opcode::Pong, payload);
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
            if let Some(partial) = &self.partial
                && partial.since.elapsed() > FRAGMENTED_WITHIN
            {
                return Err(1008);
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
                        fragments: 1,
                        since: Instant::now(),
                    }));
                }
                Opcode::Continuation => {
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(1002);
                    };
                    if partial.data.len() + payload.len() > self.max_message {
                        return Err(1009);
                    }
                    partial.fragments += 1;
                    let most = (self.max_message / BYTES_PER_FRAGMENT).max(MIN_FRAGMENTS);
                    if partial.fragments as usize > most {
                        return Err(1008);
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
                            fragments,
                            ..
                        } = *partial;
                        self.extra_frames = self.extra_frames.saturating_add(fragments - 1);
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
