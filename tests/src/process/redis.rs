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
    /// Its TLS port, if it has one (see [`RedisServer::start_tls`]).
    pub tls_port: Option<u16>,
    /// The password it requires, if any.
    password: Option<String>,
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

    /// Starts redis-server with TLS on a second port (`tls_port`, besides the plain one the
    /// test's own checks use), with the certificates of `certs`. With `client_certs`, a client
    /// must present a certificate signed by the CA; with `password`, it must authenticate.
    pub fn start_tls(
        certs: &crate::certs::Certs,
        client_certs: bool,
        password: Option<&str>,
    ) -> RedisServer {
        RedisServer::start_tls_with(certs, client_certs, password, &[])
    }

    /// Like [`RedisServer::start_tls`], with extra redis-server arguments.
    pub fn start_tls_with(
        certs: &crate::certs::Certs,
        client_certs: bool,
        password: Option<&str>,
        extra: &[&str],
    ) -> RedisServer {
        let tls_port = free_port();
        let path = |p: &std::path::Path| p.display().to_string();
        let mut args: Vec<String> = [
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &path(&certs.server_cert),
            "--tls-key-file",
            &path(&certs.server_key),
            "--tls-ca-cert-file",
            &path(&certs.ca),
            "--tls-auth-clients",
            if client_certs { "yes" } else { "no" },
            // A second address, which the certificate does not name.
            "--bind",
            "127.0.0.1",
            "127.0.0.2",
        ]
        .map(String::from)
        .to_vec();
        if let Some(password) = password {
            args.extend(["--requirepass".to_owned(), password.to_owned()]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = RedisServer::start_as(free_port(), &args, password);
        server.tls_port = Some(tls_port);
        server
    }

    /// `rediss://localhost:<tls port>` (with the password, if there is one), for a server
    /// started by [`RedisServer::start_tls`].
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("a server started with TLS");
        match &self.password {
            Some(password) => format!("rediss://:{password}@localhost:{port}"),
            None => format!("rediss://localhost:{port}"),
        }
    }

    fn start_on(port: u16, extra: &[&str]) -> RedisServer {
        RedisServer::start_as(port, extra, None)
    }

    fn start_as(port: u16, extra: &[&str], password: Option<&str>) -> RedisServer {
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
        let server = RedisServer {
            child,
            port,
            tls_port: None,
            password: password.map(str::to_owned),
            dir,
        };
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
        let port = self.port.to_string();
        match &self.password {
            Some(password) => redis_cli(&["-p", &port, "--no-auth-warning", "-a", password], args),
            None => redis_cli(&["-p", &port], args),
        }
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
