//! A connection's socket, shared by the connection's task and the fan-out.
//!
//! While the connection has nothing of its own to write (its gate is open), the fan-out writes a
//! publication's frame straight into the socket from its own loop: no queue, no task woken,
//! one system call. Whatever the socket cannot take at once, and everything else, goes through
//! the connection's queue, and the gate stays shut until the connection's task has written all
//! of it, so bytes reach the client in the order they were meant to.

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tungstenite::Message;

use super::deflate::Deflate;
use super::iovec::IOVECS;
use super::pending::Pending;
use super::sealed;
use super::wire::Wire;
use crate::encryption::{Channel, OpenError};

/// A connection's socket and what it negotiated.
pub struct Socket {
    pub(super) stream: TcpStream,
    pub(super) deflate: Option<Deflate>,
    pub(super) min_compress: usize,
    gate: Mutex<Gate>,
    /// Whether the gate is open: read without the lock (the connection's loop asks on every
    /// turn), but changed only under it, so whoever holds the lock sees it stable.
    open: AtomicBool,
}

#[derive(Default)]
struct Gate {
    /// Frames accepted for the socket and not yet written: those of a corked batch (see
    /// [`Socket::deliver`]) while the gate is open; once it is shut, what the fan-out could
    /// not write, for the connection's task to write before anything else.
    pending: Pending,
    /// The connection's encryption (PROTOCOL.md part E), once set up: here, under the lock every
    /// frame to the client passes, so each gets its counter in the order it is written, whoever
    /// writes it. Boxed: a plain connection holds a pointer.
    channel: Option<Box<Channel>>,
}

/// What became of a frame offered to [`Socket::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Written to the socket whole.
    Written,
    /// Accepted, to be written by [`Socket::flush`] with the rest of the batch; `first`: the
    /// first of this batch for this socket, so the caller must see that it is flushed.
    Corked {
        /// Whether the socket had nothing pending before.
        first: bool,
    },
    /// Written in part: the connection's task must be woken to write the rest.
    Started,
    /// The socket failed: the connection's task must be woken to find out.
    Failed,
    /// Not written: queued, or dropped, as `enqueue` said (true: queued).
    Queued(bool),
}

impl Socket {
    /// The socket of a connection over `stream`, its gate shut.
    pub fn new(stream: TcpStream, deflate: Option<Deflate>, min_compress: usize) -> Socket {
        Socket {
            stream,
            deflate,
            min_compress,
            gate: Mutex::new(Gate::default()),
            open: AtomicBool::new(false),
        }
    }

