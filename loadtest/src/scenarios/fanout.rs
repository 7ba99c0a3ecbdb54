//! `fanout`: rooms of members receiving messages published through Redis at a steady rate.
//! Every message carries its room sequence number and publish time (ns), so each member can
//! count loss, duplicates and reordering, and record end-to-end latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use std::sync::Mutex;
use tungstenite::Message;

use crate::cli::{Common, PublishVia};
use crate::clients::{self, Connector};
use crate::proc;
use crate::report::Report;

/// One member's tally.
struct Tally {
    latency_us: Histogram<u64>,
    received: u64,
    duplicates: u64,
    out_of_order: u64,
    next_seq: u64,
}

pub(super) fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The number after `key` in `text` (a cheap scan instead of parsing every frame).
pub(super) fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits: &str = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The load to apply.
pub struct Load {
    pub rooms: usize,
    pub members: usize,
    pub rate: u64,
    pub duration: Duration,
    pub payload: usize,
    pub stalled: usize,
    pub publish_via: PublishVia,
}

pub async fn run(common: &Common, connector: Arc<Connector>, load: Load) -> anyhow::Result<Report> {
    let Load {
        rooms,
        members,
        rate,
        duration,
        payload,
        stalled,
        publish_via,
    } = load;
    let rooms = rooms.max(1);
    let emitter = match publish_via {
        PublishVia::Redis => Some(super::emitter(common).await?),
        PublishVia::Ws => None,
    };
    let sockets = super::open_many(rooms * members, common.connect_concurrency, |i| {
        let connector = connector.clone();
        async move {
            let room = format!("fan:{}", i % rooms);
            let token = connector.token(&format!("fan-{i}"), &[&room])?;
            let (mut ws, mut keys) = connector.open_sealed(&token).await?;
            clients::join_sealed(&mut ws, &mut keys, &room).await?;
            Ok((ws, keys))
        }
    })
    .await?;

    // Members of room 0 that never read: they should be closed (4009) without slowing the rest.
    let _stalled = super::open_many(stalled, common.connect_concurrency, |i| {
        let connector = connector.clone();
        async move {
            let token = connector.token(&format!("stalled-{i}"), &["fan:0"])?;
            let mut ws = connector.open(Some(&token), true).await?;
            clients::join(&mut ws, "fan:0").await?;
            Ok(ws)
        }
    })
    .await?;
    let received = Arc::new(AtomicU64::new(0));
    let mut tallies = Vec::with_capacity(sockets.len());
    let mut readers = Vec::with_capacity(sockets.len());
    for (mut ws, mut keys) in sockets {
        let tally = Arc::new(Mutex::new(Tally {
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            received: 0,
            duplicates: 0,
            out_of_order: 0,
            next_seq: 0,
        }));
        tallies.push(tally.clone());
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                // An encrypted member opens every frame, as a real client must.
                let text: std::borrow::Cow<'_, str> =
                    match keys.as_mut().map(|keys| keys.open(text.as_bytes(), false)) {
                        None => text.as_str().into(),
                        Some(Ok(plain)) => String::from_utf8(plain).unwrap_or_default().into(),
                        Some(Err(_)) => return,
                    };
                let (Some(seq), Some(t)) = (
                    number_after(&text, "\"seq\":"),
                    number_after(&text, "\"t\":"),
                ) else {
                    continue;
                };
                let latency = unix_nanos().saturating_sub(t) / 1000;
                let Ok(mut tally) = tally.lock() else { return };
                let _ = tally.latency_us.record(latency.max(1));
                match seq.cmp(&tally.next_seq) {
                    std::cmp::Ordering::Equal => tally.next_seq += 1,
                    std::cmp::Ordering::Greater => {
                        tally.out_of_order += 1;
                        tally.next_seq = seq + 1;
                    }
                    std::cmp::Ordering::Less => tally.duplicates += 1,
                }
                tally.received += 1;
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let publisher = match publish_via {
        PublishVia::Ws => {
            let token = connector.token("fan-publisher", &["fan:*"])?;
            let mut ws = connector.open(Some(&token), false).await?;
            for room in 0..rooms {
                clients::join(&mut ws, &format!("fan:{room}")).await?;
            }
            Some(ws)
        }
        PublishVia::Redis => None,
    };
    let before = proc::sample(common.edge_pid)?;
    let pad = "x".repeat(payload);
    let mut seqs = vec![0u64; rooms];
    let mut next = |n: u64| {
        let room = (n as usize) % rooms;
        let data = format!(
            r#"{{"seq":{},"t":{},"pad":"{pad}"}}"#,
            seqs[room],
            unix_nanos()
        );
        seqs[room] += 1;
        (format!("fan:{room}"), data)
    };
    let (sent, publishing) = match (&emitter, publisher) {
        (Some(emitter), _) => {
            super::publish_paced(emitter, rate, duration, |n| {
                let (room, data) = next(n);
                Ok(emitter
                    .to_room(&room)
                    .message_raw("tick", data.into_bytes())?)
            })
            .await?
        }
        (None, Some(ws)) => super::publish_paced_ws(ws, rate, duration, next).await?,
        (None, None) => anyhow::bail!("no publisher"),
    };
    let expected = seqs.iter().sum::<u64>() * members as u64;
    super::drain(&received, expected).await;
    let after = proc::sample(common.edge_pid)?;
    for reader in &readers {
        reader.abort();
    }

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut got, mut duplicates, mut out_of_order) = (0u64, 0u64, 0u64);
    for tally in &tallies {
        let Ok(tally) = tally.lock() else { continue };
        latency.add(&tally.latency_us)?;
        got += tally.received;
        duplicates += tally.duplicates;
        out_of_order += tally.out_of_order;
    }
    let unique = got - duplicates;
    let mut report = Report::new("fanout");
    report.add("rooms", rooms);
    report.add("members_per_room", members);
    report.add("stalled_members", stalled);
    report.add("publish_rate", rate);
    report.add("published", sent);
    report.add("expected_deliveries", expected);
    report.add("deliveries", got);
    report.add(
        "deliveries_per_second",
        got as f64 / publishing.as_secs_f64(),
    );
    report.add("lost", expected.saturating_sub(unique));
    report.add("duplicates", duplicates);
    report.add("out_of_order", out_of_order);
    report.add_latency("latency", &latency);
    if let Some(cpu) = report.add_cpu(before, after) {
        report.add(
            "edge_cpu_s_per_100k_deliveries",
            cpu / got.max(1) as f64 * 100_000.0,
        );
    }
    Ok(report)
}
