//! The `emitter` binary's help. (Its behaviour against Redis is tested end to end in `tests/`.)

// A test's helpers panic on purpose, as a failed test must.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn send_help_explains_targets_data_and_connection() {
    let out = Command::new(env!("CARGO_BIN_EXE_emitter"))
        .args(["send", "--help"])
        .output()
        .expect("run emitter");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--room",
        "--user",
        "--client",
        "--all",
        "--event",
        "--data",
        "--data-file",
        "--stdin",
        "--except",
        "FERROCAST_REDIS_URL",
        "FERROCAST_PREFIX",
    ] {
        assert!(help.contains(needle), "send --help lacks {needle}");
    }
}
