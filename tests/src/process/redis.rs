//! A redis-server of the test's own.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::DEADLINE;

use super::{free_port, signal};

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

    /// Waits until none of `keys` exists (Redis expired them); panics after the deadline.
    pub async fn wait_gone(&self, keys: &[&str]) {
        let deadline = Instant::now() + DEADLINE;
        let mut args = vec!["EXISTS"];
        args.extend_from_slice(keys);
        while self.cli(&args).as_deref() != Some("0") {
            assert!(Instant::now() < deadline, "{keys:?} never expired");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs redis-cli against this server; `None` if it failed.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        redis_cli(&["-p", &self.port.to_string()], args)
    }
}

/// Runs redis-cli with `options`, then `args`; its output, or `None` if it failed.
pub(crate) fn redis_cli(options: &[&str], args: &[&str]) -> Option<String> {
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
