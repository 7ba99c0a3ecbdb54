//! A connection's calls waiting for their replies (v1.2), and the one timer that times them out.
//!
//! Made on the connection's first `rpc` and boxed, so connections that never call stay as small
//! as before. At most [`MAX_PENDING`] calls, so a linear scan beats any index. The timer is
//! armed for the earliest deadline only, and the connection's loop polls it only while calls
//! are pending: an idle connection owns no timer, and a `TIMEOUT` goes out on time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use ferrocast_protocol::rpc::MAX_PENDING;
use tokio::time::{Instant, Sleep};
use uuid::Uuid;

/// One call waiting for its reply.
struct Call {
    reference: u64,
    request: Uuid,
    deadline: Instant,
}

/// The connection's pending calls.
pub(super) struct RpcCalls {
    calls: Vec<Call>,
    timer: Pin<Box<Sleep>>,
    /// The deadline the timer is set for, if it is set for one still to come.
    armed: Option<Instant>,
}

impl RpcCalls {
    pub(super) fn new() -> RpcCalls {
        RpcCalls {
            calls: Vec::new(),
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: None,
        }
    }

    /// Whether another call would be over the limit.
    pub(super) fn full(&self) -> bool {
        self.calls.len() >= MAX_PENDING
    }

    /// Whether a call with this `ref` is waiting (a second one could not be told apart).
    pub(super) fn has(&self, reference: u64) -> bool {
        self.calls.iter().any(|c| c.reference == reference)
    }

    /// When the first of the pending calls times out, if any is pending.
    pub(super) fn earliest(&self) -> Option<Instant> {
        self.calls.iter().map(|c| c.deadline).min()
    }

    /// Notes a call appended to the inbox.
    pub(super) fn add(&mut self, reference: u64, request: Uuid, deadline: Instant) {
        self.calls.push(Call {
            reference,
            request,
            deadline,
        });
    }

    /// Takes the calls a reply to the inbox message `request` answers: their `ref`s, none if
    /// no such call is pending (timed out, or never made on this connection). A named call
    /// retried on this connection before its reply came is pending under two `ref`s.
    pub(super) fn take(&mut self, request: Uuid) -> Vec<u64> {
        let mut answered = Vec::new();
        self.calls.retain(|c| {
            let matches = c.request == request;
            if matches {
                answered.push(c.reference);
            }
            !matches
        });
        answered
    }

    /// Completes with the `ref`s of the calls whose deadline has passed (removed), once the
    /// earliest one's has; never while none is pending.
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<Vec<u64>> {
        let Some(earliest) = self.earliest() else {
            return Poll::Pending;
        };
        if self.armed != Some(earliest) {
            self.timer.as_mut().reset(earliest);
            self.armed = Some(earliest);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.armed = None;
        let now = Instant::now();
        let mut expired = Vec::new();
        self.calls.retain(|c| {
            let due = c.deadline <= now;
            if due {
                expired.push(c.reference);
            }
            !due
        });
        Poll::Ready(expired)
    }
}

/// Polls the connection's expired calls: pending forever for a connection that never made one
/// (its loop's wait then holds one pointer for it, no timer).
pub(super) fn poll_expired(
    calls: &mut Option<Box<RpcCalls>>,
    cx: &mut Context<'_>,
) -> Poll<Vec<u64>> {
    match calls {
        Some(calls) => calls.poll_expired(cx),
        None => Poll::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn expired(calls: &mut Option<Box<RpcCalls>>) -> Vec<u64> {
        std::future::poll_fn(|cx| poll_expired(calls, cx)).await
    }

    #[tokio::test]
    async fn calls_expire_in_deadline_order_and_replies_take_theirs() {
        let mut calls = RpcCalls::new();
        let now = Instant::now();
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        calls.add(1, a, now + Duration::from_millis(60));
        calls.add(2, b, now + Duration::from_millis(20));
        calls.add(3, c, now + Duration::from_millis(20));
        assert!(calls.has(1) && !calls.has(4));
        calls.add(4, c, now + Duration::from_millis(20));
        assert_eq!(calls.take(Uuid::now_v7()), Vec::<u64>::new());
        assert_eq!(
            calls.take(c),
            vec![3, 4],
            "a retried call answers both its refs"
        );
        assert_eq!(calls.take(c), Vec::<u64>::new());
        let mut holder = Some(Box::new(calls));
        assert_eq!(expired(&mut holder).await, vec![2]);
        assert!(Instant::now() >= now + Duration::from_millis(20));
        assert_eq!(expired(&mut holder).await, vec![1]);
        assert!(Instant::now() >= now + Duration::from_millis(60));
        assert_eq!(holder.as_ref().and_then(|c| c.earliest()), None);
        let waiting = tokio::time::timeout(Duration::from_millis(50), expired(&mut holder)).await;
        assert!(waiting.is_err(), "nothing pending: nothing expires");
        let mut none = None;
        let waiting = tokio::time::timeout(Duration::from_millis(10), expired(&mut none)).await;
        assert!(waiting.is_err(), "no table: nothing expires");
    }

    #[test]
    fn holds_at_most_the_limit() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let mut calls = RpcCalls::new();
        for r in 0..MAX_PENDING as u64 {
            assert!(!calls.full());
            calls.add(r, Uuid::nil(), Instant::now());
        }
        assert!(calls.full());
    }
}
