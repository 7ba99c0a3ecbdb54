//! Presence (v1.1): who is in a room, across every edge.
//!
//! Each edge records its members of a room in four keys beside the room's history (same hash
//! tag, so one slot on a Redis Cluster): a hash of client → stored member, a sorted set of
//! client → expiry, a sorted set of user → latest expiry and a hash of user → clients present.
//! Edges refresh their members' expiries on a timer and readers count only unexpired entries, so
//! a killed edge's clients vanish within the TTL with nobody cleaning up; the next update of the
//! room (any edge's) removes them for good and reports them as left.
//!
//! Edges tell each other about joins and leaves with a [`PresenceEvents`] batch published on the
//! room's live channel behind [`LIVE_MARK`]: not a message, so no offset and no history.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::keys::{Keys, TargetKey};

/// The update script: upserts, removals and the cleanup of expired entries of one room.
pub const UPDATE_SCRIPT: &str = include_str!("update.lua");
/// The list script: unexpired members, unless there are more than asked for.
pub const LIST_SCRIPT: &str = include_str!("list.lua");
/// The stats script: unexpired clients and users, counted without reading members.
pub const STATS_SCRIPT: &str = include_str!("stats.lua");

/// What starts a live-channel payload that is a presence batch rather than a message.
pub const LIVE_MARK: &[u8] = b"p ";

/// Most expired entries one update removes: a dead edge's thousands of clients are cleaned up
/// over several updates rather than in one long script.
pub const CLEANUP_LIMIT: usize = 200;

/// Largest `info` claim shown through presence, encoded, in bytes.
pub const MAX_INFO: usize = 1024;

/// The four presence keys of `room`'s target: members, expiries, users, user counts.
pub fn keys(keys: &Keys, room: &TargetKey) -> [String; 4] {
    let base = keys.stream(room);
    [
        format!("{base}:presence"),
        format!("{base}:presence:exp"),
        format!("{base}:presence:users"),
        format!("{base}:presence:count"),
    ]
}

/// A client present in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceMember {
    /// Its client id.
    pub client: String,
    /// Its user (the token's `sub`).
    pub user: String,
    /// The token's `info` claim, as JSON text.
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    pub info: Option<Vec<u8>>,
}

/// A stored member could not be read.
#[derive(Debug, Error)]
#[error("malformed presence entry")]
pub struct MalformedMember;

/// How a member is stored (the members hash's value): `<n>:<user><n>:<node><info JSON>`, so the
/// update script can find the user without a decoder.
pub fn store(user: &str, node: &str, info: Option<&[u8]>) -> Vec<u8> {
    let info = info.unwrap_or_default();
    let mut out = Vec::with_capacity(user.len() + node.len() + info.len() + 12);
    for part in [user, node] {
        out.extend_from_slice(part.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(info);
    out
}

/// Reads a stored member: user, node and `info` (absent when empty).
pub fn load(stored: &[u8]) -> Result<(String, String, Option<Vec<u8>>), MalformedMember> {
    fn part(bytes: &[u8]) -> Result<(String, &[u8]), MalformedMember> {
        let colon = bytes
            .iter()
            .position(|&b| b == b':')
            .ok_or(MalformedMember)?;
        let len: usize = std::str::from_utf8(&bytes[..colon])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or(MalformedMember)?;
        let rest = &bytes[colon + 1..];
        let text = rest.get(..len).ok_or(MalformedMember)?;
        let text = String::from_utf8(text.to_vec()).map_err(|_| MalformedMember)?;
        Ok((text, &rest[len..]))
    }
    let (user, rest) = part(stored)?;
    let (node, info) = part(rest)?;
    Ok((user, node, (!info.is_empty()).then(|| info.to_vec())))
}

/// A client that left a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceLeft {
    /// Its client id.
    pub client: String,
    /// Its user.
    pub user: String,
}

/// Joins and leaves of one room that one update made, told to every edge at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEvents {
    /// Clients that joined.
    #[serde(default)]
    pub join: Vec<PresenceMember>,
    /// Clients that left (or whose edge stopped refreshing them).
    #[serde(default)]
    pub leave: Vec<PresenceLeft>,
}

impl PresenceEvents {
    /// Whether there is nothing to tell.
    pub fn is_empty(&self) -> bool {
        self.join.is_empty() && self.leave.is_empty()
    }

    /// The live-channel payload: [`LIVE_MARK`] and the batch as a MessagePack map.
    pub fn to_live(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        let mut out = LIVE_MARK.to_vec();
        rmp_serde::encode::write_named(&mut out, self)?;
        Ok(out)
    }

    /// Decodes a batch (the payload after [`LIVE_MARK`]).
    pub fn decode(bytes: &[u8]) -> Result<PresenceEvents, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

/// Unexpired clients and users of a room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceStats {
    /// Clients present.
    pub clients: u64,
    /// Distinct users among them.
    pub users: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_members_round_trip_whatever_the_user_holds() {
        for (user, node, info) in [
            ("7", "edge-1", Some(&br#"{"name":"Ada"}"#[..])),
            ("a:b:12:c", "", None),
            ("ünï\u{0}", "n", Some(b"1")),
        ] {
            let stored = store(user, node, info);
            let (u, n, i) = load(&stored).expect("load");
            assert_eq!((u.as_str(), n.as_str(), i.as_deref()), (user, node, info));
        }
        for bad in [&b""[..], b"5:ab", b"x:a", b"1:a", b"1:a9:n"] {
            assert!(load(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn batches_round_trip_behind_their_mark() {
        let events = PresenceEvents {
            join: vec![PresenceMember {
                client: "c1".into(),
                user: "u".into(),
                info: Some(b"{}".to_vec()),
            }],
            leave: vec![PresenceLeft {
                client: "c2".into(),
                user: "v".into(),
            }],
        };
        let live = events.to_live().expect("encode");
        let body = live.strip_prefix(LIVE_MARK).expect("mark");
        assert_eq!(PresenceEvents::decode(body).expect("decode"), events);
    }
}
