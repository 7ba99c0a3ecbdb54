//! `chaos`: steady publishing to one room while edges are killed and restarted. Every client
//! resumes from its last offset on whichever edge answers, and counts what it never saw: within
//! the history window, nothing may be lost or seen twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::sync::Mutex;
use tungstenite::Message;

use crate::cli::Common;
use crate::clients::{Connector, Ws};
use crate::report::Report;

const ROOM: &str = "chaos";

/// The kills to inflict.
pub struct Chaos {
    pub clients: usize,
    pub rate: u64,
    pub duration: Duration,
    pub kill_cmds: Vec<String>,
    pub start_cmds: Vec<String>,
    pub every: Duration,
    pub down_for: Duration,
}

/// One client's record (the storm's clients keep the same).
#[derive(Default)]
pub(super) struct Seen {
    /// Which sequence numbers arrived (index = seq).
    got: Vec<bool>,
    pub(super) duplicates: u64,
    pub(super) out_of_order: u64,
    highest: Option<u64>,
    reconnects: u64,
    pub(super) not_recovered: u64,
}

impl Seen {
    /// Records `seq`; true if it is new.
    pub(super) fn note(&mut self, seq: u64) -> bool {
        let index = seq as usize;
        if self.got.len() <= index {
            self.got.resize(index + 1, false);
        }
        if self.got[index] {
            self.duplicates += 1;
            return false;
        }
        self.got[index] = true;
        if self.highest.is_some_and(|h| seq < h) {
            self.out_of_order += 1;
        }
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        true
    }

    pub(super) fn count(&self) -> u64 {
        self.got.iter().filter(|g| **g).count() as u64
    }
}

pub async fn run(
    common: &Common,
    connector: Arc<Connector>,
    chaos: Chaos,
) -> anyhow::Result<Report> {
    if chaos.kill_cmds.len() != chaos.start_cmds.len() {
        bail!("give as many --start-cmd as --kill-cmd (one pair per edge to kill)");
    }
    let emitter = super::emitter(common).await?;
    let reconnect_ms = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 600_000, 3,
    )?));
    let done = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let mut records = Vec::with_capacity(chaos.clients);
    let mut tasks = Vec::with_capacity(chaos.clients);
    for i in 0..chaos.clients {
        let seen = Arc::new(Mutex::new(Seen::default()));
        records.push(seen.clone());
        let client = Client {
            connector: connector.clone(),
            token: connector.token(&format!("chaos-{i}"), &[ROOM])?,
            seen,
            reconnect_ms: reconnect_ms.clone(),
            done: done.clone(),
            delivered: delivered.clone(),
            ready: ready.clone(),
        };
        tasks.push(tokio::spawn(client.run()));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::Relaxed) < chaos.clients as u64 {
        if Instant::now() > deadline {
            bail!("clients could not all join within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let kills = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let killer = tokio::spawn(inflict(
        chaos.kill_cmds.clone(),
        chaos.start_cmds.clone(),
        chaos.every,
        chaos.down_for,
        kills.clone(),
        stop.clone(),
    ));
    let mut seq = 0u64;
    let (sent, _) = super::publish_paced(&emitter, chaos.rate, chaos.duration, |_| {
        let data = format!(r#"{{"seq":{seq},"t":{}}}"#, super::fanout::unix_nanos());
        seq += 1;
        Ok(emitter
            .to_room(ROOM)
            .message_raw("tick", data.into_bytes())?)
    })
    .await?;
    // Not aborted: a start command cut off mid-way may still start its edge, and one started
    // twice leaves the first running where nothing will stop it. The killer brings back what
    // it killed, so clients can finish catching up, and ends.
    stop.notify_one();
    let _ = killer.await;
    super::drain(&delivered, sent * chaos.clients as u64).await;
    done.store(true, Ordering::Relaxed);
    for task in &tasks {
        task.abort();
    }

    let (mut got, mut duplicates, mut out_of_order, mut reconnects, mut not_recovered) =
        (0, 0, 0, 0, 0);
    for seen in &records {
        let Ok(seen) = seen.lock() else { continue };
        got += seen.count().min(sent);
        duplicates += seen.duplicates;
        out_of_order += seen.out_of_order;
        reconnects += seen.reconnects;
        not_recovered += seen.not_recovered;
    }
    let expected = sent * chaos.clients as u64;
    let mut report = Report::new("chaos");
    report.add("clients", chaos.clients);
    report.add("publish_rate", chaos.rate);
    report.add("published", sent);
    report.add("kills", kills.load(Ordering::Relaxed));
    report.add("reconnects", reconnects);
    report.add("resumes_not_recovered", not_recovered);
    report.add("expected_deliveries", expected);
    report.add("lost", expected.saturating_sub(got));
    report.add("duplicates", duplicates);
    report.add("out_of_order", out_of_order);
    if let Ok(histogram) = reconnect_ms.lock() {
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            report.add(
                &format!("reconnect_{name}_ms"),
                histogram.value_at_quantile(q),
            );
        }
        report.add("reconnect_max_ms", histogram.max());
    }
    Ok(report)
}

