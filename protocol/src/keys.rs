//! Targets and the Redis key names derived from them.
//!
//! Every key carries its target inside a hash tag (`P:{T}...`), so a target's stream, epoch and
//! live channel always share one Redis Cluster slot and one Lua script can touch all three.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::names::{self, NameError};

/// Who a message is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every member of a room.
    Room(String),
    /// Every session of a user (the token's `sub`).
    User(String),
    /// One connection, by the client id from its `welcome`.
    Client(String),
    /// Every connection.
    All,
}

/// The scope of a target, as it appears in envelopes and `msg` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// A room.
    Room,
    /// A user's sessions.
    User,
    /// One connection.
    Client,
    /// Everyone.
    All,
}

impl Scope {
    /// The scope's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Room => "room",
            Scope::User => "user",
            Scope::Client => "client",
            Scope::All => "all",
        }
    }
}

impl Target {
    /// Builds a target from its scope and name (empty for `all`), checking the name.
    pub fn new(scope: Scope, name: &str) -> Result<Target, NameError> {
        match scope {
            Scope::Room => {
                names::validate_room(name)?;
                Ok(Target::Room(name.to_owned()))
            }
            Scope::User if name.is_empty() => Err(NameError::Length {
                what: "user",
                max: usize::MAX,
            }),
            Scope::User => Ok(Target::User(name.to_owned())),
            Scope::Client => {
                names::validate_client(name)?;
                Ok(Target::Client(name.to_owned()))
            }
            Scope::All => Ok(Target::All),
        }
    }

    /// The target's scope.
    pub fn scope(&self) -> Scope {
        match self {
            Target::Room(_) => Scope::Room,
            Target::User(_) => Scope::User,
            Target::Client(_) => Scope::Client,
            Target::All => Scope::All,
        }
    }

    /// The name inside the scope: room name, user id, client id, or "" for `all`.
    pub fn name(&self) -> &str {
        match self {
            Target::Room(n) | Target::User(n) | Target::Client(n) => n,
            Target::All => "",
        }
    }

    /// The target's canonical key (the text inside the hash tag): `room:<name>`, `user:<id>`,
    /// `client:<id>` or `all`. A user id with a byte outside the name set, or longer than a room
    /// name may be, is written `user64:<base64url>` so it can never break the hash tag.
    pub fn key(&self) -> TargetKey {
        TargetKey(Arc::from(match self {
            Target::Room(n) => concat(&["room:", n]),
            Target::User(id) if names::validate_room(id).is_ok() => concat(&["user:", id]),
            Target::User(id) => format!("user64:{}", URL_SAFE_NO_PAD.encode(id)),
            Target::Client(id) => concat(&["client:", id]),
            Target::All => "all".to_owned(),
        }))
    }
}

/// A target's canonical key, as used inside Redis key names and by an edge's registry. Shared
/// text: an edge keeps each target's key in several maps (membership, subscriptions, positions),
/// and a clone is a count, not a copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey(Arc<str>);

impl TargetKey {
    /// A key from its text, unchecked (for tests and for keys read back from Redis).
    pub fn from_raw(text: &str) -> TargetKey {
        TargetKey(Arc::from(text))
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's scope, and the room name for a room (what a `gap` frame names).
    pub fn scope_and_room(&self) -> (Scope, Option<&str>) {
        match self.0.split_once(':') {
            Some(("room", room)) => (Scope::Room, Some(room)),
            Some(("user" | "user64", _)) => (Scope::User, None),
            Some(("client", _)) => (Scope::Client, None),
            _ => (Scope::All, None),
        }
    }
}

impl fmt::Display for TargetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "fc";

/// Key names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(DEFAULT_PREFIX)
    }
}

