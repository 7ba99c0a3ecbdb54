//! Which local connections belong to which target: the edge's only shared membership state.
//! Delivery asks it who a message is for ([`Registry::audience`]), builds the frames outside any
//! lock, and has it queue them ([`Registry::fan_out`]).
//!
//! It decides *what* the edge should be
//! subscribed to (a target with at least one local member) and queues the change; the
//! [`subscriptions`](crate::fanout::subscriptions) task makes the bus match, one target at a time in
//! order, and reports back through each target's state so a join can wait until the target is
//! live before answering `joined`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use ferrocast_protocol::{Encoding, TargetKey};
use parking_lot::Mutex;
use tokio::sync::Notify;

pub use crate::fanout::members::Member;
use crate::fanout::members::Members;
use crate::fanout::outbox::{Outbound, Outbox, Pushed};

/// A target's subscription while it is being made, as seen by those waiting to join it: a byte
/// and a wait list, which its topic gives up once live. (A `watch` channel kept for the topic's
/// life cost about 300 bytes more per target, and every connection has two targets of its own.)
#[derive(Default)]
pub struct Subscription {
    /// A [`Stage`], as its `u8`.
    stage: AtomicU8,
    changed: Notify,
}

/// Where a subscription stands. It is set once, from `Making`: to `Live` when the subscriptions
/// task made it (the topic gives it up then), or to `Ended` when the topic goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Stage {
    /// The bus subscription is being made.
    Making = 0,
    /// Messages published from now on reach the target's members.
    Live = 1,
    /// The target's topic is gone: its subscription failed, or everyone left before it was live.
    Ended = 2,
}

impl Stage {
    fn from_u8(stage: u8) -> Stage {
        match stage {
            1 => Stage::Live,
            2 => Stage::Ended,
            _ => Stage::Making,
        }
    }
}

/// Why [`Subscription::live`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the target's subscription ended before it was live")]
pub struct Ended;

impl Subscription {
    /// Waits until the subscription is live.
    pub async fn live(&self) -> Result<(), Ended> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the stage is read, so a change in between still wakes it.
            changed.as_mut().enable();
            match Stage::from_u8(self.stage.load(Ordering::Acquire)) {
                Stage::Live => return Ok(()),
                Stage::Ended => return Err(Ended),
                Stage::Making => changed.await,
            }
        }
    }

    fn set(&self, stage: Stage) {
        let was = Stage::from_u8(self.stage.swap(stage as u8, Ordering::AcqRel));
        debug_assert_eq!(was, Stage::Making, "a subscription's stage is set once");
        self.changed.notify_waiters();
    }
}

struct Topic {
    /// Unique for the edge's lifetime; tags frames so a connection knows where they came from.
    id: u64,
    members: Members,
    /// Until the bus subscription is live: what joins wait on. Given up once live, so a live
    /// topic (every idle connection has two of its own) holds no wait list.
    pending: Option<Arc<Subscription>>,
}

impl Drop for Topic {
    fn drop(&mut self) {
        // Whoever still waits to join is told (the subscription failed, or everyone left).
        if let Some(pending) = &self.pending {
            pending.set(Stage::Ended);
        }
    }
}

/// A membership just added: the topic's id, and its subscription state to wait on.
pub struct Joined {
    /// The topic's id (see [`Frame::topic`](crate::fanout::outbox::Frame::topic)).
    pub topic: u64,
    /// `None` if the target is live already; otherwise turns live once the target's messages
    /// reach the session, or ends if the subscription failed.
    pub state: Option<Arc<Subscription>>,
}

#[derive(Default)]
struct State {
    next_topic: u64,
    topics: HashMap<TargetKey, Topic>,
    /// Targets whose wanted subscription may differ from the bus's, for the subscriptions task.
    changed: HashSet<TargetKey>,
}

