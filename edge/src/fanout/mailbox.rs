//! What a connection's two sides share: its queue (bounded, and holding no memory while empty),
//! the bytes queued, and its close request, in one allocation. The sending side is the
//! [`Outbox`](super::outbox::Outbox); the receiving side, [`Queued`], is the connection's task.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use super::dedup::Written;
use super::outbound::Outbound;
use super::sparse::SparseMap;
use crate::websocket::socket::Socket;
use ferrocast_protocol::Offset;

/// What a connection's two sides share: its queue, its bounds and its close request, in one
/// allocation. The queue holds no memory while it is empty.
pub(super) struct Mailbox {
    queue: Mutex<VecDeque<Outbound>>,
    capacity: usize,
    /// The connection's task, woken when the queue stops being empty or a close is asked for.
    /// One slot, not a wait list per event: only that task waits, and a wait list's entry
    /// would sit in its idle state for the connection's whole life.
    task: AtomicWaker,
    /// The connection's task is gone: nothing more is queued.
    closed: AtomicBool,
    /// The close code asked for ([`NO_CODE`] until then; the first asked for wins).
    kick: AtomicU16,
    /// The code of a worker's disconnect queued for the connection ([`NO_CODE`]: none), and whether a
    /// sweep already found it waiting (see [`Outbox::force_overdue_disconnect`](super::outbox::Outbox::force_overdue_disconnect)).
    pub(super) disconnect: AtomicU16,
    pub(super) disconnect_seen: AtomicBool,
    pub(super) bytes: AtomicUsize,
    pub(super) max_bytes: usize,
    pub(super) socket: Option<Arc<Socket>>,
    /// What was written live of the topics whose writes are noted (the user and `all`
    /// targets), by whichever side wrote it: a `resume` leaves that out of its replay.
    written: Mutex<SparseMap<u64, Written>>,
}

/// No close code: a real one is never 0 (they start at 1000).
pub(super) const NO_CODE: u16 = 0;

/// What became of an item offered to [`Mailbox::push`].
pub(super) enum Admitted {
    /// Queued, the task woken if it was waiting.
    Queued,
    /// The queue is at its capacity.
    Full,
    /// The connection's task is gone.
    Closed,
}

impl Mailbox {
    /// A mailbox for at most `capacity` items and `max_bytes` bytes.
    pub(super) fn new(capacity: usize, max_bytes: usize, socket: Option<Arc<Socket>>) -> Mailbox {
        Mailbox {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            task: AtomicWaker::new(),
            closed: AtomicBool::new(false),
            kick: AtomicU16::new(NO_CODE),
            disconnect: AtomicU16::new(NO_CODE),
            disconnect_seen: AtomicBool::new(false),
            bytes: AtomicUsize::new(0),
            max_bytes,
            socket,
            written: Mutex::new(SparseMap::default()),
        }
    }

    /// Notes the message at `offset` of `topic` as written (or sure to be).
    pub(super) fn note_written(&self, topic: u64, offset: Offset) {
        self.written
            .lock()
            .entry(topic, Written::default)
            .note(offset);
    }

    /// What was written live of `topic`.
    pub(super) fn written(&self, topic: u64) -> Written {
        self.written.lock().get(&topic).cloned().unwrap_or_default()
    }

    /// Queues `item` unless the queue is full or the connection gone.
    pub(super) fn push(&self, item: Outbound) -> Admitted {
        let mut queue = self.queue.lock();
        if self.closed.load(Ordering::Acquire) {
            return Admitted::Closed;
        }
        if queue.len() >= self.capacity {
            return Admitted::Full;
        }
        let was_empty = queue.is_empty();
        queue.push_back(item);
        drop(queue);
        // Only the first item wakes the task: it takes everything queued before it waits again.
        if was_empty {
            self.task.wake();
        }
        Admitted::Queued
    }

    /// Asks the connection to close with `code` (the first code asked for wins).
    pub(super) fn ask(&self, code: u16) {
        debug_assert_ne!(code, NO_CODE, "a close is asked for with a real code");
        let _ = self
            .kick
            .compare_exchange(NO_CODE, code, Ordering::AcqRel, Ordering::Acquire);
        self.task.wake();
    }
}

/// The receiving side, owned by the connection's task. Dropping it empties the queue and
/// refuses whatever is offered later.
pub struct Queued(pub(super) Arc<Mailbox>);

impl Queued {
    /// The next item, waiting for one if the queue is empty. The future holds nothing but
    /// this reference.
    pub fn recv(&self) -> impl Future<Output = Outbound> + '_ {
        std::future::poll_fn(|cx| self.poll_recv(cx))
    }

    /// The next item, or `Pending` with the task to be woken when one is queued.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Outbound> {
        // Registered before looking: an item queued after the look wakes the task.
        self.0.task.register(cx.waker());
        match self.try_recv() {
            Some(item) => Poll::Ready(item),
            None => Poll::Pending,
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
    /// overflowed, or another code from [`Outbox::close`](super::outbox::Outbox::close). Once
    /// asked, it answers at once every time. The future holds nothing but this reference.
    pub fn kicked(&self) -> impl Future<Output = u16> + '_ {
        std::future::poll_fn(|cx| self.poll_kicked(cx))
    }

    /// The close code asked for, or `Pending` with the task to be woken when one is.
    pub fn poll_kicked(&self, cx: &mut Context<'_>) -> Poll<u16> {
        self.0.task.register(cx.waker());
        match self.0.kick.load(Ordering::Acquire) {
            NO_CODE => Poll::Pending,
            code => Poll::Ready(code),
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock();
        self.0.closed.store(true, Ordering::Release);
        *queue = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use tungstenite::Message;

    use super::super::outbox::{self, Frame, Outbound};

    #[tokio::test]
    async fn a_waiting_connection_wakes_for_each_item_in_order_and_keeps_no_space_when_idle() {
        let frame = |text: &str| Outbound::Frame(Frame::own(Message::Text(text.into())));
        let (outbox, queued) = outbox::channel(8, 1024, None);
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

    #[tokio::test]
    async fn a_close_request_wakes_the_waiting_connection_and_the_first_code_stays() {
        let (outbox, queued) = outbox::channel(8, 1024, None);
        let mailbox = outbox.0.clone();
        let waiting = tokio::spawn(async move {
            // Waiting on both, as the connection's loop does: one waker slot serves the two.
            let code = tokio::select! {
                code = queued.kicked() => code,
                _ = queued.recv() => panic!("nothing was queued"),
            };
            (code, queued)
        });
        tokio::task::yield_now().await;
        mailbox.ask(4009);
        mailbox.ask(1001);
        let (code, queued) = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(code, 4009);
        assert_eq!(
            queued.kicked().await,
            4009,
            "asked once, answered every time"
        );
    }

    #[test]
    fn nothing_is_queued_once_the_connection_is_gone() {
        let frame = |text: &str| Outbound::Frame(Frame::own(Message::Text(text.into())));
        let (outbox, queued) = outbox::channel(8, 1024, None);
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
}
