//! The bus contract, run against both implementations: the in-process bus and Redis.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrocast_edge::bus::PAGE_BYTES;
use ferrocast_edge::bus::{Bus, MemoryBus, RedisBus, RedisSettings};
use ferrocast_edge::fanout::feed::Feed;
use ferrocast_edge::fanout::outbox::{self, Outbound, Queued};
use ferrocast_edge::fanout::registry::{Member, Registry};
use ferrocast_protocol::offset::StreamId;
use ferrocast_protocol::{Encoding, Envelope, Offset, Target};
use ferrocast_tests::{DEADLINE, RedisServer};
use tungstenite::Message;

/// Joins `client` to `target` and waits until the subscription is live.
async fn member(registry: &Registry, target: &Target, session: u64, encoding: Encoding) -> Queued {
    let (out, queued) = outbox::channel(64, 1 << 20, None);
    let member = Member {
        client: format!("c{session}").into(),
        encoding,
        outbox: out,
        direct: outbox::Direct::Yes,
    };
    // No wait list: the target was live already.
    if let Some(state) = registry.join(&target.key(), session, member).state {
        tokio::time::timeout(DEADLINE, state.live())
            .await
            .expect("live in time")
            .expect("subscribed");
    }
    queued
}

async fn next_text(queued: &Queued) -> serde_json::Value {
    let item = tokio::time::timeout(DEADLINE, queued.recv())
        .await
        .expect("in time");
    let Outbound::Frame(frame) = item else {
        panic!("frame expected")
    };
    let Message::Text(text) = &frame.message else {
        panic!("text expected")
    };
    serde_json::from_str(text).expect("json")
}

/// What a replay of `target` after `since` holds, read page by page to the end.
#[derive(Debug, PartialEq)]
struct Replay {
    recovered: bool,
    entries: Vec<(Offset, Bytes)>,
    last: Option<Offset>,
    /// Bytes of the largest page.
    largest_page: usize,
}

async fn read<B: Bus>(
    bus: &B,
    target: &ferrocast_protocol::TargetKey,
    since: Option<Offset>,
) -> Replay {
    let mut cursor = bus.open_replay(target, since).await.expect("open");
    let mut entries = Vec::new();
    let mut largest_page = 0;
    while !cursor.is_done() {
        let page = bus.replay_page(target, &mut cursor).await.expect("page");
        largest_page = largest_page.max(page.iter().map(|(_, e)| e.len()).sum());
        entries.extend(page);
    }
    assert!(!cursor.was_interrupted());
    Replay {
        recovered: cursor.recovered,
        entries,
        last: cursor.last,
        largest_page,
    }
}

async fn publish<B: Bus>(bus: &B, target: &Target, event: &str, data: &str) -> Offset {
    let envelope = Envelope::message(target, event, data.as_bytes().to_vec());
    bus.publish(&envelope, false).await.expect("publish")
}

