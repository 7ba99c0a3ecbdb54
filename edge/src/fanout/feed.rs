//! The feed: where every bus hands what it receives, and the first stage of fan-out.
//!
//! For each message it decodes and checks the envelope once (the in-process bus hands it over
//! decoded), drops a message seen twice ([`dedup`](super::dedup)), opens a span continuing the
//! publisher's trace, and then either hands a worker's control message to the sessions it acts
//! on, or builds the message's frame once per encoding its audience uses, outside any lock, and
//! has the registry queue the same shared bytes for every member.
//!
//! A bus calls the feed for one target at a time, in offset order; the feed keeps that order
//! because it finishes with one message before it is handed the next.

use std::sync::Arc;

use ferrocast_protocol::frame::server::ServerFrame;
use ferrocast_protocol::presence::PresenceEvents;
use ferrocast_protocol::{Envelope, Offset, Scope, TargetKey};
use parking_lot::Mutex;

use super::control::Control;
use super::cork::{self, Cork};
use super::dedup::RecentIds;
use super::delivery::{self, Delivery};
use super::outbox::{Frame, Outbound};
use super::presence::{self, PresenceFrames};
use super::registry::{Audience, Registry};
use crate::bus::Sink;
use crate::ops::metrics::metrics;

/// Most times a message is built again because its target's members all changed meanwhile.
const REBUILDS: usize = 3;

/// Decodes, deduplicates and dispatches what the bus receives.
pub struct Feed {
    registry: Arc<Registry>,
    recent: Mutex<RecentIds>,
}

impl Feed {
    /// A feed delivering to the members `registry` knows.
    pub fn new(registry: Arc<Registry>) -> Arc<Feed> {
        Arc::new(Feed {
            registry,
            recent: Mutex::new(RecentIds::default()),
        })
    }

    /// Builds one item per encoding the audience uses (`build(encoding, topic)`), and has the
    /// registry deliver them, again if the target's topic changed in between. Returns the
    /// audience's size and how many were written directly.
    fn fan_out(
        &self,
        target: &TargetKey,
        except: &[String],
        mut build: impl FnMut(&Audience) -> [Option<Outbound>; 2],
    ) -> Option<(usize, usize)> {
        // Written when this delivery ends, or with the bus's batch if it corked one.
        let _cork = Cork::start();
        for _ in 0..REBUILDS {
            let audience = self.registry.audience(target)?;
            let items = build(&audience);
            let written = cork::pending(|corked| {
                self.registry
                    .fan_out(target, audience.topic, except, &items, corked)
            });
            if let Some(written) = written {
                return Some((audience.members, written));
            }
        }
        tracing::warn!(%target, "membership kept changing; message not delivered");
        None
    }
}

impl Feed {
    /// Drops a duplicate, then hands a control message to the sessions it acts on, or fans a
    /// message out to the target's members.
    fn dispatch(&self, target: &TargetKey, offset: Offset, envelope: Envelope) {
        if !self.recent.lock().first_time(target, envelope.id) {
            metrics().dropped("duplicate");
            tracing::debug!(%target, id = %envelope.id, "duplicate message dropped");
            return;
        }
        // Only messages published inside a trace get a span: it continues the publisher's trace.
        let span = envelope.trace.as_deref().map(|traceparent| {
            let span = tracing::info_span!("deliver", %target, id = %envelope.id, kind = ?envelope.kind, members = tracing::field::Empty);
            crate::ops::telemetry::continue_trace(&span, traceparent);
            span
        });
        let _entered = span.as_ref().map(tracing::Span::enter);
        let except = envelope.except.clone();
        let members = if let Some(control) = Control::from_envelope(&envelope) {
            // No offset: a seam must never drop a control, which replays leave out.
            let is_reply = matches!(control, Control::Reply(_));
            let item = Some(Outbound::Control(Arc::new(control)));
            let delivered = self.fan_out(target, &except, |_| [item.clone(), item.clone()]);
            if is_reply && envelope.scope == Scope::Client && delivered.is_none() {
                // Its client is gone from this edge (the edges it was never on do not hear of
                // it: nothing subscribes its channel there). A named call's reply goes to the
                // user's target, which tells nothing of the caller.
                metrics().rpc_late_replies.inc();
            }
            delivered
        } else {
            let ts = envelope.ts;
            let mut delivery = Delivery::new(envelope, offset);
            let delivered = self.fan_out(target, &except, |audience| {
                audience.per_encoding(|encoding| {
                    let message = delivery.frame(encoding)?;
                    let frame = Frame::of_topic(message, audience.topic, Some(offset), ts);
                    Some(Outbound::Frame(frame))
                })
            });
            // Frames written directly are counted here, once per message (queued ones by the
            // connection that writes them); the latency is that of the last written.
            if let Some((_, written)) = delivered
                && written > 0
            {
                let m = metrics();
                m.deliveries.inc_by(written as u64);
                let now_ms = ferrocast_protocol::envelope::now_ms();
                m.delivery_latency
                    .observe(now_ms.saturating_sub(ts) as f64 / 1000.0);
            }
            delivered
        };
        if let (Some(span), Some((members, _))) = (&span, members) {
            span.record("members", members);
        }
    }
}

impl Sink for Feed {
    fn deliver(&self, target: &TargetKey, offset: Offset, envelope: &[u8]) {
        metrics().bus_messages.inc();
        if let Some(envelope) = delivery::decode(offset, envelope) {
            self.dispatch(target, offset, envelope);
        }
    }

    fn deliver_envelope(&self, target: &TargetKey, offset: Offset, envelope: Envelope) {
        metrics().bus_messages.inc();
        self.dispatch(target, offset, envelope);
    }

