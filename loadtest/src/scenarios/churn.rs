//! `churn`: connect, authenticate, join, leave, disconnect, over and over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use hdrhistogram::Histogram;
use serde_json::json;
use tungstenite::Message;

use crate::cli::Common;
use crate::clients::{self, Connector};
use crate::proc;
use crate::report::Report;

async fn cycle(connector: &Connector, i: usize) -> anyhow::Result<()> {
    let room = format!("churn:{}", i % 100);
    let token = connector.token(&format!("churn-{i}"), &[&room])?;
    let mut ws = connector.open(Some(&token), false).await?;
    clients::join(&mut ws, &room).await?;
    ws.send(Message::Text(
        json!({"type": "leave", "room": room}).to_string().into(),
    ))
    .await?;
    let left = clients::next_json(&mut ws).await?;
    anyhow::ensure!(left["type"] == "left", "leave answered {left}");
    ws.close(None).await?;
    Ok(())
}

pub async fn run(
    common: &Common,
    connector: Arc<Connector>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Report> {
    let before = proc::sample(common.edge_pid)?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for w in 0..concurrency.max(1) {
        let connector = connector.clone();
        workers.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut failures = 0u64;
            let mut i = w;
            while Instant::now() < deadline {
                let t = Instant::now();
                match cycle(&connector, i).await {
                    Ok(()) => latency.record(t.elapsed().as_micros().max(1) as u64)?,
                    Err(_) => failures += 1,
                }
                i += concurrency;
            }
            Ok::<_, anyhow::Error>((latency, failures))
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut failures = 0;
    for worker in workers {
        let (l, f) = worker.await??;
        latency.add(&l)?;
        failures += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = proc::sample(common.edge_pid)?;
    let mut report = Report::new("churn");
    report.add("concurrency", concurrency);
    report.add("cycles", latency.len());
    report.add("failures", failures);
    report.add("cycles_per_second", latency.len() as f64 / elapsed);
    report.add_latency("cycle", &latency);
    if let Some(cpu) = report.add_cpu(before, after) {
        report.add(
            "edge_cpu_ms_per_cycle",
            cpu * 1000.0 / latency.len().max(1) as f64,
        );
    }
    Ok(report)
}
