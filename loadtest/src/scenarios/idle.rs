//! `idle`: what an idle authenticated connection costs the edge in memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::cli::Common;
use crate::clients::{self, Connector};
use crate::proc;
use crate::report::Report;

pub async fn run(
    common: &Common,
    connector: Arc<Connector>,
    connections: usize,
    rooms: usize,
    hold: Duration,
) -> anyhow::Result<Report> {
    let before = proc::sample(common.edge_pid)?;
    let started = Instant::now();
    let sockets = super::open_many(connections, common.connect_concurrency, |i| {
        let connector = connector.clone();
        async move {
            let room = format!("idle:{}", i % rooms.max(1));
            let token = connector.token(&format!("idle-{i}"), &[&room])?;
            let (mut ws, mut keys) = connector.open_sealed(&token).await?;
            clients::join_sealed(&mut ws, &mut keys, &room).await?;
            Ok(ws)
        }
    })
    .await?;
    let setup = started.elapsed();
    // Keep reading (and so answering pings) while held.
    let mut readers = Vec::with_capacity(sockets.len());
    for mut ws in sockets {
        readers.push(tokio::spawn(async move {
            while let Some(Ok(_)) = ws.next().await {}
        }));
    }
    tokio::time::sleep(hold).await;
    let after = proc::sample(common.edge_pid)?;

    let mut report = Report::new("idle");
    report.add("connections", connections);
    report.add("rooms", rooms);
    report.add("setup_seconds", setup.as_secs_f64());
    report.add(
        "connections_per_second",
        connections as f64 / setup.as_secs_f64(),
    );
    if let (Some(before), Some(after)) = (before, after) {
        let per = |kib: u64| kib.saturating_sub(before.rss_kib) as f64 / connections.max(1) as f64;
        report.add("edge_rss_before_kib", before.rss_kib);
        report.add("edge_rss_after_kib", after.rss_kib);
        report.add("edge_peak_kib", after.peak_kib);
        report.add("edge_kib_per_connection_steady", per(after.rss_kib));
        report.add("edge_kib_per_connection_peak", per(after.peak_kib));
    }
    for reader in readers {
        reader.abort();
    }
    Ok(report)
}
