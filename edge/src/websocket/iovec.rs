//! Queued buffers handed to one vectored write, and what the write took dropped from the queue:
//! the same for the connection's own writes and the fan-out's.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

/// Most slices handed to one vectored write.
pub const IOVECS: usize = 64;

/// Points `slices` at the front of `bufs`; returns how many it filled and their total length.
pub fn gather<'a>(bufs: &'a VecDeque<Bytes>, slices: &mut [IoSlice<'a>; IOVECS]) -> (usize, usize) {
    let mut total = 0;
    let count = bufs
        .iter()
        .zip(slices.iter_mut())
        .map(|(bytes, slice)| {
            total += bytes.len();
            *slice = IoSlice::new(bytes);
        })
        .count();
    (count, total)
}

/// Drops the first `written` bytes of `bufs`, splitting a buffer written in part.
pub fn advance(bufs: &mut VecDeque<Bytes>, mut written: usize) {
    while written > 0 {
        let Some(front) = bufs.front_mut() else {
            return;
        };
        if front.len() <= written {
            written -= front.len();
            bufs.pop_front();
        } else {
            front.advance(written);
            written = 0;
        }
    }
}
