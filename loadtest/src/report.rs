//! Results: a table for people, one JSON object for keeping and comparing runs.

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use crate::proc::Usage;

/// One scenario's results, in the order they were added.
pub struct Report {
    scenario: &'static str,
    rows: Vec<(String, Value)>,
}

impl Report {
    /// An empty report for `scenario`.
    pub fn new(scenario: &'static str) -> Report {
        Report {
            scenario,
            rows: Vec::new(),
        }
    }

    /// Adds a figure.
    pub fn add(&mut self, name: &str, value: impl Into<Value>) {
        self.rows.push((name.to_owned(), value.into()));
    }

    /// Adds percentiles (p50, p90, p99, p99.9) and the maximum of a histogram of microseconds,
    /// in milliseconds, as `<prefix>_p50_ms` and so on.
    pub fn add_latency(&mut self, prefix: &str, micros: &Histogram<u64>) {
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)] {
            self.add(
                &format!("{prefix}_{name}_ms"),
                micros.value_at_quantile(q) as f64 / 1000.0,
            );
        }
        self.add(&format!("{prefix}_max_ms"), micros.max() as f64 / 1000.0);
    }

    /// Adds the edge's CPU between two samples, user and system; returns their sum in seconds.
    pub fn add_cpu(&mut self, before: Option<Usage>, after: Option<Usage>) -> Option<f64> {
        let (before, after) = (before?, after?);
        let user = after.user_s - before.user_s;
        let system = after.system_s - before.system_s;
        self.add("edge_cpu_user_s", user);
        self.add("edge_cpu_system_s", system);
        self.add(
            "edge_user_share",
            user / (user + system).max(f64::MIN_POSITIVE),
        );
        Some(user + system)
    }

    /// Prints the table, or the JSON object.
    pub fn print(&self, as_json: bool) {
        if as_json {
            let mut map = Map::new();
            map.insert("scenario".into(), json!(self.scenario));
            for (name, value) in &self.rows {
                map.insert(name.clone(), value.clone());
            }
            println!("{}", Value::Object(map));
            return;
        }
        println!("scenario: {}", self.scenario);
        let width = self.rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, value) in &self.rows {
            let shown = match value {
                Value::Number(n) if n.is_f64() => format!("{:.3}", n.as_f64().unwrap_or(0.0)),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("  {name:<width$}  {shown}");
        }
    }
}
