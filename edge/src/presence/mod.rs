//! Presence (docs/protocol.md): this edge's members of presence rooms, and how they reach the
//! bus.
//!
//! Sessions report joins and leaves here and never wait for Redis: each is a pending operation
//! on its room, the last one per client winning, so a client that joins and leaves within one
//! batch costs nothing and is never announced. The [`flush`] task applies what is pending, a
//! batch per room at most every [`WINDOW`], and refreshes every member about every half TTL,
//! spread over that time by client, so ten thousand clients never refresh in one burst.

pub mod flush;
pub mod query;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferrocast_emitter::PresenceUpdate;
use ferrocast_protocol::presence::{self, MAX_INFO, PresenceMember};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::PresenceConfig;
use crate::config::patterns::Patterns;

/// How long joins and leaves wait to be applied together.
pub const WINDOW: Duration = Duration::from_millis(50);
/// Most members one Redis call refreshes or adds.
const CHUNK: usize = 500;

/// A pending change of one client's presence in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Upsert,
    Remove,
}

struct LocalMember {
    user: String,
    info: Option<Vec<u8>>,
    stored: Vec<u8>,
}

#[derive(Default)]
struct LocalRoom {
    members: HashMap<Arc<str>, LocalMember>,
    pending: HashMap<Arc<str>, Op>,
}

/// One room's batch, taken for the bus.
pub struct RoomBatch {
    /// The room.
    pub room: String,
    /// What to tell Redis.
    pub update: PresenceUpdate,
    /// The members upserted, to announce those that turn out to be new.
    pub joining: HashMap<String, PresenceMember>,
}

/// This edge's presence members, and what the bus has not been told yet.
pub struct Presence {
    rooms: Patterns,
    events: Patterns,
    /// Entries expire this long after their last refresh.
    pub ttl: Duration,
    /// Most clients a `presence` answer lists.
    pub max: u64,
    node: String,
    state: Mutex<HashMap<String, LocalRoom>>,
    /// Woken when something is pending.
    pub(crate) pending: Notify,
    /// One batch at a time reaches the bus, so a leave never overtakes its join.
    pub(crate) applying: tokio::sync::Mutex<()>,
}

