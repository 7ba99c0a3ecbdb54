//! Presence for the in-process bus: the same rules as the Redis keys and scripts
//! ([`ferrocast_protocol::presence`]): entries expire unless refreshed, an update removes a bounded
//! number of expired ones and reports them as left, readers count only unexpired entries.

use std::collections::{BTreeSet, HashMap};

use std::time::Duration;

use ferrocast_emitter::{PresenceChanges, PresenceList, PresenceUpdate};
use ferrocast_protocol::envelope::now_ms;
use parking_lot::Mutex;

use crate::bus::{BusError, PresenceStore};
use ferrocast_protocol::presence::{
    self, CLEANUP_LIMIT, PresenceLeft, PresenceMember, PresenceStats,
};

/// The in-process bus's presence store: every room's records, on the wall clock.
#[derive(Default)]
pub struct MemoryPresenceStore(Mutex<MemoryPresence>);

impl PresenceStore for MemoryPresenceStore {
    async fn update(
        &self,
        room: &str,
        update: &PresenceUpdate,
        ttl: Duration,
    ) -> Result<PresenceChanges, BusError> {
        let now = now_ms();
        let expiry = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        Ok(self.0.lock().update(room, update, now, expiry))
    }

    async fn list(&self, room: &str, max: u64) -> Result<PresenceList, BusError> {
        Ok(self.0.lock().list(room, max, now_ms()))
    }

    async fn stats(&self, room: &str) -> Result<PresenceStats, BusError> {
        Ok(self.0.lock().stats(room, now_ms()))
    }
}

/// Every room's presence, at times given by the caller.
#[derive(Default)]
struct MemoryPresence {
    rooms: HashMap<String, Room>,
}

#[derive(Default)]
struct Room {
    /// Client → (user, stored member, expiry in Unix ms).
    members: HashMap<String, (String, Vec<u8>, u64)>,
    /// (expiry, client), oldest first.
    expiries: BTreeSet<(u64, String)>,
    /// User → (clients present, latest expiry).
    users: HashMap<String, (u64, u64)>,
}

impl Room {
    fn drop_client(&mut self, client: &str) -> Option<PresenceLeft> {
        let (user, _, expiry) = self.members.remove(client)?;
        self.expiries.remove(&(expiry, client.to_owned()));
        if let Some(entry) = self.users.get_mut(&user) {
            entry.0 = entry.0.saturating_sub(1);
            if entry.0 == 0 {
                self.users.remove(&user);
            }
        }
        Some(PresenceLeft {
            client: client.to_owned(),
            user,
        })
    }
}

impl MemoryPresence {
    /// Applies an update at `now` (Unix ms), entries expiring at `expiry`.
    fn update(
        &mut self,
        room: &str,
        update: &PresenceUpdate,
        now: u64,
        expiry: u64,
    ) -> PresenceChanges {
        let state = self.rooms.entry(room.to_owned()).or_default();
        let mut changes = PresenceChanges::default();
        let expired: Vec<String> = state
            .expiries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(CLEANUP_LIMIT)
            .map(|(_, client)| client.clone())
            .collect();
        for client in expired {
            changes.removed.extend(state.drop_client(&client));
        }
        for (client, user, stored) in &update.upsert {
            match state.members.get_mut(client) {
                Some(entry) => {
                    state.expiries.remove(&(entry.2, client.clone()));
                    entry.2 = expiry;
                    // As the Redis script does: a refreshed token may have brought new `info`.
                    entry.1 = stored.clone();
                }
                None => {
                    state
                        .members
                        .insert(client.clone(), (user.clone(), stored.clone(), expiry));
                    state.users.entry(user.clone()).or_default().0 += 1;
                    changes.added.push(client.clone());
                }
            }
            state.expiries.insert((expiry, client.clone()));
            if let Some(entry) = state.users.get_mut(user) {
                entry.1 = entry.1.max(expiry);
            }
        }
        for client in &update.remove {
            changes.removed.extend(state.drop_client(client));
        }
        if state.members.is_empty() {
            self.rooms.remove(room);
        }
        changes
    }

    /// The unexpired members of `room`, unless more than `max`.
    fn list(&self, room: &str, max: u64, now: u64) -> PresenceList {
        let Some(state) = self.rooms.get(room) else {
            return PresenceList::Members(Vec::new());
        };
        let live = state.expiries.iter().filter(|(at, _)| *at > now);
        let count = live.clone().count() as u64;
        if count > max {
            return PresenceList::TooMany(count);
        }
        PresenceList::Members(
            live.filter_map(|(_, client)| {
                let (_, stored, _) = state.members.get(client)?;
                let (user, _node, info) = presence::load(stored).ok()?;
                Some(PresenceMember {
                    client: client.clone(),
                    user,
                    info,
                })
            })
            .collect(),
        )
    }

    /// Unexpired clients and users of `room`.
    fn stats(&self, room: &str, now: u64) -> PresenceStats {
        let Some(state) = self.rooms.get(room) else {
            return PresenceStats::default();
        };
        PresenceStats {
            clients: state.expiries.iter().filter(|(at, _)| *at > now).count() as u64,
            users: state.users.values().filter(|(_, at)| *at > now).count() as u64,
        }
    }
}
