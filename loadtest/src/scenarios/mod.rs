//! The scenarios, one module each, and what they share.

mod abuse;
mod chaos;
mod churn;
mod direct;
mod fanout;
mod idle;
mod presence;
mod rpc;
mod storm;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrocast_emitter::{Emitter, Message};

use tokio::sync::Semaphore;

use crate::cli::{Cli, Scenario};
use crate::clients::{Connector, Ws};
use crate::report::Report;

/// Runs the scenario the command line chose.
pub async fn run(cli: &Cli) -> anyhow::Result<Report> {
    let connector = Arc::new(Connector::new(&cli.common));
    match &cli.scenario {
        Scenario::Idle {
            connections,
            rooms,
            hold,
        } => idle::run(&cli.common, connector, *connections, *rooms, *hold).await,
        Scenario::Fanout {
            rooms,
            members,
            rate,
            duration,
            payload,
            stalled,
            publish_via,
        } => {
            let load = fanout::Load {
                rooms: *rooms,
                members: *members,
                rate: *rate,
                duration: *duration,
                payload: *payload,
                stalled: *stalled,
                publish_via: *publish_via,
            };
            fanout::run(&cli.common, connector, load).await
        }
        Scenario::Direct {
            users,
            rate,
            duration,
        } => direct::run(&cli.common, connector, *users, *rate, *duration).await,
        Scenario::Rpc {
            clients,
            rate,
            duration,
            workers,
            timeout_ms,
        } => {
            let load = rpc::Load {
                clients: *clients,
                rate: *rate,
                duration: *duration,
                workers: *workers,
                timeout_ms: *timeout_ms,
            };
            rpc::run(&cli.common, connector, load).await
        }
        Scenario::Churn {
            concurrency,
            duration,
        } => churn::run(&cli.common, connector, *concurrency, *duration).await,
        Scenario::Presence {
            members,
            hold,
            queries,
            reconnect,
        } => {
            let load = presence::Load {
                members: *members,
                hold: *hold,
                queries: *queries,
                reconnect: *reconnect,
            };
            presence::run(&cli.common, connector, load).await
        }
        Scenario::BaselineServer { listen } => crate::baseline::serve(*listen).await,
        Scenario::Storm {
            clients,
            rate,
            warmup,
            after,
            kill_cmd,
            backoff_min,
            backoff_max,
        } => {
            let load = storm::Storm {
                clients: *clients,
                rate: *rate,
                warmup: *warmup,
                after: *after,
                kill_cmd: kill_cmd.clone(),
                backoff_min: *backoff_min,
                backoff_max: *backoff_max,
            };
            storm::run(&cli.common, connector, load).await
        }
        Scenario::Campaign {
            seed,
            duration,
            edges,
            subscribers,
            every,
            edge_binary,
            only,
        } => {
            let campaign = crate::campaign::Campaign {
                only: only.clone(),
                seed: *seed,
                duration: *duration,
                edges: *edges,
                subscribers: *subscribers,
                every: *every,
                edge_binary: edge_binary.clone(),
            };
            crate::campaign::run(&cli.common, campaign).await
        }
        Scenario::Chaos {
            clients,
            rate,
            duration,
            kill_cmds,
            start_cmds,
            every,
            down_for,
        } => {
            let load = chaos::Chaos {
                clients: *clients,
                rate: *rate,
                duration: *duration,
                kill_cmds: kill_cmds.clone(),
                start_cmds: start_cmds.clone(),
                every: *every,
                down_for: *down_for,
            };
            chaos::run(&cli.common, connector, load).await
        }
        Scenario::Abuse {
            silent,
            flooders,
            stalled,
            replayers,
            duration,
        } => {
            abuse::run(
                &cli.common,
                connector,
                *silent,
                *flooders,
                *stalled,
                *replayers,
                *duration,
            )
            .await
        }
    }
}

/// Connects the emitter scenarios publish with: to the cluster if one is given, else to
/// --redis-url.
pub async fn emitter(common: &crate::cli::Common) -> anyhow::Result<Emitter> {
    use anyhow::Context;
    let builder = if common.redis_cluster_nodes.is_empty() {
        Emitter::builder(&common.redis_url)
    } else {
        Emitter::cluster_builder(ferrocast_redis::settings::node_urls(
            &common.redis_cluster_nodes,
        ))
    };
    builder
        .tls(common.redis_tls.load()?)
        .prefix(&common.prefix)
        .connect()
        .await
        .context(
            "this scenario publishes through Redis: check --redis-url or --redis-cluster-nodes",
        )
}

