//! An edge process of the test's own, and plain HTTP to its ports.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::DEADLINE;

use super::redis::RedisServer;
use super::{bin, free_port, signal};

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
        Edge::spawn_at("127.0.0.1", args, env)
    }

    /// Like [`Edge::start`], with the public listener on `host` (e.g. `[::]`, dual-stack: IPv4
    /// clients arrive as IPv4-mapped IPv6 addresses). A host other than loopback needs a
    /// configured secret.
    pub async fn start_at(host: &str, args: &[&str]) -> Edge {
        let mut edge = Edge::spawn_at(host, args, &[]);
        edge.wait_started().await;
        edge
    }

    /// Starts an edge process with its public listener on `host` without waiting for anything.
    pub fn spawn_at(host: &str, args: &[&str], env: &[(&str, &str)]) -> Edge {
        let port = free_port();
        let internal_port = free_port();
        let child = Command::new(bin("edge"))
            // Whatever the test machine's environment says: each test configures its edge.
            .env_remove("FERROCAST_REDIS_URL")
            .env_remove("FERROCAST_JWT_SECRET")
            .envs(env.iter().copied())
            .args(["--listen", &format!("{host}:{port}")])
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
            &format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        )
        .await
    }

    /// An HTTP API request on the internal port, with API key `key` if given: status, response
    /// head, and the body as JSON (`null` if it is not JSON). Panics if nothing came back.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> (u16, String, serde_json::Value) {
        let bearer = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| ("authorization", b))
            .into_iter()
            .collect();
        let (status, head, json) = self.api_with(method, path, &headers, body).await;
        (status, head.to_ascii_lowercase(), json)
    }

    /// Like [`Edge::api`], with the request's own `headers` (name, value) instead of a key, and
    /// the response head as it came.
    pub async fn api_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, serde_json::Value) {
        let extra: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{extra}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let started = Instant::now();
        let response = raw_exchange(self.internal_port, request.as_bytes())
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no answer to {method} {path} (gave up after {:?})",
                    started.elapsed()
                )
            });
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
        (status, head.to_owned(), json)
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

/// Sends raw bytes to `port` on loopback and reads the response until the peer closes, or
/// `None` if nothing came back within 5 s.
async fn raw_exchange(port: u16, request: &[u8]) -> Option<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        // A peer that answers before reading everything (413) may reset the rest.
        let _ = stream.write_all(request).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        (!response.is_empty()).then(|| String::from_utf8_lossy(&response).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
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
