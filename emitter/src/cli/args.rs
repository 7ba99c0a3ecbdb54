//! The command's arguments: `emitter --help` is written here.

use std::path::PathBuf;
use std::time::Duration;

use ferrocast_redis::settings::parse_duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use ferrocast_protocol::script;

use super::outcome::EXIT_STATUS;

/// Publish Ferrocast messages through Redis to a room, a user, a client or everyone; move or
/// disconnect sessions; read what clients send upstream.
#[derive(Debug, Parser)]
#[command(name = "emitter", version, after_help = EXIT_STATUS)]
pub struct Cli {
    /// Redis to publish through.
    #[arg(
        long,
        env = "FERROCAST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    pub redis_url: String,
    /// A Redis Cluster to use instead of --redis-url: some of its nodes, comma-separated
    /// (host:port,host:port,...); the others are discovered.
    #[arg(
        long,
        env = "FERROCAST_REDIS_CLUSTER_NODES",
        hide_env_values = true,
        value_delimiter = ',',
        global = true
    )]
    pub redis_cluster_nodes: Vec<String>,
    /// TLS to Redis, for rediss:// URLs and Cluster nodes.
    #[command(flatten)]
    pub redis_tls: ferrocast_redis::TlsFiles,
    /// Redis behind Sentinel.
    #[command(flatten)]
    pub redis_sentinel: ferrocast_redis::sentinel::SentinelArgs,
    /// Key prefix shared with the edges.
    #[arg(long, env = "FERROCAST_PREFIX", default_value = "fc", global = true)]
    pub prefix: String,
    /// Messages kept per target for resuming clients (approximate cap).
    #[arg(long, env = "FERROCAST_HISTORY_LEN", default_value_t = script::DEFAULT_HISTORY_LEN, global = true)]
    pub history_len: u64,
    /// How long a target's history lives after its last publish (e.g. 600s, 10m, 1h).
    #[arg(long, env = "FERROCAST_HISTORY_TTL", default_value = "10m", value_parser = parse_duration, global = true)]
    pub history_ttl: Duration,
    /// Give up on Redis after this long (connecting, or waiting for an answer).
    #[arg(long, env = "FERROCAST_REDIS_TIMEOUT", default_value = "5s", value_parser = parse_duration, global = true)]
    pub redis_timeout: Duration,
    /// How often to retry a publish that found Redis unreachable (waiting 100 ms, then twice as
    /// long each time). A publish fails after retries + 1 attempts.
    #[arg(
        long,
        env = "FERROCAST_REDIS_RETRIES",
        default_value_t = 2,
        global = true
    )]
    pub retries: u32,
    /// Go through this edge's HTTP API instead of Redis: the edge's internal listener,
    /// http://host:port (e.g. a single-node edge, or from a machine that cannot reach Redis).
    /// Works for send (--stdin too: each pipeline of lines one POST /api/batch), join, leave,
    /// disconnect (--user or --client) and presence.
    #[arg(long, env = "FERROCAST_EDGE_URL", global = true)]
    pub edge: Option<String>,
    /// The edge's API key, with --edge (a single-node edge's is ferrocast-dev-api-key).
    #[arg(long, env = "FERROCAST_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish one message (prints its offset), or one per line of standard input (--stdin).
    Send(SendArgs),
    /// Make a user's or a client's sessions join a room (they get `joined` with "by":"server").
    Join(MoveArgs),
    /// Make a user's or a client's sessions leave a room (they get `left` with "by":"server").
    Leave(MoveArgs),
    /// Close the sessions of a user, a client, a room's members or everyone (close code 4010).
    Disconnect(DisconnectArgs),
    /// Print who is present in a room (one JSON object: room and clients), or with --stats how
    /// many clients and users. The room must match the edges' --presence-rooms.
    Presence(PresenceArgs),
    /// Read what clients `send` upstream, as JSON lines on standard output, acknowledging each
    /// once printed. Runs until interrupted, or until --count messages.
    Consume(ConsumeArgs),
}