impl Keys {
    /// Key names under `prefix`. The prefix must not contain `{` or `}`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// Whether `prefix` can be used: non-empty and no byte that would break a hash tag.
    pub fn is_valid_prefix(prefix: &str) -> bool {
        !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// History stream `P:{T}`.
    pub fn stream(&self, target: &TargetKey) -> String {
        concat(&[&self.prefix, ":{", &target.0, "}"])
    }

    /// Epoch of the history stream, `P:{T}:epoch`.
    pub fn epoch(&self, target: &TargetKey) -> String {
        concat(&[&self.prefix, ":{", &target.0, "}:epoch"])
    }

    /// Idempotency key of a publisher-chosen message id, `P:{T}:id:<uuid>`.
    pub fn idempotency(&self, target: &TargetKey, id: &uuid::Uuid) -> String {
        let mut text = uuid::Uuid::encode_buffer();
        let id = id.hyphenated().encode_lower(&mut text);
        concat(&[&self.prefix, ":{", &target.0, "}:id:", id])
    }

    /// Live channel `P:{T}:live`.
    pub fn live(&self, target: &TargetKey) -> String {
        concat(&[&self.prefix, ":{", &target.0, "}:live"])
    }

    /// The directory of live edges `P:{nodes}`: a sorted set of node ids by when each last
    /// reported (Unix ms), beside their statuses ([`node`](Keys::node)), all in one slot.
    pub fn nodes(&self) -> String {
        format!("{}:{{nodes}}", self.prefix)
    }

    /// Node `id`'s last status `P:{nodes}:<id>`, expiring unless reported again.
    pub fn node(&self, id: &str) -> String {
        format!("{}:{{nodes}}:{id}", self.prefix)
    }

    /// Upstream inbox stream `P:{inbox}`.
    pub fn inbox(&self) -> String {
        format!("{}:{{inbox}}", self.prefix)
    }

    /// Dead-letter stream `P:{inbox}:dead`: inbox entries that failed too often, or could not be
    /// decoded, moved aside by workers so they stop blocking the others.
    pub fn dead_letter(&self) -> String {
        format!("{}:{{inbox}}:dead", self.prefix)
    }

    /// Partition `i` of an inbox split into `n`: `P:{inbox}` when `n` is 1, else
    /// `P:{inbox:i}`, each in a slot of its own on a Redis Cluster.
    pub fn inbox_partition(&self, i: u16, n: u16) -> String {
        if n <= 1 {
            self.inbox()
        } else {
            format!("{}:{{inbox:{i}}}", self.prefix)
        }
    }

    /// The partition of `n` that a client's upstream messages go to: always the same one, so
    /// they stay in order (FNV-1a of the client id).
    pub fn inbox_partition_of(client: &str, n: u16) -> u16 {
        let hash = client.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        (hash % u64::from(n.max(1))) as u16
    }

    /// Where user `user`'s `send` or `rpc` with the client-chosen id `id` is remembered, beside
    /// partition `i` of `n` (in its slot, so the append and the memory are one script).
    pub fn inbox_request(&self, i: u16, n: u16, user: &str, id: &str) -> String {
        format!(
            "{}:ids:{}:{user}:{id}",
            self.inbox_partition(i, n),
            user.len()
        )
    }

    /// Where the reply to user `user`'s `rpc` with the client-chosen id `id` is kept for the
    /// call's retries, in the same slot as the memory of the id.
    pub fn inbox_reply(&self, i: u16, n: u16, user: &str, id: &str) -> String {
        let mut key = self.inbox_request(i, n, user, id);
        key.push_str(":reply");
        key
    }

    /// The dead-letter stream of partition `i` of `n`, in the partition's slot.
    pub fn dead_letter_partition(&self, i: u16, n: u16) -> String {
        if n <= 1 {
            self.dead_letter()
        } else {
            format!("{}:{{inbox:{i}}}:dead", self.prefix)
        }
    }

    /// The target of a live channel name, or `None` if the name is not one of ours.
    pub fn target_of_live(&self, channel: &[u8]) -> Option<TargetKey> {
        let rest = channel.strip_prefix(self.prefix.as_bytes())?;
        let inner = rest.strip_prefix(b":{")?.strip_suffix(b"}:live")?;
        let inner = std::str::from_utf8(inner).ok()?;
        if inner.is_empty() || inner.contains(['{', '}']) {
            return None;
        }
        Some(TargetKey(Arc::from(inner)))
    }
}

/// `parts` joined, in a string of exactly their length: key names are built for every
/// subscription and read, and `format!` (which guesses the length and grows the string as it
/// goes) was a tenth of the edge's instructions per connection set up.
fn concat(parts: &[&str]) -> String {
    let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        text.push_str(part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_share_the_hash_tag() {
        let keys = Keys::new("fc");
        let t = Target::Room("chat:42".into()).key();
        assert_eq!(keys.stream(&t), "fc:{room:chat:42}");
        assert_eq!(keys.epoch(&t), "fc:{room:chat:42}:epoch");
        assert_eq!(keys.live(&t), "fc:{room:chat:42}:live");
        let id = uuid::Uuid::from_u128(0x0190c0de_0000_7000_8000_00000000002a);
        assert_eq!(
            keys.idempotency(&t, &id),
            "fc:{room:chat:42}:id:0190c0de-0000-7000-8000-00000000002a"
        );
        assert_eq!(Target::User("u1".into()).key().as_str(), "user:u1");
        assert_eq!(Target::Client("c-1".into()).key().as_str(), "client:c-1");
        assert_eq!(keys.target_of_live(b"fc:{room:chat:42}:live"), Some(t));
        assert_eq!(keys.target_of_live(b"xx:{room:a}:live"), None);
        assert_eq!(keys.target_of_live(b"fc:{a}b}:live"), None);
        assert_eq!(Target::All.key().as_str(), "all");
    }

    #[test]
    fn inbox_partitions() {
        let keys = Keys::new("fc");
        assert_eq!(keys.inbox_partition(0, 1), "fc:{inbox}");
        assert_eq!(keys.inbox_partition(2, 4), "fc:{inbox:2}");
        assert_eq!(keys.dead_letter_partition(2, 4), "fc:{inbox:2}:dead");
        let spread: std::collections::HashSet<u16> = (0..100)
            .map(|i| Keys::inbox_partition_of(&format!("client-{i}"), 4))
            .collect();
        assert_eq!(spread.len(), 4);
        assert_eq!(Keys::inbox_partition_of("c", 1), 0);
    }

    #[test]
    fn odd_user_ids_are_encoded() {
        assert_eq!(Target::User("7".into()).key().as_str(), "user:7");
        let odd = Target::User("a}b {c".into()).key();
        assert!(odd.as_str().starts_with("user64:"));
        assert!(!odd.as_str()[7..].contains(['{', '}', ' ']));
        // An encoded id never collides with a plain one: the scopes differ.
        assert_ne!(Target::User("user64:x".into()).key(), odd);
    }
}
