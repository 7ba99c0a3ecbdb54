#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The dashboard and the alert rules are known to work: the rules pass promtool's check and
//! their unit tests, the PrometheusRule holds the same rules, every alert has its section in
//! docs/alerts.md, and a real Prometheus scraping a real edge under a little load evaluates every
//! dashboard query and every rule without error, with series for every metric they name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferrocast_emitter::Emitter;
use ferrocast_tests::promql::metric_names;
use ferrocast_tests::upstream::{chat_token, send};
use ferrocast_tests::{Client, DEADLINE, Edge, HookServer, Prometheus, RedisServer};
use serde_json::{Value, json};

const RULES: &str = "monitoring/prometheus/ferrocast-alerts.yaml";
const RULE_TESTS: &str = "monitoring/prometheus/ferrocast-alerts.test.yaml";
const DASHBOARD: &str = "monitoring/grafana/ferrocast-edge.json";
const ALERTS_DOC: &str = "docs/alerts.md";
/// The job the test's Prometheus scrapes the edge as: the rules' `up` selectors must match it.
const JOB: &str = "ferrocast-edge";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs `program` with `args` in the workspace root; panics with its output unless it succeeds.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!("{program}: {e} (scripts/test.sh installs Debian's prometheus)")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The alert names in the rules file, in order.
fn alert_names() -> Vec<String> {
    read(RULES)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_rules_pass_promtool_check_and_their_unit_tests() {
    run("promtool", &["check", "rules", RULES]);
    run("promtool", &["test", "rules", RULE_TESTS]);
    // Every alert has a unit test that expects it to fire (and one that expects silence).
    let tests = read(RULE_TESTS);
    for alert in alert_names() {
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - "
            )),
            "no unit test where {alert} fires"
        );
        assert!(
            tests.contains(&format!("alertname: {alert}\n        exp_alerts: []")),
            "no unit test where {alert} stays silent"
        );
    }
}

#[test]
fn the_prometheusrule_holds_the_rules_of_the_rules_file() {
    run("scripts/generate-prometheusrule.sh", &["--check"]);
}

#[test]
fn every_alert_has_its_runbook_section_in_docs_alerts() {
    let rules = read(RULES);
    let doc = read(ALERTS_DOC);
    let runbooks: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook: "))
        .map(|r| r.trim_matches('"'))
        .collect();
    let alerts = alert_names();
    assert_eq!(runbooks.len(), alerts.len(), "an alert without a runbook");
    for (alert, runbook) in alerts.iter().zip(runbooks) {
        let anchor = format!("alert-{}", alert.to_lowercase());
        assert_eq!(
            runbook,
            format!("{ALERTS_DOC}#{anchor}"),
            "{alert}'s runbook"
        );
        assert!(
            doc.contains(&format!("<a id=\"{anchor}\"></a>")),
            "{ALERTS_DOC} has no section for {alert} (anchor {anchor})"
        );
    }
}

/// Every panel of the dashboard, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel.clone());
        out.extend(panel["panels"].as_array().cloned().unwrap_or_default());
    }
    out
}

/// The dashboard's queries as Prometheus gets them from Grafana: its variables at "All", the
/// rate interval a duration. Variable queries (`label_values(QUERY, label)`) give their QUERY.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard JSON");
    let mut queries = Vec::new();
    for panel in panels(&dashboard) {
        for target in panel["targets"].as_array().cloned().unwrap_or_default() {
            let expr = target["expr"].as_str().expect("expr").to_owned();
            queries.push((format!("panel {:?}", panel["title"]), expr));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().expect("vars") {
        if let Some(q) = variable["definition"].as_str() {
            let inner = q.strip_prefix("label_values(").expect("label_values");
            let (query, _label) = inner.rsplit_once(',').expect("label_values(query, label)");
            queries.push((format!("variable {}", variable["name"]), query.to_owned()));
        }
    }
    queries
        .into_iter()
        .map(|(what, q)| {
            let q = q
                .replace("$__rate_interval", "10s")
                .replace("$job", ".*")
                .replace("$instance", ".*");
            assert!(!q.contains('$'), "{what}: an unknown variable in {q}");
            (what, q)
        })
        .collect()
}

#[test]
fn the_dashboard_imports_with_a_datasource_variable() {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard JSON");
    assert!(dashboard["schemaVersion"].as_u64().expect("schemaVersion") >= 36);
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let variables = dashboard["templating"]["list"].as_array().expect("vars");
    assert!(
        variables.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus datasource variable"
    );
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        assert!(
            ids.insert(panel["id"].as_u64().expect("id")),
            "duplicate id"
        );
        let grid = &panel["gridPos"];
        assert!(grid["x"].as_u64().expect("x") + grid["w"].as_u64().expect("w") <= 24);
        if panel["type"] == "row" {
            continue;
        }
        let uid = &panel["datasource"]["uid"];
        assert_eq!(uid, "${datasource}", "panel {}", panel["title"]);
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}");
        }
    }
}

