//! A connection's outbound queue: bounded, so a client that cannot keep up costs at most the
//! queue's worth of memory and is then closed (4009) instead of growing the edge. The same
//! handle writes a publication straight to the connection's socket when the connection has
//! nothing queued (see [`Socket`]), and lets the registry ask the connection to close for other
//! reasons.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};

use crate::fanout::control::Control;
use crate::fanout::sparse::SparseMap;

use ferrocast_protocol::close;

use ferrocast_protocol::Offset;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tungstenite::Message;

use crate::websocket::socket::{Delivered, Socket};
use crate::websocket::wire::Wire;

use crate::ops::metrics::metrics;

/// What a connection is asked to do, in order: two words, whatever the message, so a queue of
/// them stays small.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// Write this frame, shared with every other recipient.
    Frame(Arc<Frame>),
    /// Apply a worker's control message.
    Control(Arc<Control>),
    /// Write these presence frames (but not those about the connection itself).
    Presence(Arc<super::presence::PresenceFrames>),
    /// The connection left this topic (or was refused it) when this was queued: see
    /// [`Fences`].
    Fence(u64),
    /// The fan-out wrote a frame in part: write the rest (see [`Socket`]).
    Flush,
}

/// One encoded frame and where it came from, so a connection can drop what a replay already
/// sent. Built once per message and encoding, for all its recipients.
#[derive(Debug)]
pub struct Frame {
    /// The frame to write.
    pub message: Message,
    /// The registry topic it was delivered through (0 for frames of the edge's own).
    pub topic: u64,
    /// Its offset in the topic's history.
    pub offset: Option<Offset>,
    /// Its publish time (Unix ms), 0 for frames that are not messages.
    pub ts: u64,
    /// Its frames as sent, plain and compressed: made by the first recipient that needs each,
    /// shared by the rest.
    pub wire: Wire,
}

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        (&self.message, self.topic, self.offset, self.ts)
            == (&other.message, other.topic, other.offset, other.ts)
    }
}

impl Frame {
    /// A frame of the edge's own (a ping), not from any topic.
    pub fn own(message: Message) -> Arc<Frame> {
        Arc::new(Frame {
            message,
            topic: 0,
            offset: None,
            ts: 0,
            wire: Wire::default(),
        })
    }
}

impl Outbound {
    /// Bytes the frame holds (its payload), as counted against the queue's byte limit.
    pub fn size(&self) -> usize {
        match self {
            Outbound::Frame(frame) => frame.message.len(),
            Outbound::Presence(batch) => batch.size(),
            Outbound::Control(_) | Outbound::Fence(_) | Outbound::Flush => 0,
        }
    }
}

/// The sending side, held by the registry for every target the connection is in: one shared
/// handle, so a clone (one per membership, and one per batch it is corked in) is one count.
#[derive(Clone)]
pub struct Outbox(Arc<Mailbox>);

/// What a connection's two sides share: its queue, its bounds and its close request, in one
/// allocation. The queue holds no memory while it is empty.
struct Mailbox {
    queue: Mutex<VecDeque<Outbound>>,
    capacity: usize,
    /// Wakes the connection's task when the queue stops being empty.
    arrived: Notify,
    /// The connection's task is gone: nothing more is queued.
    closed: AtomicBool,
    kick: Kick,
    bytes: AtomicUsize,
    max_bytes: usize,
    socket: Option<Arc<Socket>>,
}

/// What became of an item handed to [`Outbox::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Written to the socket (or begun, and finished by the connection's task).
    Written,
    /// Queued for the connection's task.
    Queued,
    /// Dropped: the queue was full (the connection is closing) or the connection is gone.
    Dropped,
}

/// A request to close the connection: the first close code asked for wins.
#[derive(Default)]
struct Kick {
    code: AtomicU16,
    notify: Notify,
}

impl Kick {
    fn ask(&self, code: u16) {
        let _ = self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.notify.notify_one();
    }

    async fn requested(&self) -> u16 {
        self.notify.notified().await;
        self.code.load(Ordering::Acquire)
    }
}

/// The receiving side, owned by the connection's task. Dropping it empties the queue and
/// refuses whatever is offered later.
pub struct Queued(Arc<Mailbox>);

impl Queued {
    /// The next item, waiting for one if the queue is empty.
    pub async fn recv(&self) -> Outbound {
        loop {
            if let Some(item) = self.try_recv() {
                return item;
            }
            // An item queued since the check stored a permit: this returns at once.
            self.0.arrived.notified().await;
        }
    }

    /// The next item, if one is queued.
    pub fn try_recv(&self) -> Option<Outbound> {
        let mut queue = self.0.queue.lock();
        let item = queue.pop_front();
        if queue.is_empty() && queue.capacity() > 0 {
            // An idle connection holds no queue space.
            *queue = VecDeque::new();
        }
        item
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.0.queue.lock().is_empty()
    }

    /// How many items are queued.
    pub fn len(&self) -> usize {
        self.0.queue.lock().len()
    }