/// `emitter join` and `emitter leave`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["user", "client"])))]
pub struct MoveArgs {
    /// Every session of this user (a token's `sub`).
    #[arg(long)]
    pub user: Option<String>,
    /// One connection, by the client id from its welcome frame.
    #[arg(long)]
    pub client: Option<String>,
    /// The room.
    #[arg(long)]
    pub room: String,
}

/// `emitter presence`.
#[derive(Debug, Args)]
pub struct PresenceArgs {
    /// The room.
    #[arg(long)]
    pub room: String,
    /// Only count the clients and users present (never reads the member list).
    #[arg(long)]
    pub stats: bool,
}

/// `emitter disconnect`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["user", "client", "room", "all"])))]
pub struct DisconnectArgs {
    /// Every session of this user (a token's `sub`).
    #[arg(long)]
    pub user: Option<String>,
    /// One connection, by the client id from its welcome frame.
    #[arg(long)]
    pub client: Option<String>,
    /// Every member of this room.
    #[arg(long)]
    pub room: Option<String>,
    /// Every connection.
    #[arg(long)]
    pub all: bool,
    /// Close reason the clients see (at most 123 bytes).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Close code, 4010-4999 (4000-4009 have meanings of their own in the protocol).
    #[arg(long, default_value_t = ferrocast_protocol::close::DISCONNECTED)]
    pub code: u16,
}

/// `emitter consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Consumer group: consumers of one group share the messages; each group gets them all.
    #[arg(long)]
    pub group: String,
    /// This consumer's name within the group (e.g. the host name).
    #[arg(long)]
    pub consumer: String,
    /// Exit after printing this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// A message left unacknowledged by a consumer for this long is claimed by another.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub claim_idle: Duration,
    /// Deliveries before a message moves to the dead-letter stream P:{inbox}:dead.
    #[arg(long, default_value_t = 5)]
    pub max_deliveries: u64,
    /// A new group starts with messages sent from now on, not everything in the inbox.
    #[arg(long)]
    pub new_only: bool,
    /// Partitions the inbox is split into: the edges' --inbox-partitions.
    #[arg(long, env = "FERROCAST_INBOX_PARTITIONS", default_value_t = 1)]
    pub inbox_partitions: u16,
}

/// `emitter send`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_STATUS)]
#[command(group(ArgGroup::new("target").required(true).args(["room", "user", "client", "all", "stdin"])))]
#[command(group(ArgGroup::new("payload").args(["data", "data_file"])))]
pub struct SendArgs {
    /// Send to every member of this room.
    #[arg(long)]
    pub room: Option<String>,
    /// Send to every session of this user (a token's `sub`).
    #[arg(long)]
    pub user: Option<String>,
    /// Send to one connection, by the client id from its welcome frame.
    #[arg(long)]
    pub client: Option<String>,
    /// Send to every connection.
    #[arg(long)]
    pub all: bool,
    /// Event name (1-64 bytes of A-Z a-z 0-9 . _ : @ / -).
    #[arg(long, required_unless_present = "stdin", conflicts_with = "stdin")]
    pub event: Option<String>,
    /// The message, as JSON text.
    #[arg(long, conflicts_with = "stdin")]
    pub data: Option<String>,
    /// Read the message's JSON from this file.
    #[arg(long, conflicts_with = "stdin")]
    pub data_file: Option<PathBuf>,
    /// Leave out this client id (repeatable; in --stdin mode applies to every line).
    #[arg(long = "except", value_name = "CLIENT")]
    pub except: Vec<String>,
    /// Read one JSON object per line, e.g. {"room":"chat:1","event":"say","data":{...}}
    /// (targets: "room", "user", "client" or "all":true; optional "except":[..] and "id":UUID,
    /// which makes the publish idempotent: the API's publish body, "data" optional), and publish
    /// each as it arrives (so `tail -f events | emitter send --stdin` works), printing its offset.
    /// Bad lines are reported on stderr with their number and reason, and the rest are still
    /// published; if Redis (or the --edge) becomes unavailable, reading stops and stderr names
    /// the lines not published. A summary line on stderr ends every run.
    #[arg(long)]
    pub stdin: bool,
}