async fn contract<B: Bus>(registry: Arc<Registry>, bus: Arc<B>) {
    tokio::spawn(ferrocast_edge::fanout::subscriptions::run(
        registry.clone(),
        bus.clone(),
    ));
    let room = Target::Room("r".into());
    let key = room.key();
    assert_eq!(
        read(&*bus, &key, None).await,
        Replay {
            recovered: false,
            entries: Vec::new(),
            last: None,
            largest_page: 0
        }
    );

    let queued = member(&registry, &room, 1, Encoding::Json).await;
    let mut offsets = Vec::new();
    for i in 0..20 {
        offsets.push(publish(&*bus, &room, "e", &i.to_string()).await);
    }
    assert!(
        offsets.windows(2).all(|w| w[0].id < w[1].id),
        "offsets increase: {offsets:?}"
    );
    assert!(
        offsets.iter().all(|o| o.epoch == offsets[0].epoch),
        "one epoch"
    );
    assert_eq!(read(&*bus, &key, None).await.last, offsets.last().copied());
    for (i, offset) in offsets.iter().enumerate() {
        let value = next_text(&queued).await;
        assert_eq!(value["data"], i);
        assert_eq!(value["offset"], offset.to_string());
    }

    // Replay after an offset: exactly what followed it, in order.
    let replay = read(&*bus, &key, Some(offsets[14])).await;
    assert!(replay.recovered);
    assert_eq!(
        replay.entries.iter().map(|e| e.0).collect::<Vec<_>>(),
        offsets[15..]
    );
    assert_eq!(replay.last, offsets.last().copied());
    let replay = read(&*bus, &key, offsets.last().copied()).await;
    assert!(replay.recovered && replay.entries.is_empty());
    // An offset from another epoch (Redis lost the stream meanwhile): not recovered, and the
    // whole current history is offered.
    let foreign = Offset {
        id: offsets[3].id,
        epoch: StreamId { ms: 1, seq: 0 },
    };
    let replay = read(&*bus, &key, Some(foreign)).await;
    assert!(!replay.recovered);
    assert_eq!(replay.entries.len(), 20);
    // A target with no history at all: nothing recovered.
    let empty = Target::Room("never".into()).key();
    assert!(!read(&*bus, &empty, Some(offsets[0])).await.recovered);

    // Excluded clients and other targets get nothing; the next frame is the one for c1.
    let mut skipped = Envelope::message(&room, "skipped", b"0".to_vec());
    skipped.except = vec!["c1".into()];
    bus.publish(&skipped, false).await.expect("publish");
    publish(&*bus, &Target::Room("other".into()), "other", "0").await;
    publish(&*bus, &room, "last", "0").await;
    assert_eq!(next_text(&queued).await["event"], "last");

    // After the last member leaves, a new member gets new messages in its own encoding.
    registry.leave(&key, 1);
    let queued = member(&registry, &room, 2, Encoding::MsgPack).await;
    publish(&*bus, &room, "again", "[1]").await;
    let item = tokio::time::timeout(DEADLINE, queued.recv())
        .await
        .expect("in time");
    assert!(
        matches!(&item, Outbound::Frame(f) if matches!(f.message, Message::Binary(_))),
        "msgpack member gets binary frames"
    );
    assert!(queued.try_recv().is_none());
    assert!(bus.is_ready());
}

/// A long replay of large messages comes a bounded page at a time, complete and in order.
async fn paged_history<B: Bus>(bus: &B) {
    let room = Target::Room("large".into());
    let data = format!("\"{}\"", "x".repeat(100 * 1024));
    let first = publish(bus, &room, "e", "0").await;
    let mut offsets = Vec::new();
    for _ in 0..30 {
        offsets.push(publish(bus, &room, "e", &data).await);
    }
    let replay = read(bus, &room.key(), Some(first)).await;
    assert!(replay.recovered);
    assert_eq!(
        replay.entries.iter().map(|e| e.0).collect::<Vec<_>>(),
        offsets
    );
    assert!(
        replay.largest_page <= PAGE_BYTES,
        "a page of {} bytes",
        replay.largest_page
    );
}

