//! The bus contract, run against both implementations: the in-process bus and Redis.

use std::sync::Arc;
use std::time::Duration;

use ferrocast_edge::bus::{Bus, MemoryBus, RedisBus};
use ferrocast_edge::outbox;
use ferrocast_edge::registry::{Member, Registry, SubState};
use ferrocast_protocol::{Encoding, Envelope, Target};
use ferrocast_tests::{DEADLINE, RedisServer};
use tungstenite::Message;

async fn contract<B: Bus>(registry: Arc<Registry>, bus: Arc<B>) {
    tokio::spawn(ferrocast_edge::subscriptions::run(
        registry.clone(),
        bus.clone(),
    ));
    let room = Target::Room("r".into());
    let key = room.key();
    assert_eq!(bus.last_offset(&key).await.expect("last offset"), None);

    let (out, mut inbox) = outbox::channel(64);
    let member = Member {
        client: "c1".into(),
        encoding: Encoding::Json,
        outbox: out,
    };
    let mut state = registry.join(&key, 1, member);
    tokio::time::timeout(DEADLINE, state.wait_for(|s| *s == SubState::Live))
        .await
        .expect("live in time")
        .expect("subscribed");

    let mut offsets = Vec::new();
    for i in 0..20 {
        let envelope = Envelope::message(&room, "e", i.to_string().into_bytes());
        offsets.push(bus.publish(&envelope).await.expect("publish"));
    }
    assert!(
        offsets.windows(2).all(|w| w[0].id < w[1].id),
        "offsets increase: {offsets:?}"
    );
    assert!(
        offsets.iter().all(|o| o.epoch == offsets[0].epoch),
        "one epoch"
    );
    assert_eq!(
        bus.last_offset(&key).await.expect("last offset"),
        offsets.last().copied()
    );
    for (i, offset) in offsets.iter().enumerate() {
        let frame = tokio::time::timeout(DEADLINE, inbox.rx.recv())
            .await
            .expect("in time")
            .expect("frame");
        let Message::Text(text) = frame else {
            panic!("text expected")
        };
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["data"], i);
        assert_eq!(value["offset"], offset.to_string());
    }

    // Excluded clients and other targets get nothing; the next frame is the one for c1.
    let mut skipped = Envelope::message(&room, "skipped", b"0".to_vec());
    skipped.except = vec!["c1".into()];
    bus.publish(&skipped).await.expect("publish");
    bus.publish(&Envelope::message(
        &Target::Room("other".into()),
        "other",
        b"0".to_vec(),
    ))
    .await
    .expect("publish");
    bus.publish(&Envelope::message(&room, "last", b"0".to_vec()))
        .await
        .expect("publish");
    let frame = tokio::time::timeout(DEADLINE, inbox.rx.recv())
        .await
        .expect("in time")
        .expect("frame");
    assert!(
        frame.to_text().expect("text").contains(r#""event":"last""#),
        "{frame}"
    );

    // After the last member leaves, nothing more is delivered, and a new member gets new messages.
    registry.leave(&key, 1);
    let (out, mut inbox) = outbox::channel(64);
    let mut state = registry.join(
        &key,
        2,
        Member {
            client: "c2".into(),
            encoding: Encoding::MsgPack,
            outbox: out,
        },
    );
    tokio::time::timeout(DEADLINE, state.wait_for(|s| *s == SubState::Live))
        .await
        .expect("live in time")
        .expect("subscribed");
    bus.publish(&Envelope::message(&room, "again", b"[1]".to_vec()))
        .await
        .expect("publish");
    let frame = tokio::time::timeout(DEADLINE, inbox.rx.recv())
        .await
        .expect("in time")
        .expect("frame");
    assert!(
        matches!(frame, Message::Binary(_)),
        "msgpack member gets binary frames"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(1), inbox.rx.recv())
            .await
            .is_err()
    );
    assert!(bus.is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bus_keeps_the_contract() {
    let registry = Registry::new();
    let bus = Arc::new(MemoryBus::new(
        registry.clone(),
        100,
        Duration::from_secs(60),
    ));
    contract(registry, bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bus_keeps_the_contract() {
    let redis = RedisServer::start();
    let registry = Registry::new();
    let bus = RedisBus::start(&redis.url(), "fc", registry.clone()).expect("bus");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !bus.is_ready() {
        assert!(tokio::time::Instant::now() < deadline, "bus never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    contract(registry, bus).await;
}
