//! Redis behind Sentinel, with real processes: one master, one replica, three sentinels. Edges
//! and the emitter find the master through the sentinels and follow it when it fails over. Redis
//! replicates asynchronously, so a failover may lose acknowledged writes: the promise checked
//! here is that every subscriber gets each published message exactly once and in order, or a
//! `gap` announcing what may be missing; never a silent loss, a duplicate or a reorder.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrocast_emitter::Emitter;
use ferrocast_redis::Tls;
use ferrocast_redis::sentinel::SentinelArgs;
use ferrocast_tests::process::sentinel::MASTER;
use ferrocast_tests::{Client, DEADLINE, Edge, SentinelGroup, Token};
use serde_json::json;
use tokio::sync::Mutex;

/// Messages published, one every few milliseconds, before the failure is caused; as many go on
/// being published while it runs its course and after both edges are on the new master.
const FAILURE_AT: u64 = 100;
/// Messages published through the HTTP API meanwhile, each retried with its id until accepted.
const API_MESSAGES: u64 = 100;
const API_KEY: &str = "ferrocast-dev-api-key";

fn token(sub: &str) -> String {
    Token::user(sub, &["r", "api", "cli"]).dev()
}

/// What one subscriber saw: the sequence numbers in arrival order and when each arrived, and
/// where gaps were announced (how many messages had arrived before each).
#[derive(Default, Debug)]
struct Seen {
    seqs: Vec<u64>,
    arrivals: Vec<Instant>,
    gaps: Vec<usize>,
    /// Messages of the room `cli`, which the `emitter` command publishes to during the failure.
    from_cli: usize,
}