impl Presence {
    /// Presence as configured, for the edge `node`.
    pub fn new(config: &PresenceConfig, node: &str) -> Arc<Presence> {
        Arc::new(Presence {
            rooms: Patterns::from(config.presence_rooms.clone()),
            events: Patterns::from(config.presence_events.clone()),
            ttl: config.presence_ttl.max(Duration::from_secs(1)),
            max: config.presence_max,
            node: node.to_owned(),
            state: Mutex::new(HashMap::new()),
            pending: Notify::new(),
            applying: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether `room` records presence.
    pub fn tracks(&self, room: &str) -> bool {
        self.rooms.allows(room)
    }

    /// Whether `room`'s members are told about joins and leaves.
    pub fn announces(&self, room: &str) -> bool {
        self.tracks(room) && self.events.allows(room)
    }

    /// Records that `client` (of `user`, with the token's `info` claim as JSON) joined `room`.
    pub fn join(&self, room: &str, client: &Arc<str>, user: &str, info: Option<&[u8]>) {
        if !self.tracks(room) {
            return;
        }
        let info = info.filter(|i| i.len() <= MAX_INFO).map(<[u8]>::to_vec);
        let stored = presence::store(user, &self.node, info.as_deref());
        let mut state = self.state.lock();
        let local = state.entry(room.to_owned()).or_default();
        local.members.insert(
            client.clone(),
            LocalMember {
                user: user.to_owned(),
                info,
                stored,
            },
        );
        local.pending.insert(client.clone(), Op::Upsert);
        drop(state);
        self.pending.notify_one();
    }

    /// Records that `client` left `room`.
    pub fn leave(&self, room: &str, client: &Arc<str>) {
        if !self.tracks(room) {
            return;
        }
        let mut state = self.state.lock();
        let Some(local) = state.get_mut(room) else {
            return;
        };
        if local.members.remove(client).is_some() {
            local.pending.insert(client.clone(), Op::Remove);
        }
        drop(state);
        self.pending.notify_one();
    }

    /// Takes what is pending, of `room` or of every room.
    pub fn take_pending(&self, room: Option<&str>) -> Vec<RoomBatch> {
        let mut state = self.state.lock();
        let mut batches = Vec::new();
        let rooms: Vec<String> = match room {
            Some(room) => vec![room.to_owned()],
            None => state
                .iter()
                .filter(|(_, local)| !local.pending.is_empty())
                .map(|(room, _)| room.clone())
                .collect(),
        };
        for room in rooms {
            let Some(local) = state.get_mut(&room) else {
                continue;
            };
            let pending = std::mem::take(&mut local.pending);
            let mut batch = RoomBatch {
                room: room.clone(),
                update: PresenceUpdate::default(),
                joining: HashMap::new(),
            };
            for (client, op) in pending {
                match (op, local.members.get(&client)) {
                    (Op::Upsert, Some(member)) => batch.add(&client, member),
                    _ => batch.update.remove.push(client.to_string()),
                }
            }
            if local.members.is_empty() {
                state.remove(&room);
            }
            batches.extend(batch.split());
        }
        batches
    }

    /// The members of every room whose turn it is to be refreshed: those whose client falls in
    /// `slot` of `slots`.
    pub fn due(&self, slot: u64, slots: u64) -> Vec<RoomBatch> {
        let state = self.state.lock();
        let mut batches = Vec::new();
        for (room, local) in state.iter() {
            let mut batch = RoomBatch {
                room: room.clone(),
                update: PresenceUpdate::default(),
                joining: HashMap::new(),
            };
            for (client, member) in &local.members {
                if slot_of(client, slots) == slot {
                    batch.add(client, member);
                }
            }
            if !batch.update.upsert.is_empty() {
                batches.extend(batch.split());
            }
        }
        batches
    }

    /// Puts back a batch the bus could not take, unless the client changed again since.
    pub fn requeue(&self, batch: &RoomBatch) {
        let mut state = self.state.lock();
        let local = state.entry(batch.room.clone()).or_default();
        let ops = batch
            .update
            .upsert
            .iter()
            .map(|(client, _, _)| (client, Op::Upsert))
            .chain(
                batch
                    .update
                    .remove
                    .iter()
                    .map(|client| (client, Op::Remove)),
            );
        for (client, op) in ops {
            let client: Arc<str> = client.as_str().into();
            // An upsert of a client that left since is no longer wanted.
            if op == Op::Upsert && !local.members.contains_key(&client) {
                continue;
            }
            local.pending.entry(client).or_insert(op);
        }
    }

    /// Presence memberships this edge holds.
    pub fn members(&self) -> usize {
        self.state.lock().values().map(|r| r.members.len()).sum()
    }
}

impl RoomBatch {
    fn add(&mut self, client: &Arc<str>, member: &LocalMember) {
        self.update.upsert.push((
            client.to_string(),
            member.user.clone(),
            member.stored.clone(),
        ));
        self.joining.insert(
            client.to_string(),
            PresenceMember {
                client: client.to_string(),
                user: member.user.clone(),
                info: member.info.clone(),
            },
        );
    }

    /// The batch in pieces of at most [`CHUNK`] clients, so no script runs long.
    fn split(mut self) -> Vec<RoomBatch> {
        if self.update.upsert.len() + self.update.remove.len() <= CHUNK {
            return vec![self];
        }
        let mut pieces = Vec::new();
        while self.update.upsert.len() > CHUNK {
            let rest = self.update.upsert.split_off(CHUNK);
            let upsert = std::mem::replace(&mut self.update.upsert, rest);
            let joining = upsert
                .iter()
                .filter_map(|(c, _, _)| self.joining.remove_entry(c))
                .collect();
            pieces.push(RoomBatch {
                room: self.room.clone(),
                update: PresenceUpdate {
                    upsert,
                    remove: Vec::new(),
                },
                joining,
            });
        }
        while self.update.remove.len() > CHUNK {
            let rest = self.update.remove.split_off(CHUNK);
            let remove = std::mem::replace(&mut self.update.remove, rest);
            pieces.push(RoomBatch {
                room: self.room.clone(),
                update: PresenceUpdate {
                    upsert: Vec::new(),
                    remove,
                },
                joining: HashMap::new(),
            });
        }
        pieces.push(self);
        pieces
    }
}

/// The refresh slot of `client` among `slots` (FNV-1a of its id).
fn slot_of(client: &str, slots: u64) -> u64 {
    let hash = client.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash % slots.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence() -> Arc<Presence> {
        let config = PresenceConfig {
            presence_rooms: vec!["p:*".into()],
            presence_events: vec!["p:events".into()],
            presence_ttl: Duration::from_secs(60),
            presence_max: 10,
        };
        Presence::new(&config, "node")
    }

    #[test]
    fn a_join_and_leave_in_one_batch_cost_nothing_and_the_last_change_wins() {
        let p = presence();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        p.join("other", &a, "u", None);
        assert!(
            p.take_pending(None).is_empty(),
            "untracked rooms are ignored"
        );
        p.join("p:1", &a, "u", Some(b"{}"));
        p.leave("p:1", &a);
        p.join("p:1", &b, "v", None);
        let batches = p.take_pending(None);
        assert_eq!(batches.len(), 1);
        let update = &batches[0].update;
        assert_eq!(update.upsert.len(), 1);
        assert_eq!(update.upsert[0].0, "b");
        // `a` never reached the bus; removing it there is harmless and announces nothing.
        assert_eq!(update.remove, vec!["a".to_owned()]);
        assert!(p.take_pending(None).is_empty());
        assert!(p.announces("p:events") && !p.announces("p:1"));
    }

    #[test]
    fn refreshes_visit_every_member_once_per_round_and_big_rooms_go_in_chunks() {
        let p = presence();
        for i in 0..1200 {
            p.join("p:big", &Arc::from(format!("c{i}")), "u", None);
        }
        let first = p.take_pending(None);
        assert_eq!(first.len(), 3, "1200 joins in chunks of {CHUNK}");
        let slots = 30;
        let mut seen = 0;
        for slot in 0..slots {
            seen += p
                .due(slot, slots)
                .iter()
                .map(|b| b.update.upsert.len())
                .sum::<usize>();
        }
        assert_eq!(seen, 1200);
        assert_eq!(p.members(), 1200);
    }

    #[test]
    fn a_requeued_batch_does_not_undo_a_newer_change() {
        let p = presence();
        let a: Arc<str> = "a".into();
        p.join("p:1", &a, "u", None);
        let batch = p.take_pending(None).remove(0);
        p.leave("p:1", &a);
        p.requeue(&batch);
        let again = p.take_pending(None);
        assert_eq!(again[0].update.remove, vec!["a".to_owned()]);
        assert!(again[0].update.upsert.is_empty());
    }
}
