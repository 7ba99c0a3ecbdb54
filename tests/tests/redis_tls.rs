//! TLS to Redis, as hosted Redis offerings require it: Debian's redis-server with a TLS port and
//! certificates made by the test. The edge (pools, its own pub/sub reader), the emitter library
//! and the `emitter` command all speak `rediss://`; the server's certificate and host name are
//! checked; a Redis that requires client certificates gets them; passwords keep working.

use ferrocast_emitter::Emitter;
use ferrocast_redis::TlsFiles;
use ferrocast_tests::certs::Certs;
use ferrocast_tests::{Client, Edge, RedisServer, Token, emitter};
use serde_json::json;

const PASSWORD: &str = "a-redis-password-over-tls";

fn token(sub: &str) -> String {
    Token::user(sub, &["r"]).claim("pub", json!(["r"])).dev()
}

fn ca_only(certs: &Certs) -> TlsFiles {
    TlsFiles {
        ca_file: Some(certs.ca.clone()),
        ..TlsFiles::default()
    }
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_and_both_emitters_work_through_a_tls_redis_with_a_password() {
    let certs = Certs::generate("tls");
    let redis = RedisServer::start_tls(&certs, false, Some(PASSWORD));
    let url = redis.tls_url();
    let edge = Edge::start(&["--redis-url", &url, "--redis-ca-file", &path(&certs.ca)]).await;
    let (mut client, _) = Client::connect(&edge.ws_url(), &token("ada")).await;
    client.join("r").await;

    // The library, over TLS.
    let library = Emitter::builder(&url)
        .tls(ca_only(&certs).load().expect("certificates"))
        .connect()
        .await
        .expect("emitter over TLS");
    library
        .to_room("r")
        .emit("lib", &json!(1))
        .await
        .expect("publish");
    let first = client.expect("msg").await;
    assert_eq!(first["event"], "lib");

    // The command, over TLS.
    let run = emitter(
        &[
            "--redis-url",
            &url,
            "--redis-ca-file",
            &path(&certs.ca),
            "send",
            "--room",
            "r",
            "--event",
            "cli",
            "--data",
            "2",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(client.expect("msg").await["event"], "cli");

    // The edge's own publish (its emitter) and a resume (its history reads) over TLS.
    let ack = client
        .request(json!({"type": "publish", "room": "r", "event": "own", "data": 3, "echo": false}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let (mut again, _) = Client::connect(&edge.ws_url(), &token("ada")).await;
    let resumed = again
        .request(json!({"type": "join", "room": "r", "since": first["offset"]}))
        .await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    let events: Vec<_> = [again.expect("msg").await, again.expect("msg").await]
        .iter()
        .map(|m| m["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(events, ["cli", "own"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_or_for_another_host_is_refused() {
    let certs = Certs::generate("tls-refused");
    let redis = RedisServer::start_tls(&certs, false, None);
    // Signed by a CA that is not the one given.
    let wrong_ca = TlsFiles {
        ca_file: Some(certs.other_ca.clone()),
        ..TlsFiles::default()
    };
    let refused = Emitter::builder(redis.tls_url())
        .tls(wrong_ca.load().expect("certificates"))
        .retries(0, std::time::Duration::from_millis(10))
        .connect()
        .await;
    let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.to_lowercase().contains("certificate"),
        "a certificate from another CA was accepted, or refused for another reason: {error}"
    );
    let run = emitter(
        &[
            "--redis-url",
            &redis.tls_url(),
            "--redis-ca-file",
            &path(&certs.other_ca),
            "--retries",
            "0",
            "send",
            "--all",
            "--event",
            "e",
            "--data",
            "1",
        ],
        None,
    );
    assert_ne!(
        run.code, 0,
        "the command accepted a certificate from another CA"
    );
    assert!(
        run.stderr.to_lowercase().contains("certificate"),
        "{}",
        run.stderr
    );

    // The right CA, but an address the certificate does not name (Redis listens there too).
    let port = redis.tls_port.expect("tls port");
    tokio::net::TcpStream::connect(("127.0.0.2", port))
        .await
        .expect("Redis listens on 127.0.0.2 too");
    let elsewhere = format!("rediss://127.0.0.2:{port}");
    let refused = Emitter::builder(&elsewhere)
        .tls(ca_only(&certs).load().expect("certificates"))
        .retries(0, std::time::Duration::from_millis(10))
        .connect()
        .await;
    let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.to_lowercase().contains("certificate"),
        "a certificate for another host was accepted, or refused for another reason: {error}"
    );

    // Turning the checks off is refused outright.
    let insecure = Emitter::builder(format!("{}/#insecure", redis.tls_url())).build();
    assert!(insecure.is_err(), "#insecure was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_requires_client_certificates_gets_them() {
    let certs = Certs::generate("mtls");
    let redis = RedisServer::start_tls(&certs, true, None);
    let url = redis.tls_url();
    let without = emitter(
        &[
            "--redis-url",
            &url,
            "--redis-ca-file",
            &path(&certs.ca),
            "--retries",
            "0",
            "send",
            "--all",
            "--event",
            "e",
            "--data",
            "1",
        ],
        None,
    );
    assert_ne!(without.code, 0, "Redis took a client without a certificate");
    assert!(
        without.stderr.contains("CertificateRequired"),
        "{}",
        without.stderr
    );

    let (ca, cert, key) = (
        path(&certs.ca),
        path(&certs.client_cert),
        path(&certs.client_key),
    );
    let args = vec![
        "--redis-url",
        url.as_str(),
        "--redis-ca-file",
        &ca,
        "--redis-cert-file",
        &cert,
        "--redis-key-file",
        &key,
    ];
    let edge = Edge::start(&args).await;
    let (mut client, _) = Client::connect(&edge.ws_url(), &token("bo")).await;
    client.join("r").await;
    let mut send = args.clone();
    send.extend(["send", "--room", "r", "--event", "mutual", "--data", "1"]);
    let run = emitter(&send, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(client.expect("msg").await["event"], "mutual");
}

/// Runs the edge with `args` on loopback ports, expecting it to refuse to start: its stderr.
fn edge_refuses(args: &[&str]) -> String {
    let out = std::process::Command::new(ferrocast_tests::bin("edge"))
        .env_remove("FERROCAST_REDIS_URL")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--internal-listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .output()
        .expect("run edge");
    assert!(!out.status.success(), "{args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn certificates_for_a_plain_url_or_half_a_client_pair_stop_the_edge_at_start() {
    let certs = Certs::generate("tls-settings");
    let (ca, cert) = (path(&certs.ca), path(&certs.client_cert));
    for (args, expected) in [
        (
            vec!["--redis-url", "redis://127.0.0.1:1", "--redis-ca-file", &ca],
            "need rediss:// URLs",
        ),
        (
            vec![
                "--redis-url",
                "rediss://localhost:1",
                "--redis-cert-file",
                &cert,
            ],
            "go together",
        ),
        (
            vec!["--redis-url", "rediss://localhost:1/#insecure"],
            "#insecure",
        ),
        (
            vec![
                "--redis-url",
                "rediss://localhost:1",
                "--redis-ca-file",
                &cert.replace("client.pem", "missing.pem"),
            ],
            "cannot read --redis-ca-file",
        ),
    ] {
        let stderr = edge_refuses(&args);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_is_reached_over_tls_on_every_node_it_redirects_to() {
    let certs = Certs::generate("tls-cluster");
    let cluster = ferrocast_tests::RedisCluster::start_tls(3, 0, &certs);
    let nodes = cluster.tls_urls().join(",");
    let ca = path(&certs.ca);
    let edge = Edge::start(&["--redis-cluster-nodes", &nodes, "--redis-ca-file", &ca]).await;
    // Rooms whose streams and channels hash to every master: the edge and the emitters are
    // redirected to each.
    let rooms: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    let names: Vec<&str> = rooms.iter().map(String::as_str).collect();
    let token = Token::user("ada", &names).dev();
    let (mut client, _) = Client::connect(&edge.ws_url(), &token).await;
    for room in &rooms {
        client.join(room).await;
    }
    let library = Emitter::cluster_builder(cluster.tls_urls())
        .tls(ca_only(&certs).load().expect("certificates"))
        .connect()
        .await
        .expect("emitter over TLS");
    for room in &rooms {
        library
            .to_room(room)
            .emit("lib", &json!(room))
            .await
            .expect("publish");
        assert_eq!(client.expect("msg").await["data"], json!(room));
    }
    for room in &rooms {
        let run = emitter(
            &[
                "--redis-cluster-nodes",
                &nodes,
                "--redis-ca-file",
                &ca,
                "send",
                "--room",
                room,
                "--event",
                "cli",
                "--data",
                "1",
            ],
            None,
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        let msg = client.expect("msg").await;
        assert_eq!(msg["event"], "cli");
        assert_eq!(msg["room"], json!(room));
    }
    // Every master holds connections from the edge and the library, all on its TLS port: none
    // was redirected to a plain one.
    for (port, tls_port, clients) in cluster.client_ports() {
        assert!(!clients.is_empty(), "node {port} was never reached");
        assert!(
            clients.iter().all(|p| Some(*p) == tls_port),
            "node {port} has clients on its plain port: {clients:?}"
        );
    }
}
