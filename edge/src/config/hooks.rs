//! Back-end hook flags (docs/protocol.md, part 4): the application decides connects and joins,
//! and hears of lifecycle events through the inbox.

use std::time::Duration;

use clap::{Args, ValueEnum};
use ferrocast_redis::settings::parse_duration;

/// Hook settings.
#[derive(Debug, Clone, Args)]
pub struct HookConfig {
    /// Decide every authentication (auth frame or Authorization header) by POSTing
    /// {"token","client","node","remote","origin"} to this URL (http:// or https://). 200 with
    /// {"user","rooms","pub","send","meta","info","exp"} (the JWT claims' meanings, `user` for
    /// `sub`) accepts; 401 or 403 refuses (4001, or HTTP 401 for a header); a timeout or any
    /// other answer closes with 1013 (HTTP 503 for a header): the back end's outage, not the
    /// user's fault. Tokens may then be any opaque string, and the JWT flags are not used.
    #[arg(long, env = "FERROCAST_CONNECT_HOOK")]
    pub connect_hook: Option<String>,

    /// Decide joins of --join-hook-rooms rooms that the client's claims do not allow by POSTing
    /// {"client","user","meta","room","node"} to this URL (http:// or https://): 200 {"allow":true} joins,
    /// 200 {"allow":false,"reason":"..."} answers FORBIDDEN; a timeout or failure answers
    /// UNAVAILABLE with `retry_after`.
    #[arg(long, env = "FERROCAST_JOIN_HOOK")]
    pub join_hook: Option<String>,

    /// Rooms whose joins --join-hook decides (when the claims do not already allow them),
    /// comma-separated patterns.
    #[arg(long, env = "FERROCAST_JOIN_HOOK_ROOMS", value_delimiter = ',')]
    pub join_hook_rooms: Vec<String>,

    /// For https:// hook URLs: PEM CA certificate(s) the hook's certificate must chain to,
    /// instead of the system's roots. The host name is always checked.
    #[arg(long, env = "FERROCAST_HOOK_CA_FILE", value_name = "FILE")]
    pub hook_ca_file: Option<std::path::PathBuf>,

    /// Sent as `Authorization: Bearer KEY` with every hook request, so the hook can tell the
    /// edges from anyone else.
    #[arg(long, env = "FERROCAST_HOOK_KEY", hide_env_values = true)]
    pub hook_key: Option<String>,

    /// Longest a hook request may take, waiting for a free slot included.
    #[arg(long, env = "FERROCAST_HOOK_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub hook_timeout: Duration,

    /// Hook requests one edge has in flight at once; more wait (within --hook-timeout), so a
    /// slow hook cannot pile up connections or requests. One client address may have a quarter
    /// of them in flight or waiting for connects; its further logins are closed with 1013 (HTTP
    /// 503 for a header) at once, so it cannot make everyone else's wait. Not with
    /// --max-pending-per-ip 0 (behind a proxy every client shares its address).
    #[arg(long, env = "FERROCAST_HOOK_CONCURRENCY", default_value_t = 64)]
    pub hook_concurrency: usize,

    /// Lifecycle events appended to the upstream inbox for workers, comma-separated: any of
    /// connect, disconnect, join, leave (events `$connect`, `$disconnect`, `$join`, `$leave`).
    /// They count against --inbox-max-len like any `send`: at the cap they are dropped (and
    /// counted), never queued without bound. Needs Redis.
    #[arg(
        long,
        env = "FERROCAST_UPSTREAM_LIFECYCLE",
        value_delimiter = ',',
        value_enum
    )]
    pub upstream_lifecycle: Vec<LifecycleKind>,
}

/// A kind of lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum LifecycleKind {
    /// `$connect`: a client authenticated.
    Connect,
    /// `$disconnect`: a connection ended.
    Disconnect,
    /// `$join`: a client joined a room.
    Join,
    /// `$leave`: a client left a room.
    Leave,
}
