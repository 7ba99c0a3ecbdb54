//! Results: a table for people, one JSON object for keeping and comparing runs.

use serde_json::{Map, Value, json};

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
