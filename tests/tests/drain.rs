//! SIGTERM drains an edge: readiness flips at once, clients are closed with 1001 spread over
//! the drain window and resume elsewhere, and the process exits 0. A rolling upgrade of three
//! edges under steady publishing loses nothing.

use std::time::{Duration, Instant};

use ferrocast_emitter::Emitter;
use ferrocast_tests::follow::{Traffic, Urls};
use ferrocast_tests::{Client, Edge, RedisServer, Token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flips_readiness_spreads_1001_closes_and_exits_zero() {
    let mut edge = Edge::start(&["--drain-timeout", "2s"]).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        clients.push(
            Client::connect(&edge.ws_url(), &Token::user(&format!("u{i}"), &[]).dev())
                .await
                .0,
        );
    }
    let started = Instant::now();
    let waiting: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let (code, _) = client.closed().await;
                (code, started.elapsed())
            })
        })
        .collect();
    edge.terminate();
    edge.wait_readyz(503).await;
    match Client::open(&edge.ws_url(), Some(&Token::user("late", &[]).dev()), &[]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!(
            "a draining edge must refuse upgrades, got {:?}",
            other.map(|_| ())
        ),
    }
    let mut closed_at = Vec::new();
    for task in waiting {
        let (code, at) = task.await.expect("client");
        assert_eq!(code, 1001);
        closed_at.push(at);
    }
    closed_at.sort();
    let spread = closed_at[5] - closed_at[0];
    assert!(
        spread >= Duration::from_millis(500),
        "closes not spread over the window: {closed_at:?}"
    );
    let status = edge.exited(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let mut edge = Edge::start(&["--drain-timeout", "60s"]).await;
    let (_client, _) = Client::connect(&edge.ws_url(), &Token::user("u", &[]).dev()).await;
    edge.terminate();
    edge.wait_readyz(503).await;
    edge.terminate();
    let status = edge.exited(Duration::from_secs(10)).await;
    assert!(
        !status.success(),
        "an interrupted drain is not a clean exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_of_three_edges_loses_nothing() {
    let redis = RedisServer::start();
    let args = ["--drain-timeout", "1s"];
    let mut edges = Vec::new();
    for _ in 0..3 {
        edges.push(Edge::with_redis(&redis, &args).await);
    }
    // Every follower may use any live edge: the test updates the list as edges are replaced.
    let urls = Urls::new(edges.iter().map(Edge::ws_url).collect());
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let followers = (0..6).map(|_| urls.clone()).collect();
    let traffic = Traffic::start(emitter, "room:roll", followers, Duration::from_millis(2)).await;

    // Replace each edge in turn: start the new one, take the old one out of rotation, drain it.
    for (i, slot) in edges.iter_mut().enumerate() {
        let fresh = Edge::with_redis(&redis, &args).await;
        urls.add(fresh.ws_url());
        let mut old = std::mem::replace(slot, fresh);
        urls.remove(&old.ws_url());
        old.terminate();
        let status = old.exited(Duration::from_secs(15)).await;
        assert!(status.success(), "edge {i} exit status {status}");
        traffic.go_on(50).await;
    }
    traffic.finish().await;
}
