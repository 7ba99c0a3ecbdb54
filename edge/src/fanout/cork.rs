//! Corking: what a batch of publications brings each client is written in one system call when
//! the batch ends, rather than one per frame. A bus that finds several messages already arrived
//! delivers them as one batch ([`Sink::batch`](crate::bus::Sink::batch)); every fan-out corks
//! itself too, so nothing written directly waits past the delivery (or batch) that brought it.

use std::cell::RefCell;

use super::outbox::Outbox;

/// This thread's corks: how many are open, and the connections with frames pending.
#[derive(Default)]
struct Corked {
    depth: u32,
    pending: Vec<Outbox>,
}

thread_local! {
    static CORKED: RefCell<Corked> = RefCell::new(Corked::default());
}

/// While alive, frames written directly on this thread are kept per connection; when the last
/// open cork drops, they are written. Per thread: never held across an `.await`.
#[must_use]
pub struct Cork(());

impl Cork {
    /// Corks this thread until the returned guard drops.
    pub fn start() -> Cork {
        CORKED.with(|corked| corked.borrow_mut().depth += 1);
        Cork(())
    }
}

/// Runs `f` with this thread's list of connections with frames pending, if a cork is open:
/// [`Outbox::deliver`] adds to it. Once per fan-out, not per member.
pub(super) fn pending<R>(f: impl FnOnce(Option<&mut Vec<Outbox>>) -> R) -> R {
    CORKED.with(|corked| {
        let mut corked = corked.borrow_mut();
        if corked.depth > 0 {
            f(Some(&mut corked.pending))
        } else {
            f(None)
        }
    })
}

impl Drop for Cork {
    fn drop(&mut self) {
        let pending = CORKED.with(|corked| {
            let mut corked = corked.borrow_mut();
            corked.depth -= 1;
            if corked.depth == 0 {
                std::mem::take(&mut corked.pending)
            } else {
                Vec::new()
            }
        });
        for outbox in pending {
            outbox.flush();
        }
    }
}
