//! `GET /api/openapi.json` is true to the code: its operations are exactly the router's
//! ([`ROUTES`], the list the router is built from), every route called with good and bad input
//! answers a status the document lists with a body and headers its schemas allow, and every
//! status the document lists is one the edge really answers. Then schemathesis fuzzes a real edge
//! from the document (tests/python/requirements-schemathesis.txt, installed by scripts/test.sh
//! into the venv `FERROCAST_PYTHON` names).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferrocast_edge::net::api::{OPENAPI, ROUTES};
use ferrocast_tests::openapi::Document;
use ferrocast_tests::{Client, Edge, RedisServer, Token};
use serde_json::{Value, json};

const KEY: &str = "openapi-test-key-0123456789";
const SECRET: &str = "an-openapi-test-secret-of-32-bytes-or-more";

/// How a request authenticates.
#[derive(Clone, Copy)]
enum Auth {
    Bearer,
    Header,
    Wrong,
    Nothing,
}

/// Calls routes and checks each answer against the document, remembering which (method, path,
/// status) it saw.
struct Checker {
    doc: Document,
    seen: BTreeSet<(String, String, u16)>,
}

impl Checker {
    /// `method target` (a path with its query) with `body`: asserts the status is `status` and
    /// the answer conforms to the document; the answer's body.
    async fn call(
        &mut self,
        edge: &Edge,
        (method, target): (&str, &str),
        auth: Auth,
        body: &str,
        status: u16,
    ) -> Value {
        let bearer = format!("Bearer {KEY}");
        let headers: Vec<(&str, &str)> = match auth {
            Auth::Bearer => vec![("authorization", bearer.as_str())],
            Auth::Header => vec![("x-api-key", KEY)],
            Auth::Wrong => vec![("authorization", "Bearer not-the-key-0123456789")],
            Auth::Nothing => vec![],
        };
        let (got, head, answer) = edge.api_with(method, target, &headers, body).await;
        let shown = body.get(..body.len().min(200)).unwrap_or(body);
        assert_eq!(got, status, "{method} {target} {shown}: {answer}");
        let method = method.to_ascii_lowercase();
        let path = target.split('?').next().unwrap_or(target);
        if let Err(e) = self.doc.check_answer(&method, path, got, &head, &answer) {
            panic!("{e}\n(request: {target} {shown})");
        }
        self.seen.insert((method, path.to_owned(), got));
        answer
    }

    /// Asserts whether `body` conforms to the request schema of `post path`: the document says
    /// of a body what the edge does.
    fn body_conforms(&self, path: &str, body: &Value, conforms: bool) {
        let schema = self
            .doc
            .request_schema("post", path)
            .expect("a request body");
        let verdict = self.doc.validate(schema, body);
        assert_eq!(verdict.is_ok(), conforms, "{path} {body}: {verdict:?}");
    }

    fn room_conforms(&self, path: &str, room: &str, conforms: bool) {
        let schema = self.doc.query_schema("get", path, "room");
        let verdict = self.doc.validate(schema, &json!(room));
        assert_eq!(verdict.is_ok(), conforms, "{path} room={room}: {verdict:?}");
    }

    /// A POST whose body the schema allows (`conforms`) or not, answered `status`.
    async fn post(
        &mut self,
        edge: &Edge,
        path: &str,
        body: Value,
        conforms: bool,
        status: u16,
    ) -> Value {
        self.body_conforms(path, &body, conforms);
        self.call(
            edge,
            ("POST", path),
            Auth::Bearer,
            &body.to_string(),
            status,
        )
        .await
    }
}

