//! Running the `emitter` binary.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::bin;

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
    let mut child = Command::new(bin("emitter"))
        .args(args)
        .env_remove("FERROCAST_REDIS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn emitter");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("emitter output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
