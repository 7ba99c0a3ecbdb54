//! `abuse`: clients that never authenticate, flood, never read, or ask for the whole history
//! and never read it, against one edge, beside a well-behaved canary. What the edge's memory
//! peaks at, and whether the canary notices.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tungstenite::Message;

use crate::cli::Common;
use crate::clients::{self, Connector};
use crate::proc;
use crate::report::Report;

const ROOM: &str = "abuse";

pub async fn run(
    common: &Common,
    connector: Arc<Connector>,
    silent: usize,
    flooders: usize,
    stalled: usize,
    replayers: usize,
    duration: Duration,
) -> anyhow::Result<Report> {
    let before = proc::sample(common.edge_pid)?;
    let deadline = tokio::time::Instant::now() + duration;
    let reconnects = Arc::new(AtomicU64::new(0));

    // Stalled readers: in the flooded room, with a tiny receive buffer, never reading.
    let held = super::open_many(stalled, common.connect_concurrency, |i| {
        let connector = connector.clone();
        async move {
            let token = connector.token(&format!("stalled-{i}"), &[ROOM])?;
            let mut ws = connector.open(Some(&token), true).await?;
            clients::join(&mut ws, ROOM).await?;
            Ok(ws)
        }
    })
    .await?;

    let mut tasks = Vec::new();
    // Silent: upgrade, never authenticate, reconnect when the edge gives up on them.
    for _ in 0..silent {
        let (connector, reconnects) = (connector.clone(), reconnects.clone());
        tasks.push(tokio::spawn(async move {
            while tokio::time::Instant::now() < deadline {
                if let Ok(mut ws) = connector.open(None, false).await {
                    let _ = tokio::time::timeout_at(deadline, async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                }
                reconnects.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Flooders: publish 16 KiB messages without pause and without reading.
    let blob = "f".repeat(16 * 1024);
    for i in 0..flooders {
        let (connector, reconnects, blob) = (connector.clone(), reconnects.clone(), blob.clone());
        tasks.push(tokio::spawn(async move {
            while tokio::time::Instant::now() < deadline {
                let Ok(token) = connector.token(&format!("flood-{i}"), &[ROOM]) else { return };
                if let Ok(mut ws) = connector.open(Some(&token), false).await
                    && clients::join(&mut ws, ROOM).await.is_ok()
                {
                    let frame = json!({"type": "publish", "room": ROOM, "event": "flood", "data": blob, "echo": false}).to_string();
                    while tokio::time::Instant::now() < deadline
                        && ws.send(Message::Text(frame.clone().into())).await.is_ok()
                    {}
                }
                reconnects.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    // Replayers: once the flood has made a history, ask for all of it and never read.
    if replayers > 0 {
        let connector = connector.clone();
        let halfway = tokio::time::Instant::now() + duration / 2;
        let token = connector.token("recorder", &[ROOM])?;
        let mut recorder = connector.open(Some(&token), false).await?;
        clients::join(&mut recorder, ROOM).await?;
        tasks.push(tokio::spawn(async move {
            let first = loop {
                match clients::next_json(&mut recorder).await {
                    Ok(frame) if frame["type"] == "msg" => break frame["offset"].clone(),
                    Ok(_) => continue,
                    Err(_) => return,
                }
            };
            drop(recorder);
            tokio::time::sleep_until(halfway).await;
            let mut held = Vec::with_capacity(replayers);
            for i in 0..replayers {
                let Ok(token) = connector.token(&format!("replay-{i}"), &[ROOM]) else {
                    return;
                };
                if let Ok(mut ws) = connector.open(Some(&token), true).await {
                    let join = json!({"type": "join", "room": ROOM, "since": first});
                    if ws
                        .send(Message::Text(join.to_string().into()))
                        .await
                        .is_ok()
                    {
                        held.push(ws);
                    }
                }
            }
            tokio::time::sleep_until(deadline).await;
            drop(held);
        }));
    }
    // The canary pings and measures round trips; the edge's memory is sampled meanwhile.
    let canary_token = connector.token("canary", &["canary"])?;
    let mut canary = connector.open(Some(&canary_token), false).await?;
    let mut rtt = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut peak_rss = 0u64;
    let mut canary_failures = 0u64;
    while tokio::time::Instant::now() < deadline {
        if let Some(usage) = proc::sample(common.edge_pid)? {
            peak_rss = peak_rss.max(usage.rss_kib);
        }
        let sent = Instant::now();
        let ping = canary
            .send(Message::Text(json!({"type": "ping"}).to_string().into()))
            .await;
        match (
            ping,
            tokio::time::timeout(Duration::from_secs(5), clients::next_json(&mut canary)).await,
        ) {
            (Ok(()), Ok(Ok(pong))) if pong["type"] == "pong" => {
                let _ = rtt.record(sent.elapsed().as_micros().max(1) as u64);
            }
            _ => canary_failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for task in tasks {
        task.abort();
    }
    let after = proc::sample(common.edge_pid)?;
    drop(held);

    let mut report = Report::new("abuse");
    report.add("silent", silent);
    report.add("flooders", flooders);
    report.add("stalled", stalled);
    report.add("replayers", replayers);
    report.add("duration_s", duration.as_secs_f64());
    report.add("abuser_reconnects", reconnects.load(Ordering::Relaxed));
    report.add("canary_pings", rtt.len());
    report.add("canary_failures", canary_failures);
    report.add(
        "canary_rtt_p50_ms",
        rtt.value_at_quantile(0.5) as f64 / 1000.0,
    );
    report.add(
        "canary_rtt_p99_ms",
        rtt.value_at_quantile(0.99) as f64 / 1000.0,
    );
    report.add("canary_rtt_max_ms", rtt.max() as f64 / 1000.0);
    if let (Some(before), Some(after)) = (before, after) {
        report.add("edge_rss_before_kib", before.rss_kib);
        report.add("edge_rss_peak_sampled_kib", peak_rss);
        report.add("edge_rss_after_kib", after.rss_kib);
        report.add("edge_peak_kib", after.peak_kib);
    }
    Ok(report)
}