/// Local membership of every target.
#[derive(Default)]
pub struct Registry {
    state: Mutex<State>,
    changed: Notify,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Adds `session` to `target`.
    pub fn join(&self, target: &TargetKey, session: u64, member: Member) -> Joined {
        let mut state = self.state.lock();
        let state = &mut *state;
        let topic = state.topics.entry(target.clone()).or_insert_with(|| {
            state.next_topic += 1;
            Topic {
                id: state.next_topic,
                members: Members::default(),
                pending: Some(Arc::new(Subscription::default())),
            }
        });
        if topic.members.is_empty() {
            state.changed.insert(target.clone());
            self.changed.notify_one();
        }
        topic.members.insert(session, member);
        Joined {
            topic: topic.id,
            state: topic.pending.clone(),
        }
    }

    /// Removes `session` from `target`, if it is there.
    pub fn leave(&self, target: &TargetKey, session: u64) {
        let mut state = self.state.lock();
        let Some(topic) = state.topics.get_mut(target) else {
            return;
        };
        topic.members.remove(session);
        if topic.members.is_empty() {
            state.topics.remove(target);
            state.changed.insert(target.clone());
            self.changed.notify_one();
        }
    }
}

/// Who a message of a target goes to right now.
#[derive(Debug, Clone, Copy)]
pub struct Audience {
    /// The target's topic (see [`Frame::topic`](crate::fanout::outbox::Frame::topic)).
    pub topic: u64,
    /// Whether some member uses each encoding, indexed by [`encoding_index`].
    pub encodings: [bool; 2],
    /// How many members it has.
    pub members: usize,
}

impl Audience {
    /// One item per encoding some member uses, made by `item`, in [`encoding_index`] order: the
    /// feed builds a message's frame once per encoding, never for one nobody uses.
    pub fn per_encoding(
        &self,
        mut item: impl FnMut(Encoding) -> Option<Outbound>,
    ) -> [Option<Outbound>; 2] {
        let mut items = [None, None];
        for encoding in [Encoding::Json, Encoding::MsgPack] {
            let index = encoding_index(encoding);
            if self.encodings[index] {
                items[index] = item(encoding);
            }
        }
        items
    }
}

/// Where `encoding` stands in per-encoding arrays.
pub fn encoding_index(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Json => 0,
        Encoding::MsgPack => 1,
    }
}

impl Registry {
    /// Who `target`'s messages go to now, if it has local members.
    pub fn audience(&self, target: &TargetKey) -> Option<Audience> {
        let state = self.state.lock();
        let topic = state.topics.get(target)?;
        let mut encodings = [false; 2];
        for member in topic.members.iter() {
            encodings[encoding_index(member.encoding)] = true;
        }
        Some(Audience {
            topic: topic.id,
            encodings,
            members: topic.members.len(),
        })
    }

    /// Delivers `items[encoding]` to every member of `target` whose client is not in `except`
    /// (written when the cork `corked` is, if given):
    /// the same shared item for every member of an encoding, written straight to the sockets
    /// that can take it (corked: see [`cork`](super::cork)), queued for the others
    /// ([`Outbox::deliver`]). The lock is held
    /// throughout, so a member that left is never written to after it left. Returns how many
    /// were written directly; `None`, and nothing delivered, if `target` is no longer the topic
    /// `topic` (its members all left and others joined since [`Registry::audience`]): the
    /// caller builds anew.
    pub fn fan_out(
        &self,
        target: &TargetKey,
        topic: u64,
        except: &[String],
        items: &[Option<Outbound>; 2],
        mut corked: Option<&mut Vec<Outbox>>,
    ) -> Option<usize> {
        let state = self.state.lock();
        let Some(current) = state.topics.get(target) else {
            return Some(0);
        };
        if current.id != topic {
            return None;
        }
        let mut written = 0;
        for member in current.members.iter() {
            if !except.is_empty() && except.iter().any(|c| **c == *member.client) {
                continue;
            }
            if let Some(item) = &items[encoding_index(member.encoding)]
                && member
                    .outbox
                    .deliver(item, member.direct, corked.as_deref_mut())
                    == Pushed::Written
            {
                written += 1;
            }
        }
        Some(written)
    }