    /// Takes `frame` (a shared message and its built frames) if the gate is open: written now,
    /// or, when `corked` (or frames are pending already), kept for [`Socket::flush`], so that
    /// everything a batch of publications brings a client goes out in one system call.
    /// Otherwise, or for anything else (`frame` is `None`), shuts the gate and calls `enqueue`
    /// under the gate's lock, so the connection cannot reopen the gate between seeing its queue
    /// empty and this item arriving in it. `taken` runs under the gate's lock once the frame is
    /// sure to be written (by this call, the flush, or the connection's task): whoever shuts the
    /// gate afterwards sees what it recorded.
    pub fn deliver(
        &self,
        frame: Option<(&Message, &Wire)>,
        corked: bool,
        enqueue: impl FnOnce() -> bool,
        taken: impl FnOnce(),
    ) -> Delivered {
        let mut gate = self.gate.lock();
        if self.open.load(Ordering::Relaxed)
            && let Some((message, wire)) = frame
            && let Some(bytes) = match gate.channel.as_deref_mut() {
                None => wire.frame(message, self.deflate, self.min_compress),
                Some(channel) => sealed::frame(channel, message),
            }
        {
            if corked || !gate.pending.is_empty() {
                taken();
                let first = gate.pending.is_empty();
                gate.pending.push(bytes);
                return Delivered::Corked { first };
            }
            let written = match self.send(&[IoSlice::new(&bytes)]) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
                Err(_) => {
                    self.shut(&mut gate);
                    return Delivered::Failed;
                }
            };
            taken();
            if written == bytes.len() {
                return Delivered::Written;
            }
            gate.pending.push(bytes.slice(written..));
            self.shut(&mut gate);
            return Delivered::Started;
        }
        self.shut(&mut gate);
        Delivered::Queued(enqueue())
    }

    /// Writes the frames a corked batch left pending, several per system call. What the socket
    /// cannot take stays pending for the connection's task, and the gate shuts:
    /// [`Delivered::Started`] (or `Failed`) says the task must be woken; `Written` that all is
    /// done (or the connection's task had taken over).
    pub fn flush(&self) -> Delivered {
        let mut gate = self.gate.lock();
        if !self.open.load(Ordering::Relaxed) {
            return Delivered::Written;
        }
        while !gate.pending.is_empty() {
            let (sent, total) = {
                let mut slices = [IoSlice::new(&[]); IOVECS];
                let (count, total) = gate.pending.gather(&mut slices);
                (self.send(&slices[..count]), total)
            };
            let written = match sent {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
                Err(_) => {
                    self.shut(&mut gate);
                    return Delivered::Failed;
                }
            };
            gate.pending.advance(written);
            if written < total {
                self.shut(&mut gate);
                return Delivered::Started;
            }
        }
        // Nothing kept between batches: an idle connection holds no buffer.
        gate.pending = Pending::default();
        Delivered::Written
    }

    /// One `sendmsg`, straight to the socket: `send` needs neither the file-position lock
    /// nor the VFS layer that `writev` goes through, which showed in the fan-out's and the
    /// churn's profiles. tokio's readiness is not consulted here: in the fan-out a
    /// `WouldBlock` shuts the gate, and the connection's task, which calls this through
    /// `TcpStream::try_io` (so that a `WouldBlock` clears readiness), waits for the socket.
    /// `MSG_NOSIGNAL`: a client gone away is an error here, never a SIGPIPE, whatever the
    /// embedding program does with that signal.
    pub(super) fn send(&self, slices: &[IoSlice<'_>]) -> std::io::Result<usize> {
        socket2::SockRef::from(&self.stream).send_vectored_with_flags(slices, libc::MSG_NOSIGNAL)
    }

    /// Shuts the gate; `_gate` is the lock's guard, proof that it is held.
    fn shut(&self, _gate: &mut Gate) {
        self.open.store(false, Ordering::Relaxed);
    }

    /// Shuts the gate (the connection's task writes from now on) and hands over what the
    /// fan-out left unwritten, oldest first.
    pub(super) fn hold(&self) -> VecDeque<Bytes> {
        let mut gate = self.gate.lock();
        self.shut(&mut gate);
        gate.pending.take()
    }

    /// Opens the gate if nothing is left for the connection's task to write and `idle` (its
    /// queue is empty) holds, asked under the gate's lock.
    pub(super) fn reopen(&self, idle: impl FnOnce() -> bool) {
        if self.open.load(Ordering::Relaxed) {
            return;
        }
        let gate = self.gate.lock();
        if gate.pending.is_empty() && idle() {
            self.open.store(true, Ordering::Relaxed);
        }
    }

    /// Encrypts every text and binary frame to the client from now on (see [`Socket::seal`]),
    /// and opens the client's with `channel` ([`Socket::open`]).
    pub(super) fn encrypt(&self, channel: Channel) {
        self.gate.lock().channel = Some(Box::new(channel));
    }

    /// `message` as the next sealed frame to the client, for the connection's task, which holds
    /// the writing (the gate is shut), so no frame of the fan-out's can come between the counter
    /// given here and the write. `None` for a connection without encryption.
    pub(super) fn seal(&self, message: &Message) -> Option<Bytes> {
        let mut gate = self.gate.lock();
        debug_assert!(
            !self.open.load(Ordering::Relaxed),
            "sealed while the gate is open"
        );
        sealed::frame(gate.channel.as_deref_mut()?, message)
    }

    /// Opens a frame from the client (text: JSON; else MessagePack): the frame it carries.
    pub(super) fn open(&self, text: bool, frame: &[u8]) -> Result<Vec<u8>, OpenError> {
        match self.gate.lock().channel.as_deref_mut() {
            Some(channel) => channel.open(text, frame),
            None => Err(OpenError::NotEnc),
        }
    }

    /// Whether the fan-out may write now.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::websocket::WsConn;

    /// A server connection and the plain client socket at its other end.
    async fn connected() -> (WsConn, std::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || std::net::TcpStream::connect(address).unwrap());
        let (server, _) = listener.accept().await.unwrap();
        let client = client.join().unwrap();
        (WsConn::new(server, Vec::new(), 1 << 20, None, 512), client)
    }

    fn frame(byte: u8, len: usize) -> (Message, Wire) {
        (Message::Binary(vec![byte; len].into()), Wire::default())
    }

    /// Everything the fan-out and the connection write reaches the client whole and in order:
    /// directly while the gate is open, through the queue once the socket is full, and the
    /// frame the socket took only in part finished by the connection first.
    #[tokio::test]
    async fn frames_arrive_in_order_whether_written_directly_or_by_the_connection() {
        let (mut ws, mut client) = connected().await;
        let socket = ws.socket();

        let queued = AtomicUsize::new(0);
        let enqueue = || {
            queued.fetch_add(1, Ordering::Relaxed);
            true
        };
        let (first, wire) = frame(0, 10);
        assert_eq!(
            socket.deliver(Some((&first, &wire)), false, enqueue, || {}),
            Delivered::Queued(true),
            "the gate starts shut"
        );
        ws.reopen(|| true);
        assert!(socket.is_open());
        let mut expected = Vec::new();
        let mut sent = 0u8;
        // Direct writes until the socket cannot take a whole frame.
        let started = loop {
            sent = sent.wrapping_add(1);
            let (message, wire) = frame(sent, 64 * 1024);
            let bytes = wire.frame(&message, None, 512).unwrap();
            match socket.deliver(Some((&message, &wire)), false, enqueue, || {}) {
                Delivered::Written => expected.extend_from_slice(&bytes),
                Delivered::Started => {
                    expected.extend_from_slice(&bytes);
                    break true;
                }
                other => panic!("{other:?}"),
            }
            assert!(sent < 200, "the socket never filled");
        };
        assert!(
            started && !socket.is_open(),
            "a partial write shuts the gate"
        );
        let (later, wire) = frame(0xEE, 100);
        assert_eq!(
            socket.deliver(Some((&later, &wire)), false, enqueue, || {}),
            Delivered::Queued(true)
        );
        // The connection's task writes what the fan-out left, then what was queued.
        ws.feed_shared(&later, &wire);
        expected.extend_from_slice(&wire.frame(&later, None, 512).unwrap());
        let reader = std::thread::spawn(move || {
            let mut received = vec![0u8; expected.len()];
            client.read_exact(&mut received).unwrap();
            assert!(received == expected, "bytes out of order");
            client
        });
        ws.flush().await.unwrap();
        reader.join().unwrap();
        ws.reopen(|| false);
        assert!(!socket.is_open(), "not while the queue holds something");
        ws.reopen(|| true);
        assert!(socket.is_open());
        assert_eq!(queued.load(Ordering::Relaxed), 2);
    }

    /// A corked batch writes nothing until it is flushed, then everything in one go, in order.
    #[tokio::test]
    async fn a_corked_batch_is_written_when_flushed() {
        let (ws, mut client) = connected().await;
        let socket = ws.socket();
        ws.reopen(|| true);
        let (a, wire_a) = frame(1, 300);
        let (b, wire_b) = frame(2, 10);
        let never = || panic!("nothing is queued while the gate is open");
        assert_eq!(
            socket.deliver(Some((&a, &wire_a)), true, never, || {}),
            Delivered::Corked { first: true }
        );
        assert_eq!(
            socket.deliver(Some((&b, &wire_b)), true, never, || {}),
            Delivered::Corked { first: false }
        );
        client.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            client.read(&mut byte).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "nothing written before the flush"
        );
        assert_eq!(socket.flush(), Delivered::Written);
        client.set_nonblocking(false).unwrap();
        let mut expected = wire_a.frame(&a, None, 512).unwrap().to_vec();
        expected.extend_from_slice(&wire_b.frame(&b, None, 512).unwrap());
        let mut received = vec![0u8; expected.len()];
        client.read_exact(&mut received).unwrap();
        assert_eq!(received, expected);
        assert!(socket.is_open());
    }

    /// A frame pending in a cork when the connection takes the writing over is the
    /// connection's to write, first; until it has, the gate stays shut.
    #[tokio::test]
    async fn taking_over_hands_pending_frames_to_the_connection() {
        let (mut ws, mut client) = connected().await;
        let socket = ws.socket();
        ws.reopen(|| true);
        let (a, wire) = frame(7, 20);
        let never = || panic!("nothing is queued while the gate is open");
        assert_eq!(
            socket.deliver(Some((&a, &wire)), true, never, || {}),
            Delivered::Corked { first: true }
        );
        ws.hold();
        assert!(ws.has_unwritten() && !socket.is_open());
        assert_eq!(
            socket.flush(),
            Delivered::Written,
            "the cork has nothing left"
        );
        ws.reopen(|| true);
        assert!(
            !socket.is_open(),
            "not before the connection wrote what it took"
        );
        ws.feed(Message::Text("after".into()));
        ws.flush().await.unwrap();
        let mut expected = wire.frame(&a, None, 512).unwrap().to_vec();
        expected.extend_from_slice(&[0x81, 5]);
        expected.extend_from_slice(b"after");
        let mut received = vec![0u8; expected.len()];
        client.read_exact(&mut received).unwrap();
        assert_eq!(received, expected);
        ws.reopen(|| true);
        assert!(socket.is_open());
    }
}
