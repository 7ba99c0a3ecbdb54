//! The commands sent on the pub/sub connection and not yet answered, oldest first: Redis answers
//! in command order, so the reader hands each reply to the oldest.

use std::collections::VecDeque;

use tokio::sync::oneshot;

use super::{PubSubError, unavailable};

/// A command waiting for its replies.
pub(super) struct Waiter {
    pub(super) replies: usize,
    pub(super) done: oneshot::Sender<Result<(), String>>,
}

/// The commands sent and not yet answered, oldest first.
#[derive(Default)]
pub(super) struct Waiting(parking_lot::Mutex<WaitList>);

#[derive(Default)]
struct WaitList {
    closed: bool,
    queue: VecDeque<Waiter>,
}

impl Waiting {
    pub(super) fn push(&self, waiter: Waiter) -> Result<(), PubSubError> {
        let mut list = self.0.lock();
        if list.closed {
            return Err(unavailable("the pub/sub connection is lost"));
        }
        list.queue.push_back(waiter);
        Ok(())
    }

    /// One reply to the oldest command: a confirmation counts down its replies; an error is the
    /// command's only reply.
    pub(super) fn answer(&self, reply: Result<(), String>) -> Result<(), PubSubError> {
        let mut list = self.0.lock();
        let Some(oldest) = list.queue.front_mut() else {
            return Err(unavailable(
                "a reply to no command on the pub/sub connection",
            ));
        };
        oldest.replies = oldest.replies.saturating_sub(1);
        if (reply.is_err() || oldest.replies == 0)
            && let Some(waiter) = list.queue.pop_front()
        {
            // The command may have stopped waiting (timed out): nothing to tell.
            let _ = waiter.done.send(reply);
        }
        Ok(())
    }

    pub(super) fn close(&self) {
        let mut list = self.0.lock();
        list.closed = true;
        list.queue.clear();
    }
}
