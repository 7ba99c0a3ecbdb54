//! `emitter --edge`: the command line over an edge's HTTP API, from single messages and
//! presence to `send --stdin` a pipeline of lines at a time.

use ferrocast_tests::{Client, Edge, Token, emitter};
use serde_json::{Value, json};

const DEV_KEY: &str = "ferrocast-dev-api-key";

fn token(user: &str) -> String {
    Token::user(user, &["r", "p:*"]).dev()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_feeds_a_single_node_edge_and_reads_its_presence() {
    let edge = Edge::start(&["--presence-rooms", "p:*"]).await;
    let (mut ada, welcome) = Client::connect(&edge.ws_url(), &token("ada")).await;
    ada.join("p:1").await;
    let url = format!("http://127.0.0.1:{}", edge.internal_port);
    let key = ["--edge", url.as_str(), "--api-key", DEV_KEY];
    let run = emitter(
        &[
            &key[..],
            &["send", "--room", "p:1", "--event", "e", "--data", "[1,2]"],
        ]
        .concat(),
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ada.expect("msg").await["data"], json!([1, 2]));
    let run = emitter(&[&key[..], &["presence", "--room", "p:1"]].concat(), None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed: Value = serde_json::from_str(run.stdout.trim()).expect("json");
    assert_eq!(printed["clients"][0]["client"], welcome["client"]);
    let run = emitter(
        &[&key[..], &["leave", "--user", "ada", "--room", "p:1"]].concat(),
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ada.expect("left").await["room"], "p:1");
    let run = emitter(&[&key[..], &["send", "--stdin"]].concat(), Some(""));
    assert_eq!(run.code, 0, "no lines, nothing to do: {}", run.stderr);
    assert!(
        run.stderr.contains("published 0, bad 0, not published 0"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_stdin_goes_through_the_edge_api_line_by_line() {
    let mut edge = Edge::start(&[]).await;
    let (mut ada, welcome) = Client::connect(&edge.ws_url(), &token("ada")).await;
    ada.join("r").await;
    let me = welcome["client"].as_str().expect("client id");
    let url = format!("http://127.0.0.1:{}", edge.internal_port);
    let cli = [
        "--edge",
        url.as_str(),
        "--api-key",
        DEV_KEY,
        "send",
        "--stdin",
    ];

    let lines = [
        json!({"room": "r", "event": "a", "data": {"n": 1}}).to_string(),
        "not json".to_owned(),
        json!({"user": "ada", "event": "b", "data": [1, 2]}).to_string(),
        json!({"room": "r", "event": "c", "data": "x", "except": [me]}).to_string(),
        json!({"all": true, "event": "d"}).to_string(),
    ]
    .join("\n");
    let run = emitter(&cli, Some(&lines));
    assert_eq!(
        run.code, 2,
        "a bad line, the rest published: {}",
        run.stderr
    );
    assert!(run.stderr.contains("line 2:"), "{}", run.stderr);
    assert!(
        run.stderr.contains("published 4, bad 1, not published 0"),
        "{}",
        run.stderr
    );
    let offsets: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(offsets.len(), 4, "{}", run.stdout);
    // `c` left ada out, as its line asked; the others reach her in order, at their offsets.
    for (event, scope, offset) in [
        ("a", "room", offsets[0]),
        ("b", "user", offsets[1]),
        ("d", "all", offsets[3]),
    ] {
        let frame = ada.expect("msg").await;
        assert_eq!(
            (&frame["event"], &frame["scope"], &frame["offset"]),
            (&json!(event), &json!(scope), &json!(offset)),
            "{frame}"
        );
    }
    let next = ada.request(json!({"type": "ping"})).await;
    assert_eq!(next["type"], "pong", "nothing else: {next}");

    // 2.4 MB of lines: more than one request of the edge's 1 MiB can carry, so the pipelines
    // are cut by size; every line published, in order.
    let big = "x".repeat(8 * 1024);
    let lines: Vec<String> = (0..300)
        .map(|n| json!({"room": "elsewhere", "event": "big", "data": [n, big]}).to_string())
        .collect();
    let run = emitter(&cli, Some(&lines.join("\n")));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 300, "{}", run.stderr);
    let huge = json!({"room": "elsewhere", "event": "huge", "data": "x".repeat(1 << 20)});
    let run = emitter(&cli, Some(&huge.to_string()));
    assert_eq!(
        run.code, 2,
        "a line no request can carry is a bad line: {}",
        run.stderr
    );
    assert!(run.stderr.contains("line 1: too large"), "{}", run.stderr);

    // An edge that is gone: nothing published, exit status 3, the lines named.
    edge.terminate();
    edge.exited(ferrocast_tests::DEADLINE).await;
    let run = emitter(&cli, Some(&json!({"room": "r", "event": "e"}).to_string()));
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("line 1 not published"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("(the edge is unavailable)"),
        "{}",
        run.stderr
    );
}
