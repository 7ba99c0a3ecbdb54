//! Real processes: redis-server on a free port, and edges.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::DEADLINE;

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Path of a workspace binary (`edge`, `emitter`) next to the test executable's profile folder.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --bins)",
        path.display()
    );
    path
}

/// A redis-server of our own, killed on drop.
pub struct RedisServer {
    child: Child,
    /// Its port.
    pub port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts redis-server (from PATH) on a free port with no persistence, and waits until it
    /// answers.
    pub fn start() -> RedisServer {
        RedisServer::start_on(free_port(), &[])
    }

    /// Like [`RedisServer::start`], with extra redis-server arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        RedisServer::start_on(free_port(), extra)
    }

    fn start_on(port: u16, extra: &[&str]) -> RedisServer {
        let dir =
            std::env::temp_dir().join(format!("ferrocast-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH (the README's test command installs it)");
        let server = RedisServer { child, port, dir };
        let deadline = Instant::now() + DEADLINE;
        while server.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Kills the server and starts a new, empty one on the same port (Redis restarted without
    /// persistence).
    pub fn restart_empty(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let fresh = RedisServer::start_on(self.port, &[]);
        let old = std::mem::replace(self, fresh);
        std::mem::forget(old);
    }

    /// Stops the process (SIGSTOP): connections stay open but nothing is answered.
    pub fn pause(&self) {
        signal(self.child.id(), "-STOP");
    }

    /// Continues a paused process (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.id(), "-CONT");
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&self) {
        signal(self.child.id(), "-KILL");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs redis-cli against this server; `None` if it failed.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        redis_cli(&["-p", &self.port.to_string()], args)
    }
}

/// Runs redis-cli with `options`, then `args`; its output, or `None` if it failed.
fn redis_cli(options: &[&str], args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(options)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An edge process, killed on drop.
pub struct Edge {
    child: Child,
    /// Its public (WebSocket) port.
    pub port: u16,
    /// Its internal port: probes and metrics.
    pub internal_port: u16,
}

impl Edge {
    /// Starts an edge on free ports with `args` (and `--listen`, `--internal-listen`), and
    /// waits until `/readyz` answers 200.
    pub async fn start(args: &[&str]) -> Edge {
        Edge::start_with_env(args, &[]).await
    }

    /// Like [`Edge::start`], with extra environment variables.
    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Edge {
        let mut edge = Edge::spawn(args, env);
        edge.wait_started().await;
        edge
    }

    /// Starts an edge process on free ports without waiting for anything.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Edge {
        let port = free_port();
        let internal_port = free_port();
        let child = Command::new(bin("edge"))
            // Whatever the test machine's environment says: each test configures its edge.
            .env_remove("FERROCAST_REDIS_URL")
            .env_remove("FERROCAST_JWT_SECRET")
            .envs(env.iter().copied())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--internal-listen", &format!("127.0.0.1:{internal_port}")])
            .args([
                "--log",
                &std::env::var("FERROCAST_TEST_EDGE_LOG").unwrap_or_else(|_| "error".into()),
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn edge");
        Edge {
            child,
            port,
            internal_port,
        }
    }

    /// Waits until `/readyz` answers 200; panics if the edge exits first.
    pub async fn wait_started(&mut self) {
        let port = self.port;
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("edge exited during start-up: {status}");
            }
            if self
                .get("/readyz")
                .await
                .is_some_and(|(status, _)| status == 200)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "edge on port {port} never became ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts an edge using the Redis `redis`.
    pub async fn with_redis(redis: &RedisServer, extra: &[&str]) -> Edge {
        let url = redis.url();
        let mut args = vec!["--redis-url", url.as_str()];
        args.extend_from_slice(extra);
        Edge::start(&args).await
    }

    /// Waits until `/readyz` answers `status`.
    pub async fn wait_readyz(&self, status: u16) {
        let deadline = Instant::now() + DEADLINE * 2;
        while self.get("/readyz").await.map(|r| r.0) != Some(status) {
            assert!(Instant::now() < deadline, "/readyz never answered {status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// A plain HTTP GET on the internal port (probes, metrics): status and body, or `None` if
    /// the edge did not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_exchange(
            self.internal_port,
            &format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n"),
        )
        .await
    }

    /// A plain HTTP GET on the public port.
    pub async fn public_get(&self, path: &str) -> Option<(u16, String)> {
        self.raw(&format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n"))
            .await
    }

    /// Sends a raw request to the public port and reads the response until the edge closes:
    /// status and body.
    pub async fn raw(&self, request: &str) -> Option<(u16, String)> {
        http_exchange(self.port, request).await
    }

    /// Whether the process has exited, and how.
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM (a graceful drain).
    pub fn terminate(&self) {
        signal(self.child.id(), "-TERM");
    }

    /// Waits for the process to exit; its status.
    pub async fn exited(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "edge still running after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The edge's metrics, parsed: `name{labels}` to value.
    pub async fn metrics(&self) -> std::collections::HashMap<String, f64> {
        let (status, body) = self.get("/metrics").await.expect("metrics");
        assert_eq!(status, 200);
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// Waits until metric `name` (with its labels) reads `value`.
    pub async fn wait_metric(&self, name: &str, value: f64) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let metrics = self.metrics().await;
            if metrics.get(name) == Some(&value) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never reached {value}: {metrics:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process with SIGKILL: no drain, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// A child process killed when dropped (for workers, servers and the like that a test starts).
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A local Redis Cluster of our own: `masters` masters (and `replicas` replicas of each), every
/// node a redis-server on a free port, killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// Ports of the nodes killed by [`RedisCluster::kill`].
    killed: Vec<u16>,
}

impl RedisCluster {
    /// Starts the nodes, joins them with `redis-cli --cluster create`, and waits until every
    /// node reports `cluster_state:ok`.
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        let count = masters * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "1000",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster {
            nodes,
            killed: Vec::new(),
        };
        let deadline = Instant::now() + DEADLINE * 3;
        // Ready: every node sees the cluster whole, and every replica has synced with its
        // master (a replica that never did refuses to take over in a failover).
        let ready = |n: &RedisServer| {
            n.cli(&["CLUSTER", "INFO"])
                .is_some_and(|i| i.contains("cluster_state:ok"))
                && n.cli(&["INFO", "replication"]).is_some_and(|i| {
                    i.contains("role:master") || i.contains("master_link_status:up")
                })
        };
        while !cluster.nodes.iter().all(ready) {
            assert!(Instant::now() < deadline, "the cluster never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// `host:port` of every node, comma-separated (the `--redis-cluster-nodes` form).
    pub fn nodes_arg(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `redis://host:port` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Runs redis-cli in cluster mode (`-c`, following redirections) from the first node still
    /// running.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let node = self.nodes.iter().find(|n| !self.killed.contains(&n.port))?;
        redis_cli(&["-c", "-p", &node.port.to_string()], args)
    }

    /// Runs redis-cli against the node on `port` alone (no redirections).
    pub fn node_cli(&self, port: u16, args: &[&str]) -> Option<String> {
        redis_cli(&["-p", &port.to_string()], args)
    }

    /// Ports of the masters.
    pub fn masters(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| !self.killed.contains(&n.port))
            .filter(|n| n.cli(&["ROLE"]).is_some_and(|r| r.starts_with("master")))
            .map(|n| n.port)
            .collect()
    }

    /// Moves `slot` from the master on `from` to the master on `to`, keys and all, the way a
    /// resharding does (IMPORTING / MIGRATING, MIGRATE, SETSLOT NODE).
    pub fn move_slot(&self, slot: u16, from: u16, to: u16) {
        let id = |port| {
            self.node_cli(port, &["CLUSTER", "MYID"])
                .expect("CLUSTER MYID")
        };
        let (from_id, to_id, slot) = (id(from), id(to), slot.to_string());
        let ok = |reply: Option<String>, what: &str| {
            assert!(
                reply.as_deref().is_some_and(|r| !r.contains("ERR")),
                "{what}: {reply:?}"
            );
        };
        ok(
            self.node_cli(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]),
            "importing",
        );
        ok(
            self.node_cli(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]),
            "migrating",
        );
        loop {
            let keys = self
                .node_cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"])
                .unwrap_or_default();
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let to_port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            ok(self.node_cli(from, &args), "migrate");
        }
        for port in self.masters() {
            ok(
                self.node_cli(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]),
                "setslot node",
            );
        }
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter().find(|n| n.port == port) {
            node.kill();
            self.killed.push(port);
        }
    }

    /// Whether every node still running reports `cluster_state:ok` and a master for `key`'s
    /// slot other than the killed ones.
    pub fn serves(&self, key: &str) -> bool {
        self.nodes
            .iter()
            .filter(|n| !self.killed.contains(&n.port))
            .all(|n| {
                n.cli(&["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
            })
            && self
                .holder_of(key)
                .is_some_and(|p| !self.killed.contains(&p))
    }

    /// The port of the node holding `key` (its slot's master), if the key exists.
    pub fn holder_of(&self, key: &str) -> Option<u16> {
        // Asked without -c, only the slot's master answers; the others redirect.
        self.nodes
            .iter()
            .filter(|n| !self.killed.contains(&n.port))
            .find(|n| n.cli(&["EXISTS", key]).as_deref() == Some("1"))
            .map(|n| n.port)
    }
}

/// Sends a raw HTTP request to `port` on loopback and reads the response until the peer closes:
/// status and body, or `None` if nothing came back within 2 s.
async fn http_exchange(port: u16, request: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}