    /// Waits until some target's wanted subscription may have changed.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Takes the targets that changed since the last call, each with whether it is wanted now.
    pub fn take_changed(&self) -> Vec<(TargetKey, bool)> {
        let mut state = self.state.lock();
        let changed = std::mem::take(&mut state.changed);
        changed
            .into_iter()
            .map(|t| {
                let wanted = state.topics.contains_key(&t);
                (t, wanted)
            })
            .collect()
    }

    /// Marks `target` live: joins waiting on it may answer.
    pub fn set_live(&self, target: &TargetKey) {
        if let Some(pending) = self
            .state
            .lock()
            .topics
            .get_mut(target)
            .and_then(|topic| topic.pending.take())
        {
            pending.set(Stage::Live);
        }
    }

    /// The subscription for `target` failed: everyone waiting is told, and the members are
    /// dropped. A later join starts afresh.
    pub fn fail(&self, target: &TargetKey) {
        let mut state = self.state.lock();
        if let Some(topic) = state.topics.get(target)
            && topic.pending.is_some()
        {
            state.topics.remove(target);
        }
    }

    /// How many targets have local members.
    pub fn targets(&self) -> usize {
        self.state.lock().topics.len()
    }

    /// How many rooms have local members, and the `top` with the most, largest first. Walks
    /// every target under the lock: for a status every few seconds, not for a hot path.
    pub fn rooms(&self, top: usize) -> (usize, Vec<(String, usize)>) {
        let mut rooms = 0;
        let mut largest: Vec<(String, usize)> = Vec::with_capacity(top + 1);
        let state = self.state.lock();
        for (target, topic) in &state.topics {
            let (_, Some(room)) = target.scope_and_room() else {
                continue;
            };
            rooms += 1;
            let members = topic.members.len();
            if largest.len() < top || largest.last().is_some_and(|&(_, m)| members > m) {
                let at = largest.partition_point(|&(_, m)| m >= members);
                largest.insert(at, (room.to_owned(), members));
                largest.truncate(top);
            }
        }
        (rooms, largest)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ferrocast_protocol::Target;

    use super::*;

    async fn outcome(waiting: tokio::task::JoinHandle<Result<(), Ended>>) -> Result<(), Ended> {
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("woken in time")
            .expect("task")
    }

    #[tokio::test]
    async fn a_join_waits_until_live_and_is_told_when_the_subscription_fails() {
        let registry = Registry::new();
        let live = Target::Room("live".into()).key();
        let state = registry
            .join(&live, 1, Member::for_test("c1"))
            .state
            .expect("a new target waits for its subscription");
        let waiting = tokio::spawn(async move { state.live().await });
        tokio::task::yield_now().await;
        registry.set_live(&live);
        assert_eq!(outcome(waiting).await, Ok(()));

        let failing = Target::Room("failing".into()).key();
        let state = registry
            .join(&failing, 2, Member::for_test("c2"))
            .state
            .expect("a new target waits for its subscription");
        let waiting = tokio::spawn(async move { state.live().await });
        tokio::task::yield_now().await;
        registry.fail(&failing);
        assert_eq!(outcome(waiting).await, Err(Ended));

        // A live target's members stay when a late failure report arrives.
        registry.fail(&live);
        assert_eq!(registry.targets(), 1);
        // A live target has no wait list left: a later join need not wait.
        assert!(
            registry
                .join(&live, 3, Member::for_test("c3"))
                .state
                .is_none()
        );
    }

    #[test]
    fn counts_rooms_and_names_the_largest() {
        let registry = Registry::new();
        let mut session = 0;
        for (room, members) in [("a", 1), ("b", 4), ("c", 2), ("d", 3)] {
            let key = Target::Room(room.into()).key();
            for _ in 0..members {
                session += 1;
                registry.join(&key, session, Member::for_test("c"));
            }
        }
        registry.join(&Target::User("u".into()).key(), 99, Member::for_test("c"));
        let (rooms, largest) = registry.rooms(2);
        assert_eq!(rooms, 4, "users are not rooms");
        assert_eq!(largest, [("b".to_owned(), 4), ("d".to_owned(), 3)]);
        assert_eq!(registry.rooms(10).1.len(), 4);
    }
}
