//! A client we did not write: Python's `websockets` against a real edge, in scripts written from
//! the protocol's text (tests/python/): permessage-deflate, which it offers by default, the v1.2
//! history frames, retries with client-chosen ids, and `rpc` calls a worker answers. The
//! interpreter is `FERROCAST_PYTHON`: `scripts/test.sh` makes a venv under `target/` with the
//! pinned `websockets` and sets it.

use std::time::Duration;

use ferrocast_tests::{Edge, RedisServer, Token};
use serde_json::json;

/// Runs `tests/python/SCRIPT WS_URL TOKEN` and expects it to print "ok".
async fn run_python(script: &str, edge: &Edge, token: &str) {
    let python = std::env::var("FERROCAST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(edge.ws_url())
        .arg(token)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the Python client finished in time")
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "{python} {script} failed ({}); scripts/test.sh installs `websockets` \
         (tests/python/requirements.txt) and sets FERROCAST_PYTHON\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
}

#[tokio::test]
async fn python_websockets_negotiates_deflate_and_a_large_message_goes_both_ways() {
    let edge = Edge::start(&[]).await;
    let token = Token::user("py", &["z"]).claim("pub", json!(["z"])).dev();
    run_python("deflate_client.py", &edge, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_makes_rpc_calls_answered_by_a_worker() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, ferrocast_tests::rpc::EDGE_ARGS).await;
    let _worker = ferrocast_tests::rpc::worker(&redis).await;
    let token = Token::user("py", &[]).dev();
    run_python("rpc_client.py", &edge, &token).await;
}

#[tokio::test]
async fn python_websockets_pages_through_history_and_rewinds() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let token = Token::user("py", &["py"]).claim("pub", json!(["py"])).dev();
    run_python("history_client.py", &edge, &token).await;
}

#[tokio::test]
async fn python_websockets_retries_with_its_own_ids_and_nothing_is_doubled() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &["--upstream-events", "chat.*"]).await;
    let token = Token::user("py", &["py"]).claim("pub", json!(["py"])).dev();
    run_python("request_ids_client.py", &edge, &token).await;
    assert_eq!(redis.cli(&["XLEN", "fc:{inbox}"]).as_deref(), Some("1"));
}
