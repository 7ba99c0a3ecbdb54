//! Which local connections belong to which target, and delivery to them.
//!
//! The registry is the edge's only shared membership state. It decides *what* the edge should be
//! subscribed to (a target with at least one local member) and queues the change; the
//! [`subscriptions`](crate::fanout::subscriptions) task makes the bus match, one target at a time in
//! order, and reports back through each target's state so a join can wait until the target is
//! live before answering `joined`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ferrocast_protocol::frame::server::ServerFrame;
use ferrocast_protocol::{Encoding, Envelope, Offset, TargetKey};
use indexmap::IndexMap;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use crate::bus::Sink;
use crate::fanout::control::Control;
use crate::fanout::dedup::RecentIds;
use crate::fanout::delivery::Delivery;
use crate::fanout::outbox::{Frame, Outbound, Outbox};
use crate::ops::metrics::metrics;

/// A target's subscription, as seen by those waiting to join it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubState {
    /// The bus subscription is being made.
    Pending,
    /// Messages published from now on reach the target's members.
    Live,
}

/// A local connection in a target.
#[derive(Clone)]
pub struct Member {
    /// Its client id, to honour `except`.
    pub client: Arc<str>,
    /// Its frame encoding.
    pub encoding: Encoding,
    /// Its outbound queue.
    pub outbox: Outbox,
}

struct Topic {
    /// Unique for the edge's lifetime; tags frames so a connection knows where they came from.
    id: u64,
    members: IndexMap<u64, Member>,
    /// Dropped (closing every receiver) when the subscription fails.
    state: watch::Sender<SubState>,
}

/// A membership just added: the topic's id, and its subscription state to wait on.
pub struct Joined {
    /// The topic's id (see [`Frame::topic`]).
    pub topic: u64,
    /// Turns `Live` once the target's messages reach the session; closes if the subscription
    /// failed.
    pub state: watch::Receiver<SubState>,
}

#[derive(Default)]
struct State {
    next_topic: u64,
    recent: RecentIds,
    topics: HashMap<TargetKey, Topic>,
    /// Targets whose wanted subscription may differ from the bus's, for the subscriptions task.
    changed: HashSet<TargetKey>,
}

/// Local membership of every target.
#[derive(Default)]
pub struct Registry {
    state: Mutex<State>,
    changed: Notify,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Adds `session` to `target`.
    pub fn join(&self, target: &TargetKey, session: u64, member: Member) -> Joined {
        let mut state = self.state.lock();
        let state = &mut *state;
        let topic = state.topics.entry(target.clone()).or_insert_with(|| {
            state.next_topic += 1;
            Topic {
                id: state.next_topic,
                members: IndexMap::new(),
                state: watch::Sender::new(SubState::Pending),
            }
        });
        if topic.members.is_empty() {
            state.changed.insert(target.clone());
            self.changed.notify_one();
        }
        topic.members.insert(session, member);
        Joined {
            topic: topic.id,
            state: topic.state.subscribe(),
        }
    }

    /// Removes `session` from `target`, if it is there.
    pub fn leave(&self, target: &TargetKey, session: u64) {
        let mut state = self.state.lock();
        let Some(topic) = state.topics.get_mut(target) else {
            return;
        };
        topic.members.swap_remove(&session);
        if topic.members.is_empty() {
            state.topics.remove(target);
            state.changed.insert(target.clone());
            self.changed.notify_one();
        }
    }
}

