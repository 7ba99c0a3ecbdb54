//! Presence flags (docs/protocol.md): which rooms record who is in them, and which tell their
//! members about joins and leaves.

use std::time::Duration;

use clap::Args;
use ferrocast_redis::settings::parse_duration;

/// Presence settings.
#[derive(Debug, Clone, Args)]
pub struct PresenceConfig {
    /// Rooms whose members are recorded for presence (`presence` and `presence_stats` frames, the
    /// emitter, the HTTP API), comma-separated: exact names, or prefixes ending in `*`. Unset:
    /// presence is off and those frames get FORBIDDEN. Each member costs one entry in Redis
    /// beside the room, refreshed about every --presence-ttl/2.
    #[arg(long, env = "FERROCAST_PRESENCE_ROOMS", value_delimiter = ',')]
    pub presence_rooms: Vec<String>,

    /// Rooms (among --presence-rooms) whose members are sent `presence_join` and
    /// `presence_leave` frames, comma-separated patterns. Joins and leaves are batched per
    /// room (one Redis call per room every 50 ms at most), so a mass reconnect costs Redis a
    /// call per room per batch, not one per client; every member still gets one frame per
    /// join or leave, so keep events off for rooms of thousands.
    #[arg(long, env = "FERROCAST_PRESENCE_EVENTS", value_delimiter = ',')]
    pub presence_events: Vec<String>,

    /// How long a member stays present without a refresh: the clients of an edge that was
    /// killed vanish from presence within this. Edges refresh their members about every half
    /// of it, spread over that time.
    #[arg(long, env = "FERROCAST_PRESENCE_TTL", default_value = "60s", value_parser = parse_duration)]
    pub presence_ttl: Duration,

    /// Most clients a `presence` answer lists; a room with more gets TOO_LARGE (use
    /// `presence_stats`).
    #[arg(long, env = "FERROCAST_PRESENCE_MAX", default_value_t = 1000)]
    pub presence_max: u64,
}
