//! Streaming a replay to the client: one page read, written, and forgotten before the next.
//!
//! A page's memory is reserved twice before it is read: from the edge-wide replay budget
//! (`--replay-memory`), so that many replays at once wait their turn instead of each holding
//! pages, and then, once its frames are built, from the connection's own outbound byte bound, so
//! a replay and the live messages queued behind it together stay within that bound (over it,
//! the client is a slow consumer and closed with 4009). Each page also costs a token of the
//! connection's rate limit: a client cannot make Redis read history faster than it is allowed
//! to send frames.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ferrocast_protocol::TargetKey;
use ferrocast_protocol::close;
use ferrocast_protocol::close::ErrorCode;
use ferrocast_protocol::frame::server::ServerFrame;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tungstenite::Message;

use crate::refusal::Refusal;

use super::writer::send_unless_kicked;
use super::{Session, Ws};
use crate::bus::PAGE_BYTES;
use crate::bus::{Bus, ReplayCursor};
use crate::fanout::dedup::Written;
use crate::fanout::recovery;
use crate::ops::metrics::metrics;

/// Message ids remembered to drop a message stored twice (a retried publish), across pages.
const RECENT_IDS: usize = 1024;
/// Longest a page may take to be written. A client that does not read its replay would
/// otherwise hold its share of the edge-wide budget, and with enough such clients no replay
/// anywhere could start; past this it is a slow consumer (4009), and may resume later.
pub(super) const PAGE_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest a replay waits for room in the edge-wide budget before it gives up with a `gap`: the
/// client is not reading its socket meanwhile, and would be taken for idle.
const BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A page's share of the edge-wide replay `budget`, waiting at most [`BUDGET_WAIT`] for it;
/// `Ok(None)` if none freed in time. Both the wait and the giving up are counted: they are what
/// tells an operator that `--replay-memory` is too small for the replays asked of the edge.
async fn share(budget: Arc<Semaphore>) -> Result<Option<OwnedSemaphorePermit>, AcquireError> {
    let bytes = PAGE_BYTES as u32;
    if let Ok(permit) = budget.clone().try_acquire_many_owned(bytes) {
        return Ok(Some(permit));
    }
    metrics().replay_budget_waits.inc();
    match tokio::time::timeout(BUDGET_WAIT, budget.acquire_many_owned(bytes)).await {
        Ok(permit) => permit.map(Some),
        Err(_) => {
            metrics().replay_budget_timeouts.inc();
            Ok(None)
        }
    }
}

/// A replay opened by an answer, to stream after it.
pub(super) struct Replaying {
    /// Whose history.
    pub target: TargetKey,
    /// Its registry topic, whose seam the replay set.
    pub topic: u64,
    /// Where it stands.
    pub cursor: ReplayCursor,
    /// What was written live already (for the user and `all` scopes), left out of the replay.
    pub written: Written,
}

impl<B: Bus> Session<B> {
    /// A page's share of the edge-wide replay budget, for a page of history read for an answer
    /// (`history`, `rewind`): `UNAVAILABLE` if none frees within the replay's wait.
    pub(super) async fn page_budget(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        match share(self.shared.replay_budget.clone()).await {
            Ok(Some(permit)) => Ok(permit),
            Ok(None) | Err(_) => Err(Refusal::new(
                ErrorCode::Unavailable,
                "the edge is busy reading history for others; retry",
            )),
        }
    }

    /// Writes `replay` a page at a time, then a `gap` frame if it was cut short (Redis lost the
    /// history or could not be read meanwhile). `Err(Some(code))`: the edge asked the connection
    /// to close; `Err(None)`: the socket failed.
    pub(super) async fn stream(
        &mut self,
        ws: &mut Ws,
        mut kick: Pin<&mut impl Future<Output = u16>>,
        mut replay: Replaying,
    ) -> Result<(), Option<u16>> {
        let budget = self.shared.replay_budget.clone();
        let mut ids = HashSet::new();
        while !replay.cursor.is_done() {
            let permit = tokio::select! {
                permit = share(budget.clone()) => match permit {
                    Ok(Some(permit)) => permit,
                    Err(_) => return Err(None),
                    Ok(None) => {
                        tracing::debug!(target = %replay.target, "no replay budget in time; replay cut short");
                        replay.cursor.interrupt();
                        break;
                    }
                },
                code = kick.as_mut() => return Err(Some(code)),
            };
            let page = match self
                .shared
                .bus
                .replay_page(&replay.target, &mut replay.cursor)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::debug!(%error, target = %replay.target, "replay cut short");
                    replay.cursor.interrupt();
                    break;
                }
            };
            self.rate.charge(1.0);
            if ids.len() > RECENT_IDS {
                ids.clear();
            }
            let frames = recovery::frames(
                &page,
                &self.client,
                self.encoding,
                &replay.written,
                &mut ids,
            );
            drop(page);
            let bytes: usize = frames.iter().map(Message::len).sum();
            if !self.outbox.reserve(bytes) {
                return Err(Some(close::SLOW_CONSUMER));
            }
            let written = tokio::time::timeout(
                PAGE_WRITE_TIMEOUT,
                send_unless_kicked(ws, kick.as_mut(), frames),
            )
            .await;
            self.outbox.release(bytes);
            drop(permit);
            match written {
                Ok(written) => written?,
                Err(_) => return Err(Some(close::SLOW_CONSUMER)),
            }
            // A client reading its replay is alive, whatever the replay keeps it from sending.
            self.life.heard(&self.shared.connections.clock);
        }
        if replay.cursor.was_interrupted() {
            // What the seam held back is not in the replay any more: let it through.
            self.seams.forget(replay.topic);
            // The gap reaches to where the history stands now, which after Redis lost it is a
            // new epoch's offset (as after a catch-up); the replay's end if it cannot be read.
            let now = self.shared.bus.open_replay(&replay.target, None).await;
            let offset = now.ok().and_then(|c| c.last).or(replay.cursor.last);
            let (scope, room) = replay.target.scope_and_room();
            let gap = self.encode(&ServerFrame::Gap {
                scope,
                room,
                offset: offset.map(|o| o.to_string()),
            });
            send_unless_kicked(ws, kick, gap).await?;
        }
        Ok(())
    }
}