/// The registry is where the bus hands what it receives.
impl Sink for Registry {
    /// Delivers a message (or a worker's control message) from the bus to every local member
    /// of `target`.
    fn deliver(&self, target: &TargetKey, offset: Offset, envelope: &[u8]) {
        let m = metrics();
        m.bus_messages.inc();
        let envelope = match Envelope::decode(envelope) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(%target, %offset, %error, "undecodable envelope skipped");
                m.dropped("undecodable");
                return;
            }
        };
        let mut state = self.state.lock();
        if !state.recent.first_time(target, envelope.id) {
            m.dropped("duplicate");
            tracing::debug!(%target, id = %envelope.id, "duplicate message dropped");
            return;
        }
        let ts = envelope.ts;
        // Only messages published inside a trace get a span: it continues the publisher's trace.
        let span = envelope.trace.as_deref().map(|traceparent| {
            let span = tracing::info_span!("deliver", %target, id = %envelope.id, kind = ?envelope.kind, members = tracing::field::Empty);
            crate::ops::telemetry::continue_trace(&span, traceparent);
            span
        });
        let _entered = span.as_ref().map(tracing::Span::enter);
        let Some(topic) = state.topics.get(target) else {
            return;
        };
        if let Some(span) = &span {
            span.record("members", topic.members.len());
        }
        if let Some(control) = Control::from_envelope(&envelope) {
            let control = Arc::new(control);
            for member in topic.members.values() {
                if !envelope.except.iter().any(|c| **c == *member.client) {
                    // No offset: a seam must never drop a control, which replays leave out.
                    member.outbox.push(Outbound::Control(control.clone()));
                }
            }
            return;
        }
        let mut delivery = Delivery::new(envelope, offset);
        // Built once per encoding, shared by every member using it.
        let mut frames: [Option<Option<Arc<Frame>>>; 2] = [None, None];
        for member in topic.members.values() {
            if delivery.excludes(&member.client) {
                continue;
            }
            let slot = &mut frames[match member.encoding {
                Encoding::Json => 0,
                Encoding::MsgPack => 1,
            }];
            let frame = slot.get_or_insert_with(|| {
                delivery.frame(member.encoding).map(|message| {
                    Arc::new(Frame {
                        message,
                        topic: topic.id,
                        offset: Some(offset),
                        ts,
                    })
                })
            });
            if let Some(frame) = frame {
                member.outbox.push(Outbound::Frame(frame.clone()));
            }
        }
    }

    /// Messages of `target` up to `offset` may have been lost (its history vanished while the
    /// bus was reconnecting): tells its local members with a `gap` frame, queued in order with
    /// their messages. They stay connected; delivery goes on after `offset`.
    fn gap(&self, target: &TargetKey, offset: Option<Offset>) {
        let (scope, room) = target.scope_and_room();
        let offset = offset.map(|o| o.to_string());
        let gap = ServerFrame::Gap {
            scope,
            room,
            offset,
        };
        let state = self.state.lock();
        let Some(topic) = state.topics.get(target) else {
            return;
        };
        tracing::warn!(%target, members = topic.members.len(), "history lost; telling members of the gap");
        let mut frames: [Option<Option<Arc<Frame>>>; 2] = [None, None];
        for member in topic.members.values() {
            let slot = &mut frames[match member.encoding {
                Encoding::Json => 0,
                Encoding::MsgPack => 1,
            }];
            let frame = slot.get_or_insert_with(|| {
                crate::fanout::delivery::message(&gap, member.encoding).map(|message| {
                    Arc::new(Frame {
                        message,
                        topic: topic.id,
                        offset: None,
                        ts: 0,
                    })
                })
            });
            if let Some(frame) = frame {
                member.outbox.push(Outbound::Frame(frame.clone()));
            }
        }
    }
}

impl Registry {
    /// Waits until some target's wanted subscription may have changed.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Takes the targets that changed since the last call, each with whether it is wanted now.
    pub fn take_changed(&self) -> Vec<(TargetKey, bool)> {
        let mut state = self.state.lock();
        let changed = std::mem::take(&mut state.changed);
        changed
            .into_iter()
            .map(|t| {
                let wanted = state.topics.contains_key(&t);
                (t, wanted)
            })
            .collect()
    }

    /// Marks `target` live: joins waiting on it may answer.
    pub fn set_live(&self, target: &TargetKey) {
        if let Some(topic) = self.state.lock().topics.get(target) {
            topic.state.send_replace(SubState::Live);
        }
    }

    /// The subscription for `target` failed: everyone waiting is told (their receivers close),
    /// and the members are dropped. A later join starts afresh.
    pub fn fail(&self, target: &TargetKey) {
        let mut state = self.state.lock();
        if let Some(topic) = state.topics.get(target)
            && *topic.state.borrow() == SubState::Pending
        {
            state.topics.remove(target);
        }
    }

    /// How many targets have local members.
    pub fn targets(&self) -> usize {
        self.state.lock().topics.len()
    }
}
