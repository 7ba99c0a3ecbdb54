//! The rooms a connection is in: a sorted list, binary-searched.
//!
//! Most connections are in one room or a few, for their whole life. A hash map takes about
//! 180 bytes for its first entry; this takes the entries alone. Lookups stay logarithmic for
//! connections allowed many rooms (`--max-rooms`); a join or leave moves the entries after it,
//! which is cheap beside the subscription it comes with.

/// A room the connection is in.
#[derive(Debug, Clone, Copy)]
pub(super) struct Room {
    /// Its registry topic.
    pub(super) topic: u64,
    /// Whether a worker or the join hook let the connection in (so no token claim is needed
    /// to stay).
    pub(super) granted: bool,
}

/// The connection's rooms, by name.
#[derive(Debug, Default)]
pub(super) struct JoinedRooms(Vec<(Box<str>, Room)>);

impl JoinedRooms {
    fn find(&self, room: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(name, _)| (**name).cmp(room))
    }

    /// Whether the connection is in `room`.
    pub(super) fn contains(&self, room: &str) -> bool {
        self.find(room).is_ok()
    }

    /// `room`'s entry, if the connection is in it.
    pub(super) fn get_mut(&mut self, room: &str) -> Option<&mut Room> {
        let at = self.find(room).ok()?;
        Some(&mut self.0[at].1)
    }

    /// Records `room` (replacing its earlier entry, if any).
    pub(super) fn insert(&mut self, room: &str, joined: Room) {
        match self.find(room) {
            Ok(at) => self.0[at].1 = joined,
            Err(at) => {
                // Grown one at a time: a list is rarely more than a few rooms long, and the
                // insert moves the entries anyway.
                self.0.reserve_exact(1);
                self.0.insert(at, (room.into(), joined));
            }
        }
    }

    /// Forgets `room`; its entry, if the connection was in it.
    pub(super) fn remove(&mut self, room: &str) -> Option<Room> {
        let at = self.find(room).ok()?;
        let (_, joined) = self.0.remove(at);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(joined)
    }

    /// How many rooms the connection is in.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Each room and its entry, by name.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &Room)> {
        self.0.iter().map(|(name, joined)| (&**name, joined))
    }

    /// Empties the list, returning the rooms' names.
    pub(super) fn take(&mut self) -> impl Iterator<Item = String> + use<> {
        std::mem::take(&mut self.0)
            .into_iter()
            .map(|(name, _)| name.into_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(topic: u64) -> Room {
        Room {
            topic,
            granted: false,
        }
    }

    #[test]
    fn rooms_are_found_replaced_and_removed_by_name() {
        let mut rooms = JoinedRooms::default();
        for (name, topic) in [("m", 1), ("b", 2), ("z", 3), ("a", 4)] {
            rooms.insert(name, room(topic));
        }
        assert_eq!(rooms.len(), 4);
        assert!(rooms.contains("z") && !rooms.contains("c"));
        let names: Vec<&str> = rooms.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["a", "b", "m", "z"]);

        rooms.insert("b", room(9));
        assert_eq!(rooms.len(), 4);
        rooms.get_mut("m").expect("in m").granted = true;
        assert!(rooms.iter().any(|(name, r)| name == "m" && r.granted));

        assert_eq!(rooms.remove("b").map(|r| r.topic), Some(9));
        assert!(rooms.remove("b").is_none());
        let left: Vec<String> = rooms.take().collect();
        assert_eq!(left, ["a", "m", "z"]);
        assert_eq!(rooms.len(), 0);
    }

    #[test]
    fn an_emptied_list_holds_no_memory() {
        let mut rooms = JoinedRooms::default();
        rooms.insert("r", room(1));
        assert_eq!(rooms.0.capacity(), 1);
        rooms.remove("r");
        assert_eq!(rooms.0.capacity(), 0);
    }
}
