//! Recently delivered message ids, so a message published twice (an emitter retry whose first
//! attempt did reach Redis) reaches clients once.
//!
//! A fixed-size window: the newest `capacity` (target, id) pairs. Memory stays bounded whatever
//! the traffic; a duplicate arriving after more than `capacity` other messages is not caught,
//! which retries (milliseconds apart) never come close to.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};

use ferrocast_protocol::TargetKey;
use uuid::Uuid;

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
}
