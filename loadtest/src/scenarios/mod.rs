//! The scenarios, one module each, and what they share.

mod abuse;
mod churn;
mod direct;
mod fanout;
mod idle;

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
        } => {
            let load = fanout::Load {
                rooms: *rooms,
                members: *members,
                rate: *rate,
                duration: *duration,
                payload: *payload,
                stalled: *stalled,
            };
            fanout::run(&cli.common, connector, load).await
        }
        Scenario::Direct {
            users,
            rate,
            duration,
        } => direct::run(&cli.common, connector, *users, *rate, *duration).await,
        Scenario::Churn {
            concurrency,
            duration,
        } => churn::run(&cli.common, connector, *concurrency, *duration).await,
        Scenario::Abuse {
            silent,
            flooders,
            stalled,
            duration,
        } => {
            abuse::run(
                &cli.common,
                connector,
                *silent,
                *flooders,
                *stalled,
                *duration,
            )
            .await
        }
    }
}

/// Opens `count` connections, at most `concurrency` at a time, each set up by `setup(i)`.
/// Fails on the first connection that fails.
pub async fn open_many<F, Fut>(
    count: usize,
    concurrency: usize,
    setup: F,
) -> anyhow::Result<Vec<Ws>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<Ws>> + Send + 'static,
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

/// Publishes `rate` messages per second for `duration`, pipelined in a batch every 10 ms;
/// `message(n)` makes the n-th. Returns how many were published and for how long.
pub async fn publish_paced(
    emitter: &Emitter,
    rate: u64,
    duration: Duration,
    mut message: impl FnMut(u64) -> anyhow::Result<Message>,
) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while started.elapsed() < duration {
        tick.tick().await;
        let due = (rate as f64 * started.elapsed().as_secs_f64()) as u64;
        let mut batch = Vec::new();
        while sent < due {
            batch.push(message(sent)?);
            sent += 1;
        }
        for result in emitter.emit_batch(&batch).await? {
            result?;
        }
    }
    Ok((sent, started.elapsed()))
}

/// Waits until `received` reaches `expected`, or the drain time is up.
pub async fn drain(received: &AtomicU64, expected: u64) {
    let started = Instant::now();
    while received.load(Ordering::Relaxed) < expected && started.elapsed() < DRAIN {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
