//! A local Redis Cluster of the test's own.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::DEADLINE;
use crate::certs::Certs;

use super::redis::{RedisServer, redis_cli};

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
        RedisCluster::start_nodes(masters, replicas, None)
    }

    /// Like [`RedisCluster::start`], every node also serving TLS on its `tls_port` with the
    /// certificates of `certs`, and speaking TLS to the others (cluster bus and replication).
    /// A client that reaches the cluster over TLS is redirected to the nodes' TLS ports.
    pub fn start_tls(masters: usize, replicas: usize, certs: &Certs) -> RedisCluster {
        RedisCluster::start_nodes(masters, replicas, Some(certs))
    }

    fn start_nodes(masters: usize, replicas: usize, tls: Option<&Certs>) -> RedisCluster {
        let count = masters * (1 + replicas);
        let args = ["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"];
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| match tls {
                None => RedisServer::start_with(&args),
                Some(certs) => {
                    // Nodes connecting to each other present the client certificate: the
                    // server's is for server authentication only.
                    let (cert, key) = (certs.client_cert.display(), certs.client_key.display());
                    let (cert, key) = (cert.to_string(), key.to_string());
                    let mut args = args.to_vec();
                    args.extend(["--tls-cluster", "yes", "--tls-replication", "yes"]);
                    args.extend([
                        "--tls-client-cert-file",
                        &cert,
                        "--tls-client-key-file",
                        &key,
                    ]);
                    RedisServer::start_tls_with(certs, false, None, &args)
                }
            })
            .collect();
        // With TLS, the nodes meet on their TLS ports (their cluster bus is the TLS port's).
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.tls_port.unwrap_or(n.port)))
            .collect();
        let tls_args: Vec<String> = tls
            .map(|certs| {
                vec![
                    "--tls".into(),
                    "--cacert".into(),
                    certs.ca.display().to_string(),
                ]
            })
            .unwrap_or_default();
        // Bounded: a cluster whose nodes cannot meet waits forever for them to join.
        let out = Command::new("timeout")
            .args(["60", "redis-cli"])
            .args(&tls_args)
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

    /// `rediss://localhost:<tls port>` of every node, for a cluster started with
    /// [`RedisCluster::start_tls`].
    pub fn tls_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::tls_url).collect()
    }

    /// Each node's plain and TLS ports, and the local ports its clients are connected to (from
    /// `CLIENT LIST`, leaving out the connection that asks).
    pub fn client_ports(&self) -> Vec<(u16, Option<u16>, Vec<u16>)> {
        self.nodes
            .iter()
            .filter(|n| !self.killed.contains(&n.port))
            .map(|n| {
                let list = n.cli(&["CLIENT", "LIST"]).unwrap_or_default();
                let ports = list
                    .lines()
                    .filter(|l| !l.contains("cmd=client|list"))
                    .filter_map(|l| {
                        let laddr = l.split(' ').find_map(|f| f.strip_prefix("laddr="))?;
                        laddr.rsplit_once(':')?.1.parse().ok()
                    })
                    .collect();
                (n.port, n.tls_port, ports)
            })
            .collect()
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
