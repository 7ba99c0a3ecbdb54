//! A Sentinel group of the test's own: one master, one replica and three sentinels
//! (`redis-server FILE --sentinel`), all on loopback, with short failure detection so a failover
//! takes seconds.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::DEADLINE;
use crate::certs::Certs;

use super::redis::{RedisServer, redis_cli};
use super::{Running, free_port};

/// The master's name in the sentinels' configuration.
pub const MASTER: &str = "ferrocast";

/// The group; every process is killed on drop.
pub struct SentinelGroup {
    /// The two data nodes: which is the master changes with each failover.
    pub nodes: Vec<RedisServer>,
    /// The sentinels' ports (plain, for the test's own checks).
    pub sentinel_ports: Vec<u16>,
    /// With TLS: the sentinels' TLS ports, the only ones clients are given.
    pub sentinel_tls_ports: Vec<u16>,
    _sentinels: Vec<Running>,
    dir: std::path::PathBuf,
}

impl SentinelGroup {
    /// Starts a master, a replica of it and three sentinels watching it, and waits until every
    /// sentinel sees the replica and the other two.
    pub fn start() -> SentinelGroup {
        SentinelGroup::start_nodes(None)
    }

    /// Like [`SentinelGroup::start`], with TLS everywhere clients go: the data nodes serve TLS
    /// (and replicate over it), and the sentinels listen on TLS ports too and reach the data
    /// nodes over TLS; the sentinels name the master's TLS port. Plain ports stay open for the
    /// test's own checks only.
    pub fn start_tls(certs: &Certs) -> SentinelGroup {
        SentinelGroup::start_nodes(Some(certs))
    }

    fn start_nodes(tls: Option<&Certs>) -> SentinelGroup {
        let path = |p: &std::path::Path| p.display().to_string();
        let data_node = |extra: &[&str]| match tls {
            None => RedisServer::start_with(extra),
            Some(certs) => {
                let (cert, key) = (path(&certs.client_cert), path(&certs.client_key));
                let mut args = vec!["--tls-replication", "yes"];
                args.extend([
                    "--tls-client-cert-file",
                    &cert,
                    "--tls-client-key-file",
                    &key,
                ]);
                args.extend(extra);
                RedisServer::start_tls_with(certs, false, None, &args)
            }
        };
        let master = data_node(&[]);
        // What replicas and sentinels reach the master on.
        let master_port = master.tls_port.unwrap_or(master.port);
        let replica = data_node(&["--replicaof", "127.0.0.1", &master_port.to_string()]);
        wait_for("the replica to sync", || {
            replica
                .cli(&["INFO", "replication"])
                .is_some_and(|info| info.contains("master_link_status:up"))
        });
        let dir = std::env::temp_dir().join(format!(
            "ferrocast-sentinels-{}-{}",
            std::process::id(),
            master.port
        ));
        std::fs::create_dir_all(&dir).expect("sentinel dir");
        let mut sentinels = Vec::new();
        let mut sentinel_ports = Vec::new();
        let mut sentinel_tls_ports = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let file = dir.join(format!("sentinel-{i}.conf"));
            let mut config = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 10000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir = dir.display(),
            );
            if let Some(certs) = tls {
                let tls_port = free_port();
                config.push_str(&format!(
                    "tls-port {tls_port}\ntls-cert-file {}\ntls-key-file {}\n\
                     tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n\
                     tls-client-cert-file {}\ntls-client-key-file {}\n",
                    path(&certs.server_cert),
                    path(&certs.server_key),
                    path(&certs.ca),
                    path(&certs.client_cert),
                    path(&certs.client_key),
                ));
                sentinel_tls_ports.push(tls_port);
            }
            std::fs::write(&file, config).expect("sentinel config");
            let child: Child = Command::new("redis-server")
                .arg(&file)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server --sentinel");
            sentinels.push(Running(child));
            sentinel_ports.push(port);
        }
        let group = SentinelGroup {
            nodes: vec![master, replica],
            sentinel_ports,
            sentinel_tls_ports,
            _sentinels: sentinels,
            dir,
        };
        for &port in &group.sentinel_ports {
            wait_for("the sentinels to know each other and the replica", || {
                let Some(info) = sentinel_cli(port, &["SENTINEL", "MASTER", MASTER]) else {
                    return false;
                };
                let lines: Vec<&str> = info.lines().collect();
                let field = |name: &str| {
                    lines
                        .iter()
                        .position(|l| *l == name)
                        .and_then(|i| lines.get(i + 1))
                        .map(|v| v.to_string())
                };
                field("num-slaves").as_deref() == Some("1")
                    && field("num-other-sentinels").as_deref() == Some("2")
            });
        }
        group
    }

    /// The sentinels, as `--redis-sentinels` takes them (their TLS ports, with TLS).
    pub fn sentinels_flag(&self) -> String {
        let ports = if self.sentinel_tls_ports.is_empty() {
            &self.sentinel_ports
        } else {
            &self.sentinel_tls_ports
        };
        ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port of the master the sentinels name now.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinel_ports.iter().find_map(|&port| {
            let answer = sentinel_cli(port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER])?;
            answer.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// The data node that is master now.
    pub fn master(&self) -> &RedisServer {
        let port = self.master_port().expect("a master");
        self.nodes
            .iter()
            .find(|n| n.port == port || n.tls_port == Some(port))
            .expect("the master is one of the nodes")
    }

    /// Asks a sentinel for a failover and waits until the sentinels name the other node.
    pub fn failover(&self) {
        let before = self.master_port();
        let answer = sentinel_cli(self.sentinel_ports[0], &["SENTINEL", "FAILOVER", MASTER]);
        assert_eq!(answer.as_deref(), Some("OK"), "SENTINEL FAILOVER");
        wait_for("the sentinels to name a new master", || {
            let now = self.master_port();
            now.is_some() && now != before
        });
    }

    /// Like [`SentinelGroup::failover`], then waits until the old master has been made a
    /// replica: until then it still takes writes, which its resync then discards (the window
    /// asynchronous replication leaves, which a test of something else must not fall into).
    pub fn failover_settled(&self) {
        let old = self.master().port;
        self.failover();
        let old = self
            .nodes
            .iter()
            .find(|n| n.port == old)
            .expect("the old master is one of the nodes");
        wait_for("the old master to become a replica", || {
            old.cli(&["ROLE"])
                .is_some_and(|role| role.lines().next() == Some("slave"))
        });
    }

    /// Kills the master outright (SIGKILL) and waits until the sentinels have promoted the
    /// replica.
    pub fn kill_master(&self) {
        let before = self.master_port();
        self.master().kill();
        wait_for("the sentinels to promote the replica", || {
            let now = self.master_port();
            now.is_some() && now != before
        });
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sentinel_cli(port: u16, args: &[&str]) -> Option<String> {
    redis_cli(&["-p", &port.to_string()], args)
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE * 3;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
