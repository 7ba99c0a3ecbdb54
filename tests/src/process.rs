//! Real processes: redis-server on a free port, and edges.

pub mod cluster;
pub mod edge;
pub mod redis;
pub mod sentinel;

pub use cluster::RedisCluster;
pub use edge::Edge;
pub use redis::RedisServer;
pub use sentinel::SentinelGroup;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

/// Ports handed out by [`free_port`]: below Linux's ephemeral range (32768-60999), because a
/// port the kernel picked for `bind(0)` can be taken again, before the edge or redis-server binds
/// it, as the local port of any outgoing connection a parallel test opens. A Redis Cluster node
/// also binds its port + 10000 for the cluster bus, which stays below that range and outside
/// this one.
const PORTS: std::ops::Range<u16> = 10_000..20_000;

/// A TCP port on 127.0.0.1 that was free when asked and that no other call in this process
/// returns again.
///
/// Tests in one binary run in parallel, so the cursor is shared; it starts at an offset drawn
/// from the process id so that two test processes side by side rarely meet either.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORTS.end - PORTS.start);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = PORTS.start + u16::try_from(offset).expect("offset below span");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORTS:?}");
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

pub(crate) fn signal(pid: u32, signal: &str) {
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
