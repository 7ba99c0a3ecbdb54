//! Lifecycle events to workers (`--upstream-lifecycle`): `$connect`, `$disconnect`, `$join`,
//! `$leave`, appended to the inbox in the usual upstream envelope.
//!
//! Sessions never wait for Redis to report their lifecycle: an event goes into a bounded queue
//! that one task appends from. A full queue, or an inbox at `--inbox-max-len`, drops the event
//! and counts it (`ferrocast_lifecycle_dropped`): a thousand clients dropping at once can cost
//! Redis at most what the inbox bounds allow, never an unbounded backlog in the edge.

use std::sync::Arc;

use ferrocast_protocol::Upstream;
use ferrocast_protocol::envelope::{VERSION, now_ms};
use ferrocast_protocol::lifecycle::Lifecycle;
use tokio::sync::mpsc;

use crate::bus::{Bus, BusError};
use crate::config::LifecycleKind;
use crate::ops::metrics::{ReasonLabel, metrics};

/// Events waiting to be appended, at most.
const QUEUE: usize = 10_000;

/// Who an event is about.
pub struct Subject<'a> {
    /// The client id.
    pub client: &'a str,
    /// Its user.
    pub user: &'a str,
    /// Its token's `meta` claim.
    pub meta: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// Where sessions report lifecycle events.
pub struct LifecycleEvents {
    wanted: Vec<LifecycleKind>,
    node: String,
    tx: mpsc::Sender<Upstream>,
}

impl LifecycleEvents {
    /// Reports the `wanted` kinds of edge `node`; the receiver is for [`run`].
    pub fn new(
        wanted: &[LifecycleKind],
        node: &str,
    ) -> (LifecycleEvents, mpsc::Receiver<Upstream>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            LifecycleEvents {
                wanted: wanted.to_vec(),
                node: node.to_owned(),
                tx,
            },
            rx,
        )
    }

    /// Queues `event` about `subject`, if its kind is wanted.
    pub fn report(&self, event: Lifecycle, subject: &Subject<'_>) {
        let kind = match event {
            Lifecycle::Connect => LifecycleKind::Connect,
            Lifecycle::Disconnect { .. } => LifecycleKind::Disconnect,
            Lifecycle::Join { .. } => LifecycleKind::Join,
            Lifecycle::Leave { .. } => LifecycleKind::Leave,
        };
        if !self.wanted.contains(&kind) {
            return;
        }
        let upstream = Upstream {
            v: VERSION,
            id: uuid::Uuid::now_v7(),
            client: subject.client.to_owned(),
            user: subject.user.to_owned(),
            node: self.node.clone(),
            event: event.event().to_owned(),
            data: event.data(),
            meta: subject.meta.and_then(|m| serde_json::to_vec(m).ok()),
            ts: now_ms(),
            trace: None,
            rpc: None,
        };
        if self.tx.try_send(upstream).is_err() {
            dropped("queue_full");
        }
    }
}

/// Appends queued events to the inbox until `stopping` completes, then appends what is queued
/// by then and returns: the edge stops it after draining, when every drained session has
/// queued its `$disconnect`.
pub async fn run<B: Bus>(
    mut rx: mpsc::Receiver<Upstream>,
    bus: Arc<B>,
    stopping: impl Future<Output = ()>,
) {
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            upstream = rx.recv() => match upstream {
                Some(upstream) => append(&*bus, &upstream).await,
                None => return,
            },
            () = &mut stopping => break,
        }
    }
    while let Ok(upstream) = rx.try_recv() {
        append(&*bus, &upstream).await;
    }
}

async fn append<B: Bus>(bus: &B, upstream: &Upstream) {
    match bus.send_upstream(upstream, None).await {
        Ok(_) => {
            metrics().upstream_appends.inc();
        }
        Err(BusError::Full(_)) => dropped("inbox_full"),
        Err(error) => {
            tracing::debug!(%error, event = %upstream.event, "lifecycle event not appended");
            dropped("unavailable");
        }
    }
}

fn dropped(reason: &'static str) {
    metrics()
        .lifecycle_dropped
        .get_or_create(&ReasonLabel { reason })
        .inc();
}
