//! One contract for every presence store: the in-process bus's, and Redis's through the
//! emitter's scripts on a single Redis and on a Cluster. The Lua scripts and the memory store
//! are two implementations of the same rules and drifted once; this runs the same steps against
//! each and expects the same answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ferrocast_edge::bus::{MemoryPresenceStore, PresenceStore};
use ferrocast_emitter::{Emitter, PresenceList, PresenceUpdate};
use ferrocast_protocol::presence::{self, PresenceStats};
use ferrocast_tests::{DEADLINE, RedisCluster, RedisServer};

const TTL: Duration = Duration::from_secs(30);

fn member(client: &str, user: &str, info: Option<&[u8]>) -> (String, String, Vec<u8>) {
    (
        client.to_owned(),
        user.to_owned(),
        presence::store(user, "edge-1", info),
    )
}

fn upsert(members: Vec<(String, String, Vec<u8>)>) -> PresenceUpdate {
    PresenceUpdate {
        upsert: members,
        remove: Vec::new(),
    }
}

fn remove(clients: &[&str]) -> PresenceUpdate {
    PresenceUpdate {
        upsert: Vec::new(),
        remove: clients.iter().map(|c| (*c).to_owned()).collect(),
    }
}

fn sorted(mut clients: Vec<String>) -> Vec<String> {
    clients.sort();
    clients
}

/// Present clients as (client, user, info), sorted.
async fn listed(store: &impl PresenceStore, room: &str) -> Vec<(String, String, Option<Vec<u8>>)> {
    match store.list(room, 100).await.expect("list") {
        PresenceList::Members(members) => {
            let mut members: Vec<_> = members
                .into_iter()
                .map(|m| (m.client, m.user, m.info))
                .collect();
            members.sort();
            members
        }
        PresenceList::TooMany(n) => panic!("{n} members listed as too many"),
    }
}

async fn keeps_the_contract(store: &impl PresenceStore, room: &str) {
    let stats = |clients, users| PresenceStats { clients, users };
    assert_eq!(
        store.stats(room).await.unwrap(),
        stats(0, 0),
        "an empty room"
    );
    assert_eq!(listed(store, room).await, []);

    // Joins: every new client is reported added, once.
    let joined = vec![
        member("c1", "u1", None),
        member("c2", "u1", None),
        member("c3", "u2", Some(br#"{"name":"Ann"}"#)),
    ];
    let changes = store.update(room, &upsert(joined), TTL).await.unwrap();
    assert_eq!(sorted(changes.added), ["c1", "c2", "c3"]);
    assert!(changes.removed.is_empty());
    // A refresh is not a join.
    let changes = store
        .update(room, &upsert(vec![member("c1", "u1", None)]), TTL)
        .await
        .unwrap();
    assert!(changes.added.is_empty() && changes.removed.is_empty());

    assert_eq!(store.stats(room).await.unwrap(), stats(3, 2));
    assert_eq!(
        listed(store, room).await,
        [
            ("c1".into(), "u1".into(), None),
            ("c2".into(), "u1".into(), None),
            (
                "c3".into(),
                "u2".into(),
                Some(br#"{"name":"Ann"}"#.to_vec())
            ),
        ]
    );
    assert_eq!(store.list(room, 2).await.unwrap(), PresenceList::TooMany(3));
    assert!(matches!(store.list(room, 3).await.unwrap(), PresenceList::Members(m) if m.len() == 3));

    // Leaves: reported with their user; a user stays while any of its clients does.
    let changes = store.update(room, &remove(&["c2"]), TTL).await.unwrap();
    let removed: Vec<_> = changes
        .removed
        .iter()
        .map(|l| (l.client.as_str(), l.user.as_str()))
        .collect();
    assert_eq!(removed, [("c2", "u1")]);
    assert_eq!(store.stats(room).await.unwrap(), stats(2, 2));
    store.update(room, &remove(&["c1"]), TTL).await.unwrap();
    assert_eq!(store.stats(room).await.unwrap(), stats(1, 1));
    // Removing a client that is not there changes nothing.
    let changes = store.update(room, &remove(&["nobody"]), TTL).await.unwrap();
    assert!(changes.added.is_empty() && changes.removed.is_empty());

    // An entry not refreshed expires: readers stop counting it at once, and the next update
    // removes it and reports it.
    let short = Duration::from_millis(1);
    store
        .update(room, &upsert(vec![member("c4", "u3", None)]), short)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while store.stats(room).await.unwrap() != stats(1, 1) {
        assert!(tokio::time::Instant::now() < deadline, "c4 never expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(listed(store, room).await.len(), 1);
    let changes = store
        .update(room, &PresenceUpdate::default(), TTL)
        .await
        .unwrap();
    let removed: Vec<_> = changes.removed.iter().map(|l| l.client.as_str()).collect();
    assert_eq!(removed, ["c4"]);

    // Rooms are apart.
    assert_eq!(store.stats("elsewhere").await.unwrap(), stats(0, 0));
}

#[tokio::test]
async fn the_in_process_store_keeps_the_presence_contract() {
    keeps_the_contract(&MemoryPresenceStore::default(), "room:1").await;
}

#[tokio::test]
async fn redis_keeps_the_presence_contract() {
    let redis = RedisServer::start();
    let emitter = Emitter::connect(&redis.url()).await.expect("emitter");
    keeps_the_contract(&emitter, "room:1").await;
}

#[tokio::test]
async fn a_redis_cluster_keeps_the_presence_contract() {
    let cluster = RedisCluster::start(3, 0);
    let emitter = Emitter::cluster_builder(cluster.urls())
        .build()
        .expect("emitter");
    // Rooms whose keys live on different masters.
    for room in ["room:1", "room:2", "room:3"] {
        keeps_the_contract(&emitter, room).await;
    }
}
