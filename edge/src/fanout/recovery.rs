//! Resuming: turning a replay from history into frames, and keeping the seam between replayed
//! and live messages free of duplicates.
//!
//! A resumed target is subscribed *before* its history is read, so a message published in
//! between arrives twice: in the replay and in the connection's queue. The connection remembers,
//! per topic, the newest offset its replay covered (a seam) and drops queued live messages at or
//! below it. Messages of one target arrive in offset order, so the first live message above the
//! seam closes it.
//!
//! For the user and `all` scopes, which are live from the connection's start, a `resume` also
//! has to skip what was already written live; [`Written`] keeps that range.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use ferrocast_protocol::{Encoding, Offset};
use tungstenite::Message;

use crate::fanout::delivery::Delivery;

/// Seams of the targets this connection resumed.
#[derive(Default)]
pub struct Seams(HashMap<u64, Offset>);

impl Seams {
    /// Live messages of `topic` at or below `floor` were replayed already.
    pub fn set(&mut self, topic: u64, floor: Offset) {
        self.0.insert(topic, floor);
    }

    /// Whether a queued live message should be written.
    pub fn admit(&mut self, topic: u64, offset: Option<Offset>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let (Some(offset), Some(floor)) = (offset, self.0.get(&topic)) else {
            return true;
        };
        if offset.epoch == floor.epoch && offset.id <= floor.id {
            return false;
        }
        self.0.remove(&topic);
        true
    }

    /// Forgets a topic the connection left.
    pub fn forget(&mut self, topic: u64) {
        self.0.remove(&topic);
    }
}

/// The range of offsets a connection has written live for one topic: first and newest.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written(Option<(Offset, Offset)>);

impl Written {
    /// Notes a live message written.
    pub fn note(&mut self, offset: Offset) {
        self.0 = match self.0 {
            Some((first, _)) if first.epoch == offset.epoch => Some((first, offset)),
            _ => Some((offset, offset)),
        };
    }

    /// Whether the message at `offset` was already written live.
    pub fn contains(&self, offset: Offset) -> bool {
        self.0.is_some_and(|(first, last)| {
            first.epoch == offset.epoch && first.id <= offset.id && offset.id <= last.id
        })
    }
}

/// The frames of a page of replay for a connection: messages it is not excluded from, not
/// already `written`, in its encoding, in order. A message id stored twice in the history (a
/// retried publish) is sent once: `ids` holds those already sent.
pub fn frames(
    entries: &[(Offset, Bytes)],
    client: &str,
    encoding: Encoding,
    written: Written,
    ids: &mut HashSet<uuid::Uuid>,
) -> Vec<Message> {
    entries
        .iter()
        .filter(|(offset, _)| !written.contains(*offset))
        .filter_map(|(offset, bytes)| Delivery::decode(*offset, bytes))
        .filter(|delivery| ids.insert(delivery.envelope.id))
        .filter(|delivery| !delivery.excludes(client))
        .filter_map(|mut delivery| delivery.frame(encoding))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocast_protocol::offset::StreamId;

    fn at(ms: u64, epoch: u64) -> Offset {
        Offset {
            id: StreamId { ms, seq: 0 },
            epoch: StreamId { ms: epoch, seq: 0 },
        }
    }

    #[test]
    fn a_seam_drops_what_was_replayed_and_closes_on_the_first_new_message() {
        let mut seams = Seams::default();
        seams.set(1, at(5, 1));
        assert!(!seams.admit(1, Some(at(4, 1))));
        assert!(!seams.admit(1, Some(at(5, 1))));
        assert!(seams.admit(2, Some(at(3, 1))), "other topics pass");
        assert!(seams.admit(1, Some(at(6, 1))));
        assert!(
            seams.admit(1, Some(at(2, 1))),
            "closed after the first new message"
        );
        seams.set(1, at(5, 1));
        assert!(seams.admit(1, Some(at(1, 2))), "a new epoch is new history");
    }

    #[test]
    fn written_ranges() {
        let mut written = Written::default();
        assert!(!written.contains(at(1, 1)));
        written.note(at(3, 1));
        written.note(at(5, 1));
        assert!(written.contains(at(4, 1)));
        assert!(!written.contains(at(2, 1)));
        assert!(!written.contains(at(6, 1)));
        assert!(!written.contains(at(4, 2)));
    }
}
