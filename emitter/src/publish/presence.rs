//! Presence through Redis (docs/protocol.md): reading who is in a room, for workers, and the
//! updates edges make, through the same pool or cluster connection as publishes. The key layout
//! and scripts are the protocol crate's ([`ferrocast_protocol::presence`]).

use std::sync::LazyLock;
use std::time::Duration;

use ferrocast_protocol::envelope::now_ms;
use ferrocast_protocol::keys::{Scope, Target};
use ferrocast_protocol::presence::{
    self, CLEANUP_LIMIT, PresenceEvents, PresenceLeft, PresenceMember, PresenceStats,
};
use redis::FromRedisValue;

use super::{Backend, Emitter};
use crate::error::EmitError;

static UPDATE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(presence::UPDATE_SCRIPT));
static LIST: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(presence::LIST_SCRIPT));
static STATS: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(presence::STATS_SCRIPT));

/// A room's present clients, or how many there are when more than asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceList {
    /// Every present client.
    Members(Vec<PresenceMember>),
    /// More clients than the limit: only their number.
    TooMany(u64),
}

/// One edge's changes to a room's presence: clients to add or refresh, clients to remove.
#[derive(Debug, Clone, Default)]
pub struct PresenceUpdate {
    /// Clients to add or keep: client, user, and the stored member
    /// ([`presence::store`]).
    pub upsert: Vec<(String, String, Vec<u8>)>,
    /// Clients to remove.
    pub remove: Vec<String>,
}

/// What an update changed: clients that were not present before, and clients removed (asked
/// for, or expired).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceChanges {
    /// Clients added (not refreshed: they were absent).
    pub added: Vec<String>,
    /// Clients removed, with their users.
    pub removed: Vec<PresenceLeft>,
}

/// A presence list as the API and the `presence` frame give it.
pub fn presence_json(room: &str, members: Vec<PresenceMember>) -> serde_json::Value {
    let clients: Vec<serde_json::Value> = members
        .into_iter()
        .map(|m| {
            let mut client = serde_json::json!({"client": m.client, "user": m.user});
            if let Some(info) = m
                .info
                .and_then(|i| serde_json::from_slice::<serde_json::Value>(&i).ok())
            {
                client["info"] = info;
            }
            client
        })
        .collect();
    serde_json::json!({"room": room, "clients": clients})
}

impl Emitter {
    /// The present clients of `room`, with their users and `info` claims.
    pub async fn presence(&self, room: &str) -> Result<Vec<PresenceMember>, EmitError> {
        match self.presence_limited(room, u64::MAX).await? {
            PresenceList::Members(members) => Ok(members),
            PresenceList::TooMany(n) => Err(EmitError::Reply(format!("{n} members"))),
        }
    }

    /// The present clients of `room`, unless there are more than `max`.
    pub async fn presence_limited(&self, room: &str, max: u64) -> Result<PresenceList, EmitError> {
        let keys = self.presence_keys(room)?;
        let mut invocation = LIST.prepare_invoke();
        keys.iter().for_each(|k| {
            invocation.key(k);
        });
        invocation.arg(now_ms()).arg(max.min(i64::MAX as u64));
        // `{count}` alone when over the limit, else `{count, clients, stored members}`.
        let reply: Vec<redis::Value> = self.invoke(&invocation).await?;
        let mut reply = reply.into_iter();
        let malformed = |e: redis::ParsingError| EmitError::Reply(e.to_string());
        let count =
            u64::from_redis_value(reply.next().unwrap_or(redis::Value::Nil)).map_err(malformed)?;
        if count > max {
            return Ok(PresenceList::TooMany(count));
        }
        let (Some(clients), Some(stored)) = (reply.next(), reply.next()) else {
            return Err(EmitError::Reply(
                "the presence list script answered without its members".into(),
            ));
        };
        let clients = Vec::<String>::from_redis_value(clients).map_err(malformed)?;
        let stored = Vec::<Vec<u8>>::from_redis_value(stored).map_err(malformed)?;
        let members = clients
            .into_iter()
            .zip(stored)
            .filter_map(|(client, stored)| {
                // An entry whose member was removed between the two reads is skipped.
                let (user, _node, info) = presence::load(&stored).ok()?;
                Some(PresenceMember { client, user, info })
            })
            .collect();
        Ok(PresenceList::Members(members))
    }

    /// How many clients and distinct users are present in `room`, counted without reading the
    /// member list.
    pub async fn presence_stats(&self, room: &str) -> Result<PresenceStats, EmitError> {
        let keys = self.presence_keys(room)?;
        let mut invocation = STATS.prepare_invoke();
        keys.iter().for_each(|k| {
            invocation.key(k);
        });
        invocation.arg(now_ms());
        let (clients, users): (u64, u64) = self.invoke(&invocation).await?;
        Ok(PresenceStats { clients, users })
    }

    /// Applies an edge's changes to `room`'s presence, entries expiring `ttl` from now, and
    /// removes some expired entries. For edges; workers only read presence.
    pub async fn presence_update(
        &self,
        room: &str,
        update: &PresenceUpdate,
        ttl: Duration,
    ) -> Result<PresenceChanges, EmitError> {
        let keys = self.presence_keys(room)?;
        let now = now_ms();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let mut invocation = UPDATE.prepare_invoke();
        keys.iter().for_each(|k| {
            invocation.key(k);
        });
        invocation
            .arg(now)
            .arg(now.saturating_add(ttl_ms))
            // The keys outlive their newest entry a little, then go with the room.
            .arg(ttl_ms.saturating_mul(2).max(1000))
            .arg(CLEANUP_LIMIT)
            .arg(update.upsert.len());
        for (client, user, stored) in &update.upsert {
            invocation.arg(client).arg(user).arg(&stored[..]);
        }
        for client in &update.remove {
            invocation.arg(client);
        }
        let (added, removed): (Vec<String>, Vec<String>) = self.invoke(&invocation).await?;
        let removed = removed
            .chunks_exact(2)
            .map(|pair| PresenceLeft {
                client: pair[0].clone(),
                user: pair[1].clone(),
            })
            .collect();
        Ok(PresenceChanges { added, removed })
    }

    /// Tells every edge with members in `room` about joins and leaves, on the room's live
    /// channel. Not stored: whoever is not subscribed now never sees it.
    pub async fn presence_announce(
        &self,
        room: &str,
        events: &PresenceEvents,
    ) -> Result<(), EmitError> {
        let target = Target::new(Scope::Room, room)?.key();
        let channel = self.inner.keys.live(&target);
        let payload = events
            .to_live()
            .map_err(|e| EmitError::Reply(e.to_string()))?;
        let command = match self.inner.backend {
            Backend::Single(_) => "PUBLISH",
            Backend::Cluster(_) => "SPUBLISH",
        };
        let mut cmd = redis::cmd(command);
        cmd.arg(channel).arg(payload);
        self.command::<i64>(&cmd).await.map(drop)
    }

    fn presence_keys(&self, room: &str) -> Result<[String; 4], EmitError> {
        let target = Target::new(Scope::Room, room)?.key();
        Ok(presence::keys(&self.inner.keys, &target))
    }
}
