//! A connection's outbound queue: bounded, so a client that cannot keep up costs at most the
//! queue's worth of memory and is then closed (4009) instead of growing the edge.

use std::sync::Arc;

use ferrocast_protocol::Offset;
use tokio::sync::{Notify, mpsc};
use tungstenite::Message;

/// A frame on its way to one connection, with where it came from so the connection can drop
/// what a replay already sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// The encoded frame, shared with every other recipient.
    pub frame: Message,
    /// The registry topic it was delivered through.
    pub topic: u64,
    /// Its offset in the topic's history.
    pub offset: Option<Offset>,
}

/// The sending side, held by the registry for every target the connection is in.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outbound>,
    overflow: Arc<Notify>,
}

/// The receiving side, owned by the connection's task.
pub struct Inbox {
    /// Frames to write.
    pub rx: mpsc::Receiver<Outbound>,
    /// Fires once the queue overflowed: the connection must close with 4009.
    pub overflow: Arc<Notify>,
}

/// A queue of `capacity` frames.
pub fn channel(capacity: usize) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let overflow = Arc::new(Notify::new());
    (
        Outbox {
            tx,
            overflow: overflow.clone(),
        },
        Inbox { rx, overflow },
    )
}

impl Outbox {
    /// Queues a frame without waiting. A full queue marks the connection as a slow consumer and
    /// the frame is dropped (the connection is about to close; it can resume from its offsets).
    /// Returns whether the frame was queued.
    pub fn push(&self, frame: Outbound) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_signals_overflow_and_drops_the_frame() {
        let frame = |text: &str| Outbound {
            frame: Message::Text(text.into()),
            topic: 1,
            offset: None,
        };
        let (outbox, mut inbox) = channel(2);
        assert!(outbox.push(frame("1")));
        assert!(outbox.push(frame("2")));
        assert!(!outbox.push(frame("3")));
        // The permit stored by notify_one makes this return at once.
        inbox.overflow.notified().await;
        assert_eq!(inbox.rx.recv().await, Some(frame("1")));
        assert_eq!(inbox.rx.recv().await, Some(frame("2")));
        assert!(inbox.rx.try_recv().is_err());
    }
}
