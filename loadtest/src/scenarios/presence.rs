//! `presence`: what presence costs. M members in one presence room: the edge's memory per member,
//! Redis calls per minute while they just stay, the round trip of `presence_stats` in that room;
//! then (with --reconnect) every member drops and comes back at once, as after an edge restart,
//! and the storm is counted: Redis calls, presence pushes, closes, time until presence is whole.
//!
//! Run the edge with `--presence-rooms 'presence:*'` (and `--presence-events 'presence:*'` for
//! the pushes); the harness checks presence through Redis, so it needs --redis-url.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tungstenite::Message;

use crate::cli::Common;
use crate::clients::{self, Connector, Ws};
use crate::proc;
use crate::report::Report;

const ROOM: &str = "presence:0";

/// What to run.
pub struct Load {
    /// Members of the room.
    pub members: usize,
    /// How long they stay, counting Redis calls.
    pub hold: Duration,
    /// `presence_stats` round trips to time.
    pub queries: usize,
    /// Whether every member then reconnects at once.
    pub reconnect: bool,
}

/// Frames the members received, by kind.
#[derive(Default)]
struct Counts {
    joins: AtomicU64,
    leaves: AtomicU64,
    closed: AtomicU64,
}

pub async fn run(common: &Common, connector: Arc<Connector>, load: Load) -> anyhow::Result<Report> {
    let emitter = super::emitter(common).await?;
    let redis = redis::Client::open(common.redis_url.as_str())?;
    let mut redis = redis.get_multiplexed_async_connection().await?;
    let mut report = Report::new("presence");
    report.add("members", load.members);

    let counts = Arc::new(Counts::default());
    let before = proc::sample(common.edge_pid)?;
    let mut readers = join_all(common, &connector, load.members, "m", &counts).await?;
    settle(&emitter, load.members as u64).await?;
    let joined = proc::sample(common.edge_pid)?;
    if let (Some(before), Some(joined)) = (before, joined) {
        report.add(
            "edge_kib_per_member",
            joined.rss_kib.saturating_sub(before.rss_kib) as f64 / load.members.max(1) as f64,
        );
    }

    let calls_before = command_calls(&mut redis).await?;
    tokio::time::sleep(load.hold).await;
    let calls = command_calls(&mut redis).await? - calls_before;
    let minutes = load.hold.as_secs_f64() / 60.0;
    report.add("redis_calls_per_minute_holding", calls as f64 / minutes);
    report.add(
        "redis_calls_per_member_per_minute",
        calls as f64 / minutes / load.members.max(1) as f64,
    );

    let token = connector.token("asker", &["presence:*"])?;
    let mut asker = connector.open(Some(&token), false).await?;
    clients::join(&mut asker, ROOM).await?;
    let mut latency = Histogram::<u64>::new(3)?;
    for _ in 0..load.queries {
        let started = Instant::now();
        let stats = ask_stats(&mut asker).await?;
        latency.record(started.elapsed().as_micros() as u64)?;
        if stats["clients"].as_u64() < Some(load.members as u64) {
            bail!("presence_stats counted too few: {stats}");
        }
    }
    report.add_latency("presence_stats", &latency);

    if load.reconnect {
        for reader in readers.drain(..) {
            reader.abort();
        }
        let storm = Arc::new(Counts::default());
        let calls_before = command_calls(&mut redis).await?;
        let cpu_before = proc::sample(common.edge_pid)?;
        let started = Instant::now();
        // The asker stays, counting what a member who never left sees of the storm.
        let asker_counts = storm.clone();
        let asker_task = tokio::spawn(async move { count_frames(asker, &asker_counts).await });
        readers = join_all(
            common,
            &connector,
            load.members,
            "r",
            &Arc::new(Counts::default()),
        )
        .await?;
        settle(&emitter, load.members as u64 + 1).await?;
        report.add("storm_settled_seconds", started.elapsed().as_secs_f64());
        // Leaves of the dropped members may still be on their way.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu_after = proc::sample(common.edge_pid)?;
        report.add(
            "storm_redis_calls",
            command_calls(&mut redis).await? - calls_before,
        );
        report.add(
            "storm_pushes_to_a_staying_member_joins",
            storm.joins.load(Ordering::Relaxed),
        );
        report.add(
            "storm_pushes_to_a_staying_member_leaves",
            storm.leaves.load(Ordering::Relaxed),
        );
        report.add(
            "storm_staying_member_closed",
            storm.closed.load(Ordering::Relaxed),
        );
        report.add_cpu(cpu_before, cpu_after);
        asker_task.abort();
    }
    report.add("member_joins_seen", counts.joins.load(Ordering::Relaxed));
    report.add("members_closed", counts.closed.load(Ordering::Relaxed));
    for reader in readers {
        reader.abort();
    }
    Ok(report)
}

/// Opens `members` connections into the room, each read by a task counting presence pushes.
async fn join_all(
    common: &Common,
    connector: &Arc<Connector>,
    members: usize,
    tag: &'static str,
    counts: &Arc<Counts>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let sockets = super::open_many(members, common.connect_concurrency, |i| {
        let connector = connector.clone();
        async move {
            let token = connector.token(&format!("{tag}-{i}"), &["presence:*"])?;
            let mut ws = connector.open(Some(&token), false).await?;
            clients::join(&mut ws, ROOM).await?;
            Ok(ws)
        }
    })
    .await?;
    Ok(sockets
        .into_iter()
        .map(|ws| {
            let counts = counts.clone();
            tokio::spawn(async move { count_frames(ws, &counts).await })
        })
        .collect())
}

async fn count_frames(mut ws: Ws, counts: &Counts) {
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Text(text) if text.contains("\"presence_join\"") => {
                counts.joins.fetch_add(1, Ordering::Relaxed);
            }
            Message::Text(text) if text.contains("\"presence_leave\"") => {
                counts.leaves.fetch_add(1, Ordering::Relaxed);
            }
            Message::Close(_) => {
                counts.closed.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// Sends `presence_stats` and waits for its answer, skipping pushes.
async fn ask_stats(ws: &mut Ws) -> anyhow::Result<serde_json::Value> {
    ws.send(Message::Text(
        json!({"type": "presence_stats", "room": ROOM, "ref": 1})
            .to_string()
            .into(),
    ))
    .await?;
    loop {
        let frame = clients::next_json(ws).await?;
        if frame["ref"] == 1 {
            return Ok(frame);
        }
    }
}

/// Waits until Redis counts exactly `members` clients in the room.
async fn settle(emitter: &ferrocast_emitter::Emitter, members: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stats = emitter.presence_stats(ROOM).await?;
        if stats.clients == members {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "presence never reached {members} clients: {stats:?} (is --presence-rooms presence:* set?)"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Script calls and publishes Redis has run so far (INFO commandstats): what presence costs it.
/// The edges' once-a-second PINGs and this harness's own reads are left out.
async fn command_calls(redis: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await?;
    let calls = |command: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let total = ["evalsha", "eval", "publish", "spublish"]
        .iter()
        .map(|c| calls(c))
        .sum();
    // Present once anything ran; a Redis without command stats would read as free.
    info.contains("cmdstat_")
        .then_some(total)
        .context("INFO commandstats is empty")
}
