//! The in-process bus: single-node mode. Same semantics as Redis (capped, expiring history per
//! target, offsets with an epoch, delivery in offset order) with nothing to set up.

pub mod nodes;
pub mod presence;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrocast_protocol::envelope::now_ms;
use ferrocast_protocol::offset::StreamId;
use ferrocast_protocol::{Envelope, Offset, TargetKey, Upstream};
use parking_lot::Mutex;

use bytes::Bytes;

use super::{Appended, Bus, BusError, HistoryPage, InboxStats, PAGE_BYTES, ReplayCursor, Sink};
use ferrocast_protocol::presence::PresenceEvents;
use ferrocast_protocol::{Scope, Target};
use nodes::MemoryNodes;
use presence::MemoryPresenceStore;

/// How often expired histories are swept away (on the next publish after this long).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// An in-process bus.
pub struct MemoryBus {
    sink: Arc<dyn Sink>,
    history_len: usize,
    history_ttl: Duration,
    state: Mutex<State>,
    presence: MemoryPresenceStore,
    nodes: MemoryNodes,
}

struct State {
    streams: HashMap<TargetKey, History>,
    subscribed: HashSet<TargetKey>,
    last_sweep: Instant,
}

struct History {
    epoch: StreamId,
    last: StreamId,
    entries: VecDeque<(StreamId, Bytes)>,
    /// Publisher-chosen ids and their offsets, newest last: publishing one again is a no-op.
    chosen: VecDeque<(Offset, uuid::Uuid)>,
    expires: Instant,
}

impl MemoryBus {
    /// A bus delivering to `sink`, keeping `history_len` messages per target for
    /// `history_ttl` after the last publish.
    pub fn new(sink: Arc<dyn Sink>, history_len: u64, history_ttl: Duration) -> MemoryBus {
        MemoryBus {
            sink,
            history_len: usize::try_from(history_len).unwrap_or(usize::MAX).max(1),
            history_ttl,
            state: Mutex::new(State {
                streams: HashMap::new(),
                subscribed: HashSet::new(),
                last_sweep: Instant::now(),
            }),
            presence: MemoryPresenceStore::default(),
            nodes: MemoryNodes::default(),
        }
    }
}

impl History {
    fn live(&self, now: Instant) -> bool {
        self.expires > now
    }
}

impl Bus for MemoryBus {
    type Presence = MemoryPresenceStore;

    fn presence(&self) -> &MemoryPresenceStore {
        &self.presence
    }

    type Nodes = MemoryNodes;

    fn nodes(&self) -> &MemoryNodes {
        &self.nodes
    }

    async fn subscribe(&self, targets: &[TargetKey]) -> Result<(), BusError> {
        self.state.lock().subscribed.extend(targets.iter().cloned());
        Ok(())
    }

    async fn unsubscribe(&self, targets: &[TargetKey]) -> Result<(), BusError> {
        let mut state = self.state.lock();
        for target in targets {
            state.subscribed.remove(target);
        }
        Ok(())
    }

    async fn open_replay(
        &self,
        target: &TargetKey,
        since: Option<Offset>,
    ) -> Result<ReplayCursor, BusError> {
        let state = self.state.lock();
        let Some(history) = state.streams.get(target).filter(|h| h.live(Instant::now())) else {
            return Ok(ReplayCursor::finished(false, None));
        };
        let last = history.entries.back().map(|(id, _)| Offset {
            id: *id,
            epoch: history.epoch,
        });
        let Some(since) = since else {
            return Ok(ReplayCursor::finished(false, last));
        };
        if since.epoch != history.epoch {
            return Ok(ReplayCursor::new(false, last, None));
        }
        let found = history
            .entries
            .binary_search_by(|(id, _)| id.cmp(&since.id))
            .is_ok();
        Ok(ReplayCursor::new(found, last, Some(since.id)))
    }

    async fn history(
        &self,
        target: &TargetKey,
        before: Option<Offset>,
        limit: usize,
    ) -> Result<HistoryPage, BusError> {
        let state = self.state.lock();
        let Some(history) = state.streams.get(target).filter(|h| h.live(Instant::now())) else {
            return Ok(HistoryPage::default());
        };
        let at = |id: StreamId| Offset {
            id,
            epoch: history.epoch,
        };
        let newest = history.entries.back().map(|(id, _)| at(*id));
        if before.is_some_and(|b| b.epoch != history.epoch) {
            return Ok(HistoryPage {
                newest,
                entries: Vec::new(),
                more: false,
            });
        }
        // Ids are increasing: the entries before `before` are a prefix.
        let end = before.map_or(history.entries.len(), |b| {
            history.entries.partition_point(|(id, _)| *id < b.id)
        });
        let mut start = end.saturating_sub(limit);
        let mut bytes = 0;
        // Within PAGE_BYTES as Redis's reads are, keeping those nearest `before`.
        for i in (start..end).rev() {
            bytes += history.entries[i].1.len();
            if bytes > PAGE_BYTES && i + 1 < end {
                start = i + 1;
                break;
            }
        }
        Ok(HistoryPage {
            newest,
            entries: history
                .entries
                .range(start..end)
                .map(|(id, e)| (at(*id), e.clone()))
                .collect(),
            more: start > 0,
        })
    }

