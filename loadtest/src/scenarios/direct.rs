//! `direct`: user-targeted messages to random users, one delivery each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use std::sync::Mutex;
use tungstenite::Message;

use super::fanout::{number_after, unix_nanos};
use crate::cli::Common;
use crate::proc;
use crate::report::Report;

pub async fn run(
    common: &Common,
    connector: Arc<crate::clients::Connector>,
    users: usize,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Report> {
    let users = users.max(1);
    let emitter = super::emitter(common).await?;
    let sockets = super::open_many(users, common.connect_concurrency, |i| {
        let connector = connector.clone();
        async move {
            let token = connector.token(&format!("direct-{i}"), &[])?;
            connector.open(Some(&token), false).await
        }
    })
    .await?;
    let received = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let mut readers = Vec::with_capacity(users);
    for mut ws in sockets {
        let (received, latency) = (received.clone(), latency.clone());
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Some(t) = number_after(&text, "\"t\":") else {
                    continue;
                };
                let micros = unix_nanos().saturating_sub(t) / 1000;
                if let Ok(mut h) = latency.lock() {
                    let _ = h.record(micros.max(1));
                }
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let before = proc::sample(common.edge_pid)?;
    // A cheap deterministic spread over users (no RNG dependency): a multiplicative hash.
    let user_of = |n: u64| (n.wrapping_mul(2_654_435_761) % users as u64) as usize;
    let (sent, publishing) = super::publish_paced(&emitter, rate, duration, |n| {
        let data = format!(r#"{{"n":{n},"t":{}}}"#, unix_nanos());
        let user = format!("direct-{}", user_of(n));
        Ok(emitter
            .to_user(&user)
            .message_raw("direct", data.into_bytes())?)
    })
    .await?;
    super::drain(&received, sent).await;
    let after = proc::sample(common.edge_pid)?;
    for reader in &readers {
        reader.abort();
    }
    let got = received.load(Ordering::Relaxed);
    let latency = latency
        .lock()
        .map_err(|_| anyhow::anyhow!("latency lock poisoned"))?;
    let mut report = Report::new("direct");
    report.add("users", users);
    report.add("publish_rate", rate);
    report.add("published", sent);
    report.add("delivered", got);
    report.add("lost", sent.saturating_sub(got));
    report.add("messages_per_second", got as f64 / publishing.as_secs_f64());
    report.add_latency("latency", &latency);
    if let Some(cpu) = report.add_cpu(before, after) {
        report.add("edge_cpu_us_per_message", cpu * 1e6 / got.max(1) as f64);
    }
    Ok(report)
}
