//! The `emitter` command line: what it prints, and how it fails.

use std::time::Duration;

use ferrocast_protocol::keys::{Keys, Target};
use ferrocast_tests::emitter_cli::{Feeding, emitter_with_input, wait_until};
use ferrocast_tests::{Client, DEADLINE, Edge, RedisServer, Token, emitter, free_port};
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
    assert_eq!(run.code, 2, "bad lines make the exit status 2: {run:?}");
    assert_eq!(
        run.stdout.lines().count(),
        4,
        "one offset per published line: {run:?}"
    );
    assert!(run.stderr.contains("line 4:"), "{}", run.stderr);
    assert!(run.stderr.contains("line 5:"), "{}", run.stderr);
    assert!(
        run.stderr.contains("published 4, bad 2, not published 0"),
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
fn bad_input_and_unreachable_redis_fail_with_one_clear_line_and_their_own_status() {
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let missing = std::env::temp_dir().join(format!("ferrocast-none-{}", std::process::id()));
    let missing = missing.to_str().expect("path");
    let cases: [(&[&str], i32, &str); 9] = [
        (
            &["send", "--room", "r", "--event", "e", "--data", "{oops"],
            2,
            "not valid JSON",
        ),
        (
            &["send", "--room", "r", "--event", "e", "--data", "1e400"],
            2,
            "MessagePack",
        ),
        (
            &["send", "--room", "bad room", "--event", "e", "--data", "1"],
            2,
            "room may only hold",
        ),
        (&["send", "--room", "r", "--event", "e"], 2, "--data"),
        (
            &[
                "send",
                "--room",
                "r",
                "--event",
                "e",
                "--data-file",
                missing,
            ],
            2,
            "cannot read",
        ),
        (
            &[
                "send", "--all", "--event", "e", "--data", "1", "--except", "a b",
            ],
            2,
            "client",
        ),
        (
            &["join", "--user", "u", "--room", "bad room"],
            2,
            "room may only hold",
        ),
        (
            &["send", "--all", "--event", "e", "--data", "1"],
            3,
            "Redis unavailable",
        ),
        (&["send", "--stdin"], 3, "Redis unavailable"),
    ];
    for (args, code, expected) in cases {
        let mut all = vec!["--redis-url", dead.as_str(), "--redis-timeout", "2s"];
        all.extend_from_slice(args);
        let run = emitter(&all, Some(""));
        assert_eq!(run.code, code, "{args:?}: {run:?}");
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        assert_eq!(
            run.stderr.trim().lines().count(),
            1,
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
    }
    // Usage errors come from clap, with the same status as other bad input.
    let run = emitter(
        &[
            "send", "--room", "r", "--user", "u", "--event", "e", "--data", "1",
        ],
        None,
    );
    assert_eq!(run.code, 2, "{run:?}");

    // Bad data is refused before anything reaches a live Redis.
    let redis = RedisServer::start();
    let run = emitter(
        &[
            "--redis-url",
            &redis.url(),
            "send",
            "--room",
            "r",
            "--event",
            "e",
            "--data",
            r#"{"big":1e400}"#,
        ],
        None,
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(redis.cli(&["DBSIZE"]).as_deref(), Some("0"));
}

#[test]
fn exit_statuses_are_explained_in_the_help() {
    for args in [&["--help"][..], &["send", "--help"]] {
        let run = emitter(args, None);
        assert_eq!(run.code, 0, "{run:?}");
        for needle in [
            "Exit status",
            "0  everything was published",
            "2  bad input",
            "3  Redis (or the --edge) unavailable",
        ] {
            assert!(run.stdout.contains(needle), "{args:?} lacks {needle:?}");
        }
    }
}

/// The history stream of room `room`, under the default prefix.
fn room_stream(room: &str) -> String {
    Keys::default().stream(&Target::Room(room.into()).key())
}

/// How many messages the stream `key` holds.
fn stream_len(redis: &RedisServer, key: &str) -> usize {
    redis
        .cli(&["XLEN", key])
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn stdin_lines_are_published_as_they_arrive() {
    let redis = RedisServer::start();
    let stream = room_stream("live");
    let mut feed = Feeding::start(&["--redis-url", &redis.url(), "send", "--stdin"]);
    let line = |n: usize| format!("{{\"room\":\"live\",\"event\":\"line-{n}\",\"data\":{n}}}\n");

    // The first line also waits for the emitter to start and connect.
    feed.write(line(1).as_bytes());
    wait_until("the first line published", DEADLINE, || {
        stream_len(&redis, &stream) == 1
    });
    for n in 2..=4 {
        feed.write(line(n).as_bytes());
        wait_until(
            &format!("line {n} published while standard input is still open"),
            Duration::from_secs(1),
            || stream_len(&redis, &stream) == n,
        );
        let newest = redis
            .cli(&["XREVRANGE", &stream, "+", "-", "COUNT", "1"])
            .unwrap_or_default();
        assert!(newest.contains(&format!("line-{n}")), "{newest}");
    }
    assert!(feed.is_running(), "the emitter must wait for more input");

    let run = feed.finish();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.lines().count(), 4, "{run:?}");
    assert!(
        run.stderr.contains("published 4, bad 0, not published 0"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_lines_are_reported_and_every_valid_line_is_published() {
    let redis = RedisServer::start();
    let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
    let valid = |n: usize| format!(r#"{{"room":"r","event":"ok-{n}","data":{{"n":{n}}}}}"#);
    let mut input = Vec::new();
    for line in [
        valid(1),
        "not json".to_owned(),
        r#"{"room":"bad room","event":"x","data":1}"#.to_owned(),
        valid(4),
        r#"{"room":"r","event":"x","data":1e400}"#.to_owned(),
        r#"{"room":"r","event":"x","data":"\ud800"}"#.to_owned(),
        format!(r#"{{"room":"r","event":"x","data":{deep}}}"#),
        String::new(),
    ] {
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    // Line 9: not UTF-8. The valid lines around it, read before and after, are all published.
    input.extend_from_slice(b"{\"room\":\"r\",\"event\":\"\xff\"}\n");
    input.extend_from_slice(valid(10).as_bytes());

    let run = emitter_with_input(&["--redis-url", &redis.url(), "send", "--stdin"], &input);
    assert_eq!(run.code, 2, "{run:?}");
    for (line, reason) in [
        (2, "not a JSON object"),
        (3, "room may only hold"),
        (5, "MessagePack"),
        (6, "MessagePack"),
        (7, "MessagePack"),
        (9, "not UTF-8"),
    ] {
        let report = run
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("line {line}: ")))
            .unwrap_or_else(|| panic!("line {line} not reported: {}", run.stderr));
        assert!(report.contains(reason), "{report}");
    }
    assert_eq!(run.stderr.lines().count(), 7, "{}", run.stderr);
    assert_eq!(
        run.stderr.lines().last(),
        Some("published 3, bad 6, not published 0"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout.lines().count(), 3, "{run:?}");
    let stream = room_stream("r");
    assert_eq!(stream_len(&redis, &stream), 3);
    let history = redis
        .cli(&["XRANGE", &stream, "-", "+"])
        .unwrap_or_default();
    for event in ["ok-1", "ok-4", "ok-10"] {
        assert!(history.contains(event), "{event} missing: {history}");
    }
}

#[test]
fn redis_going_away_stops_the_run_naming_the_lines_not_published() {
    let redis = RedisServer::start();
    let stream = room_stream("r");
    let mut feed = Feeding::start(&[
        "--redis-url",
        &redis.url(),
        "--redis-timeout",
        "1s",
        "--retries",
        "0",
        "send",
        "--stdin",
    ]);
    feed.write(b"{\"room\":\"r\",\"event\":\"before\"}\n");
    wait_until("the first line published", DEADLINE, || {
        stream_len(&redis, &stream) == 1
    });
    redis.kill();
    wait_until("Redis gone", DEADLINE, || redis.cli(&["PING"]).is_none());

    // Lines 2-4 arrive together, so they share a pipeline; standard input stays open.
    feed.write(
        concat!(
            r#"{"room":"r","event":"lost-2"}"#,
            "\nnot json\n",
            r#"{"room":"r","event":"lost-4"}"#,
            "\n"
        )
        .as_bytes(),
    );
    let run = feed.exited(DEADLINE);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
    assert!(
        run.stderr.contains("line 3: not a JSON object"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("lines 2, 4 not published: Redis unavailable"),
        "{}",
        run.stderr
    );
    let summary = run.stderr.lines().last().unwrap_or_default();
    assert!(
        summary
            .starts_with("published 1, bad 1, not published 2 (lines 2, 4); stopped after line 4"),
        "{summary}"
    );
}