/// A WebSocket upgrade request for the public port, with `extra` header lines.
fn upgrade(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// A little of everything the dashboard shows: connections in a room, publishes delivered, a
/// hook asked, presence recorded, a send upstream, a refused origin and a refused token.
async fn load(edge: &Edge, redis: &RedisServer) -> Vec<Client> {
    let mut clients = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let (mut client, _) = Client::connect(&edge.ws_url(), &chat_token(user)).await;
        client.join("chat:1").await;
        clients.push(client);
    }
    let joined = clients[0]
        .request(json!({"type": "join", "room": "private:1"}))
        .await;
    assert_eq!(
        joined["type"], "joined",
        "the join hook let alice in: {joined}"
    );
    let emitter = Emitter::connect(redis.url()).await.expect("emitter");
    for n in 0..20 {
        emitter
            .to_room("chat:1")
            .emit("tick", &json!(n))
            .await
            .expect("emit");
    }
    for client in &mut clients {
        for n in 0..20 {
            let frame = client.expect("msg").await;
            assert_eq!(frame["data"], json!(n));
        }
    }
    send(&mut clients[1], "chat.say", json!({"text": "hi"})).await;
    let refused = edge
        .raw(&upgrade("origin: https://elsewhere.example\r\n"))
        .await;
    assert_eq!(refused.map(|r| r.0), Some(403));
    let unauthorized = edge
        .raw(&upgrade("authorization: Bearer nonsense\r\n"))
        .await;
    assert_eq!(unauthorized.map(|r| r.0), Some(401));
    clients
}

/// Runs `check` until it returns `Ok`, every 100 ms; panics with its last `Err` after `within`.
async fn until<T, F: Future<Output = Result<T, String>>>(
    within: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(done) => return done,
            Err(why) => assert!(tokio::time::Instant::now() < deadline, "{why}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until Prometheus has series for every one of `names` (scraped, and the inbox's lag
/// read: every 5 s); panics naming those it never had.
async fn wait_for_series(prometheus: &Prometheus, names: &BTreeSet<String>) {
    until(DEADLINE * 3, || async {
        let mut missing = Vec::new();
        for name in names {
            match prometheus.query(name).await {
                Ok(series) if !series.is_empty() => {}
                _ => missing.push(name.as_str()),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "no series in Prometheus for {missing:?}: a panel or rule names a metric the \
                 edge does not export"
            ))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_and_rule_has_data_from_a_live_edge() {
    let redis = RedisServer::start();
    // A consumer group, so the edge has an inbox lag to report.
    redis
        .cli(&["XGROUP", "CREATE", "fc:{inbox}", "workers", "$", "MKSTREAM"])
        .expect("XGROUP CREATE");
    let hooks = HookServer::start().await;
    hooks.member("alice", "private:1");
    let join_hook = hooks.url("/join");
    let edge = Edge::with_redis(
        &redis,
        &[
            "--upstream-events",
            "chat.*",
            "--presence-rooms",
            "chat:*",
            "--join-hook",
            &join_hook,
            "--join-hook-rooms",
            "private:*",
            "--allowed-origins",
            "https://app.example",
        ],
    )
    .await;
    let target = format!("127.0.0.1:{}", edge.internal_port);
    let prometheus = Prometheus::start(JOB, &[target], &[root().join(RULES)]).await;
    let _clients = load(&edge, &redis).await;

    let queries = dashboard_queries();
    let rules = loaded_rules(&prometheus).await;
    let mut names = BTreeSet::new();
    for (what, expr) in queries.iter().chain(&rules) {
        for name in metric_names(expr) {
            assert!(
                name.starts_with("ferrocast_") || name == "up",
                "{what} names {name}, which no edge exports"
            );
            names.insert(name);
        }
    }
    wait_for_series(&prometheus, &names).await;

    for (what, expr) in queries.iter().chain(&rules) {
        if let Err(error) = prometheus.query(expr).await {
            panic!("{what}: {expr}: {error}");
        }
    }
    // A healthy edge under a little load raises nothing, not even a pending alert. (Before the
    // first scrape no edge was up: FerrocastNoEdgeUp may be pending until the next evaluation.)
    until(DEADLINE, || async {
        match prometheus.query("ALERTS").await? {
            alerts if alerts.is_empty() => Ok(()),
            alerts => Err(format!("alerts on a healthy edge: {alerts:?}")),
        }
    })
    .await;
}

/// The alerting rules as Prometheus loaded them, once each has been evaluated without error:
/// (`rule NAME`, expression).
async fn loaded_rules(prometheus: &Prometheus) -> Vec<(String, String)> {
    let rules = until(DEADLINE * 3, || async {
        let rules = prometheus.rules().await;
        if !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown") {
            Ok(rules)
        } else {
            Err(format!("Prometheus never evaluated every rule: {rules:?}"))
        }
    })
    .await;
    let loaded: Vec<_> = rules.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        loaded,
        alert_names(),
        "Prometheus loaded other rules than the file's"
    );
    rules
        .iter()
        .map(|rule| {
            assert_eq!(rule["health"], "ok", "{rule}");
            let name = rule["name"].as_str().unwrap();
            (
                format!("rule {name}"),
                rule["query"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}
