//! The `edge` binary's command line: help that explains, and clear refusals of bad settings.

// A test's helpers panic on purpose, as a failed test must.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the edge and collects its output; kills it if it is still running after 10 s (an edge
/// that accepted settings it should have refused would otherwise serve forever).
fn edge(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(args)
        .env_remove("FERROCAST_REDIS_URL")
        .env_remove("FERROCAST_JWT_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run edge");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}

#[test]
fn help_names_every_flag_with_its_environment_variable() {
    let out = edge(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--redis-url",
        "--prefix",
        "--jwt-secret",
        "--jwt-public-key-file",
        "--jwt-alg",
        "--jwt-issuer",
        "--require-encryption",
        "--jwt-audience",
        "--public-rooms",
        "--node-id",
        "--auth-timeout",
        "--max-rooms",
        "--max-frame-size",
        "--outbound-queue",
        "--publish-bytes-rate",
        "--redis-ca-file",
        "--redis-cert-file",
        "--redis-key-file",
        "--redis-sentinels",
        "--redis-sentinel-master",
        "--redis-sentinel-password",
        "--hook-ca-file",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
        let env = format!(
            "FERROCAST_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(help.contains(&env), "--help lacks {env}");
    }
}

#[test]
fn inconsistent_key_settings_stop_the_edge_with_a_reason() {
    for (args, expected) in [
        (
            &["--jwt-alg", "RS256", "--listen", "127.0.0.1:0"][..],
            "need --jwt-public-key-file",
        ),
        (
            &[
                "--jwt-alg",
                "ES256",
                "--jwt-public-key-file",
                "/nonexistent.pem",
                "--listen",
                "127.0.0.1:0",
            ][..],
            "cannot read JWT public key",
        ),
        (
            &["--prefix", "a{b", "--listen", "127.0.0.1:0"][..],
            "--prefix",
        ),
        (&["--auth-timeout", "soon"][..], "not a duration"),
    ] {
        let out = edge(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn settings_that_would_leave_a_door_open_stop_the_edge_with_a_reason() {
    let strong = "a-production-secret-of-more-than-32-bytes";
    let spaces = " ".repeat(32);
    for (args, expected) in [
        // Long enough, but one distinct byte: as guessable as no secret.
        (
            vec!["--jwt-secret", &spaces, "--listen", "127.0.0.1:0"],
            "distinct bytes",
        ),
        (
            vec!["--jwt-secret", &"ab".repeat(20), "--listen", "127.0.0.1:0"],
            "distinct bytes",
        ),
        // One address could hold every place before authentication.
        (
            vec![
                "--max-unauthenticated",
                "200",
                "--max-pending-per-ip",
                "256",
                "--listen",
                "127.0.0.1:0",
            ],
            "must be below --max-unauthenticated",
        ),
        (
            vec![
                "--max-unauthenticated",
                "200",
                "--max-pending-per-ip",
                "200",
                "--listen",
                "127.0.0.1:0",
            ],
            "must be below --max-unauthenticated",
        ),
        // A hook key anyone can guess proves nothing to the hook.
        (
            vec![
                "--connect-hook",
                "http://127.0.0.1:1/connect",
                "--hook-key",
                "",
                "--listen",
                "127.0.0.1:0",
            ],
            "--hook-key is 0 bytes",
        ),
        (
            vec!["--hook-key", "short", "--listen", "127.0.0.1:0"],
            "--hook-key is 5 bytes",
        ),
        // Echo mode answers anyone: never on a public address, whatever the secret.
        (
            vec![
                "--echo",
                "--jwt-secret",
                strong,
                "--listen",
                "0.0.0.0:0",
                "--internal-listen",
                "127.0.0.1:0",
            ],
            "--echo answers every connection",
        ),
    ] {
        let mut args = args;
        if !args.contains(&"--internal-listen") {
            args.extend(["--internal-listen", "127.0.0.1:0"]);
        }
        let out = edge(&args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains(strong), "no secret in logs: {stderr}");
    }
}