fn huge() -> String {
    format!(
        r#"{{"all":true,"event":"e","data":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_the_router_and_every_answer_is_one_it_allows() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(
        &redis,
        &[
            "--jwt-secret",
            SECRET,
            "--api-key",
            KEY,
            "--presence-rooms",
            "p:*",
            "--presence-max",
            "1",
        ],
    )
    .await;

    // Served without a key, exactly as compiled in.
    let (status, head, served) = edge.api_with("GET", "/api/openapi.json", &[], "").await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert_eq!(served, serde_json::from_str::<Value>(OPENAPI).unwrap());
    let doc = Document::parse(OPENAPI);

    // The document's operations are the router's, no more and no fewer; only the open ones
    // need no key.
    let documented: BTreeSet<(String, String)> = doc.operations().into_iter().collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(documented, served, "openapi.json and ROUTES differ");
    for route in ROUTES {
        let security = &doc.operation(route.method.as_str(), route.path)["security"];
        assert_eq!(security == &json!([]), !route.keyed, "{}", route.path);
    }
    let mut check = Checker {
        doc,
        seen: BTreeSet::new(),
    };

    let token = |user: &str| {
        Token::user(user, &["r", "p:*"])
            .claim("info", json!({"name": user}))
            .hs256(SECRET)
    };
    let (mut ada, welcome) = Client::connect(&edge.ws_url(), &token("ada")).await;
    let ada_id = welcome["client"].as_str().unwrap().to_owned();
    let (mut bob, welcome) = Client::connect(&edge.ws_url(), &token("bob")).await;
    let bob_id = welcome["client"].as_str().unwrap().to_owned();
    ada.join("p:1").await;
    ada.join("p:2").await;
    bob.join("p:2").await;

    // publish
    let publish = "/api/publish";
    let good = json!({"room": "r", "event": "chat.say", "data": {"text": "hi"}});
    check.post(&edge, publish, good.clone(), true, 200).await;
    check
        .call(
            &edge,
            ("POST", publish),
            Auth::Header,
            &good.to_string(),
            200,
        )
        .await;
    let id = uuid::Uuid::now_v7().to_string();
    let once = json!({"user": "ada", "event": "note", "data": [1, "two", null], "id": id, "except": [bob_id]});
    let first = check.post(&edge, publish, once.clone(), true, 200).await;
    assert_eq!(check.post(&edge, publish, once, true, 200).await, first);
    for body in [
        json!({"all": true, "event": "e", "data": null}),
        json!({"client": ada_id, "event": "e", "data": 1.5, "except": []}),
        json!({"room": "r", "all": false, "event": "e", "data": "s"}),
        // null is a field left out (schemathesis found the document saying otherwise).
        json!({"room": "r", "user": null, "client": null, "event": "e", "data": {}, "id": null}),
    ] {
        check.post(&edge, publish, body, true, 200).await;
    }
    for body in [
        json!({}),
        json!({"all": true, "event": "e"}),
        json!({"event": "e", "data": 1}),
        json!({"all": false, "event": "e", "data": 1}),
        json!({"room": "r", "user": "u", "event": "e", "data": 1}),
        json!({"room": "bad room", "event": "e", "data": 1}),
        json!({"room": "", "event": "e", "data": 1}),
        json!({"user": "", "event": "e", "data": 1}),
        json!({"client": "../../x", "event": "e", "data": 1}),
        json!({"all": true, "event": "bad event!", "data": 1}),
        json!({"all": true, "event": "e", "data": 1, "surprise": true}),
        json!({"all": true, "event": "e", "data": 1, "id": "not-a-uuid"}),
        json!({"all": true, "event": "e", "data": 1, "except": "c"}),
        json!([]),
    ] {
        check.post(&edge, publish, body, false, 400).await;
    }
    for text in ["not json", "", r#"{"all":true,"event":"e","data":1e400}"#] {
        check
            .call(&edge, ("POST", publish), Auth::Bearer, text, 400)
            .await;
    }
    for auth in [Auth::Nothing, Auth::Wrong] {
        check
            .call(&edge, ("POST", publish), auth, &good.to_string(), 401)
            .await;
    }
    check
        .call(&edge, ("POST", publish), Auth::Bearer, &huge(), 413)
        .await;

    // batch
    let batch = "/api/batch";
    let answer = check
        .post(
            &edge,
            batch,
            json!({"messages": [good, {"all": true, "event": "e", "data": 2}]}),
            true,
            200,
        )
        .await;
    assert_eq!(answer["results"].as_array().map(Vec::len), Some(2));
    let answer = check
        .post(
            &edge,
            batch,
            json!({"messages": [good, {"room": "bad room", "event": "e", "data": 1}, 7, {"all": {}}]}),
            // Any message is answered in its place (schemathesis found the document saying
            // that one which is no publish body fails the whole batch).
            true,
            200,
        )
        .await;
    assert_eq!(answer["results"][1]["error"]["code"], "INVALID_ROOM");
    assert_eq!(answer["results"][2]["error"]["code"], "BAD_FRAME");
    assert_eq!(answer["results"][3]["error"]["code"], "BAD_FRAME");
    check
        .post(&edge, batch, json!({"messages": []}), true, 200)
        .await;
    for body in [
        json!({}),
        json!({"messages": 5}),
        json!({"messages": [], "x": 1}),
    ] {
        check.post(&edge, batch, body, false, 400).await;
    }
    let many = json!({"messages": vec![json!({"all": true, "event": "e", "data": 1}); 1001]});
    check.post(&edge, batch, many, false, 413).await;
    check
        .call(&edge, ("POST", batch), Auth::Bearer, &huge(), 413)
        .await;
    check
        .call(&edge, ("POST", batch), Auth::Nothing, "{}", 401)
        .await;

    // join, leave
    for path in ["/api/join", "/api/leave"] {
        check
            .post(
                &edge,
                path,
                json!({"user": "ada", "room": "r:2"}),
                true,
                200,
            )
            .await;
        check
            .post(
                &edge,
                path,
                json!({"client": ada_id, "user": null, "room": "r:2"}),
                true,
                200,
            )
            .await;
        for body in [
            json!({"room": "r"}),
            json!({"user": "ada", "client": ada_id, "room": "r"}),
            json!({"user": null, "client": null, "room": "r"}),
            json!({"user": "ada", "room": null}),
            json!({"user": "ada"}),
            json!({"user": "ada", "room": "bad room"}),
            json!({"user": "", "room": "r"}),
            json!({"client": "a:b", "room": "r"}),
            json!({"user": "ada", "room": "r", "code": 4010}),
        ] {
            check.post(&edge, path, body, false, 400).await;
        }
        check
            .call(&edge, ("POST", path), Auth::Bearer, &huge(), 413)
            .await;
        check
            .call(&edge, ("POST", path), Auth::Wrong, "{}", 401)
            .await;
    }

    // presence, presence_stats
    let presence = "/api/presence";
    let stats = "/api/presence_stats";
    check.room_conforms(presence, "p:1", true);
    let listed = check
        .call(
            &edge,
            ("GET", "/api/presence?room=p:1"),
            Auth::Bearer,
            "",
            200,
        )
        .await;
    assert_eq!(listed["clients"][0]["info"], json!({"name": "ada"}));
    check
        .call(
            &edge,
            ("GET", "/api/presence?room=p:2"),
            Auth::Bearer,
            "",
            413,
        )
        .await;
    let counted = check
        .call(
            &edge,
            ("GET", "/api/presence_stats?room=p:2"),
            Auth::Bearer,
            "",
            200,
        )
        .await;
    assert_eq!(counted, json!({"room": "p:2", "clients": 2, "users": 2}));
    for path in [presence, stats] {
        check.room_conforms(path, "r", true);
        check
            .call(
                &edge,
                ("GET", &format!("{path}?room=r")),
                Auth::Bearer,
                "",
                403,
            )
            .await;
        check.room_conforms(path, "bad room", false);
        check.room_conforms(path, "", false);
        for query in ["", "?room=", "?room=bad%20room", "?room=%ZZ", "?other=1"] {
            check
                .call(
                    &edge,
                    ("GET", &format!("{path}{query}")),
                    Auth::Bearer,
                    "",
                    400,
                )
                .await;
        }
        check
            .call(
                &edge,
                ("GET", &format!("{path}?room=p:1")),
                Auth::Nothing,
                "",
                401,
            )
            .await;
    }

    // history
    let history = "/api/history";
    check.room_conforms(history, "h", true);
    for n in 0..3 {
        check
            .post(
                &edge,
                "/api/publish",
                json!({"room": "h", "event": "e", "data": {"n": n}}),
                true,
                200,
            )
            .await;
    }
    let page = check
        .call(
            &edge,
            ("GET", "/api/history?room=h&limit=2"),
            Auth::Header,
            "",
            200,
        )
        .await;
    assert_eq!(page["messages"][1]["data"], json!({"n": 2}), "{page}");
    assert_eq!(page["more"], true);
    let before = page["messages"][0]["offset"].as_str().expect("an offset");
    let older = check
        .call(
            &edge,
            ("GET", &format!("/api/history?room=h&before={before}")),
            Auth::Bearer,
            "",
            200,
        )
        .await;
    assert_eq!(older["messages"][0]["data"], json!({"n": 0}), "{older}");
    for query in [
        "",
        "?room=h&limit=0",
        "?room=h&limit=101",
        "?room=h&limit=x",
        "?room=h&before=soon",
        "?room=bad%20room",
        "?limit=3",
    ] {
        check
            .call(
                &edge,
                ("GET", &format!("{history}{query}")),
                Auth::Bearer,
                "",
                400,
            )
            .await;
    }
    check
        .call(
            &edge,
            ("GET", "/api/history?room=h"),
            Auth::Nothing,
            "",
            401,
        )
        .await;

    // nodes: this edge, reporting itself
    let nodes = check
        .call(&edge, ("GET", "/api/nodes"), Auth::Header, "", 200)
        .await;
    assert!(
        nodes["nodes"].as_array().is_some_and(|n| !n.is_empty()),
        "{nodes}"
    );
    check
        .call(&edge, ("GET", "/api/nodes"), Auth::Nothing, "", 401)
        .await;

    // disconnect
    let disconnect = "/api/disconnect";
    for body in [
        json!({}),
        json!({"user": "ada", "client": ada_id}),
        json!({"user": "ada", "code": 4000}),
        json!({"user": "ada", "code": 5000}),
        json!({"user": "ada", "code": "4010"}),
        json!({"user": "ada", "reason": "x".repeat(124)}),
        json!({"user": "ada", "room": "r"}),
    ] {
        check.post(&edge, disconnect, body, false, 400).await;
    }
    check
        .call(&edge, ("POST", disconnect), Auth::Bearer, &huge(), 413)
        .await;
    check
        .call(&edge, ("POST", disconnect), Auth::Nothing, "{}", 401)
        .await;
    check
        .post(&edge, disconnect, json!({"user": "nobody"}), true, 200)
        .await;
    check
        .post(
            &edge,
            disconnect,
            json!({"user": "nobody", "client": null, "code": null, "reason": null}),
            true,
            200,
        )
        .await;
    check
        .post(
            &edge,
            disconnect,
            json!({"client": bob_id, "code": 4011, "reason": "bye"}),
            true,
            200,
        )
        .await;
    assert_eq!(bob.closed().await, (4011, "bye".to_owned()));

    // The document, with or without a key, right or wrong.
    for auth in [Auth::Nothing, Auth::Wrong, Auth::Bearer] {
        check
            .call(&edge, ("GET", "/api/openapi.json"), auth, "", 200)
            .await;
    }

    // With no key configured the API is off: every route, the document's too, answers 404.
    let off = Edge::with_redis(&redis, &["--jwt-secret", SECRET]).await;
    for route in ROUTES {
        let method = route.method.as_str().to_ascii_uppercase();
        check
            .call(&off, (&method, route.path), Auth::Bearer, "{}", 404)
            .await;
    }
    drop(off);

    // While Redis is down every keyed route answers 503 with Retry-After; the document is still
    // served.
    redis.kill();
    edge.wait_readyz(503).await;
    check
        .call(
            &edge,
            ("POST", publish),
            Auth::Bearer,
            &good.to_string(),
            503,
        )
        .await;
    let body = json!({"messages": [good]}).to_string();
    check
        .call(&edge, ("POST", batch), Auth::Bearer, &body, 503)
        .await;
    let moved = json!({"user": "ada", "room": "r"});
    for (path, body) in [
        ("/api/join", &moved),
        ("/api/leave", &moved),
        (disconnect, &json!({"user": "ada"})),
    ] {
        check
            .call(&edge, ("POST", path), Auth::Bearer, &body.to_string(), 503)
            .await;
    }
    for target in [
        "/api/presence?room=p:1",
        "/api/presence_stats?room=p:1",
        "/api/history?room=h",
        "/api/nodes",
    ] {
        check
            .call(&edge, ("GET", target), Auth::Bearer, "", 503)
            .await;
    }
    check
        .call(&edge, ("GET", "/api/openapi.json"), Auth::Nothing, "", 200)
        .await;

    // Every status the document lists, the edge answers somewhere above: the document claims
    // nothing the code does not do. The one exception needs 64 requests stuck for 5 s (the
    // internal listener's places); the edge's unit tests check that answer.
    let unseen: Vec<_> = check
        .doc
        .operations()
        .into_iter()
        .flat_map(|(method, path)| {
            check
                .doc
                .statuses(&method, &path)
                .into_iter()
                .map(move |status| (method.clone(), path.clone(), status))
        })
        .filter(|key| !check.seen.contains(key))
        .filter(|(_, path, status)| !(path == "/api/openapi.json" && *status == 503))
        .collect();
    assert!(
        unseen.is_empty(),
        "documented but never answered: {unseen:?}"
    );
    drop(ada);
}

