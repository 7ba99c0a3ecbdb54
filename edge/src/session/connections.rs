//! Every open connection of the edge, for what concerns them all at once: the connection
//! limits, the heartbeat sweep, token expiry and the drain.
//!
//! A connection registers a `Handle`: its outbox (to ping it or ask it to close) and its
//! [`Life`] (when it was last heard from, when its token expires). One task sweeps the table once
//! a second; connections own no timers of their own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tungstenite::Message;

use crate::fanout::outbox::{Frame, Outbound, Outbox};
use crate::peer::peer_group;

/// What the sweep needs to know about a connection, updated by the connection itself.
pub struct Life {
    /// Milliseconds since the edge started when a frame (or pong) last arrived.
    last_seen: AtomicU64,
    /// The token's `exp`, Unix seconds.
    exp: AtomicU64,
}

impl Life {
    /// Notes that something arrived now.
    pub fn heard(&self, clock: &Clock) {
        self.last_seen.store(clock.now_ms(), Ordering::Relaxed);
    }

    /// Replaces the token expiry (after a `refresh`).
    pub fn set_exp(&self, exp: u64) {
        self.exp.store(exp, Ordering::Relaxed);
    }
}

/// A monotonic millisecond clock starting with the edge.
pub struct Clock(Instant);

impl Clock {
    /// Milliseconds since the clock started.
    pub fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

struct Handle {
    outbox: Outbox,
    life: Arc<Life>,
}

/// The table of open connections.
pub struct Connections {
    table: Mutex<HashMap<u64, Handle>>,
    open: Arc<AtomicUsize>,
    unauthenticated: Arc<AtomicUsize>,
    /// Unauthenticated connections per peer address (only addresses that have some).
    pending_by_ip: PendingByIp,
    draining: AtomicBool,
    /// The clock `Life::heard` uses.
    pub clock: Clock,
}

/// A reserved place under a limit, given back on drop.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Unauthenticated connections per peer address.
type PendingByIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// A connection's place among those not authenticated yet: under the edge's cap and under its
/// peer address's. Given back on drop.
pub struct Pending {
    _total: Slot,
    ip: Option<(IpAddr, PendingByIp)>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some((ip, table)) = self.ip.take() {
            let mut table = table.lock();
            if let Some(n) = table.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    table.remove(&ip);
                }
            }
        }
    }
}

/// Why a new connection was refused a place among the unauthenticated ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingRefusal {
    /// The edge holds `--max-unauthenticated` already.
    Total,
    /// The peer address holds `--max-pending-per-ip` already.
    PerIp,
}

fn reserve(counter: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(counter.clone()))
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            table: Mutex::new(HashMap::new()),
            open: Arc::new(AtomicUsize::new(0)),
            unauthenticated: Arc::new(AtomicUsize::new(0)),
            pending_by_ip: Arc::default(),
            draining: AtomicBool::new(false),
            clock: Clock(Instant::now()),
        }
    }
}

impl Connections {
    /// A place for one more WebSocket connection, unless `max` are open.
    pub fn reserve_open(&self, max: usize) -> Option<Slot> {
        reserve(&self.open, max)
    }

    /// A place for one more connection from `ip` that has not authenticated yet, unless `max`
    /// have not, or `max_per_ip` of them (when not 0) come from `ip`.
    pub fn reserve_pending(
        &self,
        ip: IpAddr,
        max: usize,
        max_per_ip: usize,
    ) -> Result<Pending, PendingRefusal> {
        let total = reserve(&self.unauthenticated, max).ok_or(PendingRefusal::Total)?;
        if max_per_ip == 0 {
            return Ok(Pending {
                _total: total,
                ip: None,
            });
        }
        let ip = peer_group(ip);
        let mut table = self.pending_by_ip.lock();
        let held = table.entry(ip).or_insert(0);
        if *held >= max_per_ip {
            return Err(PendingRefusal::PerIp);
        }
        *held += 1;
        Ok(Pending {
            _total: total,
            ip: Some((ip, self.pending_by_ip.clone())),
        })
    }