/// Kills and restarts edges in turn until `stop` is notified; an edge it killed is always
/// started again before it returns.
async fn inflict(
    kill: Vec<String>,
    start: Vec<String>,
    every: Duration,
    down_for: Duration,
    kills: Arc<AtomicU64>,
    stop: Arc<tokio::sync::Notify>,
) {
    if kill.is_empty() {
        return;
    }
    for n in 0usize.. {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.notified() => return,
        }
        let index = n % kill.len();
        if let Err(error) = shell(&kill[index]).await {
            eprintln!("kill command failed: {error:#}");
        }
        kills.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(down_for).await;
        if let Err(error) = shell(&start[index]).await {
            eprintln!("start command failed: {error:#}");
        }
    }
}

/// Runs `command` with `sh -c` and waits for it.
async fn shell(command: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()
        .await
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} exited with {status}");
    }
    Ok(())
}

/// A client that keeps itself in the room, resuming after every disconnect.
struct Client {
    connector: Arc<Connector>,
    token: String,
    seen: Arc<Mutex<Seen>>,
    reconnect_ms: Arc<Mutex<Histogram<u64>>>,
    done: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
    ready: Arc<AtomicU64>,
}

impl Client {
    async fn run(self) {
        let mut offset: Option<String> = None;
        let mut lost_at: Option<Instant> = None;
        let mut backoff = Duration::from_millis(20);
        while !self.done.load(Ordering::Relaxed) {
            let mut ws = match self.join(offset.as_deref()).await {
                Ok(ws) => ws,
                Err(_) => {
                    // The edge tried is down: the connector moves on to the next URL.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            backoff = Duration::from_millis(20);
            match lost_at.take() {
                Some(at) => {
                    if let Ok(mut h) = self.reconnect_ms.lock() {
                        let _ = h.record((at.elapsed().as_millis() as u64).max(1));
                    }
                }
                None => {
                    self.ready.fetch_add(1, Ordering::Relaxed);
                }
            }
            read(&mut ws, &mut offset, &self.seen, &self.delivered).await;
            lost_at = Some(Instant::now());
            if let Ok(mut seen) = self.seen.lock() {
                seen.reconnects += 1;
            }
        }
    }

    /// Connects and joins the room from `since`, handling the answer's `recovered`.
    async fn join(&self, since: Option<&str>) -> anyhow::Result<Ws> {
        let mut ws = self.connector.open(Some(&self.token), false).await?;
        join(&mut ws, ROOM, since, &self.seen).await?;
        Ok(ws)
    }
}

/// Joins `room` from `since` and waits for `joined`; a resume that was not recovered is
/// counted in `seen`.
pub(super) async fn join(
    ws: &mut Ws,
    room: &str,
    since: Option<&str>,
    seen: &Mutex<Seen>,
) -> anyhow::Result<()> {
    let mut join = json!({"type": "join", "room": room});
    if let Some(since) = since {
        join["since"] = json!(since);
    }
    ws.send(Message::Text(join.to_string().into())).await?;
    let answer = crate::clients::next_json(ws).await?;
    if answer["type"] != "joined" {
        bail!("join: {answer}");
    }
    if since.is_some()
        && answer["recovered"] != true
        && let Ok(mut seen) = seen.lock()
    {
        seen.not_recovered += 1;
    }
    Ok(())
}

/// Reads messages until the connection ends, keeping the newest offset, noting each sequence
/// number in `seen` and counting the new ones in `delivered`.
pub(super) async fn read(
    ws: &mut Ws,
    offset: &mut Option<String>,
    seen: &Mutex<Seen>,
    delivered: &AtomicU64,
) {
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if frame["type"] != "msg" {
            continue;
        }
        if let Some(o) = frame["offset"].as_str() {
            *offset = Some(o.to_owned());
        }
        if let Some(seq) = frame["data"]["seq"].as_u64()
            && let Ok(mut seen) = seen.lock()
            && seen.note(seq)
        {
            delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}
