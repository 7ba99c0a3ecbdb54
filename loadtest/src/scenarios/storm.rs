//! `storm`: a reconnect storm. Every client starts on the first edge, in one room, under steady
//! publishing; that edge is killed, and every client reconnects to the others with the
//! official client's back-off (`@ferrocast/client`: `min + random × (min(max, min × 2^attempt)
//! − min)`, so the first retry waits exactly `min`) and resumes from its last offset. Reports
//! how long until every client was back (p50/p99/max from the kill), the peak of Redis commands
//! per second and the surviving edge's CPU meanwhile, and loss, duplicates and order as `chaos`
//! counts them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

use super::chaos::Seen;
use crate::cli::Common;
use crate::clients::{Connector, Ws};
use crate::report::Report;

const ROOM: &str = "storm";

/// The storm's settings.
pub struct Storm {
    pub clients: usize,
    pub rate: u64,
    pub warmup: Duration,
    pub after: Duration,
    pub kill_cmd: String,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// What the clients share.
struct Shared {
    connector: Arc<Connector>,
    killed_at: OnceLock<Instant>,
    /// Milliseconds from the kill to each client's resumed join.
    back_ms: Mutex<Histogram<u64>>,
    joined: AtomicU64,
    back: AtomicU64,
    /// Connection attempts after the kill that failed (the dead edge, or refused by a live one).
    failed: AtomicU64,
    delivered: AtomicU64,
    backoff: (Duration, Duration),
}

pub async fn run(
    common: &Common,
    connector: Arc<Connector>,
    storm: Storm,
) -> anyhow::Result<Report> {
    if connector.url_count() < 2 {
        bail!("give the edge to kill as the first --url, and the edges clients move to after it");
    }
    let emitter = super::emitter(common).await?;
    let shared = Arc::new(Shared {
        connector: connector.clone(),
        killed_at: OnceLock::new(),
        back_ms: Mutex::new(Histogram::new_with_bounds(1, 600_000, 3)?),
        joined: AtomicU64::new(0),
        back: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        backoff: (storm.backoff_min, storm.backoff_max),
    });
    let mut records = Vec::with_capacity(storm.clients);
    let mut tasks = Vec::with_capacity(storm.clients);
    for i in 0..storm.clients {
        let seen = Arc::new(Mutex::new(Seen::default()));
        records.push(seen.clone());
        let token = connector.token(&format!("storm-{i}"), &[ROOM])?;
        tasks.push(tokio::spawn(client(shared.clone(), token, seen, i as u64)));
        // Set up gently: the storm is what is measured, not the set-up.
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.joined.load(Ordering::Relaxed) < storm.clients as u64 {
        if Instant::now() > deadline {
            bail!("clients could not all join within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let redis = redis::Client::open(common.redis_url.as_str())?;
    let mut redis = redis.get_multiplexed_async_connection().await?;
    let sampling = Arc::new(tokio::sync::Notify::new());
    let sampler = {
        let stop = sampling.clone();
        tokio::spawn(async move { sample_commands(&mut redis, stop).await })
    };
    // Published a second at a time until told to stop, so what was sent is known exactly.
    let stop_publishing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publishing = {
        let (emitter, stop, rate) = (emitter.clone(), stop_publishing.clone(), storm.rate);
        tokio::spawn(async move {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (sent, _) = super::publish_paced(&emitter, rate, Duration::from_secs(1), |n| {
                    let data = format!(r#"{{"seq":{}}}"#, seq + n);
                    Ok(emitter
                        .to_room(ROOM)
                        .message_raw("tick", data.into_bytes())?)
                })
                .await?;
                seq += sent;
            }
            anyhow::Ok(seq)
        })
    };
    tokio::time::sleep(storm.warmup).await;
    let cpu_before = crate::proc::sample(common.edge_pid)?;
    let killed_at = Instant::now();
    let _ = shared.killed_at.set(killed_at);
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&storm.kill_cmd)
        .status()
        .await
        .with_context(|| format!("cannot run {:?}", storm.kill_cmd))?;
    if !status.success() {
        bail!("{:?} exited with {status}", storm.kill_cmd);
    }
    let deadline = killed_at + Duration::from_secs(120);
    while shared.back.load(Ordering::Relaxed) < storm.clients as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let storm_over = killed_at.elapsed();
    let cpu_after = crate::proc::sample(common.edge_pid)?;
    tokio::time::sleep(storm.after).await;
    stop_publishing.store(true, Ordering::Relaxed);
    let sent = publishing.await??;
    sampling.notify_one();
    let samples = sampler.await?;
    super::drain(&shared.delivered, sent * storm.clients as u64).await;
    for task in &tasks {
        task.abort();
    }

    let mut report = Report::new("storm");
    report.add("clients", storm.clients);
    report.add("publish_rate", storm.rate);
    report.add("clients_back", shared.back.load(Ordering::Relaxed));
    report.add("all_back_ms", storm_over.as_millis() as u64);
    report.add("failed_attempts", shared.failed.load(Ordering::Relaxed));
    if let Ok(histogram) = shared.back_ms.lock() {
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            report.add(&format!("back_{name}_ms"), histogram.value_at_quantile(q));
        }
        report.add("back_max_ms", histogram.max());
    }
    let (baseline, peak) = command_rates(&samples, killed_at, killed_at + storm_over);
    report.add("redis_commands_per_s_before", baseline);
    report.add("redis_commands_per_s_peak", peak);
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        report.add(
            "surviving_edge_cpu_s_during_storm",
            after.user_s + after.system_s - before.user_s - before.system_s,
        );
    }
    let (mut got, mut duplicates, mut out_of_order, mut not_recovered) = (0, 0, 0, 0);
    for seen in &records {
        let Ok(seen) = seen.lock() else { continue };
        got += seen.count().min(sent);
        duplicates += seen.duplicates;
        out_of_order += seen.out_of_order;
        not_recovered += seen.not_recovered;
    }
    let expected = sent * storm.clients as u64;
    report.add("published", sent);
    report.add("resumes_not_recovered", not_recovered);
    report.add("lost", expected.saturating_sub(got));
    report.add("duplicates", duplicates);
    report.add("out_of_order", out_of_order);
    Ok(report)
}

/// Redis's `total_commands_processed`, every 100 ms, until `stop`.
async fn sample_commands(
    redis: &mut redis::aio::MultiplexedConnection,
    stop: Arc<tokio::sync::Notify>,
) -> Vec<(Instant, u64)> {
    let mut samples = Vec::new();
    loop {
        let info: redis::RedisResult<String> =
            redis::cmd("INFO").arg("stats").query_async(redis).await;
        if let Some(total) = info.ok().as_deref().and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("total_commands_processed:"))
                .and_then(|v| v.trim().parse().ok())
        }) {
            samples.push((Instant::now(), total));
        }
        tokio::select! {
            () = stop.notified() => return samples,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// Commands per second: the median before `from`, and the peak between `from` and `to`.
fn command_rates(samples: &[(Instant, u64)], from: Instant, to: Instant) -> (u64, u64) {
    let mut before = Vec::new();
    let mut peak = 0;
    for pair in samples.windows(2) {
        let ((t0, c0), (t1, c1)) = (pair[0], pair[1]);
        let seconds = (t1 - t0).as_secs_f64().max(1e-3);
        let rate = (c1.saturating_sub(c0) as f64 / seconds) as u64;
        if t1 <= from {
            before.push(rate);
        } else if t0 <= to {
            peak = peak.max(rate);
        }
    }
    before.sort_unstable();
    (
        before.get(before.len() / 2).copied().unwrap_or_default(),
        peak,
    )
}

/// One client: on the first edge, then, whenever its connection ends, on the others in turn,
/// after the official client's back-off.
async fn client(shared: Arc<Shared>, token: String, seen: Arc<Mutex<Seen>>, salt: u64) {
    let mut offset: Option<String> = None;
    let mut attempt = 0u32;
    let mut tries = 0usize;
    let mut random = crate::campaign::Rng::new(salt);
    let others = shared.connector.url_count() - 1;
    let mut first = true;
    loop {
        let url = if first { 0 } else { 1 + tries % others };
        tries += 1;
        match join(&shared.connector, url, &token, offset.as_deref(), &seen).await {
            Ok(mut ws) => {
                attempt = 0;
                match shared.killed_at.get() {
                    Some(killed) if !first => {
                        if let Ok(mut h) = shared.back_ms.lock() {
                            let _ = h.record((killed.elapsed().as_millis() as u64).max(1));
                        }
                        shared.back.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        shared.joined.fetch_add(1, Ordering::Relaxed);
                    }
                }
                first = false;
                super::chaos::read(&mut ws, &mut offset, &seen, &shared.delivered).await;
            }
            Err(_) => {
                first = false;
                if shared.killed_at.get().is_some() {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let (min, max) = shared.backoff;
        let ceiling = max.min(min * 2u32.saturating_pow(attempt));
        attempt += 1;
        let spread = ceiling.saturating_sub(min).as_millis() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            random.next() % spread
        };
        tokio::time::sleep(min + Duration::from_millis(jitter)).await;
    }
}

async fn join(
    connector: &Connector,
    url: usize,
    token: &str,
    since: Option<&str>,
    seen: &Mutex<Seen>,
) -> anyhow::Result<Ws> {
    let mut ws = connector.open_at(url, Some(token), false).await?;
    super::chaos::join(&mut ws, ROOM, since, seen).await?;
    Ok(ws)
}
