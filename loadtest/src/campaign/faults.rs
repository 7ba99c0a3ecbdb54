//! The faults a campaign injects, drawn from a seeded generator so a failing run can be replayed
//! with its seed. Each fault holds the part it breaks (Redis, or one edge with its links) while it
//! lasts, so faults on different parts overlap and faults on the same part take turns.

use std::time::Duration;

use super::proxy::Mode;
use super::world::{Edge, Redis};

/// What can go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// An edge killed (SIGKILL) and started again.
    EdgeKilled,
    /// An edge paused (SIGSTOP) for a second or two, short of the idle timeout, then resumed.
    EdgePausedShort,
    /// An edge paused past the idle timeout, then resumed.
    EdgePausedLong,
    /// An edge drained (SIGTERM), as in a rolling deploy, and started again.
    EdgeDrained,
    /// Redis killed and restarted with its data (AOF).
    RedisKilled,
    /// Redis killed and restarted empty.
    RedisEmptied,
    /// Every connection between an edge and Redis reset.
    RedisLinkReset,
    /// The network between an edge and Redis silently dropping everything for a while.
    RedisLinkBlackHoled,
    /// Latency added between an edge and Redis for a while.
    RedisLinkSlow,
    /// Every client connection of an edge reset.
    ClientsReset,
    /// An edge's client connections silently dropping everything for a while.
    ClientsBlackHoled,
}

impl Fault {
    /// Every kind, for drawing one.
    pub const ALL: [Fault; 11] = [
        Fault::EdgeKilled,
        Fault::EdgePausedShort,
        Fault::EdgePausedLong,
        Fault::EdgeDrained,
        Fault::RedisKilled,
        Fault::RedisEmptied,
        Fault::RedisLinkReset,
        Fault::RedisLinkBlackHoled,
        Fault::RedisLinkSlow,
        Fault::ClientsReset,
        Fault::ClientsBlackHoled,
    ];

    /// Whether it breaks Redis (else one edge).
    pub fn hits_redis(self) -> bool {
        matches!(self, Fault::RedisKilled | Fault::RedisEmptied)
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::EdgeKilled => "edge_killed",
            Fault::EdgePausedShort => "edge_paused_short",
            Fault::EdgePausedLong => "edge_paused_long",
            Fault::EdgeDrained => "edge_drained",
            Fault::RedisKilled => "redis_killed",
            Fault::RedisEmptied => "redis_emptied",
            Fault::RedisLinkReset => "redis_link_reset",
            Fault::RedisLinkBlackHoled => "redis_link_black_holed",
            Fault::RedisLinkSlow => "redis_link_slow",
            Fault::ClientsReset => "clients_reset",
            Fault::ClientsBlackHoled => "clients_black_holed",
        }
    }

    /// Breaks `redis` as this fault says, and repairs it.
    pub async fn on_redis(self, redis: &mut Redis, rng: &mut Rng) -> anyhow::Result<()> {
        redis.kill().await;
        tokio::time::sleep(rng.between_ms(300, 1500)).await;
        redis.restart(self == Fault::RedisKilled).await
    }

    /// Breaks `edge` (or its links) as this fault says, and repairs it.
    pub async fn on_edge(self, edge: &mut Edge, rng: &mut Rng) -> anyhow::Result<()> {
        match self {
            Fault::EdgeKilled => {
                edge.signal("-KILL").await;
                edge.exited(Duration::from_secs(5)).await;
                tokio::time::sleep(rng.between_ms(200, 2000)).await;
                edge.restart().await?;
            }
            Fault::EdgePausedShort | Fault::EdgePausedLong => {
                edge.signal("-STOP").await;
                let pause = if self == Fault::EdgePausedShort {
                    rng.between_ms(500, 2000)
                } else {
                    // Past the edges' 6 s idle timeout.
                    rng.between_ms(7000, 9000)
                };
                tokio::time::sleep(pause).await;
                edge.signal("-CONT").await;
            }
            Fault::EdgeDrained => {
                edge.signal("-TERM").await;
                edge.exited(Duration::from_secs(10)).await;
                edge.restart().await?;
            }
            Fault::RedisLinkReset => edge.redis_link.reset(),
            Fault::ClientsReset => edge.client_link.reset(),
            Fault::RedisLinkBlackHoled | Fault::ClientsBlackHoled | Fault::RedisLinkSlow => {
                let link = if self == Fault::ClientsBlackHoled {
                    &edge.client_link
                } else {
                    &edge.redis_link
                };
                let mode = if self == Fault::RedisLinkSlow {
                    Mode::Latency(rng.between_ms(50, 300))
                } else {
                    Mode::BlackHole
                };
                link.set(mode);
                tokio::time::sleep(rng.between_ms(1000, 8000)).await;
                link.set(Mode::Pass);
            }
            Fault::RedisKilled | Fault::RedisEmptied => {}
        }
        Ok(())
    }
}

/// SplitMix64: small, seeded, and the same on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A duration between `low` and `high` milliseconds.
    pub fn between_ms(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low + 1))
    }

    /// A generator of its own for a task, drawn from this one.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_draws_every_time() {
        let draws = |seed| {
            let mut rng = Rng::new(seed);
            (0..5).map(|_| rng.below(11)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }
}