/// The venv's `schemathesis` beside `FERROCAST_PYTHON`.
fn schemathesis() -> PathBuf {
    let python = std::env::var("FERROCAST_PYTHON").unwrap_or_else(|_| "python3".into());
    PathBuf::from(python).with_file_name("schemathesis")
}

/// schemathesis reads the document as served and sends each keyed operation (it leaves out the
/// document's own route, which the test above covers) inputs it draws from the document, good
/// and bad: no answer may be a 5xx (Redis is up), have a status, body, content type or header the
/// document does not list, or accept an input the document rules out. Not checked: that every
/// input the document allows is accepted, which JSON Schema cannot say exactly (`4010.0` is an
/// integer to it but no close code to the edge; a reason's limit is in bytes, not characters).
/// A fixed seed and 40 examples an operation keep it to seconds and the same every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_fuzzes_the_api_from_the_document_and_finds_nothing() {
    let redis = RedisServer::start();
    let edge = Edge::with_redis(
        &redis,
        &[
            "--jwt-secret",
            SECRET,
            "--api-key",
            KEY,
            // Every room records presence, so rooms drawn at random get answers, not 403s.
            "--presence-rooms",
            "*",
        ],
    )
    .await;
    let base = format!("http://127.0.0.1:{}", edge.internal_port);
    let program = schemathesis();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/python/schemathesis.toml");
    let started = Instant::now();
    let run = tokio::process::Command::new(&program)
        // No schemathesis.toml of anyone's is picked up from the working directory.
        .current_dir(std::env::temp_dir())
        .args(["--no-color", "--config-file", config])
        .args(["run", &format!("{base}/api/openapi.json")])
        .args(["--url", &base])
        .args(["--header", &format!("Authorization: Bearer {KEY}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance,\
             content_type_conformance,response_headers_conformance,negative_data_rejection",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "40"])
        .args(["--seed", "20261205", "--generation-database", "none"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("schemathesis finished in time")
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; scripts/test.sh installs it \
                 (tests/python/requirements-schemathesis.txt) and sets FERROCAST_PYTHON",
                program.display()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found answers the document does not allow ({}):\n{stdout}\n{stderr}",
        output.status
    );
    eprintln!("{stdout}\nschemathesis ran in {:?}", started.elapsed());
    assert_eq!(edge.get("/healthz").await.map(|r| r.0), Some(200));
}
