//! Against a real Redis Cluster (3 masters, and replicas for the failover test): the emitter
//! publishes each message on its target's master with sharded pub/sub, a cross-slot call is
//! refused before anything is written, `Inbox` reads every partition of the upstream inbox, two
//! edges deliver to every target and resume, and a master's failover loses nothing silently.

use std::collections::HashSet;
use std::time::Duration;

use ferrocast_emitter::{Emitter, Inbox};
use ferrocast_protocol::script::{LiveMessage, PUBLISH_SCRIPT};
use ferrocast_protocol::{Keys, Target, Upstream};
use ferrocast_tests::{DEADLINE, RedisCluster, emitter};
use redis::{PushKind, Value};

/// A sharded subscriber, as an edge in cluster mode would hold one: live messages arrive as
/// pushes.
async fn subscriber(
    cluster: &RedisCluster,
    channels: &[String],
) -> (
    redis::cluster_async::ClusterConnection,
    tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = redis::cluster::ClusterClientBuilder::new(cluster.urls())
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(tx)
        .build()
        .expect("cluster client");
    let mut conn = client.get_async_connection().await.expect("connect");
    // One call per channel: a call's channels must share a slot.
    for channel in channels {
        conn.ssubscribe(channel).await.expect("ssubscribe");
    }
    (conn, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emitter_publishes_on_each_target_s_master_with_sharded_pub_sub() {
    let cluster = RedisCluster::start(3, 0);
    let keys = Keys::default();
    let rooms: Vec<String> = (0..30).map(|i| format!("room-{i}")).collect();
    let mut targets: Vec<Target> = rooms.iter().map(|r| Target::Room(r.clone())).collect();
    targets.extend([
        Target::User("u7".into()),
        Target::Client("c1".into()),
        Target::All,
    ]);
    let channels: Vec<String> = targets.iter().map(|t| keys.live(&t.key())).collect();
    let (_conn, mut pushes) = subscriber(&cluster, &channels).await;

    let lib = Emitter::cluster_builder(cluster.urls())
        .connect()
        .await
        .expect("emitter");
    let mut offsets = Vec::new();
    for target in &targets {
        let publication = match target {
            Target::Room(r) => lib.to_room(r),
            Target::User(u) => lib.to_user(u),
            Target::Client(c) => lib.to_client(c),
            Target::All => lib.broadcast(),
        };
        offsets.push(publication.emit("e", &1).await.expect("publish"));
    }
    // Every message arrives live, on its own channel, with the offset the publish returned.
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while seen.len() < targets.len() {
        let push = tokio::time::timeout_at(deadline, pushes.recv())
            .await
            .expect("all live messages in time")
            .expect("push channel open");
        if push.kind != PushKind::SMessage {
            continue;
        }
        let [Value::BulkString(channel), Value::BulkString(payload)] = &push.data[..] else {
            panic!("unexpected smessage {push:?}");
        };
        let channel = String::from_utf8_lossy(channel).into_owned();
        let index = channels.iter().position(|c| *c == channel).expect("ours");
        let live = LiveMessage::parse(payload).expect("live message");
        assert_eq!(live.offset, offsets[index], "{channel}");
        seen.insert(index);
    }
    // The rooms' histories are spread over all three masters.
    let holders: HashSet<u16> = rooms
        .iter()
        .filter_map(|r| cluster.holder_of(&keys.stream(&Target::Room(r.clone()).key())))
        .collect();
    assert_eq!(holders.len(), 3, "{holders:?}");

    // The CLI too.
    let run = emitter(
        &[
            "--redis-cluster-nodes",
            &cluster.nodes_arg(),
            "send",
            "--room",
            "room-0",
            "--event",
            "cli",
            "--data",
            "2",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        cluster
            .cli(&["XLEN", &keys.stream(&Target::Room("room-0".into()).key())])
            .as_deref(),
        Some("2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_slot_publish_is_refused_before_anything_is_written() {
    let cluster = RedisCluster::start(3, 0);
    // The script declares the stream and the shard channel as keys: a channel of another
    // target is another slot, and the cluster refuses the call outright.
    let answer = cluster
        .cli(&[
            "EVAL",
            PUBLISH_SCRIPT,
            "3",
            "fc:{room:a}",
            "fc:{room:a}:epoch",
            "fc:{room:b}:live",
            "x",
            "10",
            "60000",
            "SPUBLISH",
        ])
        .unwrap_or_default();
    assert!(answer.contains("CROSSSLOT"), "{answer}");
    assert_eq!(
        cluster.cli(&["EXISTS", "fc:{room:a}"]).as_deref(),
        Some("0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_reads_every_partition_of_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let keys = Keys::default();
    let partitions = 3u16;
    let client = redis::cluster::ClusterClient::new(cluster.urls()).expect("client");
    let mut conn = client.get_async_connection().await.expect("connect");
    // What edges with --inbox-partitions 3 append: each client's sends in its own partition.
    let mut sent = HashSet::new();
    for i in 0..12 {
        let client_id = format!("client-{i}");
        let upstream = Upstream {
            v: 1,
            id: uuid::Uuid::now_v7(),
            client: client_id.clone(),
            user: "u".into(),
            node: "edge-test".into(),
            event: "chat.send".into(),
            data: format!("{i}").into_bytes(),
            meta: None,
            ts: 1,
            trace: None,
            rpc: None,
        };
        let partition = Keys::inbox_partition_of(&client_id, partitions);
        let _: String = redis::cmd("XADD")
            .arg(keys.inbox_partition(partition, partitions))
            .arg("*")
            .arg("e")
            .arg(upstream.encode().expect("encode"))
            .query_async(&mut conn)
            .await
            .expect("xadd");
        sent.insert(client_id);
    }
    let used: HashSet<u16> = sent
        .iter()
        .map(|c| Keys::inbox_partition_of(c, partitions))
        .collect();
    assert!(used.len() > 1, "sends spread over partitions");

    let mut inbox = Inbox::builder("", "workers", "w1")
        .cluster(cluster.urls())
        .partitions(partitions)
        .block(Duration::from_millis(100))
        .connect()
        .await
        .expect("inbox");
    let mut got = HashSet::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while got.len() < sent.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} arrived",
            got.len()
        );
        for received in inbox.next().await.expect("read") {
            inbox.ack(&received).await.expect("ack");
            got.insert(received.message.client);
        }
    }
    assert_eq!(got, sent);
    for p in 0..partitions {
        let pending = cluster
            .cli(&["XPENDING", &keys.inbox_partition(p, partitions), "workers"])
            .expect("xpending");
        assert!(pending.starts_with('0'), "partition {p}: {pending}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_over_a_cluster_deliver_to_every_target_resume_and_send_upstream() {
    use ferrocast_tests::{Client, Edge, Token, assert_nothing_else};
    use serde_json::json;

    let cluster = RedisCluster::start(3, 0);
    let nodes = cluster.nodes_arg();
    let args = [
        "--redis-cluster-nodes",
        nodes.as_str(),
        "--upstream-events",
        "chat.*",
        "--inbox-partitions",
        "3",
    ];
    let a = Edge::start(&args).await;
    let b = Edge::start(&args).await;
    let lib = Emitter::cluster_builder(cluster.urls())
        .connect()
        .await
        .expect("emitter");
    let token = |sub: &str| {
        Token::user(sub, &["r-*"])
            .claim("pub", json!(["r-*"]))
            .dev()
    };
    let (mut alice, welcome) = Client::connect(&a.ws_url(), &token("alice")).await;
    let (mut bob, _) = Client::connect_msgpack(&b.ws_url(), &token("bob")).await;
    let rooms: Vec<String> = (0..12).map(|i| format!("r-{i}")).collect();
    for room in &rooms {
        alice.join(room).await;
        bob.join(room).await;
    }
    let mut first_offsets = Vec::new();
    for (i, room) in rooms.iter().enumerate() {
        first_offsets.push(lib.to_room(room).emit("e", &i).await.expect("publish"));
        for client in [&mut alice, &mut bob] {
            let msg = client.expect("msg").await;
            assert_eq!((&msg["room"], &msg["data"]), (&json!(room), &json!(i)));
        }
    }
    let keys = Keys::default();
    let holders: HashSet<u16> = rooms
        .iter()
        .filter_map(|r| cluster.holder_of(&keys.stream(&Target::Room(r.clone()).key())))
        .collect();
    assert_eq!(holders.len(), 3, "rooms on every master: {holders:?}");

    // User, client and everyone.
    lib.to_user("bob").emit("for-bob", &1).await.expect("user");
    assert_eq!(bob.expect("msg").await["event"], "for-bob");
    let alice_id = welcome["client"].as_str().expect("client id");
    lib.to_client(alice_id)
        .emit("for-alice", &1)
        .await
        .expect("client");
    assert_eq!(alice.expect("msg").await["event"], "for-alice");
    assert_nothing_else(&lib, &mut [&mut alice, &mut bob]).await;

    // A client's publish reaches the other edge.
    let ack = alice
        .request(json!({"type": "publish", "room": "r-3", "event": "hi", "data": 1, "echo": false}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(bob.expect("msg").await["event"], "hi");

    // Resume: a new connection joins r-5 from its first message and gets the rest, in order.
    for n in 0..3 {
        lib.to_room("r-5").emit("more", &n).await.expect("publish");
    }
    for _ in 0..3 {
        alice.expect("msg").await;
        bob.expect("msg").await;
    }
    let (mut carol, _) = Client::connect(&b.ws_url(), &token("carol")).await;
    let joined = carol
        .request(json!({"type": "join", "room": "r-5", "since": first_offsets[5].to_string()}))
        .await;
    assert_eq!(
        (&joined["type"], &joined["recovered"]),
        (&json!("joined"), &json!(true)),
        "{joined}"
    );
    for n in 0..3 {
        assert_eq!(carol.expect("msg").await["data"], json!(n));
    }

    // Control messages travel the same way: a worker moves Bob into a room he never joined.
    lib.to_user("bob")
        .join_room("r-extra")
        .await
        .expect("control");
    let joined = bob.expect("joined").await;
    assert_eq!(
        (&joined["room"], &joined["by"]),
        (&json!("r-extra"), &json!("server"))
    );

    // Upstream over a partitioned inbox.
    let ack = alice
        .request(json!({"type": "send", "event": "chat.send", "data": {"t": 1}}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let mut inbox = Inbox::builder("", "workers", "w1")
        .cluster(cluster.urls())
        .partitions(3)
        .block(Duration::from_millis(100))
        .connect()
        .await
        .expect("inbox");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let received = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "upstream message never read"
        );
        if let Some(received) = inbox.next().await.expect("read").pop() {
            break received;
        }
    };
    assert_eq!(
        (received.entry.as_str(), received.message.user.as_str()),
        (ack["id"].as_str().expect("id"), "alice")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_works_across_a_cluster_s_masters_and_in_msgpack() {
    use ferrocast_tests::{Client, Edge, Token};
    use serde_json::json;

    let cluster = RedisCluster::start(3, 0);
    let nodes = cluster.nodes_arg();
    let args = [
        "--redis-cluster-nodes",
        nodes.as_str(),
        "--presence-rooms",
        "p-*",
        "--presence-events",
        "p-*",
    ];
    let a = Edge::start(&args).await;
    let b = Edge::start(&args).await;
    let token = |sub: &str| {
        Token::user(sub, &["p-*"])
            .claim("info", json!({"sub": sub}))
            .dev()
    };
    let (mut alice, _) = Client::connect(&a.ws_url(), &token("alice")).await;
    let (mut bob, bob_welcome) = Client::connect_msgpack(&b.ws_url(), &token("bob")).await;
    let rooms: Vec<String> = (0..6).map(|i| format!("p-{i}")).collect();
    for room in &rooms {
        alice.join(room).await;
    }
    for room in &rooms {
        bob.send(json!({"type": "join", "room": room})).await;
    }
    let mut joined = 0;
    while joined < rooms.len() {
        match bob.recv().await {
            frame if frame["type"] == "joined" => joined += 1,
            frame => assert_eq!(frame["type"], "presence_join", "{frame}"),
        }
    }
    // Alice hears of Bob in every room, whichever master holds it.
    let mut heard = HashSet::new();
    while heard.len() < rooms.len() {
        let pushed = alice.expect("presence_join").await;
        assert_eq!(pushed["client"], bob_welcome["client"]);
        assert_eq!(pushed["info"], json!({"sub": "bob"}));
        heard.insert(pushed["room"].as_str().expect("room").to_owned());
    }
    let lib = Emitter::cluster_builder(cluster.urls())
        .connect()
        .await
        .expect("emitter");
    for room in &rooms {
        let stats = lib.presence_stats(room).await.expect("stats");
        assert_eq!((stats.clients, stats.users), (2, 2), "{room}");
    }
    // Bob, in MessagePack, asks and hears the same frames (Alice's joins, announced in the
    // batches his own joins overlapped, may come first).
    bob.send(json!({"type": "presence", "room": "p-2", "ref": 1}))
        .await;
    let listed = loop {
        let frame = bob.recv().await;
        if frame["type"] != "presence_join" {
            break frame;
        }
        assert_eq!(frame["user"], "alice", "{frame}");
    };
    assert_eq!(listed["type"], "presence", "{listed}");
    assert_eq!(listed["ref"], 1, "{listed}");
    assert_eq!(
        listed["clients"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    alice.request(json!({"type": "leave", "room": "p-4"})).await;
    let left = loop {
        let frame = bob.recv().await;
        if frame["type"] != "presence_join" {
            break frame;
        }
    };
    assert_eq!(left["type"], "presence_leave", "{left}");
    assert_eq!(
        (left["room"].clone(), left["user"].clone()),
        (json!("p-4"), json!("alice"))
    );
    let keys = Keys::default();
    let holders: HashSet<u16> = rooms
        .iter()
        .filter_map(|r| {
            let [_, expiries, _, _] =
                ferrocast_protocol::presence::keys(&keys, &Target::Room(r.clone()).key());
            cluster.holder_of(&expiries)
        })
        .collect();
    assert!(holders.len() > 1, "rooms on several masters: {holders:?}");
}
