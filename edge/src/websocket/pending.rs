//! What a socket has accepted and not yet written, kept so that no allocation is made for the
//! common case of one frame.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

use super::iovec::{self, IOVECS};

/// Frames waiting for the socket, oldest first. The first is kept inline: a batch most often
/// brings a client one frame, and a queue would be allocated and freed for every delivery.
#[derive(Default)]
pub(super) struct Pending {
    /// The only frame waiting, if just one is (then `more` is empty).
    one: Option<Bytes>,
    more: VecDeque<Bytes>,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.one.is_none() && self.more.is_empty()
    }

    pub(super) fn push(&mut self, bytes: Bytes) {
        if self.is_empty() {
            self.one = Some(bytes);
            return;
        }
        if let Some(one) = self.one.take() {
            self.more.push_back(one);
        }
        self.more.push_back(bytes);
    }

    /// Points `slices` at the frames; returns how many it filled and their total length.
    pub(super) fn gather<'a>(&'a self, slices: &mut [IoSlice<'a>; IOVECS]) -> (usize, usize) {
        match &self.one {
            Some(one) => {
                slices[0] = IoSlice::new(one);
                (1, one.len())
            }
            None => iovec::gather(&self.more, slices),
        }
    }

    /// Drops the first `written` bytes.
    pub(super) fn advance(&mut self, written: usize) {
        match &mut self.one {
            Some(one) if written >= one.len() => self.one = None,
            Some(one) => one.advance(written),
            None => iovec::advance(&mut self.more, written),
        }
    }

    /// Everything waiting, oldest first; nothing is left.
    pub(super) fn take(&mut self) -> VecDeque<Bytes> {
        let mut all = std::mem::take(&mut self.more);
        if let Some(one) = self.one.take() {
            all.push_front(one);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One waiting frame is kept inline, a second moves both to the queue, and order holds
    /// through partial writes and a takeover.
    #[test]
    fn pending_frames_keep_their_order_inline_or_queued() {
        let mut pending = Pending::default();
        pending.push(Bytes::from_static(b"abc"));
        assert!(pending.one.is_some() && pending.more.capacity() == 0);
        let gathered = |pending: &Pending| pending.gather(&mut [IoSlice::new(&[]); IOVECS]);
        assert_eq!(gathered(&pending), (1, 3));
        pending.advance(1);
        pending.push(Bytes::from_static(b"de"));
        assert!(pending.one.is_none());
        assert_eq!(gathered(&pending), (2, 4));
        pending.advance(3);
        pending.push(Bytes::from_static(b"f"));
        assert_eq!(pending.take(), [&b"e"[..], b"f"]);
        assert!(pending.is_empty());
        pending.push(Bytes::from_static(b"g"));
        pending.advance(1);
        assert!(pending.is_empty());
    }
}