    fn presence(&self, target: &TargetKey, events: PresenceEvents) {
        let (_, Some(room)) = target.scope_and_room() else {
            return;
        };
        self.fan_out(target, &[], |audience| {
            audience.per_encoding(|encoding| {
                Some(Outbound::Presence(Arc::new(PresenceFrames {
                    topic: audience.topic,
                    frames: presence::frames(room, &events, encoding),
                })))
            })
        });
    }

    fn batch(&self) -> Box<dyn std::any::Any> {
        Box::new(Cork::start())
    }

    fn gap(&self, target: &TargetKey, offset: Option<Offset>) {
        let (scope, room) = target.scope_and_room();
        let offset = offset.map(|o| o.to_string());
        let gap = ServerFrame::Gap {
            scope,
            room,
            offset,
        };
        let members = self.fan_out(target, &[], |audience| {
            audience.per_encoding(|encoding| {
                let message = delivery::message(&gap, encoding)?;
                Some(Outbound::Frame(Frame::of_topic(
                    message,
                    audience.topic,
                    None,
                    0,
                )))
            })
        });
        if let Some((members, _)) = members {
            tracing::warn!(%target, members, "history lost; told members of the gap");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::outbox::{self, Queued};
    use crate::fanout::registry::Member;
    use ferrocast_protocol::offset::StreamId;
    use ferrocast_protocol::{Encoding, Target};
    use tungstenite::Message;

    fn at(ms: u64) -> Offset {
        Offset {
            id: StreamId { ms, seq: 0 },
            epoch: StreamId { ms: 1, seq: 0 },
        }
    }

    fn member(registry: &Registry, target: &TargetKey, session: u64, encoding: Encoding) -> Queued {
        let (outbox, queued) = outbox::channel(16, 1 << 20, None);
        let member = Member {
            client: format!("c{session}").into(),
            encoding,
            outbox,
            direct: outbox::Direct::Yes,
        };
        registry.join(target, session, member);
        queued
    }

    fn items_of(queued: &Queued) -> Vec<Outbound> {
        std::iter::from_fn(|| queued.try_recv()).collect()
    }

    #[test]
    fn a_message_is_built_once_per_encoding_and_shared_by_its_members() {
        let registry = Registry::new();
        let feed = Feed::new(registry.clone());
        let room = Target::Room("r".into());
        let key = room.key();
        let json = [1, 2].map(|s| member(&registry, &key, s, Encoding::Json));
        let msgpack = member(&registry, &key, 3, Encoding::MsgPack);
        let excluded = member(&registry, &key, 4, Encoding::Json);
        let mut envelope = Envelope::message(&room, "e", b"{\"n\":1}".to_vec());
        envelope.except = vec!["c4".into()];
        feed.deliver(&key, at(5), &envelope.encode().expect("encode"));

        let [a, b] = json.each_ref().map(items_of);
        let (Outbound::Frame(a), Outbound::Frame(b)) = (&a[0], &b[0]) else {
            panic!("frames expected");
        };
        assert!(Arc::ptr_eq(a, b), "one frame, shared");
        assert_eq!(a.offset, Some(at(5)));
        assert!(matches!(a.message, Message::Text(_)));
        let m = items_of(&msgpack);
        assert!(matches!(&m[0], Outbound::Frame(f) if matches!(f.message, Message::Binary(_))));
        assert!(items_of(&excluded).is_empty(), "except is honoured");

        // The same message again (a retried publish at another offset) is dropped.
        feed.deliver(&key, at(6), &envelope.encode().expect("encode"));
        assert!(items_of(&msgpack).is_empty());
        // So is an undecodable one, without stopping the next.
        feed.deliver(&key, at(7), b"not msgpack");
        let next = Envelope::message(&room, "e", b"2".to_vec());
        feed.deliver_envelope(&key, at(8), next);
        assert_eq!(items_of(&msgpack).len(), 1);
    }

    #[test]
    fn controls_and_gaps_reach_every_member_in_order_with_messages() {
        let registry = Registry::new();
        let feed = Feed::new(registry.clone());
        let user = Target::User("7".into());
        let key = user.key();
        let queued = member(&registry, &key, 1, Encoding::Json);
        feed.deliver_envelope(&key, at(1), Envelope::message(&user, "e", b"1".to_vec()));
        feed.deliver_envelope(&key, at(2), Envelope::join(&user, "vip"));
        feed.gap(&key, Some(at(9)));
        let items = items_of(&queued);
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[0], Outbound::Frame(f) if f.offset == Some(at(1))));
        assert!(matches!(&items[1], Outbound::Control(c) if **c == Control::Join("vip".into())));
        let Outbound::Frame(gap) = &items[2] else {
            panic!("gap frame expected")
        };
        assert_eq!(gap.offset, None, "a gap is no message: seams never drop it");
        let Message::Text(text) = &gap.message else {
            panic!("text expected")
        };
        let value: serde_json::Value = serde_json::from_str(text).expect("json");
        assert_eq!(value["type"], "gap");
        assert_eq!(value["scope"], "user");
        assert_eq!(value["offset"], at(9).to_string());
    }

    #[test]
    fn nothing_is_built_for_a_target_without_members() {
        let registry = Registry::new();
        let feed = Feed::new(registry.clone());
        let room = Target::Room("empty".into());
        feed.deliver_envelope(
            &room.key(),
            at(1),
            Envelope::message(&room, "e", b"1".to_vec()),
        );
        assert!(registry.audience(&room.key()).is_none());
    }
}
