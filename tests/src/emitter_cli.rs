//! Running the `emitter` binary: to completion with its input given at once, or fed line by
//! line while it runs.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{DEADLINE, bin};

/// What a finished `emitter` run printed.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `emitter` with `args`, feeding `stdin` if given.
pub fn emitter(args: &[&str], stdin: Option<&str>) -> Run {
    emitter_with_input(args, stdin.unwrap_or_default().as_bytes())
}

/// Runs `emitter` with `args`, feeding it `input` (any bytes, UTF-8 or not).
pub fn emitter_with_input(args: &[&str], input: &[u8]) -> Run {
    let mut child = spawn(args);
    {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("write stdin");
    }
    let out = child.wait_with_output().expect("emitter output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn spawn(args: &[&str]) -> Child {
    Command::new(bin("emitter"))
        .args(args)
        .env_remove("FERROCAST_REDIS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn emitter")
}

/// An `emitter` running with its standard input open, fed as a test goes (`tail -f | emitter
/// send --stdin`). Killed on drop. Its output is read once it exits, so it must stay small
/// (under a pipe's 64 KiB).
pub struct Feeding {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Feeding {
    /// Starts `emitter` with `args`.
    pub fn start(args: &[&str]) -> Feeding {
        let mut child = spawn(args);
        let stdin = child.stdin.take();
        Feeding { child, stdin }
    }

    /// Writes `input` to its standard input at once (one write: a reader sees it whole).
    pub fn write(&mut self, input: &[u8]) {
        let stdin = self.stdin.as_mut().expect("standard input already closed");
        stdin.write_all(input).expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit by itself, its standard input still open; what it
    /// printed.
    pub fn exited(mut self, within: Duration) -> Run {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "emitter still running after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = read_all(self.child.stdout.take());
        let stderr = read_all(self.child.stderr.take());
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }

    /// Closes its standard input (the end of the input) and waits for it to exit.
    pub fn finish(mut self) -> Run {
        drop(self.stdin.take());
        self.exited(DEADLINE)
    }
}

impl Drop for Feeding {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything left in `pipe`, as text.
fn read_all(pipe: Option<impl Read>) -> String {
    let mut text = String::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_string(&mut text).expect("read output");
    }
    text
}

/// Waits until `condition` holds, checking every few milliseconds; panics naming `what` if it
/// does not within `within`.
pub fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
