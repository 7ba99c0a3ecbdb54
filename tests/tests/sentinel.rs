//! Redis behind Sentinel, with real processes: one master, one replica, three sentinels. Edges
//! and the emitter find the master through the sentinels and follow it when it fails over. Redis
//! replicates asynchronously, so a failover may lose acknowledged writes: the promise checked
//! here is that every subscriber gets each published message exactly once and in order, or a
//! `gap` announcing what may be missing; never a silent loss, a duplicate or a reorder.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ferrocast_emitter::Emitter;
use ferrocast_redis::Tls;
use ferrocast_redis::sentinel::SentinelArgs;
use ferrocast_tests::process::sentinel::MASTER;
use ferrocast_tests::{Client, DEADLINE, Edge, SentinelGroup, Token};
use serde_json::json;
use tokio::sync::Mutex;

/// Messages published in all, one every few milliseconds; the failover comes after a third.
const MESSAGES: u64 = 300;

fn token(sub: &str) -> String {
    Token::user(sub, &["r"]).dev()
}

/// What one subscriber saw: the sequence numbers in arrival order, and how many gaps.
#[derive(Default, Debug)]
struct Seen {
    seqs: Vec<u64>,
    gaps: usize,
}

/// Reads `client`'s frames into `seen` until the last message arrives; gives the client back.
async fn record(mut client: Client, seen: Arc<Mutex<Seen>>) -> Client {
    loop {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("msg") => {
                let seq = frame["data"].as_u64().expect("a sequence number");
                seen.lock().await.seqs.push(seq);
                if seq == MESSAGES - 1 {
                    return client;
                }
            }
            Some("gap") => seen.lock().await.gaps += 1,
            _ => {}
        }
    }
}

/// Checks one subscriber's record against the acknowledged publishes.
fn check(name: &str, seen: &Seen, acked: &BTreeSet<u64>) {
    let unique: BTreeSet<u64> = seen.seqs.iter().copied().collect();
    assert_eq!(
        unique.len(),
        seen.seqs.len(),
        "{name}: duplicates in {:?}",
        seen.seqs
    );
    assert!(
        seen.seqs.windows(2).all(|w| w[0] < w[1]),
        "{name}: out of order: {:?}",
        seen.seqs
    );
    let missing: Vec<u64> = acked.difference(&unique).copied().collect();
    assert!(
        missing.is_empty() || seen.gaps > 0,
        "{name}: silently lost {missing:?}"
    );
    eprintln!(
        "{name}: {} received, {} acknowledged missing, {} gaps",
        seen.seqs.len(),
        missing.len(),
        seen.gaps
    );
}

async fn run_through(failure: impl FnOnce(&SentinelGroup) + Send + 'static) {
    let group = Arc::new(SentinelGroup::start());
    let first_master = group.master_port().expect("a master");
    let sentinels = group.sentinels_flag();
    let args = [
        "--redis-sentinels",
        sentinels.as_str(),
        "--redis-sentinel-master",
        MASTER,
    ];
    let edges = [Edge::start(&args).await, Edge::start(&args).await];
    let mut recorders = Vec::new();
    let mut records = Vec::new();
    for (i, edge) in edges.iter().enumerate() {
        let (mut client, _) = Client::connect(&edge.ws_url(), &token(&format!("u{i}"))).await;
        client.join("r").await;
        let seen = Arc::new(Mutex::new(Seen::default()));
        records.push(seen.clone());
        recorders.push(tokio::spawn(record(client, seen)));
    }
    let group_args = SentinelArgs {
        sentinels: vec![sentinels.clone()],
        master: Some(MASTER.into()),
        password: None,
    };
    let emitter = Emitter::builder("redis://localhost")
        .sentinels(Arc::new(
            group_args
                .sentinels(None, &Tls::default())
                .expect("settings")
                .expect("a group"),
        ))
        // Through the failover: retried with the same message id until a master is back.
        .retries(60, Duration::from_millis(100))
        .build()
        .expect("emitter");
    let mut acked = BTreeSet::new();
    let mut failure = Some(failure);
    for seq in 0..MESSAGES {
        if seq == MESSAGES / 3
            && let Some(failure) = failure.take()
        {
            let group = group.clone();
            tokio::task::spawn_blocking(move || failure(&group))
                .await
                .expect("the failure");
        }
        if emitter.to_room("r").emit("seq", &json!(seq)).await.is_ok() {
            acked.insert(seq);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        acked.contains(&(MESSAGES - 1)),
        "the last publish was acknowledged"
    );
    let mut clients = Vec::new();
    for (i, recorder) in recorders.into_iter().enumerate() {
        if let Ok(Ok(client)) = tokio::time::timeout(DEADLINE * 3, recorder).await {
            clients.push(client);
        } else {
            let seen = records[i].lock().await;
            let last: Vec<_> = seen.seqs.iter().rev().take(20).collect();
            panic!(
                "subscriber on edge {i} never got the last message: {} received, the last {last:?}, {} gaps; {} acknowledged",
                seen.seqs.len(),
                seen.gaps,
                acked.len()
            );
        }
    }
    for (i, seen) in records.iter().enumerate() {
        check(
            &format!("subscriber on edge {i}"),
            &*seen.lock().await,
            &acked,
        );
    }
    for edge in &edges {
        edge.wait_readyz(200).await;
        // The live connection broke with the master and was made again to the new one.
        let reconnects = edge
            .metrics()
            .await
            .get("ferrocast_bus_reconnects_total")
            .copied()
            .unwrap_or(0.0);
        assert!(
            reconnects >= 1.0,
            "the edge never reconnected: {reconnects}"
        );
    }
    let master = group.master_port();
    assert!(
        master.is_some() && master != Some(first_master),
        "the failover happened"
    );
    // The command finds the new master through the sentinels too.
    let run = ferrocast_tests::emitter(
        &[
            "--redis-sentinels",
            &sentinels,
            "--redis-sentinel-master",
            MASTER,
            "send",
            "--room",
            "r",
            "--event",
            "cli",
            "--data",
            "1",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for client in &mut clients {
        assert_eq!(client.expect("msg").await["event"], "cli");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_two_edges_follow_a_sentinel_failover_without_silent_loss() {
    run_through(SentinelGroup::failover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_two_edges_follow_the_master_killed_without_silent_loss() {
    run_through(SentinelGroup::kill_master).await;
}
