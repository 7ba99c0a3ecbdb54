//! A Prometheus server of the test's own: Debian's `prometheus` binary (from PATH) on a free
//! port, scraping the given edges every second and evaluating rule files every second, and
//! plain HTTP to its query API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrocast_emitter::http::query_escape;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{DEADLINE, free_port};

/// A running Prometheus, killed (and its data removed) on drop.
pub struct Prometheus {
    child: Child,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port` of edges' internal listeners) as job
    /// `job`, with `rule_files`, and waits until it answers `/-/ready`.
    pub async fn start(job: &str, targets: &[String], rule_files: &[PathBuf]) -> Prometheus {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "ferrocast-prometheus-{port}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let config = config(job, targets, rule_files);
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus.yml");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "spawn prometheus (Debian's package `prometheus`; scripts/test.sh installs it)",
            );
        let mut prometheus = Prometheus { child, port, dir };
        let deadline = Instant::now() + DEADLINE * 2;
        loop {
            if let Some(status) = prometheus.child.try_wait().expect("try_wait") {
                panic!("prometheus exited during start-up: {status}");
            }
            if prometheus
                .get("/-/ready")
                .await
                .is_some_and(|(s, _)| s == 200)
            {
                return prometheus;
            }
            assert!(Instant::now() < deadline, "prometheus never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Evaluates `expr` now: its result (`data.result`), or Prometheus's error.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let path = format!("/api/v1/query?query={}", query_escape(expr));
        let (status, body) = self
            .get(&path)
            .await
            .ok_or_else(|| "no answer from prometheus".to_owned())?;
        let answer: Value =
            serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
        if status != 200 || answer["status"] != "success" {
            return Err(format!("{status}: {}", answer["error"]));
        }
        match &answer["data"]["result"] {
            Value::Array(result) => Ok(result.clone()),
            // A scalar or a string: one value.
            other => Ok(vec![other.clone()]),
        }
    }

    /// The rules Prometheus loaded, as `/api/v1/rules` lists them (with their health).
    pub async fn rules(&self) -> Vec<Value> {
        let (status, body) = self.get("/api/v1/rules").await.expect("rules");
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).expect("rules JSON");
        answer["data"]["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// A GET of `path`: status and body, or `None` if Prometheus did not answer within 5 s.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        // HTTP/1.0: the answer is never chunked and ends when the server closes.
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .ok()?;
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.ok()?;
            let response = String::from_utf8_lossy(&response).into_owned();
            let (head, body) = response.split_once("\r\n\r\n")?;
            let status = head.split(' ').nth(1)?.parse().ok()?;
            Some((status, body.to_owned()))
        };
        tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .ok()
            .flatten()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(job: &str, targets: &[String], rule_files: &[PathBuf]) -> String {
    let quoted = |items: Vec<String>| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rules = rule_files.iter().map(|p| absolute(p)).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: [{}]\n\
         scrape_configs:\n  - job_name: \"{job}\"\n    static_configs:\n      - targets: [{}]\n",
        quoted(rules),
        quoted(targets.to_vec()),
    )
}

fn absolute(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .display()
        .to_string()
}