/// More messages than the history keeps: a client behind the cut is told it was not recovered,
/// and gets what is still there, in order.
async fn trimmed_history<B: Bus>(bus: &B) {
    let room = Target::Room("busy".into());
    let first = publish(bus, &room, "e", "0").await;
    let mut last = first;
    for i in 1..400 {
        last = publish(bus, &room, "e", &i.to_string()).await;
    }
    let replay = read(bus, &room.key(), Some(first)).await;
    assert!(
        !replay.recovered,
        "history was trimmed past the client's offset"
    );
    assert!(!replay.entries.is_empty() && replay.entries.len() < 399);
    assert!(replay.entries.windows(2).all(|w| w[0].0.id < w[1].0.id));
    assert_eq!(replay.last, Some(last));

    // Trimmed again while a replay is under way: it stops at the hole (interrupted), rather
    // than skip over it unannounced.
    let room = Target::Room("trimmed-while-read".into());
    let data = format!("\"{}\"", "x".repeat(10 * 1024));
    let oldest = publish(bus, &room, "e", &data).await;
    for _ in 0..80 {
        publish(bus, &room, "e", &data).await;
    }
    let mut cursor = bus
        .open_replay(&room.key(), Some(oldest))
        .await
        .expect("open");
    assert!(cursor.recovered);
    let page = bus
        .replay_page(&room.key(), &mut cursor)
        .await
        .expect("page");
    assert!(!page.is_empty() && !cursor.is_done(), "more than a page");
    for i in 0..400 {
        publish(bus, &room, "e", &i.to_string()).await;
    }
    while !cursor.is_done() {
        bus.replay_page(&room.key(), &mut cursor)
            .await
            .expect("page");
    }
    assert!(cursor.was_interrupted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bus_keeps_the_contract() {
    let registry = Registry::new();
    let bus = Arc::new(MemoryBus::new(
        Feed::new(registry.clone()),
        100,
        Duration::from_secs(60),
    ));
    contract(registry, bus.clone()).await;
    trimmed_history(&*bus).await;
    paged_history(&*bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bus_keeps_the_contract() {
    let redis = RedisServer::start();
    let registry = Registry::new();
    let settings = RedisSettings {
        prefix: "fc".into(),
        history_len: 100,
        history_ttl: Duration::from_secs(60),
        inbox_max_len: 1000,
        inbox_partitions: 1,
        tls: Default::default(),
    };
    let bus =
        RedisBus::start(&redis.url(), None, &settings, Feed::new(registry.clone())).expect("bus");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !bus.is_ready() {
        assert!(tokio::time::Instant::now() < deadline, "bus never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    contract(registry, bus.clone()).await;
    trimmed_history(&*bus).await;
    paged_history(&*bus).await;
}

/// The items queued for a member, as (type, offset) of each frame.
fn frames_of(queued: &Queued) -> Vec<(String, Option<String>)> {
    std::iter::from_fn(|| queued.try_recv())
        .filter_map(|item| match item {
            Outbound::Frame(frame) => {
                let Message::Text(text) = &frame.message else {
                    return None;
                };
                let value: serde_json::Value = serde_json::from_str(text).ok()?;
                Some((
                    value["type"].as_str()?.to_owned(),
                    value["offset"].as_str().map(str::to_owned),
                ))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_replays_from_a_position_and_calls_a_lost_history_a_gap() {
    use ferrocast_edge::bus::redis::positions::Positions;
    let redis = RedisServer::start();
    let emitter = ferrocast_emitter::Emitter::connect(redis.url())
        .await
        .expect("emitter");
    let registry = Registry::new();
    let feed = Feed::new(registry.clone());
    let room = Target::Room("r".into());
    let key = room.key();
    let (out, queued) = outbox::channel(64, 1 << 20, None);
    let member = Member {
        client: "c1".into(),
        encoding: Encoding::Json,
        outbox: out,
        direct: outbox::Direct::Yes,
    };
    registry.join(&key, 1, member);
    let mut offsets = Vec::new();
    for i in 0..5 {
        let offset = emitter.to_room("r").emit("e", &i).await.expect("publish");
        offsets.push(offset);
    }
    let mut conn = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let keys = ferrocast_protocol::Keys::default();
    let positions = Positions::default();
    positions.set(key.clone(), offsets[1]);
    positions
        .catch_up(&mut conn, &keys, &*feed, &key, offsets[1], 600_000)
        .await
        .expect("catch up");
    let expected: Vec<_> = offsets[2..]
        .iter()
        .map(|o| ("msg".to_owned(), Some(o.to_string())))
        .collect();
    assert_eq!(
        frames_of(&queued),
        expected,
        "what followed the position, in order"
    );
    assert_eq!(positions.get(&key), Some(offsets[4]));

    // Redis loses everything, and a message is published into the new history: a gap up to
    // the newest offset, and the position moves there.
    redis.cli(&["FLUSHALL"]).expect("FLUSHALL");
    let fresh = emitter.to_room("r").emit("e", &9).await.expect("publish");
    positions
        .catch_up(&mut conn, &keys, &*feed, &key, offsets[4], 600_000)
        .await
        .expect("catch up");
    assert_eq!(
        frames_of(&queued),
        [("gap".to_owned(), Some(fresh.to_string()))]
    );
    assert_eq!(positions.get(&key), Some(fresh));
}
