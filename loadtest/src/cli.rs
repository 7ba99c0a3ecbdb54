//! Command line: options every scenario shares, and one subcommand per scenario.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ferrocast_redis::settings::parse_duration;

/// Drive many real WebSocket clients against Ferrocast edges and measure latency, loss and the
/// edge's cost. Defaults suit a 2-core machine; flags scale every scenario up.
///
/// Edge figures (memory, CPU) need --edge-pid: the harness reads /proc/<pid> of that process.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
pub struct Cli {
    /// Options for every scenario.
    #[command(flatten)]
    pub common: Common,
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Options for every scenario.
#[derive(Debug, Args)]
pub struct Common {
    /// Edge WebSocket URL; repeat to spread clients over several edges.
    #[arg(long = "url", global = true, default_value = "ws://127.0.0.1:8080/ws")]
    pub urls: Vec<String>,
    /// HS256 secret to mint client tokens with (the edges' --jwt-secret).
    #[arg(
        long,
        global = true,
        env = "FERROCAST_JWT_SECRET",
        default_value = "ferrocast-dev-secret",
        hide_env_values = true
    )]
    pub jwt_secret: String,
    /// Redis the edges use, for scenarios that publish through the emitter.
    #[arg(
        long,
        global = true,
        env = "FERROCAST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// A Redis Cluster the edges use instead (some nodes, host:port,...): scenarios then publish
    /// through it.
    #[arg(
        long,
        global = true,
        env = "FERROCAST_REDIS_CLUSTER_NODES",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub redis_cluster_nodes: Vec<String>,
    /// Certificates for rediss:// URLs.
    #[command(flatten)]
    pub redis_tls: ferrocast_redis::TlsFiles,
    /// Key prefix the edges use.
    #[arg(long, global = true, env = "FERROCAST_PREFIX", default_value = "fc")]
    pub prefix: String,
    /// Process id of the edge, to read its memory and CPU from /proc.
    #[arg(long, global = true)]
    pub edge_pid: Option<u32>,
    /// Connections opened at once while setting up.
    #[arg(long, global = true, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Local source addresses (127.0.0.1, 127.0.0.2, ...) to spread client connections over;
    /// each holds at most ~28k connections to one edge port.
    #[arg(long, global = true, default_value_t = 1)]
    pub source_ips: u8,
    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Clients of the `idle` and `fanout` scenarios set payload encryption up (PROTOCOL.md
    /// part E: an `encrypt` frame after the header authentication) and open what they receive.
    #[arg(long, global = true)]
    pub encrypt: bool,
}

/// How a scenario publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishVia {
    /// The emitter library, through Redis.
    Redis,
    /// `publish` frames on a WebSocket connection of the harness's own.
    Ws,
}

/// Scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// N authenticated connections, each in a room, doing nothing: the edge's memory per
    /// connection.
    Idle {
        /// Connections.
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        /// Rooms they are spread over.
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// How long to hold them before measuring.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        hold: Duration,
    },
    /// M members in one presence room (edge: --presence-rooms 'presence:*'): memory per member,
    /// Redis calls per minute while they stay, `presence_stats` round trips; with --reconnect,
    /// every member then drops and reconnects at once (add --presence-events 'presence:*' to
    /// count the pushes).
    Presence {
        /// Members of the room.
        #[arg(long, default_value_t = 10_000)]
        members: usize,
        /// How long they stay while Redis calls are counted.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        hold: Duration,
        /// `presence_stats` round trips to time.
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        /// Then drop every member and reconnect them all at once.
        #[arg(long)]
        reconnect: bool,
    },
    /// R rooms of M members, messages published through Redis at P per second: deliveries per
    /// second, end-to-end latency, loss, duplicates, order, and the edge's CPU per delivery.
    Fanout {
        /// Rooms.
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// Members per room.
        #[arg(long, default_value_t = 1000)]
        members: usize,
        /// Messages published per second, over all rooms.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// How long to publish.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Padding bytes per message.
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// Extra members of the first room that never read (not counted in the figures): to
        /// compare everyone else's latency with and without them.
        #[arg(long, default_value_t = 0)]
        stalled: usize,
        /// How messages are published: through Redis with the emitter, or as `publish` frames
        /// on a client connection (for a single-node edge started with a high --rate, or the
        /// baseline server).
        #[arg(long, value_enum, default_value_t = PublishVia::Redis)]
        publish_via: PublishVia,
    },
    /// N users, one connection each; messages to random users through Redis at P per second:
    /// latency, loss and the edge's CPU per message.
    Direct {
        /// Users (connections).
        #[arg(long, default_value_t = 2000)]
        users: usize,
        /// Messages published per second.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// How long to publish.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
    },
    /// C clients making `rpc` calls at R per second in all, answered at once by workers in this
    /// process (the emitter's Inbox and reply, through --redis-url): round-trip latency,
    /// timeouts, and the edge's CPU per call. The edge needs --upstream-events 'loadtest.*',
    /// and --rate, --burst, --upstream-rate and --upstream-burst above each client's share.
    Rpc {
        /// Clients (connections), each making an equal share of the calls.
        #[arg(long, default_value_t = 100)]
        clients: usize,
        /// Calls per second, over all clients.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// How long to call.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Worker tasks (inbox consumers) answering the calls.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Each call's `timeout`, milliseconds.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
    /// Clients that connect, authenticate, join a room, leave and disconnect, over and over:
    /// how many such cycles per second the edge takes, and how long each takes.
    Churn {
        /// Cycles running at once.
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// How long to churn.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
    },
    /// Steady publishing to one room while edges are killed and restarted by the given shell
    /// commands; clients resume from their last offset on any edge. Reports loss (0 expected
    /// within the history window), duplicates, and how long reconnecting took.
    Chaos {
        /// Clients, spread over the --url edges.
        #[arg(long, default_value_t = 200)]
        clients: usize,
        /// Messages published per second.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// How long to publish.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        duration: Duration,
        /// Shell command that kills an edge, e.g. 'kill -9 $(cat /tmp/edge-a.pid)'. Repeat (with
        /// a --start-cmd each) to kill several edges in turn.
        #[arg(long = "kill-cmd")]
        kill_cmds: Vec<String>,
        /// Shell command that starts the matching edge again (it must return, e.g. by starting
        /// the edge in the background).
        #[arg(long = "start-cmd")]
        start_cmds: Vec<String>,
        /// Time between kills.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        every: Duration,
        /// How long a killed edge stays down.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        down_for: Duration,
    },
    /// The delivery contract under faults (docs/guarantees.md): starts its own redis-server and
    /// edges (behind proxies it controls), subscribers that resume, and publishers (the library
    /// and the HTTP API) numbering every message; injects a seeded schedule of faults (edges
    /// killed, paused, drained; Redis killed or emptied; edge-Redis and client links reset,
    /// black-holed or slowed); then checks every subscriber's record against what was
    /// acknowledged. Fails, naming the seed and the first violation, on any silent loss,
    /// duplicate or reorder. Ignores --url and --redis-url.
    Campaign {
        /// Seed of the fault schedule: the same seed injects the same faults.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How long to inject faults.
        #[arg(long, default_value = "2m", value_parser = parse_duration)]
        duration: Duration,
        /// Edges to run.
        #[arg(long, default_value_t = 3)]
        edges: usize,
        /// Subscribers, each in three rooms, its user's scope and `all`.
        #[arg(long, default_value_t = 6)]
        subscribers: usize,
        /// Average time between two faults (each lasts up to about nine seconds, so they
        /// overlap).
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        every: Duration,
        /// The edge binary (default: `edge` next to this one).
        #[arg(long)]
        edge_binary: Option<std::path::PathBuf>,
        /// Inject only these kinds of fault (names as in the report's faults_by_kind,
        /// comma-separated), e.g. to study one.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// A reconnect storm: every client on the first --url edge, in one room, under steady
    /// publishing; --kill-cmd kills that edge, and every client reconnects to the other --url
    /// edges with the official client's back-off, resuming from its last offset. Reports how
    /// long until all were back, the peak of Redis commands per second and the surviving edge's
    /// CPU (--edge-pid) meanwhile, and loss, duplicates and order.
    Storm {
        /// Clients, all on the first edge to begin with.
        #[arg(long, default_value_t = 5000)]
        clients: usize,
        /// Messages published per second to their room.
        #[arg(long, default_value_t = 50)]
        rate: u64,
        /// Publishing before the kill.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        warmup: Duration,
        /// Publishing after every client is back.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        after: Duration,
        /// Shell command that kills the first edge, e.g. 'kill -9 1234'.
        #[arg(long)]
        kill_cmd: String,
        /// The client's back-off: first wait, and the most it grows to (@ferrocast/client's
        /// defaults).
        #[arg(long, default_value = "500ms", value_parser = parse_duration)]
        backoff_min: Duration,
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        backoff_max: Duration,
    },
    /// Not a scenario: runs the baseline server, a minimal tokio-tungstenite room fan-out with
    /// no Redis, auth, history or limits, to run `fanout --publish-via ws` against (with
    /// --edge-pid set to this process) and compare the edge's cost with.
    BaselineServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9100")]
        listen: std::net::SocketAddr,
    },
    /// Misbehaving clients (never authenticating, flooding, never reading) against one edge,
    /// with a well-behaved canary: the edge's peak memory, and the canary's ping latency.
    Abuse {
        /// Connections that upgrade and then never authenticate (they reconnect when closed).
        #[arg(long, default_value_t = 500)]
        silent: usize,
        /// Clients publishing 16 KiB messages as fast as they can (they reconnect when closed).
        #[arg(long, default_value_t = 20)]
        flooders: usize,
        /// Clients in the flooded room that never read.
        #[arg(long, default_value_t = 100)]
        stalled: usize,
        /// Clients that, halfway through, join the flooded room with `since` its first message
        /// (asking for its whole history) and never read the replay.
        #[arg(long, default_value_t = 0)]
        replayers: usize,
        /// How long the abuse lasts.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
    },
}
