//! A worker for tests of `rpc` (v1.2), reading the inbox with the emitter's `Inbox` and
//! answering with its `reply` and `reply_error`.

use std::sync::Arc;
use std::time::Duration;

use ferrocast_emitter::{Emitter, Inbox, Upstream};
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use crate::RedisServer;

/// Edge flags for the worker's events, with upstream quotas that let a test make many calls.
pub const EDGE_ARGS: &[&str] = &[
    "--upstream-events",
    "rpc.*",
    "--upstream-burst",
    "100",
    "--upstream-rate",
    "100",
];

/// A worker (consumer `w1` of group `rpc-workers`) answering `rpc.echo` with its data, refusing
/// `rpc.fail`, answering `rpc.late` only after its deadline, holding `rpc.held` until the test
/// releases it, and ignoring everything else. Aborted when dropped.
pub struct Worker {
    task: tokio::task::JoinHandle<()>,
    held: mpsc::UnboundedReceiver<Uuid>,
    release: Arc<Notify>,
}

impl Worker {
    /// The id of the next `rpc.held` call the worker receives, which it then holds.
    pub async fn held(&mut self) -> Uuid {
        tokio::time::timeout(Duration::from_secs(10), self.held.recv())
            .await
            .expect("a held call within 10 s")
            .expect("the worker runs")
    }

    /// Whether a held call came in (without waiting).
    pub fn has_held(&mut self) -> bool {
        self.held.try_recv().is_ok()
    }

    /// Lets the worker answer the call it holds (or the next one, at once).
    pub fn release(&self) {
        self.release.notify_one();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the worker on `redis`'s inbox.
pub async fn worker(redis: &RedisServer) -> Worker {
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let mut inbox = Inbox::builder(redis.url(), "rpc-workers", "w1")
        .block(Duration::from_millis(100))
        .connect()
        .await
        .expect("inbox");
    let (held_tx, held) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let released = Arc::clone(&release);
    let task = tokio::spawn(async move {
        loop {
            let Ok(batch) = inbox.next().await else {
                continue;
            };
            for received in batch {
                let call = &received.message;
                if call.event == "rpc.held" {
                    let _ = held_tx.send(call.id);
                    released.notified().await;
                }
                answer(&emitter, call).await;
                let _ = inbox.ack(&received).await;
            }
        }
    });
    Worker {
        task,
        held,
        release,
    }
}

async fn answer(emitter: &Emitter, call: &Upstream) {
    let Some(rpc) = &call.rpc else {
        return;
    };
    match call.event.as_str() {
        "rpc.echo" | "rpc.held" => {
            emitter
                .reply_raw(call, call.data.clone())
                .await
                .expect("reply");
        }
        "rpc.fail" => {
            let data = json!({"why": call.data.len()});
            emitter
                .reply_error(call, "refused by the worker", Some(&data))
                .await
                .expect("reply_error");
        }
        "rpc.late" => {
            let now = ferrocast_protocol::envelope::now_ms();
            let wait = rpc.deadline.saturating_sub(now) + 200;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            assert!(call.rpc_expired());
            emitter
                .reply(call, &json!("too late"))
                .await
                .expect("reply");
        }
        _ => {}
    }
}
