//! The loadtest harness, run for real: its figures are only worth something if its scenarios
//! work. The chaos scenario doubles as the proof that clients lose nothing while edges die.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ferrocast_tests::{DEADLINE, RedisServer, Running, bin, free_port};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Edges started and killed through the shell, as the chaos scenario's hooks do it; every edge
/// still running is killed on drop.
struct ShellEdges {
    dir: PathBuf,
    ports: Vec<u16>,
    /// Internal (probe) ports, one per edge.
    internal: Vec<u16>,
}

impl ShellEdges {
    fn start_cmd(&self, i: usize, redis: &RedisServer) -> String {
        format!(
            "{} --listen 127.0.0.1:{} --internal-listen 127.0.0.1:{} --redis-url {} --log error >/dev/null 2>&1 & echo $! > {}/edge{i}.pid",
            bin("edge").display(),
            self.ports[i],
            self.internal[i],
            redis.url(),
            self.dir.display()
        )
    }

    /// The loadtest's options for these edges and `redis`: JSON, the Redis URL, every edge's URL.
    fn loadtest_args(&self, redis: &RedisServer) -> Vec<String> {
        let mut args: Vec<String> = vec!["--json".into(), "--redis-url".into(), redis.url()];
        for port in &self.ports {
            args.extend(["--url".into(), format!("ws://127.0.0.1:{port}/ws")]);
        }
        args
    }

    fn kill_cmd(&self, i: usize) -> String {
        format!("kill -9 $(cat {}/edge{i}.pid)", self.dir.display())
    }
}

