//! Presence (docs/protocol.md): who is in a room across every edge, the frames that ask, the
//! pushes that tell, and what happens to the members of an edge that was killed.

use std::time::Duration;

use ferrocast_emitter::Emitter;
use ferrocast_tests::{Client, Edge, RedisServer, Token};
use serde_json::{Value, json};

const PRESENCE: &[&str] = &[
    "--presence-rooms",
    "p:*",
    "--presence-events",
    "p:*",
    "--presence-ttl",
    "2s",
];

fn token(user: &str, name: &str) -> String {
    Token::user(user, &["p:*", "quiet"])
        .claim("info", json!({ "name": name }))
        .dev()
}

/// Reads frames until one satisfies `wanted`; the others (pushes in between) are returned too.
async fn until(client: &mut Client, wanted: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
    let mut others = Vec::new();
    loop {
        let frame = client.recv().await;
        if wanted(&frame) {
            return (frame, others);
        }
        others.push(frame);
    }
}

/// Sends `frame` with `ref` 900+ and waits for its answer, whatever pushes come first.
async fn ask(client: &mut Client, mut frame: Value) -> Value {
    let reference = 900 + rand_ref();
    frame["ref"] = json!(reference);
    client.send(frame).await;
    until(client, |f| f["ref"] == json!(reference)).await.0
}

fn rand_ref() -> u64 {
    u64::from(uuid::Uuid::new_v4().as_fields().1)
}

