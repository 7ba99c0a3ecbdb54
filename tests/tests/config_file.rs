//! The edge's `--config` file, `edge check-config` and `edge token`, run as an operator would:
//! a file's settings serve, under environment variables and flags; its mistakes are named with
//! their lines before anything listens; check-config lists every problem and no secret; a minted
//! token gets into an edge configured by the same file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use ferrocast_tests::{Client, Edge, bin};

const SECRET: &str = "config-file-test-secret-0123456789-abcdef";

/// A file in the temporary directory with `contents`, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("ferrocast-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `edge args…` to completion (the commands here never serve), with `env` only.
fn edge(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin("edge"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_serves_with_its_file_and_a_minted_token_gets_in() {
    let file = TempFile::new(&format!(
        "# the edge's settings\njwt-secret = \"{SECRET}\"\njwt_issuer = \"ops\"\n\
         max-connections = 1\npublic-rooms = [\"lobby\"]\n"
    ));
    let edge = Edge::start(&["--config", file.path()]).await;

    let out = edge_token(
        &file,
        &["--sub", "ann", "--rooms", "vip:*", "--info", r#"{"n":1}"#],
    );
    let (mut ann, welcome) = Client::connect(&edge.ws_url(), &out).await;
    assert_eq!(welcome["user"], "ann", "{welcome}");
    ann.join("lobby").await;
    ann.join("vip:1").await;
    let refused = ann
        .request(serde_json::json!({"type": "join", "room": "other"}))
        .await;
    assert_eq!(refused["code"], "FORBIDDEN", "{refused}");
    // The file's cap of one connection holds.
    match Client::open(&edge.ws_url(), Some(&out), &[]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }

    // Without the issuer the file requires, a token does not get in.
    let plain = TempFile::new(&format!("jwt-secret = \"{SECRET}\"\n"));
    let no_issuer = edge_token(&plain, &["--sub", "bob"]);
    let other = Edge::start(&["--config", file.path(), "--max-connections", "5"]).await;
    match Client::open(&other.ws_url(), Some(&no_issuer), &[]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
}

/// `edge token --config FILE args…`: the token, alone on the last line of stdout.
fn edge_token(file: &TempFile, args: &[&str]) -> String {
    let mut all = vec!["token", "--config", file.path()];
    all.extend_from_slice(args);
    let out = edge(&all, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let token = stdout.lines().last().unwrap().to_owned();
    assert_eq!(token.split('.').count(), 3, "{stdout}");
    token
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let file = TempFile::new("max-connections = 1\nrate = 3.5\nburst = 9\n");
    let out = edge(
        &["check-config", "--config", file.path(), "--burst", "11"],
        &[("FERROCAST_RATE", "7")],
    );
    let settings = text(&out.stdout);
    assert!(out.status.success(), "{settings}{}", text(&out.stderr));
    for line in [
        "max-connections = \"1\"  # config file, line 1",
        "rate = \"7\"  # environment FERROCAST_RATE",
        "burst = \"11\"  # flag",
        "max-rooms = \"100\"  # default",
    ] {
        assert!(settings.contains(line), "no {line:?} in\n{settings}");
    }
    // FERROCAST_CONFIG names the file when --config does not.
    let out = edge(&["check-config"], &[("FERROCAST_CONFIG", file.path())]);
    assert!(text(&out.stdout).contains("burst = \"9\"  # config file, line 3"));
}

#[test]
fn a_wrong_file_is_refused_with_every_key_and_line_before_anything_listens() {
    let file =
        TempFile::new("rate = 2\nmax-conections = 5\necho = \"yes\"\n\n[redis]\nurl = \"x\"\n");
    for args in [
        vec!["--config", file.path()],
        vec!["check-config", "--config", file.path()],
    ] {
        let out = edge(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let error = text(&out.stderr);
        assert!(error.contains("3 problem(s)"), "{error}");
        assert!(
            error.contains("line 2: unknown key `max-conections`"),
            "{error}"
        );
        assert!(
            error.contains("line 3: `echo`: invalid value 'yes'"),
            "{error}"
        );
        assert!(error.contains("unknown key `redis`"), "{error}");
    }
    let out = edge(&["--config", "/nonexistent/edge.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read the config file /nonexistent/edge.toml"));
}

#[test]
fn check_config_lists_every_problem_and_no_secret() {
    let file = TempFile::new(
        "jwt-secret = \"short-secret\"\nredis-url = \"redis://app:hunter2-secret@redis:6379\"\n\
         max-unauthenticated = 1\nprefix = \"a{b\"\nhook-key = \"tiny\"\n",
    );
    let out = edge(&["check-config", "--config", file.path()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stderr.contains("4 problem(s)"), "{stderr}");
    for problem in [
        "--jwt-secret is 12 bytes",
        "--max-unauthenticated",
        "--prefix",
        "--hook-key",
    ] {
        assert!(stderr.contains(problem), "no {problem:?} in\n{stderr}");
    }
    for secret in ["short-secret", "hunter2", "tiny"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} printed"
        );
    }
    assert!(
        stdout.contains("redis-url = \"redis://<redacted>@redis:6379\""),
        "{stdout}"
    );

    let good = TempFile::new(&format!("jwt-secret = \"{SECRET}\"\n"));
    let out = edge(&["check-config", "--config", good.path()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("configuration OK"));
}

#[test]
fn token_refuses_what_no_edge_would_accept() {
    let out = edge(&["token", "--sub", "ann", "--jwt-secret", "short"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("the edge refuses one under 32"));
    let out = edge(&["token", "--sub", "ann", "--info", "[1]"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--info must be a JSON object"));
    let out = edge(&["token", "--sub", "ann"], &[]);
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("development secret"));
}
