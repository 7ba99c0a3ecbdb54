//! `rpc`: clients making calls (v1.2) at a total rate, answered by workers running in this
//! process (the emitter's `Inbox` and `reply`): round-trip latency, what went unanswered, and
//! the edge's CPU per call.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrocast_emitter::{Emitter, Inbox, StartFrom};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tungstenite::Message;

use super::fanout::{number_after, unix_nanos};
use crate::cli::Common;
use crate::proc;
use crate::report::Report;

/// The event the calls carry: the edge must take it upstream (`--upstream-events 'loadtest.*'`).
const EVENT: &str = "loadtest.rpc";

/// The load to apply.
pub struct Load {
    pub clients: usize,
    pub rate: u64,
    pub duration: Duration,
    pub workers: usize,
    pub timeout_ms: u64,
}

/// What the clients got back.
#[derive(Default)]
struct Answers {
    replies: AtomicU64,
    timeouts: AtomicU64,
    /// Of the errors, `RATE_LIMITED`: the edge's quotas, or 32 calls of a client waiting.
    rate_limited: AtomicU64,
    errors: AtomicU64,
}

impl Answers {
    fn total(&self) -> u64 {
        self.replies.load(Ordering::Relaxed)
            + self.timeouts.load(Ordering::Relaxed)
            + self.errors.load(Ordering::Relaxed)
    }
}

pub async fn run(
    common: &Common,
    connector: Arc<crate::clients::Connector>,
    load: Load,
) -> anyhow::Result<Report> {
    let clients = load.clients.max(1);
    let emitter = super::emitter(common).await?;
    let mut workers = Vec::new();
    for i in 0..load.workers.max(1) {
        let inbox = Inbox::builder(&common.redis_url, "loadtest-rpc", format!("w{i}"))
            .prefix(&common.prefix)
            .start_from(StartFrom::New)
            .block(Duration::from_millis(100))
            .connect()
            .await?;
        workers.push(tokio::spawn(work(inbox, emitter.clone())));
    }
    let sockets = super::open_many(clients, common.connect_concurrency, |i| {
        let connector = connector.clone();
        async move {
            let token = connector.token(&format!("rpc-{i}"), &[])?;
            connector.open(Some(&token), false).await
        }
    })
    .await?;
    let answers = Arc::new(Answers::default());
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let mut sinks = Vec::with_capacity(clients);
    let mut readers = Vec::with_capacity(clients);
    for ws in sockets {
        let (sink, mut stream) = ws.split();
        sinks.push(sink);
        let (answers, latency) = (answers.clone(), latency.clone());
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                record(&text, &answers, &latency);
            }
        }));
    }

    let before = proc::sample(common.edge_pid)?;
    let mut pacer = super::Pacer::new(load.rate, load.duration);
    let mut touched = vec![false; clients];
    while let Some(due) = pacer.due().await {
        for n in due {
            let client = (n % clients as u64) as usize;
            let frame = format!(
                r#"{{"type":"rpc","event":"{EVENT}","data":{{"t":{}}},"ref":{n},"timeout":{}}}"#,
                unix_nanos(),
                load.timeout_ms
            );
            sinks[client].feed(Message::Text(frame.into())).await?;
            touched[client] = true;
        }
        for (sink, touched) in sinks.iter_mut().zip(touched.iter_mut()) {
            if std::mem::take(touched) {
                sink.flush().await?;
            }
        }
    }
    let (sent, calling) = pacer.done();
    // Every call ends with an answer: a reply, an error, or its TIMEOUT.
    let started = Instant::now();
    let wait = Duration::from_millis(load.timeout_ms) + Duration::from_secs(2);
    while answers.total() < sent && started.elapsed() < wait {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = proc::sample(common.edge_pid)?;
    for task in readers.iter().chain(&workers) {
        task.abort();
    }
    let replies = answers.replies.load(Ordering::Relaxed);
    let latency = latency
        .lock()
        .map_err(|_| anyhow::anyhow!("latency lock poisoned"))?;
    let mut report = Report::new("rpc");
    report.add("clients", clients);
    report.add("workers", load.workers.max(1));
    report.add("call_rate", load.rate);
    report.add("calls", sent);
    report.add("replies", replies);
    report.add("timeouts", answers.timeouts.load(Ordering::Relaxed));
    report.add("errors", answers.errors.load(Ordering::Relaxed));
    report.add(
        "errors_rate_limited",
        answers.rate_limited.load(Ordering::Relaxed),
    );
    report.add("unanswered", sent.saturating_sub(answers.total()));
    report.add("replies_per_second", replies as f64 / calling.as_secs_f64());
    report.add_latency("round_trip", &latency);
    if let Some(cpu) = report.add_cpu(before, after) {
        report.add("edge_cpu_us_per_call", cpu * 1e6 / sent.max(1) as f64);
    }
    Ok(report)
}

/// Counts one frame a client received: a reply (with its round trip), a TIMEOUT, another error.
fn record(text: &str, answers: &Answers, latency: &Mutex<Histogram<u64>>) {
    if text.starts_with(r#"{"type":"reply""#) {
        if let Some(t) = number_after(text, "\"t\":") {
            let micros = unix_nanos().saturating_sub(t) / 1000;
            if let Ok(mut h) = latency.lock() {
                let _ = h.record(micros.max(1));
            }
        }
        answers.replies.fetch_add(1, Ordering::Relaxed);
    } else if text.contains(r#""code":"TIMEOUT""#) {
        answers.timeouts.fetch_add(1, Ordering::Relaxed);
    } else if text.starts_with(r#"{"type":"error""#) {
        if text.contains(r#""code":"RATE_LIMITED""#) {
            answers.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        answers.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// One worker: reads calls a batch at a time, replies to the batch's calls at once (the
/// emitter's connections pipeline them), then acknowledges them in one `XACK`.
async fn work(mut inbox: Inbox, emitter: Emitter) {
    loop {
        let Ok(batch) = inbox.next().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let replies = batch
            .iter()
            .filter(|r| r.message.event == EVENT && r.message.expects_reply())
            .map(|r| emitter.reply_raw(&r.message, r.message.data.clone()));
        for result in futures_util::future::join_all(replies).await {
            if let Err(error) = result {
                eprintln!("reply failed: {error}");
            }
        }
        let _ = inbox.ack_all(&batch).await;
    }
}
