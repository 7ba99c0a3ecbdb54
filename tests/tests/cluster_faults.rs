//! A Redis Cluster changing under the edges: a master failing over, a slot moving to another
//! master. Messages keep flowing and nothing is lost silently.

use std::collections::HashSet;
use std::time::Duration;

use ferrocast_emitter::Emitter;
use ferrocast_protocol::{Keys, Target};
use ferrocast_tests::{DEADLINE, RedisCluster};

/// What a resuming follower saw: every number, and whether any resume was not recovered.
#[derive(Default)]
struct Followed {
    seen: Vec<u64>,
    gaps: usize,
}

/// Follows numbered messages in `room` until "end", reconnecting to either edge and resuming
/// from its last offset whenever the connection ends; counts resumes answered
/// `recovered: false`.
async fn follow_through_anything(
    urls: [String; 2],
    room: &'static str,
    sub: String,
    joined: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Followed {
    use ferrocast_tests::{Client, Token};
    use serde_json::json;
    let token = Token::user(&sub, &[room]).dev();
    let mut followed = Followed::default();
    let mut last: Option<String> = None;
    for attempt in 0.. {
        let url = &urls[attempt % 2];
        let Ok((mut client, _)) = Client::open(url, Some(&token), &[]).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if client.next().await.is_none_or(|w| w["type"] != "welcome") {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let mut join = json!({"type": "join", "room": room});
        if let Some(since) = &last {
            join["since"] = json!(since);
        }
        client.send(join).await;
        while let Some(frame) = client.next().await {
            match frame["type"].as_str() {
                Some("joined") if last.is_some() && frame["recovered"] != true => {
                    followed.gaps += 1;
                }
                Some("joined") if last.is_none() => {
                    joined.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Some("msg") if frame["data"] == "end" => return followed,
                Some("msg") => {
                    followed.seen.push(frame["data"].as_u64().expect("n"));
                    last = frame["offset"].as_str().map(str::to_owned);
                }
                Some("error") => break,
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!("the loop returns")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failover_under_steady_publishing_loses_nothing_silently() {
    use ferrocast_tests::Edge;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    const ROOM: &str = "failover";
    let mut cluster = RedisCluster::start(3, 1);
    let nodes = cluster.nodes_arg();
    let a = Edge::start(&["--redis-cluster-nodes", &nodes]).await;
    let b = Edge::start(&["--redis-cluster-nodes", &nodes]).await;
    let urls = [a.ws_url(), b.ws_url()];
    let joined = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let followers: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(follow_through_anything(
                urls.clone(),
                ROOM,
                format!("f{i}"),
                joined.clone(),
            ))
        })
        .collect();
    let lib = Emitter::cluster_builder(cluster.urls())
        .connect()
        .await
        .expect("emitter");
    ferrocast_tests::eventually("every follower in the room", || {
        joined.load(Ordering::SeqCst) >= 4
    })
    .await;

    // Steady publishing; only what Redis acknowledged must arrive.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let ack_times = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = {
        let (lib, acked, stop) = (lib.clone(), acked.clone(), stop.clone());
        let ack_times = ack_times.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if lib.to_room(ROOM).emit("n", &n).await.is_ok() {
                    acked.lock().expect("acked").push(n);
                    ack_times
                        .lock()
                        .expect("ack times")
                        .push(std::time::Instant::now());
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let stream = Keys::default().stream(&Target::Room(ROOM.into()).key());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let master = loop {
        if let Some(port) = cluster.holder_of(&stream) {
            break port;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Some steady traffic first, then the crash.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while acked.lock().expect("acked").len() < 50 {
        assert!(tokio::time::Instant::now() < deadline, "publishing stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before_kill = acked.lock().expect("acked").len();
    let killed_at = std::time::Instant::now();
    cluster.kill(master);
    // The replica takes over; publishing goes on against it for a while.
    let deadline = tokio::time::Instant::now() + DEADLINE * 3;
    while !cluster.serves(&stream) {
        assert!(tokio::time::Instant::now() < deadline, "no failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after_failover = acked.lock().expect("acked").len();
    let promoted_after = killed_at.elapsed();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while acked.lock().expect("acked").len() < after_failover + 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishing did not resume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    publishing.await.expect("publisher");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while lib.to_room(ROOM).emit("end", &"end").await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cannot publish the end"
        );
    }
    let acked = acked.lock().expect("acked").clone();
    let longest_without_ack = ack_times
        .lock()
        .expect("ack times")
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!(
        "master killed: the cluster served the slot again after {promoted_after:?}; longest time \
         without an acknowledged publish {longest_without_ack:?}"
    );
    for follower in followers {
        let followed = tokio::time::timeout(DEADLINE * 3, follower)
            .await
            .expect("follower finished")
            .expect("follower");
        // In order, each at most once.
        assert!(
            followed.seen.windows(2).all(|w| w[0] < w[1]),
            "out of order or twice: {:?}",
            followed.seen
        );
        let seen: HashSet<u64> = followed.seen.iter().copied().collect();
        let missing: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|n| !seen.contains(n))
            .collect();
        // Everything acknowledged arrived, unless a resume said history was lost, and then only
        // what the failover itself could lose (acknowledged around the crash, not replicated).
        assert!(
            missing.is_empty() || followed.gaps > 0,
            "{} acknowledged messages missing without recovered:false: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        let window = &acked[before_kill.saturating_sub(50)..after_failover];
        assert!(
            missing.iter().all(|n| window.contains(n)),
            "lost messages outside the failover: {missing:?}"
        );
        assert!(
            acked[after_failover..].iter().all(|n| seen.contains(n)),
            "messages after the failover must all arrive"
        );
        eprintln!(
            "follower: {} seen of {} acknowledged, {} not recovered resumes",
            seen.len(),
            acked.len(),
            followed.gaps
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_slot_moves_to_another_master_keeps_its_messages_flowing() {
    use ferrocast_tests::{Client, Edge, Token};
    use serde_json::json;

    let cluster = RedisCluster::start(3, 0);
    let edge = Edge::start(&["--redis-cluster-nodes", &cluster.nodes_arg()]).await;
    let lib = Emitter::cluster_builder(cluster.urls())
        .connect()
        .await
        .expect("emitter");
    let (mut client, _) =
        Client::connect(&edge.ws_url(), &Token::user("u", &["moving"]).dev()).await;
    client.join("moving").await;
    for n in 0..3 {
        lib.to_room("moving").emit("n", &n).await.expect("publish");
        assert_eq!(client.expect("msg").await["data"], json!(n));
    }
    let stream = Keys::default().stream(&Target::Room("moving".into()).key());
    let from = cluster.holder_of(&stream).expect("stream exists");
    let to = *cluster
        .masters()
        .iter()
        .find(|p| **p != from)
        .expect("another master");
    let slot: u16 = cluster
        .cli(&["CLUSTER", "KEYSLOT", &stream])
        .and_then(|s| s.parse().ok())
        .expect("slot");
    cluster.move_slot(slot, from, to);
    assert_eq!(cluster.holder_of(&stream), Some(to), "moved");
    // Redis unsubscribed the edge from the moved shard channel; the edge subscribes again on
    // the new master, and nothing published from now on is missed.
    for n in 3..10 {
        lib.to_room("moving").emit("n", &n).await.expect("publish");
    }
    for n in 3..10 {
        assert_eq!(client.expect("msg").await["data"], json!(n));
    }
}