/// The longest time between two of `instants`: how long the failure stopped the flow.
fn longest_silence(instants: &[Instant]) -> Duration {
    instants
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

/// Reads `client`'s frames into `seen` until the last message (event `end`) arrives; gives the
/// client back.
async fn record(mut client: Client, seen: Arc<Mutex<Seen>>) -> Client {
    loop {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("msg") if frame["room"] == "cli" => seen.lock().await.from_cli += 1,
            Some("msg") => {
                let seq = frame["data"].as_u64().expect("a sequence number");
                let mut seen = seen.lock().await;
                seen.seqs.push(seq);
                seen.arrivals.push(Instant::now());
                if frame["event"] == "end" {
                    return client;
                }
            }
            Some("gap") => {
                let mut seen = seen.lock().await;
                let at = seen.seqs.len();
                seen.gaps.push(at);
            }
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
    // A message is announced missing if a gap came between the messages on either side of it.
    let announced = |m: u64| {
        seen.gaps.iter().any(|&at| {
            let before = at.checked_sub(1).map_or(0, |i| seen.seqs[i]);
            let after = seen.seqs.get(at).copied().unwrap_or(u64::MAX);
            before < m && m < after
        })
    };
    let silent: Vec<u64> = missing.iter().copied().filter(|&m| !announced(m)).collect();
    assert!(
        silent.is_empty(),
        "{name}: silently lost {silent:?} (gaps after {:?} messages)",
        seen.gaps
    );
    eprintln!(
        "{name}: {} received, {} acknowledged missing, {} gaps",
        seen.seqs.len(),
        missing.len(),
        seen.gaps.len()
    );
}

/// Subscribes a client on `edge` to `room` and records what it gets until the last message.
async fn subscribe(
    edge: &Edge,
    user: &str,
    room: &str,
) -> (tokio::task::JoinHandle<Client>, Arc<Mutex<Seen>>) {
    let (mut client, _) = Client::connect(&edge.ws_url(), &token(user)).await;
    client.join(room).await;
    client.join("cli").await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    (tokio::spawn(record(client, seen.clone())), seen)
}

/// Waits for every recorder to see its last message; panics with what it saw if one does not.
async fn finish(
    recorders: Vec<(tokio::task::JoinHandle<Client>, Arc<Mutex<Seen>>)>,
    what: &str,
) -> Vec<Client> {
    let mut clients = Vec::new();
    for (i, (recorder, seen)) in recorders.into_iter().enumerate() {
        if let Ok(Ok(client)) = tokio::time::timeout(DEADLINE * 3, recorder).await {
            clients.push(client);
        } else {
            let seen = seen.lock().await;
            let last: Vec<_> = seen.seqs.iter().rev().take(20).collect();
            panic!(
                "{what} subscriber {i} never got the last message: {} received, the last {last:?}, gaps {:?}",
                seen.seqs.len(),
                seen.gaps,
            );
        }
    }
    clients
}

/// What the HTTP API answered a publisher that retries each message (with its id) until
/// accepted, honouring `Retry-After`.
#[derive(Default, Debug)]
struct ApiRecord {
    acked: BTreeSet<u64>,
    unavailable: usize,
}

async fn publish_through_api(edge: Arc<Edge>) -> ApiRecord {
    let mut record = ApiRecord::default();
    for seq in 0..API_MESSAGES {
        let id = format!("00000000-0000-4000-8000-{seq:012}");
        let event = if seq == API_MESSAGES - 1 {
            "end"
        } else {
            "seq"
        };
        let body = json!({"room": "api", "event": event, "data": seq, "id": id}).to_string();
        let deadline = tokio::time::Instant::now() + DEADLINE * 3;
        loop {
            let (status, head, answer) =
                edge.api("POST", "/api/publish", Some(API_KEY), &body).await;
            if status == 200 {
                record.acked.insert(seq);
                break;
            }
            assert_eq!(status, 503, "{head} {answer}");
            assert_eq!(answer["error"]["code"], "UNAVAILABLE", "{answer}");
            let wait: u64 = head
                .lines()
                .find_map(|l| l.strip_prefix("retry-after: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("a 503 without Retry-After: {head}"));
            record.unavailable += 1;
            assert!(tokio::time::Instant::now() < deadline, "never accepted");
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    record
}

/// Polls both edges' `/readyz` until `stop`, returning what each answered, in order.
async fn watch_readiness(
    edges: Arc<[Arc<Edge>; 2]>,
    stop: Arc<tokio::sync::Notify>,
) -> Vec<Vec<u16>> {
    let mut answers = vec![Vec::new(), Vec::new()];
    loop {
        for (i, edge) in edges.iter().enumerate() {
            let status = edge.get("/readyz").await.map_or(0, |(status, _)| status);
            if answers[i].last() != Some(&status) {
                answers[i].push(status);
            }
        }
        tokio::select! {
            () = stop.notified() => return answers,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Whether `edge`'s live connection has been made again (to the new master).
async fn reconnected(edge: &Edge) -> bool {
    edge.metrics()
        .await
        .get("ferrocast_bus_reconnects_total")
        .is_some_and(|n| *n >= 1.0)
}

/// Publishes through the library and the HTTP API to subscribers on two edges, causes
/// `failure` a third of the way through, and counts what each subscriber got.
async fn run_through(name: &str, failure: impl FnOnce(&SentinelGroup) + Send + 'static) {
    let group = Arc::new(SentinelGroup::start());
    let first_master = group.master_port().expect("a master");
    let sentinels = group.sentinels_flag();
    let args = [
        "--redis-sentinels",
        sentinels.as_str(),
        "--redis-sentinel-master",
        MASTER,
    ];
    let edges = Arc::new([
        Arc::new(Edge::start(&args).await),
        Arc::new(Edge::start(&args).await),
    ]);
    let mut recorders = Vec::new();
    let mut api_recorders = Vec::new();
    for (i, edge) in edges.iter().enumerate() {
        recorders.push(subscribe(edge, &format!("u{i}"), "r").await);
        api_recorders.push(subscribe(edge, &format!("a{i}"), "api").await);
    }
    let stop = Arc::new(tokio::sync::Notify::new());
    let readiness = tokio::spawn(watch_readiness(edges.clone(), stop.clone()));
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
    let api = tokio::spawn(publish_through_api(edges[0].clone()));
    let mut acked = BTreeSet::new();
    let mut ack_times = Vec::new();
    let mut publish = async |seq: u64, event: &str| {
        if emitter.to_room("r").emit(event, &json!(seq)).await.is_ok() {
            acked.insert(seq);
            ack_times.push(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut seq = 0;
    while seq < FAILURE_AT {
        publish(seq, "seq").await;
        seq += 1;
    }
    // Publishing goes on while the failure runs its course, and until both edges' live
    // connections are on the new master.
    let failed_at = Instant::now();
    let failing = {
        let group = group.clone();
        tokio::task::spawn_blocking(move || failure(&group))
    };
    // The command, started as the failure begins, retries until a master takes its message.
    let cli = {
        let sentinels = sentinels.clone();
        tokio::task::spawn_blocking(move || {
            ferrocast_tests::emitter(
                &[
                    "--redis-sentinels",
                    &sentinels,
                    "--redis-sentinel-master",
                    MASTER,
                    "--retries",
                    "30",
                    "send",
                    "--room",
                    "cli",
                    "--event",
                    "cli",
                    "--data",
                    "1",
                ],
                None,
            )
        })
    };
    while !failing.is_finished() {
        publish(seq, "seq").await;
        seq += 1;
    }
    failing.await.expect("the failure");
    let new_master_named = failed_at.elapsed();
    let deadline = Instant::now() + DEADLINE;
    for edge in edges.iter() {
        while !reconnected(edge).await {
            assert!(Instant::now() < deadline, "an edge never reconnected");
            publish(seq, "seq").await;
            seq += 1;
        }
    }
    for _ in 0..FAILURE_AT {
        publish(seq, "seq").await;
        seq += 1;
    }
    // Before the end: the command's message reaches every subscriber before it.
    let cli = cli.await.expect("the command");
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    publish(seq, "end").await;
    assert!(acked.contains(&seq), "the last publish was acknowledged");
    let api = api.await.expect("the API publisher");
    let records: Vec<_> = recorders.iter().map(|(_, seen)| seen.clone()).collect();
    let api_records: Vec<_> = api_recorders.iter().map(|(_, seen)| seen.clone()).collect();
    let mut clients = finish(recorders, "library").await;
    finish(api_recorders, "API").await;
    for (i, seen) in records.iter().enumerate() {
        check(
            &format!("{name}: library, edge {i}"),
            &*seen.lock().await,
            &acked,
        );
    }
    for (i, seen) in api_records.iter().enumerate() {
        check(
            &format!("{name}: API, edge {i}"),
            &*seen.lock().await,
            &api.acked,
        );
    }
    eprintln!(
        "{name}: the sentinels named the new master after {new_master_named:?}; longest time \
         without an acknowledged publish {:?}, without a delivery {:?}; {} API answers 503 with \
         Retry-After",
        longest_silence(&ack_times),
        longest_silence(&records[0].lock().await.arrivals),
        api.unavailable,
    );
    stop.notify_one();
    let readiness = readiness.await.expect("the readiness watch");
    for (i, answers) in readiness.iter().enumerate() {
        eprintln!("{name}: edge {i} /readyz answered, in turn, {answers:?}");
        assert_eq!(answers.first(), Some(&200), "ready before the failure");
        assert_eq!(answers.last(), Some(&200), "ready again after it");
        assert!(
            answers.iter().all(|s| *s == 200 || *s == 503),
            "only ready or not: {answers:?}"
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
    run_through("SENTINEL FAILOVER", SentinelGroup::failover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_two_edges_follow_the_master_killed_without_silent_loss() {
    run_through("master killed", SentinelGroup::kill_master).await;
}

/// Sends upstream until acknowledged: during a failover the edge answers `UNAVAILABLE`, and the
/// client retries as the contract says.
async fn send_until_acked(client: &mut Client, data: u64) {
    let deadline = tokio::time::Instant::now() + DEADLINE * 3;
    loop {
        let answer = client
            .request(json!({"type": "send", "event": "up", "data": data}))
            .await;
        if answer["type"] == "ack" {
            return;
        }
        assert_eq!(answer["code"], "UNAVAILABLE", "{answer}");
        assert!(tokio::time::Instant::now() < deadline, "never acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the next upstream message, riding out the failover's transient errors.
async fn next_upstream(inbox: &mut ferrocast_emitter::Inbox) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + DEADLINE * 3;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "nothing arrived");
        match inbox.next().await {
            Ok(batch) if !batch.is_empty() => {
                assert_eq!(batch.len(), 1, "one message at a time");
                inbox.ack(&batch[0]).await.expect("ack");
                return serde_json::from_slice(&batch[0].message.data).expect("JSON data");
            }
            Ok(_) => {}
            Err(e) => assert!(e.is_transient(), "{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_read_the_inbox_through_sentinel_and_follow_a_failover() {
    let group = Arc::new(SentinelGroup::start());
    let sentinels = group.sentinels_flag();
    let args = [
        "--redis-sentinels",
        sentinels.as_str(),
        "--redis-sentinel-master",
        MASTER,
        "--upstream-events",
        "up",
    ];
    let edge = Edge::start(&args).await;
    let (mut client, _) = Client::connect(
        &edge.ws_url(),
        &ferrocast_tests::upstream::chat_token("alice"),
    )
    .await;
    let group_args = SentinelArgs {
        sentinels: vec![sentinels.clone()],
        master: Some(MASTER.into()),
        password: None,
    };
    let found = group_args
        .sentinels(None, &Tls::default())
        .expect("settings")
        .expect("a group");
    let mut inbox = ferrocast_emitter::Inbox::builder("redis://localhost", "workers", "w1")
        .sentinels(Arc::new(found))
        .block(Duration::from_millis(200))
        .connect()
        .await
        .expect("inbox through the sentinels");
    send_until_acked(&mut client, 1).await;
    assert_eq!(next_upstream(&mut inbox).await, json!(1));

    let first_master = group.master_port();
    let failing = group.clone();
    tokio::task::spawn_blocking(move || failing.failover_settled())
        .await
        .expect("failover");
    assert_ne!(group.master_port(), first_master, "the failover happened");
    // Only the new master holds this one (the old one is a replica now, which refuses writes):
    // reading it proves the worker followed.
    send_until_acked(&mut client, 2).await;
    assert_eq!(next_upstream(&mut inbox).await, json!(2));

    // The command reads through the sentinels too (a group of its own starts at the beginning).
    let run = ferrocast_tests::emitter(
        &[
            "--redis-sentinels",
            &sentinels,
            "--redis-sentinel-master",
            MASTER,
            "consume",
            "--group",
            "cli",
            "--consumer",
            "c1",
            "--count",
            "2",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let data: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("a JSON line")["data"].clone()
        })
        .collect();
    assert_eq!(data, [json!(1), json!(2)], "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_and_masters_reached_over_tls_are_followed_through_a_failover() {
    let certs = ferrocast_tests::certs::Certs::generate("sentinel-tls");
    let group = Arc::new(SentinelGroup::start_tls(&certs));
    let sentinels = group.sentinels_flag();
    let ca = certs.ca.display().to_string();
    // Only TLS ports are given out: a plain connection would fail its handshake. The master
    // URL's host is not used (the sentinels name the master); its scheme asks for TLS.
    let redis = [
        "--redis-sentinels",
        sentinels.as_str(),
        "--redis-sentinel-master",
        MASTER,
        "--redis-url",
        "rediss://127.0.0.1",
        "--redis-ca-file",
        ca.as_str(),
    ];
    let edge = Edge::start(&redis).await;
    let (mut client, _) = Client::connect(&edge.ws_url(), &token("tls")).await;
    client.join("r").await;
    let send = |data: &str| {
        let mut args = redis.to_vec();
        args.extend([
            "--retries",
            "30",
            "send",
            "--room",
            "r",
            "--event",
            "tls",
            "--data",
            data,
        ]);
        let run = ferrocast_tests::emitter(&args, None);
        assert_eq!(run.code, 0, "{}", run.stderr);
    };
    send("1");
    assert_eq!(client.expect("msg").await["data"], 1);

    let failing = group.clone();
    tokio::task::spawn_blocking(move || failing.failover_settled())
        .await
        .expect("failover");
    let deadline = Instant::now() + DEADLINE;
    while !reconnected(&edge).await {
        assert!(
            Instant::now() < deadline,
            "the edge never moved to the new master"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send("2");
    assert_eq!(client.expect("msg").await["data"], 2);
}
