//! Every way a message could reach a client twice, and what stops each. All of it is here but
//! the first, which lives with the bus because it is the bus's position in each history:
//!
//! 1. **Live and catch-up overlap** (offsets): after a Redis reconnect a target is replayed from
//!    the newest offset the bus handed on, while live messages start arriving again. The bus
//!    ([`Positions`](crate::bus::redis::positions::Positions)) hands a message on only if its offset is
//!    newer than that position, so each offset passes once.
//! 2. **A message published twice** (ids): an emitter retry whose first attempt did reach Redis
//!    stores the same message id at two offsets. [`RecentIds`] drops the second live; a replay
//!    drops it by id within the replay ([`recovery::frames`](super::recovery::frames)).
//! 3. **Replay and live overlap** (per connection): a joined or resumed target is subscribed
//!    *before* its history is read, so a message published in between is in the replay and in
//!    the connection's queue. [`Seams`] drops queued live messages at or below the replay's end.
//! 4. **Resume after live** (per connection): the user and `all` scopes are live from the
//!    connection's start, so a later `resume` must leave out what was written live already;
//!    [`Written`] keeps that range, noted by the fan-out as it writes to the socket and by the
//!    connection as it writes from its queue (kept in the connection's mailbox).

use std::collections::{HashSet, VecDeque};

use super::sparse::SparseMap;
use std::hash::{BuildHasher, RandomState};

use ferrocast_protocol::{Offset, TargetKey};
use uuid::Uuid;

/// Recently delivered (target, id) pairs: a fixed-size window of the newest `capacity`. Memory
/// stays bounded whatever the traffic; a duplicate arriving after more than `capacity` other
/// messages is not caught, which retries (milliseconds apart) never come close to.
///
/// Pairs remembered by default.
pub const DEFAULT_WINDOW: usize = 16 * 1024;

/// The window of recent (target, id) pairs.
pub struct RecentIds {
    hasher: RandomState,
    seen: HashSet<(u64, u128)>,
    order: VecDeque<(u64, u128)>,
    capacity: usize,
}

impl RecentIds {
    /// A window of `capacity` pairs.
    pub fn new(capacity: usize) -> RecentIds {
        RecentIds {
            hasher: RandomState::new(),
            seen: HashSet::with_capacity(capacity.min(1024)),
            order: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
        }
    }

    /// Records `id` for `target`; false if it was already in the window.
    pub fn first_time(&mut self, target: &TargetKey, id: Uuid) -> bool {
        let key = (self.hasher.hash_one(target), id.as_u128());
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

impl Default for RecentIds {
    fn default() -> Self {
        RecentIds::new(DEFAULT_WINDOW)
    }
}

/// Seams of the targets this connection resumed.
#[derive(Default)]
pub struct Seams(SparseMap<u64, Offset>);

impl Seams {
    /// Live messages of `topic` at or below `floor` were replayed already.
    pub fn set(&mut self, topic: u64, floor: Offset) {
        self.0.insert(topic, floor);
    }

    /// Whether a queued live message should be written.
    pub fn admit(&mut self, topic: u64, offset: Option<Offset>) -> bool {
        let (Some(offset), Some(floor)) = (offset, self.0.get(&topic)) else {
            return true;
        };
        if offset.epoch == floor.epoch && offset.id <= floor.id {
            return false;
        }
        self.0.remove(&topic);
        true
    }

    /// Whether no seam is waiting for its first live message.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Forgets a topic the connection left.
    pub fn forget(&mut self, topic: u64) {
        self.0.remove(&topic);
    }
}

/// The range of offsets a connection has written live for one topic: first and newest. Boxed
/// when first noted: every connection has one for its user and `all` targets, most never note
/// anything, and the two offsets are 48 bytes.
#[derive(Debug, Default, Clone)]
pub struct Written(Option<Box<(Offset, Offset)>>);

impl Written {
    /// Notes a live message written.
    pub fn note(&mut self, offset: Offset) {
        match &mut self.0 {
            Some(range) if range.0.epoch == offset.epoch => range.1 = offset,
            Some(range) => **range = (offset, offset),
            None => self.0 = Some(Box::new((offset, offset))),
        }
    }

    /// Whether the message at `offset` was already written live.
    pub fn contains(&self, offset: Offset) -> bool {
        self.0.as_deref().is_some_and(|(first, last)| {
            first.epoch == offset.epoch && first.id <= offset.id && offset.id <= last.id
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_bounded_window_per_target() {
        let mut recent = RecentIds::new(2);
        let (a, b) = (TargetKey::from_raw("room:a"), TargetKey::from_raw("room:b"));
        let (x, y, z) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        assert!(recent.first_time(&a, x));
        assert!(!recent.first_time(&a, x));
        assert!(recent.first_time(&b, x), "same id, other target");
        assert!(recent.first_time(&a, y));
        assert!(recent.first_time(&a, z));
        assert!(recent.first_time(&a, x), "forgotten once out of the window");
    }

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