/// Opens `count` connections, at most `concurrency` at a time, each set up by `setup(i)`.
/// Fails on the first connection that fails.
pub async fn open_many<F, Fut, C>(
    count: usize,
    concurrency: usize,
    setup: F,
) -> anyhow::Result<Vec<C>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<C>> + Send + 'static,
    C: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let permit = permits.clone().acquire_owned().await?;
        let opening = setup(i);
        tasks.push(tokio::spawn(async move {
            let ws = opening.await;
            drop(permit);
            ws
        }));
    }
    let mut sockets = Vec::with_capacity(count);
    for task in tasks {
        sockets.push(task.await??);
    }
    Ok(sockets)
}

/// How long clients may take to receive the last messages once publishing stops.
const DRAIN: Duration = Duration::from_secs(10);

/// Paces publishing: every 10 ms, how many messages are due to keep `rate` per second.
struct Pacer {
    rate: u64,
    duration: Duration,
    started: Instant,
    sent: u64,
    tick: tokio::time::Interval,
}

impl Pacer {
    fn new(rate: u64, duration: Duration) -> Pacer {
        Pacer {
            rate,
            duration,
            started: Instant::now(),
            sent: 0,
            tick: tokio::time::interval(Duration::from_millis(10)),
        }
    }

    /// Waits for the next tick; the numbers of the messages due now, or `None` when the time
    /// is up.
    async fn due(&mut self) -> Option<std::ops::Range<u64>> {
        if self.started.elapsed() >= self.duration {
            return None;
        }
        self.tick.tick().await;
        let due = (self.rate as f64 * self.started.elapsed().as_secs_f64()) as u64;
        let range = self.sent..due.max(self.sent);
        self.sent = range.end;
        Some(range)
    }

    /// How many were due in all, and over how long.
    fn done(&self) -> (u64, Duration) {
        (self.sent, self.started.elapsed())
    }
}

/// Publishes `rate` messages per second for `duration`, pipelined in a batch every 10 ms;
/// `message(n)` makes the n-th. Returns how many were published and for how long.
pub async fn publish_paced(
    emitter: &Emitter,
    rate: u64,
    duration: Duration,
    mut message: impl FnMut(u64) -> anyhow::Result<Message>,
) -> anyhow::Result<(u64, Duration)> {
    let mut pacer = Pacer::new(rate, duration);
    while let Some(due) = pacer.due().await {
        let batch = due.map(&mut message).collect::<anyhow::Result<Vec<_>>>()?;
        for result in emitter.emit_batch(&batch).await? {
            result?;
        }
    }
    Ok(pacer.done())
}

/// Like [`publish_paced`], but through a client connection's `publish` frames (with
/// `"echo":false`): against a single-node edge, or the baseline server, which have no Redis.
/// `message(n)` gives the room and the data of the n-th. The connection must be in the rooms.
pub async fn publish_paced_ws(
    ws: Ws,
    rate: u64,
    duration: Duration,
    mut message: impl FnMut(u64) -> (String, String),
) -> anyhow::Result<(u64, Duration)> {
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut stream) = ws.split();
    // Acks (and any error) are read and dropped, so the socket never backs up.
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    let mut pacer = Pacer::new(rate, duration);
    while let Some(due) = pacer.due().await {
        for n in due {
            let (room, data) = message(n);
            let frame = format!(
                r#"{{"type":"publish","room":{},"event":"tick","data":{data},"echo":false}}"#,
                serde_json::Value::from(room)
            );
            sink.feed(tungstenite::Message::Text(frame.into())).await?;
        }
        sink.flush().await?;
    }
    reader.abort();
    Ok(pacer.done())
}

/// Waits until `received` reaches `expected`, or the drain time is up.
pub async fn drain(received: &AtomicU64, expected: u64) {
    let started = Instant::now();
    while received.load(Ordering::Relaxed) < expected && started.elapsed() < DRAIN {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