impl Drop for ShellEdges {
    fn drop(&mut self) {
        for i in 0..self.ports.len() {
            let _ = Command::new("sh").arg("-c").arg(self.kill_cmd(i)).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `GET /readyz` on `port` answers 200.
async fn ready(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    answer.starts_with("HTTP/1.1 200")
}

fn loadtest(args: &[String]) -> Value {
    let out = Command::new(bin("loadtest"))
        .args(args)
        .env_remove("FERROCAST_REDIS_URL")
        .output()
        .expect("run loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadtest failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON object")
}

/// Starts `count` edges through the shell on `redis`, and waits until each is ready.
async fn shell_edges(name: &str, count: usize, redis: &RedisServer) -> ShellEdges {
    let edges = ShellEdges {
        dir: std::env::temp_dir().join(format!("ferrocast-{name}-{}", std::process::id())),
        ports: (0..count).map(|_| free_port()).collect(),
        internal: (0..count).map(|_| free_port()).collect(),
    };
    std::fs::create_dir_all(&edges.dir).expect("temp dir");
    for i in 0..count {
        let status = Command::new("sh")
            .arg("-c")
            .arg(edges.start_cmd(i, redis))
            .status()
            .expect("sh");
        assert!(status.success());
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for port in &edges.internal {
        while !ready(*port).await {
            assert!(tokio::time::Instant::now() < deadline, "edge never ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    edges
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kills_edges_under_steady_publishing_and_clients_lose_nothing() {
    let redis = RedisServer::start();
    let edges = shell_edges("chaos", 2, &redis).await;
    let mut args = edges.loadtest_args(&redis);
    args.extend(
        [
            "chaos",
            "--clients",
            "40",
            "--rate",
            "100",
            "--duration",
            "6s",
            "--every",
            "1500ms",
            "--down-for",
            "300ms",
        ]
        .map(String::from),
    );
    for i in 0..2 {
        args.extend([
            "--kill-cmd".into(),
            edges.kill_cmd(i),
            "--start-cmd".into(),
            edges.start_cmd(i, &redis),
        ]);
    }
    let report = loadtest(&args);
    eprintln!("chaos report: {report}");
    assert!(report["kills"].as_u64() >= Some(3), "{report}");
    assert!(report["reconnects"].as_u64() >= Some(20), "{report}");
    assert_eq!(report["published"], 600, "{report}");
    for zero in [
        "lost",
        "duplicates",
        "out_of_order",
        "resumes_not_recovered",
    ] {
        assert_eq!(report[zero], 0, "{zero}: {report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_runs_against_the_baseline_server_and_a_single_node_edge_alike() {
    let baseline_port = free_port();
    let baseline = Running(
        Command::new(bin("loadtest"))
            .args([
                "baseline-server",
                "--listen",
                &format!("127.0.0.1:{baseline_port}"),
            ])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("baseline server"),
    );
    // Single-node edge, its rate limit raised for the harness's publisher connection.
    let edge = ferrocast_tests::Edge::start(&["--rate", "100000", "--burst", "100000"]).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::net::TcpStream::connect(("127.0.0.1", baseline_port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "baseline never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (url, pid) in [
        (format!("ws://127.0.0.1:{baseline_port}/"), baseline.0.id()),
        (edge.ws_url(), edge.pid()),
    ] {
        let args: Vec<String> = [
            "--json",
            "--url",
            &url,
            "--edge-pid",
            &pid.to_string(),
            "fanout",
            "--members",
            "50",
            "--rate",
            "50",
            "--duration",
            "2s",
            "--publish-via",
            "ws",
        ]
        .map(String::from)
        .to_vec();
        let report = loadtest(&args);
        eprintln!("fanout report: {report}");
        assert_eq!(report["published"], 100, "{report}");
        assert_eq!(report["deliveries"], 5000, "{report}");
        for zero in ["lost", "duplicates", "out_of_order"] {
            assert_eq!(report[zero], 0, "{zero}: {report}");
        }
        assert!(report["edge_cpu_user_s"].is_number(), "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_calls_are_answered_by_the_in_process_workers() {
    let redis = RedisServer::start();
    let edge = ferrocast_tests::Edge::with_redis(
        &redis,
        &[
            "--upstream-events",
            "loadtest.*",
            "--upstream-rate",
            "1000",
            "--upstream-burst",
            "1000",
        ],
    )
    .await;
    let args: Vec<String> = [
        "--json",
        "--url",
        &edge.ws_url(),
        "--redis-url",
        &redis.url(),
        "--edge-pid",
        &edge.pid().to_string(),
        "rpc",
        "--clients",
        "20",
        "--rate",
        "200",
        "--duration",
        "1s",
    ]
    .map(String::from)
    .to_vec();
    let report = loadtest(&args);
    eprintln!("rpc report: {report}");
    let calls = report["calls"].as_u64().expect("calls");
    assert!(calls >= 150, "{report}");
    assert_eq!(report["replies"], calls, "{report}");
    assert_eq!(report["unanswered"], 0, "{report}");
    assert!(report["round_trip_p50_ms"].is_number(), "{report}");
    assert!(report["edge_cpu_us_per_call"].is_number(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_counts_a_reconnect_storm_without_losing_a_push() {
    let redis = RedisServer::start();
    let edge = ferrocast_tests::Edge::with_redis(
        &redis,
        &[
            "--presence-rooms",
            "presence:*",
            "--presence-events",
            "presence:*",
            "--rate",
            "100000",
            "--burst",
            "100000",
        ],
    )
    .await;
    let args: Vec<String> = [
        "--json",
        "--url",
        &edge.ws_url(),
        "--redis-url",
        &redis.url(),
        "--edge-pid",
        &edge.pid().to_string(),
        "presence",
        "--members",
        "100",
        "--hold",
        "1s",
        "--queries",
        "20",
        "--reconnect",
    ]
    .map(String::from)
    .to_vec();
    let report = loadtest(&args);
    eprintln!("presence report: {report}");
    // The member that stayed hears of every one of the 100 leaving and coming back.
    assert_eq!(
        report["storm_pushes_to_a_staying_member_joins"], 100,
        "{report}"
    );
    assert_eq!(
        report["storm_pushes_to_a_staying_member_leaves"], 100,
        "{report}"
    );
    assert_eq!(report["members_closed"], 0, "{report}");
    // While the room filled, each member heard of everyone who joined after it (4950 in all,
    // plus the asker's join: 100), and of those announced in the same batch as itself: at most
    // all 99 others and the asker.
    let seen = report["member_joins_seen"]
        .as_u64()
        .expect("member_joins_seen");
    assert!((100 * 99 / 2 + 100..=100 * 100).contains(&seen), "{report}");
    assert!(report["presence_stats_p50_ms"].is_number(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_brings_every_client_of_a_killed_edge_back_with_nothing_lost() {
    let redis = RedisServer::start();
    let edges = shell_edges("storm", 3, &redis).await;
    let mut args = edges.loadtest_args(&redis);
    args.extend(
        [
            "storm",
            "--clients",
            "300",
            "--warmup",
            "2s",
            "--after",
            "1s",
            "--kill-cmd",
        ]
        .map(String::from),
    );
    args.push(edges.kill_cmd(0));
    let report = loadtest(&args);
    eprintln!("storm report: {report}");
    assert_eq!(report["clients_back"], 300, "{report}");
    assert!(report["published"].as_u64() >= Some(100), "{report}");
    assert!(
        report["redis_commands_per_s_peak"].as_u64()
            > report["redis_commands_per_s_before"].as_u64(),
        "{report}"
    );
    for zero in [
        "lost",
        "duplicates",
        "out_of_order",
        "resumes_not_recovered",
    ] {
        assert_eq!(report[zero], 0, "{zero}: {report}");
    }
}

/// The short campaign CI runs: a minute of faults of every kind, drawn with a fixed seed (the
/// long one's command and figures are in BENCHMARKS.md). The checker's own tests
/// (`loadtest/src/campaign/checker.rs`) show it catching each kind of violation.
#[test]
fn a_short_fault_campaign_keeps_the_delivery_contract() {
    let args: Vec<String> = [
        "--json",
        "campaign",
        "--seed",
        "1",
        "--duration",
        "60s",
        "--every",
        "2s",
        "--edge-binary",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([bin("edge").display().to_string()])
    .collect();
    let report = loadtest(&args);
    eprintln!("{report}");
    for count in ["silent_losses", "duplicates", "reorders"] {
        assert_eq!(report[count], 0, "{count}: {report}");
    }
    assert!(report["faults"].as_u64() >= Some(20), "{report}");
    assert!(report["delivered"].as_u64() > Some(10_000), "{report}");
}