    /// WebSocket connections open now, authenticated or not.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Registers an authenticated connection whose token expires at `exp`.
    pub fn add(&self, id: u64, outbox: Outbox, exp: u64) -> Arc<Life> {
        let life = Arc::new(Life {
            last_seen: AtomicU64::new(self.clock.now_ms()),
            exp: AtomicU64::new(exp),
        });
        self.table.lock().insert(
            id,
            Handle {
                outbox,
                life: life.clone(),
            },
        );
        life
    }

    /// Removes a connection that ended.
    pub fn remove(&self, id: u64) {
        self.table.lock().remove(&id);
    }

    /// Authenticated connections open now.
    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    /// Whether no authenticated connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the edge is draining: not ready, taking no new connections.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// One sweep: closes connections idle for longer than `idle` (4002) or whose token expired
    /// more than `leeway` ago (4003), and pings the share of the others whose turn it is (`tick` of `turns`), so pings
    /// are spread over the heartbeat interval.
    pub fn sweep(&self, idle: Duration, leeway: Duration, tick: u64, turns: u64) {
        let now = self.clock.now_ms();
        let leeway = leeway.as_secs();
        let unix = ferrocast_protocol::envelope::now_ms() / 1000;
        let idle = idle.as_millis() as u64;
        let turns = turns.max(1);
        // One ping frame shared by every connection pinged in this sweep.
        let ping = Frame::own(Message::Ping(Bytes::new()));
        let table = self.table.lock();
        for (id, handle) in table.iter() {
            let last_seen = handle.life.last_seen.load(Ordering::Relaxed);
            if handle.outbox.force_overdue_disconnect() {
                continue;
            }
            if now.saturating_sub(last_seen) > idle {
                handle
                    .outbox
                    .close(ferrocast_protocol::close::HEARTBEAT_TIMEOUT);
            } else if handle
                .life
                .exp
                .load(Ordering::Relaxed)
                .saturating_add(leeway)
                < unix
            {
                handle
                    .outbox
                    .close(ferrocast_protocol::close::TOKEN_EXPIRED);
            } else if id % turns == tick % turns {
                handle.outbox.push(Outbound::Frame(ping.clone()));
            }
        }
    }

    /// Stops taking connections and closes every open one with 1001, spread evenly over
    /// `window` so clients do not all reconnect in the same instant. Returns once they are all
    /// gone, or `window` plus a grace period has passed.
    pub async fn drain(&self, window: Duration) {
        self.draining.store(true, Ordering::Release);
        let outboxes: Vec<Outbox> = self
            .table
            .lock()
            .values()
            .map(|h| h.outbox.clone())
            .collect();
        let started = tokio::time::Instant::now();
        let count = outboxes.len().max(1) as u32;
        tracing::info!(connections = outboxes.len(), ?window, "draining");
        for (i, outbox) in outboxes.iter().enumerate() {
            tokio::time::sleep_until(started + window * i as u32 / count).await;
            outbox.close(ferrocast_protocol::close::GOING_AWAY);
        }
        let deadline = started + window + Duration::from_secs(5);
        while !self.is_empty() && tokio::time::Instant::now() < deadline {
            // Connections that finished authenticating after the snapshot get their 1001 too
            // (asking twice is harmless: the first close code asked for wins).
            for handle in self.table.lock().values() {
                handle.outbox.close(ferrocast_protocol::close::GOING_AWAY);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs the sweep once a second until the process ends.
pub async fn sweep_forever(
    connections: Arc<Connections>,
    heartbeat: Duration,
    idle: Duration,
    leeway: Duration,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let turns = heartbeat.as_secs().max(1);
    let mut tick = 0u64;
    loop {
        interval.tick().await;
        tick += 1;
        connections.sweep(idle, leeway, tick, turns);
    }
}