fn clients_of(answer: &Value) -> Vec<(String, String)> {
    let mut clients: Vec<(String, String)> = answer["clients"]
        .as_array()
        .unwrap_or_else(|| panic!("clients expected: {answer}"))
        .iter()
        .map(|c| {
            (
                c["client"].as_str().unwrap_or_default().to_owned(),
                c["user"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    clients.sort();
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_two_edges_see_each_other_and_a_killed_edge_s_vanish_within_the_ttl() {
    let redis = RedisServer::start();
    let a_edge = Edge::with_redis(&redis, PRESENCE).await;
    let mut b_edge = Edge::with_redis(&redis, PRESENCE).await;
    let (mut ada, ada_welcome) = Client::connect(&a_edge.ws_url(), &token("ada", "Ada")).await;
    let (mut bob, bob_welcome) = Client::connect(&b_edge.ws_url(), &token("bob", "Bob")).await;
    let (mut cy, cy_welcome) = Client::connect(&b_edge.ws_url(), &token("cy", "Cy")).await;
    let ada_id = ada_welcome["client"].as_str().expect("client").to_owned();
    let bob_id = bob_welcome["client"].as_str().expect("client").to_owned();
    let cy_id = cy_welcome["client"].as_str().expect("client").to_owned();
    ada.join("p:1").await;

    // Bob joins on the other edge: Ada is told, with Bob's info claim.
    bob.join("p:1").await;
    let (pushed, _) = until(&mut ada, |f| f["type"] == "presence_join").await;
    assert_eq!(pushed["room"], "p:1");
    assert_eq!(pushed["client"], json!(bob_id));
    assert_eq!(pushed["user"], "bob");
    assert_eq!(pushed["info"], json!({"name": "Bob"}));

    // Both see both, whichever edge they ask.
    let listed = ask(&mut ada, json!({"type": "presence", "room": "p:1"})).await;
    assert_eq!(listed["type"], "presence", "{listed}");
    let mut expected = vec![
        (ada_id.clone(), "ada".to_owned()),
        (bob_id.clone(), "bob".to_owned()),
    ];
    expected.sort();
    assert_eq!(clients_of(&listed), expected);
    let info: Vec<&Value> = listed["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| &c["info"])
        .collect();
    assert!(info.contains(&&json!({"name": "Ada"})), "{listed}");
    let from_b = ask(&mut bob, json!({"type": "presence", "room": "p:1"})).await;
    assert_eq!(clients_of(&from_b), expected);
    let stats = ask(&mut bob, json!({"type": "presence_stats", "room": "p:1"})).await;
    assert_eq!(
        (
            stats["type"].clone(),
            stats["clients"].clone(),
            stats["users"].clone()
        ),
        (json!("presence_stats"), json!(2), json!(2))
    );

    // A client that leaves is announced at once.
    cy.join("p:1").await;
    until(&mut ada, |f| {
        f["type"] == "presence_join" && f["client"] == json!(cy_id)
    })
    .await;
    cy.request(json!({"type": "leave", "room": "p:1"})).await;
    let (left, _) = until(&mut ada, |f| f["type"] == "presence_leave").await;
    assert_eq!(
        (left["client"].clone(), left["user"].clone()),
        (json!(cy_id), json!("cy"))
    );

    // Edge B is killed: nobody says goodbye, yet Bob is gone within the TTL (2 s) and Ada is
    // told once edge A's next refresh of the room cleans the entry up.
    b_edge.kill();
    let killed = std::time::Instant::now();
    let (left, _) = until(&mut ada, |f| f["type"] == "presence_leave").await;
    assert_eq!(left["client"], json!(bob_id));
    assert!(
        killed.elapsed() < Duration::from_secs(6),
        "{:?}",
        killed.elapsed()
    );
    let listed = ask(&mut ada, json!({"type": "presence", "room": "p:1"})).await;
    assert_eq!(
        clients_of(&listed),
        vec![(ada_id.clone(), "ada".to_owned())]
    );

    // Workers read the same through the emitter and the CLI.
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    let members = emitter.presence("p:1").await.expect("presence");
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].client.as_str(), members[0].user.as_str()),
        (ada_id.as_str(), "ada")
    );
    assert_eq!(members[0].info.as_deref(), Some(&br#"{"name":"Ada"}"#[..]));
    let stats = emitter.presence_stats("p:1").await.expect("stats");
    assert_eq!((stats.clients, stats.users), (1, 1));
    let url = redis.url();
    let run = ferrocast_tests::emitter(
        &["--redis-url", &url, "presence", "--room", "p:1", "--stats"],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed: Value = serde_json::from_str(run.stdout.trim()).expect("json");
    assert_eq!(printed, json!({"room": "p:1", "clients": 1, "users": 1}));
    let run = ferrocast_tests::emitter(&["--redis-url", &url, "presence", "--room", "p:1"], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed: Value = serde_json::from_str(run.stdout.trim()).expect("json");
    assert_eq!(printed["clients"][0]["info"], json!({"name": "Ada"}));
    // Ada leaving takes the room's last entry with her.
    ada.request(json!({"type": "leave", "room": "p:1"})).await;
    let deadline = std::time::Instant::now() + ferrocast_tests::DEADLINE;
    while emitter.presence_stats("p:1").await.expect("stats").clients != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "ada never left presence"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_asked_only_of_joined_presence_rooms_and_lists_are_capped() {
    // Single-node mode: the in-process bus keeps presence the same way.
    let mut args = PRESENCE.to_vec();
    args.extend(["--presence-max", "1", "--public-rooms", "open"]);
    let edge = Edge::start(&args).await;
    let (mut ada, _) = Client::connect(&edge.ws_url(), &token("ada", "Ada")).await;
    let (mut bob, bob_welcome) = Client::connect(&edge.ws_url(), &token("bob", "Bob")).await;
    let refused = ada
        .request(json!({"type": "presence", "room": "p:1"}))
        .await;
    assert_eq!(refused["code"], "FORBIDDEN", "not joined: {refused}");
    ada.join("quiet").await;
    let refused = ada
        .request(json!({"type": "presence_stats", "room": "quiet"}))
        .await;
    assert_eq!(refused["code"], "FORBIDDEN", "no presence there: {refused}");
    let refused = ada
        .request(json!({"type": "presence", "room": "bad room"}))
        .await;
    assert_eq!(refused["code"], "INVALID_ROOM", "{refused}");

    ada.join("p:1").await;
    let alone = ada
        .request(json!({"type": "presence", "room": "p:1"}))
        .await;
    assert_eq!(
        alone["clients"].as_array().map(Vec::len),
        Some(1),
        "{alone}"
    );
    bob.join("p:1").await;
    let (pushed, _) = until(&mut ada, |f| f["type"] == "presence_join").await;
    assert_eq!(pushed["client"], bob_welcome["client"]);
    // Bob is not told about himself.
    let stats = bob
        .request(json!({"type": "presence_stats", "room": "p:1"}))
        .await;
    assert_eq!(
        (stats["clients"].clone(), stats["users"].clone()),
        (json!(2), json!(2)),
        "{stats}"
    );
    let capped = ask(&mut ada, json!({"type": "presence", "room": "p:1"})).await;
    assert_eq!(capped["code"], "TOO_LARGE", "{capped}");
    drop(bob);
    let (left, _) = until(&mut ada, |f| f["type"] == "presence_leave").await;
    assert_eq!(left["client"], bob_welcome["client"]);
    let listed = ask(&mut ada, json!({"type": "presence", "room": "p:1"})).await;
    assert_eq!(
        listed["clients"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_without_events_are_not_told_about_joins() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(
        &redis,
        &["--presence-rooms", "p:*", "--presence-events", "p:loud"],
    )
    .await;
    let (mut ada, _) = Client::connect(&edge.ws_url(), &token("ada", "Ada")).await;
    let (mut bob, _) = Client::connect(&edge.ws_url(), &token("bob", "Bob")).await;
    ada.join("p:quiet").await;
    ada.join("p:loud").await;
    bob.join("p:quiet").await;
    bob.join("p:loud").await;
    let (pushed, before) = until(&mut ada, |f| f["type"] == "presence_join").await;
    assert_eq!(pushed["room"], "p:loud");
    assert!(before.is_empty(), "{before:?}");
    // Both joins are recorded, though only one room was told.
    let stats = ask(
        &mut ada,
        json!({"type": "presence_stats", "room": "p:quiet"}),
    )
    .await;
    assert_eq!(stats["clients"], 2, "{stats}");
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    ferrocast_tests::assert_nothing_else(&emitter, &mut [&mut ada]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_token_s_info_is_what_presence_shows() {
    let redis = RedisServer::start();
    let a_edge = Edge::with_redis(&redis, PRESENCE).await;
    let b_edge = Edge::with_redis(&redis, PRESENCE).await;
    let (mut ada, _) = Client::connect(&a_edge.ws_url(), &token("ada", "Ada")).await;
    let (mut bob, _) = Client::connect(&b_edge.ws_url(), &token("bob", "Bob")).await;
    ada.join("p:1").await;
    ada.join("quiet").await;
    bob.join("p:1").await;
    let info_of_ada = |answer: &Value| {
        answer["clients"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["user"] == "ada"))
            .map(|c| c["info"].clone())
    };
    // Ada's own question flushes her edge's pending joins, so both edges' answers have her.
    let before = ask(&mut ada, json!({"type": "presence", "room": "p:1"})).await;
    assert_eq!(
        info_of_ada(&before),
        Some(json!({"name": "Ada"})),
        "{before}"
    );

    // `refreshed` carries no `ref`.
    ada.send(json!({"type": "refresh", "token": token("ada", "Ada L.")}))
        .await;
    until(&mut ada, |f| f["type"] == "refreshed").await;
    let own = ask(&mut ada, json!({"type": "presence", "room": "p:1"})).await;
    assert_eq!(info_of_ada(&own), Some(json!({"name": "Ada L."})), "{own}");
    let seen = ask(&mut bob, json!({"type": "presence", "room": "p:1"})).await;
    assert_eq!(
        info_of_ada(&seen),
        Some(json!({"name": "Ada L."})),
        "{seen}"
    );
    let stats = ask(&mut bob, json!({"type": "presence_stats", "room": "p:1"})).await;
    assert_eq!(
        (stats["clients"].clone(), stats["users"].clone()),
        (json!(2), json!(2)),
        "still two members, not three: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_edge_s_members_leave_presence_at_once() {
    let redis = RedisServer::start();
    // A TTL far longer than the test: only the drain can take Ada out in time.
    let rooms = ["--presence-rooms", "p:*", "--presence-events", "p:*"];
    let long = [&rooms[..], &["--presence-ttl", "60s"]].concat();
    let draining = [&long[..], &["--drain-timeout", "0s"]].concat();
    let mut a_edge = Edge::with_redis(&redis, &draining).await;
    let b_edge = Edge::with_redis(&redis, &long).await;
    let (mut ada, ada_welcome) = Client::connect(&a_edge.ws_url(), &token("ada", "Ada")).await;
    let (mut bob, bob_welcome) = Client::connect(&b_edge.ws_url(), &token("bob", "Bob")).await;
    let ada_id = ada_welcome["client"].as_str().expect("client").to_owned();
    let bob_id = bob_welcome["client"].as_str().expect("client").to_owned();
    ada.join("p:1").await;
    bob.join("p:1").await;
    // Each one's question flushes their own edge's joins.
    ask(&mut ada, json!({"type": "presence", "room": "p:1"})).await;
    let both = ask(&mut bob, json!({"type": "presence", "room": "p:1"})).await;
    assert_eq!(clients_of(&both).len(), 2, "{both}");

    let closing = tokio::spawn(async move { ada.closed().await.0 });
    a_edge.terminate();
    assert!(a_edge.exited(Duration::from_secs(15)).await.success());
    assert_eq!(closing.await.expect("ada's task"), 1001);

    let (left, _) = until(&mut bob, |f| f["type"] == "presence_leave").await;
    assert_eq!(left["client"], json!(ada_id), "{left}");
    let alone = ask(&mut bob, json!({"type": "presence", "room": "p:1"})).await;
    assert_eq!(clients_of(&alone), vec![(bob_id, "bob".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_edge_shows_a_refreshed_token_s_info_too() {
    let edge = Edge::start(PRESENCE).await;
    let (mut ada, _) = Client::connect(&edge.ws_url(), &token("ada", "Ada")).await;
    ada.join("p:1").await;
    let before = ask(&mut ada, json!({"type": "presence", "room": "p:1"})).await;
    assert_eq!(
        before["clients"][0]["info"],
        json!({"name": "Ada"}),
        "{before}"
    );
    ada.send(json!({"type": "refresh", "token": token("ada", "Ada L.")}))
        .await;
    until(&mut ada, |f| f["type"] == "refreshed").await;
    let after = ask(&mut ada, json!({"type": "presence", "room": "p:1"})).await;
    assert_eq!(
        after["clients"][0]["info"],
        json!({"name": "Ada L."}),
        "{after}"
    );
}
