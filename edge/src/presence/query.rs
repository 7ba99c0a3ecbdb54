//! The presence queries (who is in a room, and how many): one set of rules for the client's
//! `presence` and `presence_stats` frames and the HTTP API's routes. Each first applies what this
//! edge has pending for the room, so an answer includes the asking connection's own join.

use ferrocast_emitter::PresenceList;
use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::presence::{PresenceMember, PresenceStats};

use super::{Presence, flush};
use crate::bus::{Bus, PresenceStore};
use crate::refusal::Refusal;

/// Refuses a room that records no presence.
pub fn tracked(presence: &Presence, room: &str) -> Result<(), Refusal> {
    if presence.tracks(room) {
        return Ok(());
    }
    Err(Refusal::new(
        ErrorCode::Forbidden,
        "presence is not on for this room (--presence-rooms)",
    ))
}

/// The clients present in `room` (one that records presence), unless there are more than
/// `--presence-max`: then `TOO_LARGE`, pointing at the counts.
pub async fn list<B: Bus>(
    presence: &Presence,
    bus: &B,
    room: &str,
) -> Result<Vec<PresenceMember>, Refusal> {
    flush::flush(presence, bus, Some(room)).await?;
    let max = presence.max;
    match bus.presence().list(room, max).await? {
        PresenceList::Members(members) => Ok(members),
        PresenceList::TooMany(n) => Err(Refusal::new(
            ErrorCode::TooLarge,
            format!("{n} clients present; at most {max} are listed (use presence_stats)"),
        )),
    }
}

/// How many clients and users are present in `room` (one that records presence).
pub async fn stats<B: Bus>(
    presence: &Presence,
    bus: &B,
    room: &str,
) -> Result<PresenceStats, Refusal> {
    flush::flush(presence, bus, Some(room)).await?;
    Ok(bus.presence().stats(room).await?)
}
