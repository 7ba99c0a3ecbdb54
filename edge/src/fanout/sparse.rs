//! A map that is almost always empty and takes one word while it is: a connection's fences and
//! seams exist only for a moment after a leave or a resume, but every connection has both.

use std::collections::HashMap;
use std::hash::Hash;

/// A map boxed on its first entry and freed with its last.
#[derive(Debug)]
#[expect(
    clippy::box_collection,
    reason = "the box is the point: one word inline instead of a map's 48 bytes"
)]
pub struct SparseMap<K, V>(Option<Box<HashMap<K, V>>>);

impl<K, V> Default for SparseMap<K, V> {
    fn default() -> Self {
        SparseMap(None)
    }
}

impl<K: Eq + Hash, V> SparseMap<K, V> {
    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.0.as_ref()?.get(key)
    }

    /// The value of `key`, inserted from `make` if absent.
    pub fn entry(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.0
            .get_or_insert_with(Box::default)
            .entry(key)
            .or_insert_with(make)
    }

    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: K, value: V) {
        self.0.get_or_insert_with(Box::default).insert(key, value);
    }

    /// Removes `key`; the map is freed once empty.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let map = self.0.as_mut()?;
        let removed = map.remove(key);
        if map.is_empty() {
            self.0 = None;
        }
        removed
    }

    /// Whether it has no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_holds_nothing_until_its_first_entry_and_after_its_last() {
        let mut map: SparseMap<u64, u32> = SparseMap::default();
        assert!(map.is_empty() && map.get(&1).is_none());
        *map.entry(1, || 0) += 1;
        *map.entry(1, || 0) += 1;
        map.insert(2, 7);
        assert_eq!((map.get(&1), map.get(&2)), (Some(&2), Some(&7)));
        assert_eq!(map.remove(&1), Some(2));
        assert!(!map.is_empty());
        assert_eq!(map.remove(&3), None);
        assert_eq!(map.remove(&2), Some(7));
        assert!(
            map.is_empty() && map.0.is_none(),
            "freed with its last entry"
        );
    }
}