    /// Gives back the bytes of a frame taken off the queue.
    pub fn taken(&self, frame: &Outbound) {
        self.0.bytes.fetch_sub(frame.size(), Ordering::AcqRel);
    }

    /// Waits until the connection is asked to close, and returns the code: 4009 when the queue
    /// overflowed, or another code from [`Outbox::close`].
    pub async fn kicked(&self) -> u16 {
        self.0.kick.requested().await
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock();
        self.0.closed.store(true, Ordering::Release);
        *queue = VecDeque::new();
    }
}

/// A queue of at most `capacity` frames holding at most `max_bytes` bytes, for a connection
/// whose `socket` [`Outbox::deliver`] may write to directly.
pub fn channel(capacity: usize, max_bytes: usize, socket: Option<Arc<Socket>>) -> (Outbox, Queued) {
    let mailbox = Arc::new(Mailbox {
        queue: Mutex::new(VecDeque::new()),
        capacity: capacity.max(1),
        arrived: Notify::new(),
        closed: AtomicBool::new(false),
        kick: Kick::default(),
        bytes: AtomicUsize::new(0),
        max_bytes,
        socket,
    });
    (Outbox(mailbox.clone()), Queued(mailbox))
}

impl Outbox {
    /// Delivers `item`: a frame, when `direct`, is written straight to the socket if the
    /// connection has nothing queued and the socket takes it; anything else is queued, and then
    /// everything after it too until the connection's task has caught up, so order holds.
    pub fn deliver(
        &self,
        item: &Outbound,
        direct: bool,
        corked: Option<&mut Vec<Outbox>>,
    ) -> Pushed {
        let Some(socket) = &self.0.socket else {
            return self.queued(self.enqueue(item.clone()));
        };
        let frame = match item {
            Outbound::Frame(frame) if direct => Some((&frame.message, &frame.wire)),
            _ => None,
        };
        let is_corked = frame.is_some() && corked.is_some();
        match socket.deliver(frame, is_corked, || self.enqueue(item.clone())) {
            Delivered::Written => Pushed::Written,
            Delivered::Corked { first } => {
                if first && let Some(corked) = corked {
                    corked.push(self.clone());
                }
                Pushed::Written
            }
            Delivered::Started => {
                // The queue is empty (the gate was open): this cannot overflow.
                self.enqueue(Outbound::Flush);
                Pushed::Written
            }
            Delivered::Failed => {
                self.enqueue(Outbound::Flush);
                Pushed::Dropped
            }
            Delivered::Queued(queued) => self.queued(queued),
        }
    }

    /// Writes what a cork left pending; wakes the connection's task if the socket could not
    /// take all of it.
    pub(super) fn flush(&self) {
        if let Some(socket) = &self.0.socket
            && matches!(socket.flush(), Delivered::Started | Delivered::Failed)
        {
            self.enqueue(Outbound::Flush);
        }
    }

    fn queued(&self, queued: bool) -> Pushed {
        if queued {
            Pushed::Queued
        } else {
            Pushed::Dropped
        }
    }

    /// Queues an item for the connection's task (never written directly).
    pub fn push(&self, item: Outbound) -> bool {
        self.deliver(&item, false, None) != Pushed::Dropped
    }

