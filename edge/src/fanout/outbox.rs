//! A connection's outbound queue: bounded, so a client that cannot keep up costs at most the
//! queue's worth of memory and is then closed (4009) instead of growing the edge. The same
//! handle writes a publication straight to the connection's socket when the connection has
//! nothing queued (see [`Socket`]), and lets the registry ask the connection to close for other
//! reasons. The queue itself, with its bounds and the close request, is the connection's
//! [`mailbox`](super::mailbox).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::fanout::control::Control;
use crate::fanout::dedup::Written;
use crate::fanout::mailbox::{Admitted, Mailbox, NO_CODE};
use crate::fanout::sparse::SparseMap;

use ferrocast_protocol::close;

use ferrocast_protocol::Offset;

use crate::websocket::socket::{Delivered, Socket};

use crate::ops::metrics::metrics;

pub use super::outbound::{Frame, Outbound};

/// The sending side, held by the registry for every target the connection is in: one shared
/// handle, so a clone (one per membership, and one per batch it is corked in) is one count.
#[derive(Clone)]
pub struct Outbox(pub(super) Arc<Mailbox>);

pub use crate::fanout::mailbox::Queued;

/// Whether the fan-out may write a target's frames straight to a member's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// No: through the connection's queue.
    No,
    /// Yes, when the connection has nothing queued.
    Yes,
    /// Yes, noting each frame's offset as written (see [`Outbox::written`]): the user and `all`
    /// targets, which a `resume` replays without what was written live.
    Noted,
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

/// A queue of at most `capacity` frames holding at most `max_bytes` bytes, for a connection
/// whose `socket` [`Outbox::deliver`] may write to directly.
pub fn channel(capacity: usize, max_bytes: usize, socket: Option<Arc<Socket>>) -> (Outbox, Queued) {
    let mailbox = Arc::new(Mailbox::new(capacity, max_bytes, socket));
    (Outbox(mailbox.clone()), Queued(mailbox))
}

impl Outbox {
    /// Delivers `item`: a frame, unless `direct` says no, is written straight to the socket if
    /// the connection has nothing queued and the socket takes it; anything else is queued, and
    /// then everything after it too until the connection's task has caught up, so order holds.
    pub fn deliver(
        &self,
        item: &Outbound,
        direct: Direct,
        corked: Option<&mut Vec<Outbox>>,
    ) -> Pushed {
        let Some(socket) = &self.0.socket else {
            return self.queued(self.enqueue(item.clone()));
        };
        let (frame, noted) = match item {
            Outbound::Frame(frame) if direct != Direct::No => (
                Some((&frame.message, &frame.wire)),
                frame.offset.filter(|_| direct == Direct::Noted),
            ),
            _ => (None, None),
        };
        let is_corked = frame.is_some() && corked.is_some();
        // Noted under the socket's lock: a connection that takes the writing over (to resume)
        // finds every frame the fan-out wrote before it.
        let taken = || {
            if let (Some(offset), Outbound::Frame(frame)) = (noted, item) {
                self.0.note_written(frame.topic, offset);
            }
        };
        match socket.deliver(frame, is_corked, || self.enqueue(item.clone()), taken) {
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
        self.deliver(&item, Direct::No, None) != Pushed::Dropped
    }

    /// Notes the message at `offset` of `topic` as written live (by the connection's task).
    pub fn note_written(&self, topic: u64, offset: Offset) {
        self.0.note_written(topic, offset);
    }

    /// What was written live of `topic`, by the fan-out or the connection's task, if its writes
    /// are noted. Complete only while the connection holds the writing (the socket's gate is
    /// shut), as while it acts on a client's frame.
    pub fn written(&self, topic: u64) -> Written {
        self.0.written(topic)
    }

    /// Queues a frame without waiting. A full queue marks the connection as a slow consumer and
    /// the frame is dropped (the connection is about to close; it can resume from its offsets).
    /// Returns whether the frame was queued.
    fn enqueue(&self, frame: Outbound) -> bool {
        if let Outbound::Control(control) = &frame
            && let Control::Disconnect { code, .. } = **control
        {
            // Applied in order with the messages ahead of it, normally; the sweep's backstop
            // for a task stuck behind a write the client never reads.
            let _ = self.0.disconnect.compare_exchange(
                NO_CODE,
                code,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        let size = frame.size();
        if self.0.bytes.fetch_add(size, Ordering::AcqRel) + size > self.0.max_bytes {
            self.0.bytes.fetch_sub(size, Ordering::AcqRel);
            return self.overflow();
        }
        match self.0.push(frame) {
            Admitted::Queued => true,
            Admitted::Full => {
                self.0.bytes.fetch_sub(size, Ordering::AcqRel);
                self.overflow()
            }
            Admitted::Closed => {
                self.0.bytes.fetch_sub(size, Ordering::AcqRel);
                false
            }
        }
    }

    fn overflow(&self) -> bool {
        metrics().dropped("queue_full");
        self.0.ask(close::SLOW_CONSUMER);
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
        self.0.ask(code);
    }

    /// Called by each sweep: a worker's disconnect queued for the connection and still waiting
    /// a sweep later means its task is stuck behind a write (a client that does not read), so
    /// the close is asked for directly, ahead of what is queued. Whether it was.
    pub fn force_overdue_disconnect(&self) -> bool {
        let code = self.0.disconnect.load(Ordering::Acquire);
        if code == NO_CODE || !self.0.disconnect_seen.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.0.ask(code);
        true
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
    use tungstenite::Message;

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
