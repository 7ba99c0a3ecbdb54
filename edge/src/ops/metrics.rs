//! Prometheus metrics, served at `/metrics` in the text format.
//!
//! One set per process (an edge is one process), reachable from anywhere through [`metrics()`]
//! so the hot paths update an atomic and move on: no registry lookups per message.

use std::sync::LazyLock;

use parking_lot::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use super::labels::{
    ApiLabel, CodeLabel, DROP_REASONS, GroupLabel, HookLabel, LIFECYCLE_DROP_REASONS, ReasonLabel,
};

/// Every metric an edge exports.
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections (authenticated or not).
    pub connections: Gauge,
    /// Connections upgraded.
    pub connections_opened: Counter,
    /// Connections closed, by close code (1006: ended without a close frame; `other`: a code
    /// with no meaning in the protocol, e.g. an application's own).
    pub connections_closed: Family<CodeLabel, Counter>,
    /// Upgrade or authentication refusals, by reason.
    pub auth_failures: Family<ReasonLabel, Counter>,
    /// Connections refused before the upgrade, by reason (limits, origin).
    pub refused: Family<ReasonLabel, Counter>,
    /// Room memberships across all connections.
    pub room_memberships: Gauge,
    /// Targets the bus is subscribed to.
    pub subscribed_targets: Gauge,
    /// Messages received from the bus (live or replayed after a reconnect).
    pub bus_messages: Counter,
    /// Message frames written to sockets.
    pub deliveries: Counter,
    /// Frames dropped, by reason: full queues, undecodable envelopes, duplicates, data an
    /// encoding cannot carry (`unencodable`).
    pub frames_dropped: Family<ReasonLabel, Counter>,
    /// Connections closed as slow consumers (4009).
    pub slow_consumer_closes: Counter,
    /// Outbound queue length seen when a connection starts writing a burst (frames the fan-out
    /// wrote directly never enter a queue).
    pub outbound_queue_depth: Histogram,
    /// Reconnections of the bus to Redis.
    pub bus_reconnects: Counter,
    /// Publish time (the envelope's `ts`) to socket write, seconds: one observation per message
    /// the fan-out wrote directly (when its last direct write was handed to the kernel), and
    /// one per queued burst a connection wrote, for its first (longest-waiting) message.
    pub delivery_latency: Histogram,
    /// Inbound frames refused by the rate limit.
    pub rate_limited: Counter,
    /// Client `send` frames appended to the upstream inbox.
    pub upstream_appends: Counter,
    /// Workers' control messages (join, leave, disconnect) applied to sessions.
    pub controls_applied: Counter,
    /// Client `rpc` frames appended to the upstream inbox (v1.2).
    pub rpc_calls: Counter,
    /// Workers' replies (answers and refusals) delivered to the calling connection.
    pub rpc_replies: Counter,
    /// Calls answered `TIMEOUT`: no reply within their timeout.
    pub rpc_timeouts: Counter,
    /// Replies dropped: their call had timed out, or their client was gone.
    pub rpc_late_replies: Counter,
    /// Presence batches (joins, leaves, refreshes of one room) applied to the bus.
    pub presence_updates: Counter,
    /// HTTP API requests, by route and status.
    pub api_requests: Family<ApiLabel, Counter>,
    /// Hook requests, by hook and outcome.
    pub hook_requests: Family<HookLabel, Counter>,
    /// Hook request durations, seconds, by hook and outcome.
    pub hook_duration: Family<HookLabel, Histogram>,
    /// Lifecycle events not appended to the inbox, by reason.
    pub lifecycle_dropped: Family<ReasonLabel, Counter>,
    /// Entries the upstream inbox streams hold (read every few seconds).
    pub inbox_entries: Gauge,
    /// Per consumer group, inbox entries not delivered to it yet (read every few seconds).
    pub inbox_lag: Family<GroupLabel, Gauge>,
    /// 1 while `/readyz` would answer 200, else 0 (read when rendered).
    pub ready: Gauge,
    /// 1 while the bus is connected to Redis and caught up, else 0 (read when rendered; always
    /// 1 on the in-process bus).
    pub bus_connected: Gauge,
    /// `--max-connections`, so that the connection count can be compared with it.
    pub max_connections: Gauge,
    /// Presence batches the bus refused (they are retried): joins, leaves or refreshes of one
    /// room not recorded in Redis yet.
    pub presence_errors: Counter,
    /// `--replay-memory`: bytes of history replay the edge holds at once.
    pub replay_budget_bytes: Gauge,
    /// Bytes of the replay budget free now (read when rendered).
    pub replay_budget_free_bytes: Gauge,
    /// Replay pages that found the replay budget spent and had to wait for a share.
    pub replay_budget_waits: Counter,
    /// Replays and history pages that found no share of the budget within their wait: cut
    /// short with a `gap`, or refused `UNAVAILABLE`.
    pub replay_budget_timeouts: Counter,
    /// Reads the edge's state into the gauges above when the metrics are rendered, so that a
    /// scrape sees it as it is then, without a task polling it.
    state: Mutex<Option<StateProbe>>,
}

