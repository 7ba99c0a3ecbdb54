//! The processes a campaign runs and breaks: one redis-server (appending every write to its AOF
//! before answering, so a restart with its data loses nothing acknowledged), and edges, each
//! reaching Redis through a proxy of its own and reached by clients through another.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::proxy::Proxy;

/// Options the edges get: heartbeats and the idle timeout short enough that a paused edge's
/// clients notice within seconds, and a short drain.
const EDGE_ARGS: &[&str] = &[
    "--heartbeat",
    "2s",
    "--idle-timeout",
    "6s",
    "--drain-timeout",
    "2s",
];

/// How long a process may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The Redis server.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    /// Starts redis-server on a free port, its files in `dir`.
    pub async fn start(dir: &Path) -> anyhow::Result<Redis> {
        let mut redis = Redis {
            port: free_port()?,
            dir: dir.to_owned(),
            child: None,
        };
        redis.spawn().await?;
        Ok(redis)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start redis-server (is it installed?)")?;
        self.child = Some(child);
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_until(
            "redis-server to answer",
            || async move { ping(address).await },
        )
        .await
    }

    /// Kills it (SIGKILL).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it if it is not running.
    pub async fn ensure_running(&mut self) -> anyhow::Result<()> {
        if running(&mut self.child)? {
            return Ok(());
        }
        self.spawn().await
    }

    /// Starts it again on the same port: with the data it had, or empty.
    pub async fn restart(&mut self, with_data: bool) -> anyhow::Result<()> {
        self.kill().await;
        if !with_data {
            let _ = std::fs::remove_dir_all(self.dir.join("appendonlydir"));
        }
        self.spawn().await
    }
}

/// One edge, its proxies, and whether it runs.
pub struct Edge {
    /// The clients' proxy port (what clients connect to).
    pub client_port: u16,
    /// The edge's own internal port (probes, the HTTP API).
    pub internal_port: u16,
    /// Between the edge and Redis.
    pub redis_link: Proxy,
    /// Between clients and the edge.
    pub client_link: Proxy,
    port: u16,
    binary: PathBuf,
    child: Option<Child>,
}

impl Edge {
    /// Starts an edge on free ports, its Redis connections through a proxy to `redis_port`.
    pub async fn start(binary: &Path, redis_port: u16) -> anyhow::Result<Edge> {
        let port = free_port()?;
        let redis_link = Proxy::start(SocketAddr::from(([127, 0, 0, 1], redis_port))).await?;
        let client_link = Proxy::start(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        let mut edge = Edge {
            client_port: client_link.port,
            internal_port: free_port()?,
            redis_link,
            client_link,
            port,
            binary: binary.to_owned(),
            child: None,
        };
        edge.spawn().await?;
        Ok(edge)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new(&self.binary)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args([
                "--internal-listen",
                &format!("127.0.0.1:{}", self.internal_port),
            ])
            .args([
                "--redis-url",
                &format!("redis://127.0.0.1:{}", self.redis_link.port),
            ])
            .args(EDGE_ARGS)
            // The edges' warnings are the campaign's log of what they went through.
            .args([
                "--log",
                &std::env::var("FERROCAST_CAMPAIGN_EDGE_LOG").unwrap_or_else(|_| "error".into()),
            ])
            .env_remove("FERROCAST_JWT_SECRET")
            .env_remove("FERROCAST_REDIS_URL")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.child = Some(child);
        let internal = self.internal_port;
        wait_until(
            "an edge to be ready",
            || async move { ready(internal).await },
        )
        .await
    }

    /// The edge's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Sends `signal` (`-9`, `-STOP`, ...) to the edge.
    pub async fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .await;
        }
    }

    /// Waits for the edge to exit (after a kill or a drain), at most `within`.
    pub async fn exited(&mut self, within: Duration) {
        if let Some(child) = &mut self.child {
            let _ = tokio::time::timeout(within, child.wait()).await;
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it if it is not running (a restart that failed leaves it down).
    pub async fn ensure_running(&mut self) -> anyhow::Result<()> {
        if running(&mut self.child)? {
            return Ok(());
        }
        self.restart().await
    }

    /// Starts it again after it exited.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.exited(Duration::ZERO).await;
        self.spawn().await
    }
}

/// Whether `child` is a process that has not exited.
fn running(child: &mut Option<Child>) -> anyhow::Result<bool> {
    Ok(match child {
        Some(child) => child.try_wait()?.is_none(),
        None => false,
    })
}

/// Whether the edge with this internal port answers `/readyz` with 200.
pub async fn ready(internal_port: u16) -> bool {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", internal_port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        Some(answer.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

async fn ping(address: SocketAddr) -> bool {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).await.ok()?;
        Some(&answer == b"+PONG\r\n")
    };
    tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

async fn wait_until<F, Fut>(what: &str, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + START_TIMEOUT;
    while !condition().await {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A port free on loopback now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
