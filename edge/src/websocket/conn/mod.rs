//! One server-side WebSocket connection after the handshake: frames read with limits and strict
//! validation ([`read`]), frames written as they are, shared payloads never copied and several
//! frames to a `writev` ([`write`]), and no buffer held while the connection is idle.

mod read;
#[cfg(test)]
mod tests;
mod write;

pub use read::Read;

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tungstenite::Message;

use super::deflate::Deflate;
use super::socket::Socket;

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

/// A WebSocket connection, server side.
pub struct WsConn {
    /// Shared with the fan-out, which writes to it directly while the gate is open.
    socket: Arc<Socket>,
    /// Bytes read and not yet parsed; no capacity while idle.
    read: BytesMut,
    /// A fragmented message being received (boxed: rare, and every connection has the field).
    partial: Option<Box<read::Partial>>,
    max_message: usize,
    /// Frames queued for the next flush.
    out: VecDeque<Bytes>,
    /// Where small headers and payloads are gathered; no capacity while idle.
    scratch: BytesMut,
    /// Frames beyond the first of the fragmented messages read (see
    /// [`WsConn::take_extra_frames`]).
    extra_frames: u32,
    /// A close frame went out: nothing more is written.
    close_sent: bool,
    /// The close handshake is over (or the connection failed): nothing more is read.
    done: bool,
    /// Its frames are encrypted (PROTOCOL.md part E): the socket holds the channel.
    encrypted: bool,
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
            extra_frames: 0,
            close_sent: false,
            done: false,
            encrypted: false,
        }
    }

    /// Encrypts every text and binary frame both ways from now on: what is queued already goes
    /// out as it is (the answer that carries the edge's key, say), everything after it sealed.
    pub fn encrypt(&mut self, channel: crate::encryption::Channel) {
        self.socket.encrypt(channel);
        self.encrypted = true;
        // The limit counts the frame inside (the channel checks it): the sealed frame around it
        // is a third larger in base64, plus the `enc` map and the tag.
        self.max_message = self.max_message.saturating_add(self.max_message / 3 + 128);
    }

    /// Whether encryption is set up.
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// Opens a text or binary message from the client of an encrypted connection: the message
    /// it carries, of the same kind. Text that is not UTF-8 once opened is refused as
    /// undecryptable: the client's frame was not what the contract says.
    pub fn open(&self, message: &Message) -> Result<Message, crate::encryption::OpenError> {
        use crate::encryption::OpenError;
        match message {
            Message::Text(text) => {
                let plain = self.socket.open(true, text.as_bytes())?;
                let text = String::from_utf8(plain).map_err(|_| OpenError::Forged)?;
                Ok(Message::Text(text.into()))
            }
            Message::Binary(bytes) => {
                let plain = self.socket.open(false, bytes)?;
                Ok(Message::Binary(plain.into()))
            }
            _ => Err(OpenError::NotEnc),
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
}

impl Drop for WsConn {
    fn drop(&mut self) {
        // The fan-out holds the socket until the connection has left every target: nothing more
        // may be written to it meanwhile.
        self.socket.hold();
    }
}