    /// Queues a frame without waiting. A full queue marks the connection as a slow consumer and
    /// the frame is dropped (the connection is about to close; it can resume from its offsets).
    /// Returns whether the frame was queued.
    fn enqueue(&self, frame: Outbound) -> bool {
        let size = frame.size();
        if self.0.bytes.fetch_add(size, Ordering::AcqRel) + size > self.0.max_bytes {
            self.0.bytes.fetch_sub(size, Ordering::AcqRel);
            return self.overflow();
        }
        let mut queue = self.0.queue.lock();
        if self.0.closed.load(Ordering::Acquire) {
            drop(queue);
            self.0.bytes.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        if queue.len() >= self.0.capacity {
            drop(queue);
            self.0.bytes.fetch_sub(size, Ordering::AcqRel);
            return self.overflow();
        }
        let was_empty = queue.is_empty();
        queue.push_back(frame);
        drop(queue);
        // Only the first item wakes the task: it takes everything queued before it waits again.
        if was_empty {
            self.0.arrived.notify_one();
        }
        true
    }

    fn overflow(&self) -> bool {
        metrics().dropped("queue_full");
        self.0.kick.ask(close::SLOW_CONSUMER);
        false
    }

    /// Counts `bytes` written outside the queue (a page of replay) against the connection's
    /// byte bound until [`Outbox::release`]: live frames queued meanwhile have that much less
    /// room. False, and the connection asked to close as a slow consumer, if they do not fit.
    pub fn reserve(&self, bytes: usize) -> bool {
        if self.0.bytes.fetch_add(bytes, Ordering::AcqRel) + bytes > self.0.max_bytes {
            self.0.bytes.fetch_sub(bytes, Ordering::AcqRel);
            return self.overflow();
        }
        true
    }

    /// Gives back bytes counted by [`Outbox::reserve`], once written.
    pub fn release(&self, bytes: usize) {
        self.0.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Asks the connection to close with `code`.
    pub fn close(&self, code: u16) {
        self.0.kick.ask(code);
    }
}

/// Topics whose frames still in the queue were queued before the connection left them.
///
/// Leaving a topic (or being refused it after the registry already took the connection in)
/// cannot take back what the registry queued meanwhile: a client told `left` (or refused a join)
/// would still get those messages. So the connection notes the topic here and queues a
/// [`Outbound::Fence`] behind them: frames of the topic met before its fence are dropped, those
/// after it (a later join's) are written. A count per topic, since a topic can be left again
/// before its first fence has come out of the queue.
#[derive(Debug, Default)]
pub struct Fences(SparseMap<u64, u32>);

impl Fences {
    /// The connection left `topic`; the fence queued after this call ends what to drop.
    pub fn raise(&mut self, topic: u64) {
        *self.0.entry(topic, || 0) += 1;
    }

    /// A fence came out of the queue.
    pub fn passed(&mut self, topic: u64) {
        if let Some(&n) = self.0.get(&topic) {
            if n > 1 {
                self.0.insert(topic, n - 1);
            } else {
                self.0.remove(&topic);
            }
        }
    }

    /// Whether no topic is fenced.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a frame of `topic` coming out of the queue now was queued before a leave.
    pub fn holds(&self, topic: u64) -> bool {
        self.0.get(&topic).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_item_is_two_words() {
        assert_eq!(std::mem::size_of::<Outbound>(), 16);
    }

    #[tokio::test]
    async fn a_full_queue_signals_overflow_and_drops_the_frame() {
        let frame = |text: &str| Outbound::Frame(Frame::own(Message::Text(text.into())));
        let (outbox, queued) = channel(2, 1024, None);
        assert!(outbox.push(frame("1")));
        assert!(outbox.push(frame("2")));
        assert!(!outbox.push(frame("3")));
        // The permit stored by notify_one makes this return at once.
        assert_eq!(queued.kicked().await, close::SLOW_CONSUMER);
        outbox.close(close::INTERNAL);
        assert_eq!(queued.recv().await, frame("1"));
        assert_eq!(queued.recv().await, frame("2"));
        assert!(queued.try_recv().is_none());
    }

    #[tokio::test]
    async fn the_byte_limit_counts_what_is_queued_and_not_yet_written() {
        let frame = |len: usize| Outbound::Frame(Frame::own(Message::Binary(vec![0; len].into())));
        let (outbox, queued) = channel(100, 10, None);
        assert!(outbox.push(frame(6)));
        assert!(!outbox.push(frame(6)), "12 bytes would exceed 10");
        assert_eq!(queued.kicked().await, close::SLOW_CONSUMER);
        let taken = queued.recv().await;
        queued.taken(&taken);
        assert!(outbox.push(frame(10)), "room again once written");
    }

    #[tokio::test]
    async fn a_waiting_connection_wakes_for_each_item_in_order_and_keeps_no_space_when_idle() {
        let frame = |text: &str| Outbound::Frame(Frame::own(Message::Text(text.into())));
        let (outbox, queued) = channel(8, 1024, None);
        let waiting = tokio::spawn(async move {
            let first = queued.recv().await;
            let second = queued.recv().await;
            (first, second, queued)
        });
        // Queued one at a time, each after the task may have started waiting.
        tokio::task::yield_now().await;
        assert!(outbox.push(frame("1")));
        tokio::task::yield_now().await;
        assert!(outbox.push(frame("2")));
        let (first, second, queued) =
            tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
                .await
                .expect("woken")
                .expect("task");
        assert_eq!((first, second), (frame("1"), frame("2")));
        assert!(queued.is_empty());
        assert_eq!(
            queued.0.queue.lock().capacity(),
            0,
            "an emptied queue is freed"
        );
    }

    #[test]
    fn nothing_is_queued_once_the_connection_is_gone() {
        let frame = |text: &str| Outbound::Frame(Frame::own(Message::Text(text.into())));
        let (outbox, queued) = channel(8, 1024, None);
        assert!(outbox.push(frame("1")));
        drop(queued);
        assert!(!outbox.push(frame("2")));
        assert_eq!(
            outbox.0.queue.lock().capacity(),
            0,
            "what was queued is freed"
        );
        assert_eq!(
            outbox.0.bytes.load(Ordering::Acquire),
            1,
            "only the frame before the drop counted"
        );
    }

    #[test]
    fn fences_drop_what_was_queued_before_a_leave_and_nothing_after() {
        let mut fences = Fences::default();
        assert!(!fences.holds(7));
        fences.raise(7);
        fences.raise(7);
        assert!(fences.holds(7) && !fences.holds(8));
        fences.passed(7);
        assert!(
            fences.holds(7),
            "left twice: the second fence is still ahead"
        );
        fences.passed(7);
        assert!(!fences.holds(7));
    }
}