    async fn replay_page(
        &self,
        target: &TargetKey,
        cursor: &mut ReplayCursor,
    ) -> Result<Vec<(Offset, Bytes)>, BusError> {
        if cursor.is_done() {
            return Ok(Vec::new());
        }
        let state = self.state.lock();
        let Some(history) = state.streams.get(target).filter(|h| h.live(Instant::now())) else {
            return Ok(cursor.take(Vec::new(), None, false));
        };
        // Ids are increasing, so the entries after the cursor are a suffix.
        let (start, still_there) = match cursor.after() {
            Some(after) => (
                history.entries.partition_point(|(id, _)| *id <= after),
                history
                    .entries
                    .binary_search_by(|(id, _)| id.cmp(&after))
                    .is_ok(),
            ),
            None => (0, true),
        };
        let page = history
            .entries
            .range(start..)
            .take(cursor.count())
            .map(|(id, bytes)| {
                let offset = Offset {
                    id: *id,
                    epoch: history.epoch,
                };
                (offset, bytes.clone())
            })
            .collect();
        Ok(cursor.take(page, Some(history.epoch), still_there))
    }

    async fn publish(&self, envelope: &Envelope, idempotent: bool) -> Result<Offset, BusError> {
        let target = envelope
            .target()
            .map_err(|e| BusError::Refused(e.to_string()))?
            .key();
        let bytes = Bytes::from(
            envelope
                .encode()
                .map_err(|e| BusError::Refused(e.to_string()))?,
        );
        let now = Instant::now();
        let mut state = self.state.lock();
        if now.duration_since(state.last_sweep) >= SWEEP_EVERY {
            state.streams.retain(|_, h| h.live(now));
            state.last_sweep = now;
        }
        let ms = now_ms();
        if idempotent
            && let Some(offset) = state
                .streams
                .get(&target)
                .filter(|h| h.live(now))
                .and_then(|h| h.chosen.iter().find(|(_, id)| *id == envelope.id))
                .map(|(offset, _)| *offset)
        {
            return Ok(offset);
        }
        let history = state
            .streams
            .entry(target.clone())
            .and_modify(|h| {
                if !h.live(now) {
                    h.entries.clear();
                    h.chosen.clear();
                    h.epoch = StreamId::default();
                }
            })
            .or_insert_with(|| History {
                epoch: StreamId::default(),
                last: StreamId::default(),
                entries: VecDeque::new(),
                chosen: VecDeque::new(),
                expires: now,
            });
        // Ids like Redis's: time, then a sequence within the same millisecond (or a stuck clock).
        let id = if ms > history.last.ms {
            StreamId { ms, seq: 0 }
        } else {
            StreamId {
                ms: history.last.ms,
                seq: history.last.seq + 1,
            }
        };
        if history.epoch == StreamId::default() {
            history.epoch = id;
        }
        history.last = id;
        history.entries.push_back((id, bytes.clone()));
        if history.entries.len() > self.history_len {
            history.entries.pop_front();
        }
        history.expires = now + self.history_ttl;
        let offset = Offset {
            id,
            epoch: history.epoch,
        };
        if idempotent {
            history.chosen.push_back((offset, envelope.id));
            // As long as the history holds the message, as the Redis key lives as long as it.
            if history.chosen.len() > self.history_len {
                history.chosen.pop_front();
            }
        }
        // Delivered under the lock, so two publishers to one target deliver in offset order.
        if state.subscribed.contains(&target) {
            self.sink
                .deliver_envelope(&target, offset, envelope.clone());
        }
        Ok(offset)
    }

    async fn send_upstream(&self, _: &Upstream, _: Option<&str>) -> Result<Appended, BusError> {
        // Configuration refuses --upstream-events without Redis; this is the backstop.
        Err(BusError::Unavailable(
            "upstream messages need Redis (--redis-url)".into(),
        ))
    }

    async fn inbox_stats(&self) -> Result<Option<InboxStats>, BusError> {
        Ok(None)
    }

    async fn presence_announce(&self, room: &str, events: &PresenceEvents) -> Result<(), BusError> {
        let target = Target::new(Scope::Room, room)
            .map_err(|e| BusError::Refused(e.to_string()))?
            .key();
        if self.state.lock().subscribed.contains(&target) {
            self.sink.presence(&target, events.clone());
        }
        Ok(())
    }

    fn is_subscribed(&self, target: &TargetKey) -> bool {
        self.state.lock().subscribed.contains(target)
    }

    fn is_ready(&self) -> bool {
        true
    }
}
