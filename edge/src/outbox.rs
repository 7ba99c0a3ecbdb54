//! A connection's outbound queue: bounded, so a client that cannot keep up costs at most the
//! queue's worth of memory and is then closed (4009) instead of growing the edge.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tungstenite::Message;

/// The sending side, held by the registry for every target the connection is in.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Message>,
    overflow: Arc<Notify>,
}

/// The receiving side, owned by the connection's task.
pub struct Inbox {
    /// Frames to write.
    pub rx: mpsc::Receiver<Message>,
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
    pub fn push(&self, frame: Message) -> bool {
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
        let (outbox, mut inbox) = channel(2);
        assert!(outbox.push(Message::Text("1".into())));
        assert!(outbox.push(Message::Text("2".into())));
        assert!(!outbox.push(Message::Text("3".into())));
        // The permit stored by notify_one makes this return at once.
        inbox.overflow.notified().await;
        assert_eq!(inbox.rx.recv().await, Some(Message::Text("1".into())));
        assert_eq!(inbox.rx.recv().await, Some(Message::Text("2".into())));
        assert!(inbox.rx.try_recv().is_err());
    }
}
