//! Prometheus metrics, served at `/metrics` in the text format.
//!
//! One set per process (an edge is one process), reachable from anywhere through [`metrics()`]
//! so the hot paths update an atomic and move on: no registry lookups per message.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label: a WebSocket close code, or `other` for any code the protocol gives no meaning to. A
/// client chooses the code it closes with, so its own codes must not each make a series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The code, or `other`.
    pub code: &'static str,
}

impl CodeLabel {
    /// The label for close code `code`.
    pub fn of(code: u16) -> CodeLabel {
        let code = match code {
            1000 => "1000",
            1001 => "1001",
            1002 => "1002",
            1003 => "1003",
            1005 => "1005",
            1006 => "1006",
            1007 => "1007",
            1008 => "1008",
            1009 => "1009",
            1010 => "1010",
            1011 => "1011",
            1012 => "1012",
            1013 => "1013",
            4001 => "4001",
            4002 => "4002",
            4003 => "4003",
            4004 => "4004",
            4008 => "4008",
            4009 => "4009",
            4010 => "4010",
            _ => "other",
        };
        CodeLabel { code }
    }
}

/// Label: an upstream inbox consumer group (named by the operator's workers: few).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    /// The group.
    pub group: String,
}

/// Labels: an HTTP API route (a fixed set) and the answer's status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    /// The route, e.g. `publish`; `other` for unknown paths.
    pub route: &'static str,
    /// The HTTP status.
    pub status: u16,
}

/// Labels: a hook (`connect`, `join`) and how its request ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabel {
    /// The hook.
    pub hook: &'static str,
    /// `answered` (any status below 500), `failed` (5xx), `timeout` or `unreachable`.
    pub outcome: &'static str,
}

/// Label: why something was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason.
    pub reason: &'static str,
}

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
}

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
        Metrics { registry, ..m }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
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
