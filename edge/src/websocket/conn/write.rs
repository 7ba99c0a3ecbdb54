//! Writing: frames gathered (small ones copied together, shared payloads referenced) and
//! written several to a system call; the close frame, once.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice};
use tokio::io::Interest;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;

use super::{WsConn, WsError};
use crate::websocket::deflate;
use crate::websocket::frame::{self, Opcode};
use crate::websocket::iovec::{self, IOVECS};
use crate::websocket::wire::Wire;

/// Payloads shorter than this are copied next to their header (one slice instead of two).
const COPY_BELOW: usize = 256;

impl WsConn {
    /// Queues a control frame.
    pub(super) fn control(&mut self, opcode: Opcode, payload: Bytes) {
        self.push(opcode, false, payload);
    }

    /// Queues a message shared with other recipients, as the frame `wire` holds for this
    /// connection's encoding (built by the first recipient that needed it).
    pub fn feed_shared(&mut self, message: &Message, wire: &Wire) {
        if self.close_sent {
            return;
        }
        // Only messages are sealed: the heartbeat's shared Ping goes out as the control frame it is.
        if self.encrypted && matches!(message, Message::Text(_) | Message::Binary(_)) {
            return self.feed_sealed(message);
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
        if self.encrypted && matches!(message, Message::Text(_) | Message::Binary(_)) {
            return self.feed_sealed(&message);
        }
        let (opcode, payload) = match message {
            Message::Text(text) => (Opcode::Text, Bytes::from(text.clone())),
            Message::Binary(bytes) => (Opcode::Binary, bytes.clone()),
            Message::Ping(bytes) => return self.control(Opcode::Ping, bytes.clone()),
            Message::Pong(bytes) => return self.control(Opcode::Pong, bytes.clone()),
            Message::Close(frame) => return self.push_close(frame.as_ref()),
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

    /// Queues `message` sealed for this connection alone. The writing is taken over first, so
    /// frames the fan-out sealed before are written ahead of this one, and none it seals after.
    fn feed_sealed(&mut self, message: &Message) {
        self.hold();
        if let Some(frame) = self.socket.seal(message) {
            if !self.scratch.is_empty() {
                self.out.push_back(self.scratch.split().freeze());
            }
            self.out.push_back(frame);
        }
    }

    /// Queues a close frame, unless one went out already; nothing is queued after it.
    pub fn queue_close(&mut self, frame: Option<CloseFrame>) {
        if !self.close_sent {
            self.push_close(frame.as_ref());
        }
    }

    fn push_close(&mut self, frame: Option<&CloseFrame>) {
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
                let (count, _) = iovec::gather(&self.out, &mut slices);
                let socket = &self.socket;
                socket
                    .stream
                    .try_io(Interest::WRITABLE, || socket.send(&slices[..count]))
            };
            let written = match sent {
                Ok(0) => return Err(std::io::Error::from(ErrorKind::WriteZero).into()),
                Ok(written) => written,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.socket.stream.writable().await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            iovec::advance(&mut self.out, written);
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

    /// Once the close frame is written: sends FIN and reads (and drops) whatever the client
    /// still sends until it closes its side too. Dropping a socket with unread bytes makes the
    /// kernel reset the connection, and a reset can discard the close frame before the client
    /// reads it: a client closed for flooding would never learn why. Not bounded here: the
    /// caller bounds it (the close wait).
    pub async fn linger(&mut self) {
        self.read = BytesMut::new();
        let stream = &self.socket.stream;
        let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
        let mut sink = [0u8; 4096];
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }

    /// Sends a close frame (once).
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), WsError> {
        self.queue_close(frame);
        self.flush().await
    }
}