/// Sets the gauges that reflect the edge's state (see [`Metrics::watch_state`]).
pub type StateProbe = Box<dyn Fn(&Metrics) + Send + Sync>;

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ferrocast");
        let m = Metrics {
            connections: Gauge::default(),
            connections_opened: Counter::default(),
            connections_closed: Family::default(),
            auth_failures: Family::default(),
            refused: Family::default(),
            room_memberships: Gauge::default(),
            subscribed_targets: Gauge::default(),
            bus_messages: Counter::default(),
            deliveries: Counter::default(),
            frames_dropped: Family::default(),
            slow_consumer_closes: Counter::default(),
            outbound_queue_depth: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
            bus_reconnects: Counter::default(),
            delivery_latency: Histogram::new(exponential_buckets(0.000_1, 2.5, 12)),
            rate_limited: Counter::default(),
            upstream_appends: Counter::default(),
            controls_applied: Counter::default(),
            rpc_calls: Counter::default(),
            rpc_replies: Counter::default(),
            rpc_timeouts: Counter::default(),
            rpc_late_replies: Counter::default(),
            presence_updates: Counter::default(),
            api_requests: Family::default(),
            hook_requests: Family::default(),
            hook_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_5, 2.5, 12))
            }),
            lifecycle_dropped: Family::default(),
            inbox_entries: Gauge::default(),
            inbox_lag: Family::default(),
            ready: Gauge::default(),
            bus_connected: Gauge::default(),
            max_connections: Gauge::default(),
            presence_errors: Counter::default(),
            replay_budget_bytes: Gauge::default(),
            replay_budget_free_bytes: Gauge::default(),
            replay_budget_waits: Counter::default(),
            replay_budget_timeouts: Counter::default(),
            state: Mutex::new(None),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        registry.register(
            "connections_opened",
            "WebSocket connections upgraded",
            m.connections_opened.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections closed, by close code",
            m.connections_closed.clone(),
        );
        registry.register(
            "auth_failures",
            "Authentication failures, by reason",
            m.auth_failures.clone(),
        );
        registry.register(
            "refused",
            "Connections refused before the upgrade, by reason",
            m.refused.clone(),
        );
        registry.register(
            "room_memberships",
            "Room memberships of open connections",
            m.room_memberships.clone(),
        );
        registry.register(
            "subscribed_targets",
            "Targets the bus is subscribed to",
            m.subscribed_targets.clone(),
        );
        registry.register(
            "bus_messages",
            "Messages received from the bus",
            m.bus_messages.clone(),
        );
        registry.register(
            "deliveries",
            "Message frames written to sockets",
            m.deliveries.clone(),
        );
        registry.register(
            "frames_dropped",
            "Frames dropped, by reason",
            m.frames_dropped.clone(),
        );
        registry.register(
            "slow_consumer_closes",
            "Connections closed as slow consumers",
            m.slow_consumer_closes.clone(),
        );
        registry.register(
            "outbound_queue_depth",
            "Outbound queue length when a write burst starts",
            m.outbound_queue_depth.clone(),
        );
        registry.register(
            "bus_reconnects",
            "Reconnections of the bus to Redis",
            m.bus_reconnects.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Time from publish to socket write",
            m.delivery_latency.clone(),
        );
        registry.register(
            "rate_limited",
            "Inbound frames refused by the rate limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "upstream_appends",
            "Client send frames appended to the inbox",
            m.upstream_appends.clone(),
        );
        registry.register(
            "presence_updates",
            "Presence batches (one room's joins, leaves or refreshes) applied to the bus",
            m.presence_updates.clone(),
        );
        registry.register(
            "api_requests",
            "HTTP API requests, by route and status",
            m.api_requests.clone(),
        );
        registry.register(
            "hook_requests",
            "Hook requests, by hook (connect, join) and outcome (answered, failed, timeout, unreachable)",
            m.hook_requests.clone(),
        );
        registry.register(
            "hook_duration_seconds",
            "Hook request durations, by hook and outcome",
            m.hook_duration.clone(),
        );
        registry.register(
            "lifecycle_dropped",
            "Lifecycle events not appended to the inbox, by reason",
            m.lifecycle_dropped.clone(),
        );
        registry.register(
            "controls_applied",
            "Workers' control messages (join, leave, disconnect) applied to sessions",
            m.controls_applied.clone(),
        );
        registry.register(
            "rpc_calls",
            "Client rpc frames appended to the inbox",
            m.rpc_calls.clone(),
        );
        registry.register(
            "rpc_replies",
            "Workers' rpc replies (answers and refusals) delivered",
            m.rpc_replies.clone(),
        );
        registry.register(
            "rpc_timeouts",
            "Calls answered TIMEOUT: no reply within their timeout",
            m.rpc_timeouts.clone(),
        );
        registry.register(
            "rpc_late_replies",
            "Replies dropped because their call had timed out or their client was gone",
            m.rpc_late_replies.clone(),
        );
        registry.register(
            "inbox_entries",
            "Entries the upstream inbox streams hold",
            m.inbox_entries.clone(),
        );
        registry.register(
            "inbox_lag",
            "Upstream inbox entries not yet delivered to each consumer group",
            m.inbox_lag.clone(),
        );
        registry.register(
            "ready",
            "1 while the edge would welcome a new connection (/readyz answers 200), else 0",
            m.ready.clone(),
        );
        registry.register(
            "bus_connected",
            "1 while the bus is connected to Redis and caught up (always 1 without Redis), else 0",
            m.bus_connected.clone(),
        );
        registry.register(
            "max_connections",
            "Configured --max-connections",
            m.max_connections.clone(),
        );
        registry.register(
            "presence_errors",
            "Presence batches the bus refused (retried later)",
            m.presence_errors.clone(),
        );
        registry.register(
            "replay_budget_bytes",
            "Configured --replay-memory: bytes of history replay held at once",
            m.replay_budget_bytes.clone(),
        );
        registry.register(
            "replay_budget_free_bytes",
            "Bytes of the replay budget free now",
            m.replay_budget_free_bytes.clone(),
        );
        registry.register(
            "replay_budget_waits",
            "Replay pages that waited for a share of the replay budget",
            m.replay_budget_waits.clone(),
        );
        registry.register(
            "replay_budget_timeouts",
            "Replays cut short and history pages refused: no share of the replay budget in time",
            m.replay_budget_timeouts.clone(),
        );
        m.create_known_series();
        Metrics { registry, ..m }
    }

    /// Creates the labelled series whose label values are known in advance, so that they read
    /// 0 from start-up: a rate or an alert over them then has data before the first event,
    /// instead of nothing.
    fn create_known_series(&self) {
        for code in CodeLabel::KNOWN {
            self.connections_closed
                .get_or_create(&CodeLabel::of(code))
                .inc_by(0);
        }
        self.connections_closed
            .get_or_create(&CodeLabel { code: "other" })
            .inc_by(0);
        for (family, reasons) in [
            (&self.frames_dropped, &DROP_REASONS[..]),
            (&self.lifecycle_dropped, &LIFECYCLE_DROP_REASONS[..]),
        ] {
            for &reason in reasons {
                family.get_or_create(&ReasonLabel { reason }).inc_by(0);
            }
        }
        for hook in HookLabel::HOOKS {
            for outcome in HookLabel::OUTCOMES {
                self.hook_requests
                    .get_or_create(&HookLabel { hook, outcome })
                    .inc_by(0);
            }
        }
    }

    /// Has `probe` read the edge's state into the state gauges each time the metrics are
    /// rendered (it replaces any earlier probe: one edge per process).
    pub fn watch_state(&self, probe: StateProbe) {
        *self.state.lock() = Some(probe);
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        if let Some(probe) = self.state.lock().as_ref() {
            probe(self);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a dropped frame.
    pub fn dropped(&self, reason: &'static str) {
        self.frames_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}
