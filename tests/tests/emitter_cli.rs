//! The `emitter` command line: what it prints, and how it fails.

use ferrocast_tests::{Client, Edge, RedisServer, Token, emitter, free_port};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_from_arguments_a_file_and_stdin() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(&redis, &[]).await;
    let (mut client, welcome) =
        Client::connect(&edge.ws_url(), &Token::user("u", &["r"]).dev()).await;
    let me = welcome["client"].as_str().expect("client").to_owned();
    client.join("r").await;
    let url = redis.url();

    let file = std::env::temp_dir().join(format!("ferrocast-data-{}.json", std::process::id()));
    std::fs::write(&file, r#"{"from":"file"}"#).expect("write");
    let run = emitter(
        &[
            "--redis-url",
            &url,
            "send",
            "--room",
            "r",
            "--event",
            "f",
            "--data-file",
            file.to_str().expect("path"),
        ],
        None,
    );
    let _ = std::fs::remove_file(&file);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(client.expect("msg").await["data"], json!({"from": "file"}));

    // Environment variables work as the flags do.
    let run = std::process::Command::new(ferrocast_tests::bin("emitter"))
        .args(["send", "--client", &me, "--event", "env", "--data", "1"])
        .env("FERROCAST_REDIS_URL", &url)
        .output()
        .expect("run");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(client.expect("msg").await["event"], "env");

    let lines = format!(
        "{}\n\n{}\nnot json\n{}\n{}\n{}\n",
        r#"{"room":"r","event":"one","data":{"n":1}}"#,
        r#"{"user":"u","event":"two","data":[2]}"#,
        r#"{"room":"bad room","event":"x","data":1}"#,
        r#"{"all":true,"event":"three"}"#,
        r#"{"room":"r","event":"four","data":4,"except":["someone-else"]}"#,
    );
    let run = emitter(&["--redis-url", &url, "send", "--stdin"], Some(&lines));
    assert_eq!(
        run.code, 1,
        "bad lines make the exit status non-zero: {run:?}"
    );
    assert_eq!(
        run.stdout.lines().count(),
        4,
        "one offset per published line: {run:?}"
    );
    assert!(run.stderr.contains("line 4:"), "{}", run.stderr);
    assert!(run.stderr.contains("line 5:"), "{}", run.stderr);
    assert!(
        run.stderr.contains("2 line(s) failed, 4 published"),
        "{}",
        run.stderr
    );
    for (event, data) in [
        ("one", json!({"n": 1})),
        ("two", json!([2])),
        ("three", json!(null)),
        ("four", json!(4)),
    ] {
        let msg = client.expect("msg").await;
        assert_eq!(
            (msg["event"].clone(), msg["data"].clone()),
            (json!(event), data)
        );
    }
}

#[test]
fn bad_input_and_unreachable_redis_fail_with_one_clear_line() {
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let cases: [(&[&str], &str); 6] = [
        (
            &["send", "--room", "r", "--event", "e", "--data", "{oops"],
            "not valid JSON",
        ),
        (
            &["send", "--room", "bad room", "--event", "e", "--data", "1"],
            "room may only hold",
        ),
        (&["send", "--room", "r", "--event", "e"], "--data"),
        (
            &[
                "send", "--all", "--event", "e", "--data", "1", "--except", "a b",
            ],
            "client",
        ),
        (
            &["send", "--all", "--event", "e", "--data", "1"],
            "Redis unavailable",
        ),
        (&["send", "--stdin"], "Redis unavailable"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["--redis-url", dead.as_str(), "--redis-timeout", "2s"];
        all.extend_from_slice(args);
        let run = emitter(&all, Some(""));
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        assert_eq!(
            run.stderr.trim().lines().count(),
            1,
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
    }
    // Usage errors come from clap with its own exit status.
    let run = emitter(
        &[
            "send", "--room", "r", "--user", "u", "--event", "e", "--data", "1",
        ],
        None,
    );
    assert_eq!(run.code, 2, "{run:?}");
}
