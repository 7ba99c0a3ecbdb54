//! A topic's members. Most topics have exactly one (every connection's own user and client
//! targets), so one member is kept inline and a map is made only for a second: two allocations
//! fewer for each of those topics, which every idle connection pays for.

use std::sync::Arc;

use ferrocast_protocol::Encoding;
use indexmap::IndexMap;

use super::outbox::{Direct, Outbox};

/// A local connection in a target.
#[derive(Clone)]
pub struct Member {
    /// Its client id, to honour `except`.
    pub client: Arc<str>,
    /// Its frame encoding.
    pub encoding: Encoding,
    /// Its outbound queue.
    pub outbox: Outbox,
    /// Whether the target's messages may be written straight to its socket, and whether their
    /// offsets are noted as written.
    pub direct: Direct,
}

#[cfg(test)]
impl Member {
    /// A JSON member named `client`, written directly, whose queue nobody reads.
    pub(crate) fn for_test(client: &str) -> Member {
        let (outbox, _queued) = crate::fanout::outbox::channel(4, 1024, None);
        Member {
            client: client.into(),
            encoding: Encoding::Json,
            outbox,
            direct: Direct::Yes,
        }
    }
}

/// The members of one topic, by session id.
#[derive(Default)]
pub(super) enum Members {
    /// No member yet (a topic is removed once its last member leaves).
    #[default]
    None,
    /// A single member, inline.
    One(u64, Member),
    /// Two or more (or fewer, after leaves: a map is not given back). Boxed: a map is larger
    /// than one member, and every topic's entry in the registry is as large as this.
    Many(Box<IndexMap<u64, Member>>),
}

impl Members {
    /// Adds `session` (replacing its earlier membership, if any).
    pub(super) fn insert(&mut self, session: u64, member: Member) {
        *self = match std::mem::take(self) {
            Members::None => Members::One(session, member),
            Members::One(only, _) if only == session => Members::One(session, member),
            Members::One(only, first) => {
                let mut map = Box::new(IndexMap::with_capacity(2));
                map.insert(only, first);
                map.insert(session, member);
                Members::Many(map)
            }
            Members::Many(mut map) => {
                map.insert(session, member);
                Members::Many(map)
            }
        };
    }

    /// Removes `session`, if it is a member.
    pub(super) fn remove(&mut self, session: u64) {
        match self {
            Members::One(only, _) if *only == session => *self = Members::None,
            Members::Many(map) => {
                map.swap_remove(&session);
            }
            Members::None | Members::One(..) => {}
        }
    }

    /// How many members there are.
    pub(super) fn len(&self) -> usize {
        match self {
            Members::None => 0,
            Members::One(..) => 1,
            Members::Many(map) => map.len(),
        }
    }

    /// Whether there is none.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every member.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Member> {
        let (one, many) = match self {
            Members::None => (None, None),
            Members::One(_, member) => (Some(member), None),
            Members::Many(map) => (None, Some(map.values())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn clients(members: &Members) -> Vec<String> {
        members.iter().map(|m| m.client.to_string()).collect()
    }

    #[test]
    fn one_member_is_inline_and_a_second_makes_a_map() {
        let mut members = Members::default();
        assert!(members.is_empty());
        members.insert(1, Member::for_test("a"));
        assert!(matches!(members, Members::One(1, _)));
        members.insert(1, Member::for_test("a2"));
        assert_eq!(clients(&members), ["a2"], "a rejoin replaces");
        members.insert(2, Member::for_test("b"));
        assert!(matches!(members, Members::Many(_)));
        assert_eq!(clients(&members), ["a2", "b"]);
        members.remove(1);
        assert_eq!(clients(&members), ["b"]);
        members.remove(7);
        assert_eq!(members.len(), 1, "removing a stranger changes nothing");
        members.remove(2);
        assert!(members.is_empty());
    }

    #[test]
    fn the_only_member_leaves_and_a_stranger_does_not() {
        let mut members = Members::default();
        members.insert(1, Member::for_test("a"));
        members.remove(2);
        assert_eq!(members.len(), 1);
        members.remove(1);
        assert!(members.is_empty() && clients(&members).is_empty());
    }
}
